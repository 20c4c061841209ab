#!/usr/bin/env python3
"""The same folder, webcam and Beam runs from two checkouts of segkit, alternated in one run: is a
change (a refactor) within noise of what came before?

    git worktree add /tmp/segkit-before <rev>
    .venv/bin/python bench/bench_versions.py --before /tmp/segkit-before [--pairs 3] [--n 200]

Each timing is a whole command in a fresh process with ``PYTHONPATH=<checkout>/lib`` (this
project's venv for both): model load, reading, segmenting, writing. The runs alternate
before/after, so a machine that gets busier hurts both alike; per case the median of the pairs'
after/before wall-time ratios is printed (< 1: the change is faster).

  folder   segment_folder.py -i <n COCO photos> --json --save-masks (overlays as JPEG, the default)
  webcam   segment_webcam.py --source vtest.avi --output out.mp4 --no-show (every frame of the file)
  beam     segment_folder.py --runner beam on the first --beam-n photos (DirectRunner)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _photos import COCO, coco_photos, linked_folder  # bench/ is on the path when a bench runs

REPO = Path(__file__).resolve().parents[1]
SHARED = COCO.parent  # ../shared/data
PYTHON = REPO / ".venv" / "bin" / "python"


def cases(photos: Path, few: Path, out: Path) -> dict[str, list[str]]:
    video = SHARED / "videos" / "vtest.avi"
    return {
        "folder": ["bin/segment_folder.py", "-i", str(photos), "-o", str(out / "folder"), "--json",
                   "--save-masks", "--overwrite", "--quiet"],
        "webcam": ["bin/segment_webcam.py", "--source", str(video), "-o", str(out / "webcam.mp4"), "--no-show",
                   "--quiet"],
        "beam": ["bin/segment_folder.py", "--runner", "beam", "-i", str(few), "-o", str(out / "beam"), "--json",
                 "--overwrite", "--quiet"],
    }


def timed(checkout: Path, argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout / "lib")}
    t0 = time.perf_counter()
    r = subprocess.run([str(PYTHON), str(checkout / argv[0]), *argv[1:]], cwd=checkout, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{checkout}: {' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, type=Path, help="the other checkout (e.g. a git worktree)")
    ap.add_argument("--after", type=Path, default=REPO, help="default: this checkout")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200, help="photos for the folder case")
    ap.add_argument("--beam-n", type=int, default=60, help="photos for the Beam case")
    ap.add_argument("--only", nargs="*", choices=("folder", "webcam", "beam"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="segkit_versions_"))
    photos, few = tmp / "photos", tmp / "few"
    files = coco_photos(args.n)
    linked_folder(files, photos)
    linked_folder(files[: args.beam_n], few)
    try:
        print(f"{len(files)} photos; load average {os.getloadavg()[0]:.2f}; {args.pairs} pairs, alternated")
        for name, argv in cases(photos, few, tmp / "out").items():
            if args.only and name not in args.only:
                continue
            ratios, walls = [], {"before": [], "after": []}
            for i in range(args.pairs):
                order = (("before", args.before), ("after", args.after))
                order = order if i % 2 == 0 else order[::-1]  # who goes first alternates too
                got = {label: timed(checkout, argv) for label, checkout in order}
                for label in got:
                    walls[label].append(got[label])
                ratios.append(got["after"] / got["before"])
            print(f"{name:7s} before {statistics.median(walls['before']):6.2f} s  after "
                  f"{statistics.median(walls['after']):6.2f} s  after/before {statistics.median(ratios):.3f} "
                  f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
