#!/usr/bin/env python3
"""segkit against a plain loop on MediaPipe's own Python API, same network, same outputs.

The same 200 COCO images (val2017, then train2017) go through
  mediapipe   a plain loop a MediaPipe user would write: cv2.imread -> SelfieSegmentation
              (model_selection=0, the general 256x256 selfie network) -> blend the person in
              colour at alpha 0.5 -> cv2.imwrite JPEG quality 95
  segkit      bin/segment_folder.py -i DIR -o OUT --model selfie_segmentation (the same
              network, from MediaPipe's wheel): overlay JPEG quality 95 (tint + outline)
each as its own process, timed from start to exit (imports and model loading included, as a
user waits for them), in alternating pairs; the ratio of each pair is reported and the median
is the figure. Target: segkit >= 1.6x faster.

MediaPipe lives in its own venv (its pins clash with TensorFlow's): point --mediapipe-python
or $SEGKIT_MEDIAPIPE_PYTHON at its interpreter, e.g.
    python3 -m venv /work/scratch/mpvenv && /work/scratch/mpvenv/bin/pip install mediapipe==0.10.21
Without it the bench says so and exits 0 (nothing measured).
Run: .venv/bin/python bench/bench_peers.py [--n 200] [--pairs 3]
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

from _photos import coco_photos, linked_folder  # bench/ is on the path when a bench runs

REPO = Path(__file__).resolve().parents[1]

MEDIAPIPE_LOOP = r'''
import sys, time
from pathlib import Path
import cv2, numpy as np
import mediapipe as mp

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
colour = np.array([255, 64, 64], np.float32)  # BGR, any colour
with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
    for f in sorted(src.iterdir()):
        bgr = cv2.imread(str(f))
        mask = seg.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).segmentation_mask > 0.5
        blended = bgr.copy()
        blended[mask] = (0.5 * bgr[mask] + 0.5 * colour).astype(np.uint8)
        cv2.imwrite(str(out / (f.stem + ".jpg")), blended, [cv2.IMWRITE_JPEG_QUALITY, 95])
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images (COCO val2017 then train2017)")
    ap.add_argument("--pairs", type=int, default=3, help="alternating (mediapipe, segkit) runs")
    ap.add_argument("--mediapipe-python", default=os.environ.get("SEGKIT_MEDIAPIPE_PYTHON"),
                    help="python of a venv with mediapipe==0.10.21 (or $SEGKIT_MEDIAPIPE_PYTHON)")
    args = ap.parse_args()

    mp_py = args.mediapipe_python
    if not mp_py or subprocess.run([mp_py, "-c", "import mediapipe"], capture_output=True).returncode:
        print("bench_peers: skipped: no Python with mediapipe (give --mediapipe-python or "
              "$SEGKIT_MEDIAPIPE_PYTHON; see the docstring for the venv)")
        return 0
    files = coco_photos(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="segkit_peers_"))
    src = linked_folder(files, tmp / "in")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2"}
    runs = {
        "mediapipe": [mp_py, "-c", MEDIAPIPE_LOOP, str(src), str(tmp / "mp")],
        "segkit": [sys.executable, str(REPO / "bin" / "segment_folder.py"), "-i", str(src), "-o",
                   str(tmp / "sk"), "--model", "selfie_segmentation", "--overwrite", "--quiet"],
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    load0 = os.getloadavg()[0]
    try:
        for _ in range(args.pairs):
            for name, cmd in runs.items():
                t0 = time.perf_counter()
                r = subprocess.run(cmd, env=env, capture_output=True, text=True)
                times[name].append(time.perf_counter() - t0)
                if r.returncode != 0:
                    sys.exit(f"{name} failed ({r.returncode}): {r.stderr[-1500:]}")
        outputs = {k: sorted(p.name for p in (tmp / d).glob("*.jpg")) for k, d in (("mediapipe", "mp"), ("segkit", "sk"))}
        assert outputs["mediapipe"] == outputs["segkit"] and len(outputs["segkit"]) == len(files), \
            "both must write one JPEG overlay per image"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [m / s for m, s in zip(times["mediapipe"], times["segkit"])]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\n{len(files)} COCO images, JPEG overlays (quality 95), {cores} cores, "
          f"load average before {load0:.2f}, {args.pairs} pairs")
    for name, ts in times.items():
        print(f"  {name:<10} " + "  ".join(f"{t:6.2f} s" for t in ts)
              + f"   best {len(files) / min(ts):6.1f} img/s")
    print("  mediapipe / segkit wall time per pair: " + "  ".join(f"{r:.2f}x" for r in ratios))
    print(f"  median: segkit is {statistics.median(ratios):.2f}x faster (target >= 1.6x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
