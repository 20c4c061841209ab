#!/usr/bin/env python3
"""Folder throughput of the two runners of segment_folder.py, side by side in one run, on the same
images and outputs:

  local    --runner local  (threads decode and encode beside the model)
  beam     --runner beam   (Apache Beam DirectRunner, in-process: MatchFiles -> RunInference -> sinks)
  beam mp  --runner beam --beam-options '--direct_running_mode=multi_processing --direct_num_workers=N'
           (with --multi N: N worker processes, each loading the model)

Each figure is a whole run: listing, model load, segmentation, writing, results.json.
Run: .venv/bin/python bench/bench_beam.py [--n 200] [--repeat 2] [--multi 2] [--json] [--save-masks]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from _photos import coco_photos, linked_folder  # bench/ is on the path when a bench runs

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images (COCO val then train, default 200)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds; the best of each runner is kept")
    ap.add_argument("--multi", type=int, default=0, metavar="N",
                    help="also time the DirectRunner in multi_processing mode with N workers")
    ap.add_argument("--model-path", default=str(MODEL))
    ap.add_argument("--json", action="store_true", help="also write the COCO results JSON")
    ap.add_argument("--save-masks", action="store_true", help="also write the mask PNGs")
    args = ap.parse_args()

    files = coco_photos(args.n)
    script = importlib.import_module("segkit.commands.folder")
    import segkit.beam_runner  # noqa: F401  (import Beam before timing: a one-off cost per process)

    tmp = Path(tempfile.mkdtemp(prefix="segkit_bench_beam_"))
    src = linked_folder(files, tmp / "in")
    common = ["-i", str(src), "--overwrite", "--quiet", "--model-path", args.model_path]
    common += (["--json"] if args.json else []) + (["--save-masks"] if args.save_masks else [])
    runners = {"local": ["--runner", "local"], "beam": ["--runner", "beam"]}
    if args.multi:
        runners[f"beam mp {args.multi}"] = [
            "--runner", "beam",
            f"--beam-options=--direct_running_mode=multi_processing --direct_num_workers={args.multi}"]

    best: dict[str, float] = {}
    load0 = os.getloadavg()[0]
    try:
        for _ in range(args.repeat):
            for name, extra in runners.items():
                out = tmp / name.replace(" ", "_")
                t0 = time.perf_counter()
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    rc = script.main([*common, "-o", str(out), *extra])
                wall = time.perf_counter() - t0
                assert rc == 0, f"{name}: exit code {rc}\n{err.getvalue()}"
                best[name] = min(best.get(name, 1e9), wall)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(files)
    what = "overlay PNG" + (" + masks" if args.save_masks else "") + (" + results.json" if args.json else "")
    print(f"\n{n} images, {os.cpu_count()} cores, outputs: {what}; best of {args.repeat} "
          f"(load average before: {load0:.2f})")
    for name, s in best.items():
        print(f"  {name:<11} {n / s:7.1f} img/s  ({s:.2f} s)")
    for name in best:
        if name != "local":
            print(f"  {name} / local = {best['local'] / best[name]:.2f}x")


if __name__ == "__main__":
    main()
