#!/usr/bin/env python3
"""Resident memory of a long segment_folder.py run: must stay flat (< 100 MB growth after warm-up).

Makes --n images by cropping/resizing the shared COCO photos into a temp folder, runs
bin/segment_folder.py on them in a child process (overlays + --json, the full output path),
samples the child's RSS with psutil and writes the curve to bench/out/memory_rss.png.
Run: .venv/bin/python bench/bench_memory.py [--n 5000] [--size 320]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _photos import coco_photos  # bench/ is on the path when a bench runs

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"
OUT = REPO / "bench" / "out"


def make_images(dst: Path, n: int, size: int) -> None:
    """n distinct JPEGs: random crops of the COCO photos, resized to about ``size`` px wide."""
    import cv2
    import numpy as np

    photos = coco_photos()
    rng = np.random.default_rng(0)
    decoded = [cv2.imread(str(p)) for p in photos[:64]]  # BGR in, BGR out: no colour work needed
    for i in range(n):
        img = decoded[i % len(decoded)]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1)), int(w * rng.uniform(0.5, 1))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = img[y:y + ch, x:x + cw]
        out = cv2.resize(crop, (size, max(8, round(size * ch / cw))), interpolation=cv2.INTER_AREA)
        sub = dst / f"part{i // 1000}"  # a tree, like real photo folders
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"img{i:05d}.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    import psutil

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=320, help="image width in pixels")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the run taken as warm-up")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="segkit_mem_"))
    try:
        t0 = time.perf_counter()
        make_images(tmp / "in", args.n, args.size)
        print(f"made {args.n} images of width {args.size} in {time.perf_counter() - t0:.0f} s")
        cmd = [sys.executable, str(REPO / "bin" / "segment_folder.py"), "-i", str(tmp / "in"), "-r",
               "-o", str(tmp / "out"), "--json", "--model-path", str(MODEL), "--quiet"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ps = psutil.Process(proc.pid)
        times, rss = [], []
        start = time.perf_counter()
        while proc.poll() is None:
            try:
                rss.append(ps.memory_info().rss / 2**20)
                times.append(time.perf_counter() - start)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        log = proc.stdout.read()
        if proc.returncode != 0:
            sys.exit(f"segment_folder failed ({proc.returncode}):\n{log}")
        done = sum(1 for p in (tmp / "out").rglob("img*") if p.suffix in (".jpg", ".png"))  # the overlay follows the input: JPEG
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    wall = times[-1]
    warm = [r for t, r in zip(times, rss) if t >= args.warmup * wall]
    at_warm, peak, final = warm[0], max(warm), rss[-1]
    print(log.strip().splitlines()[-1])
    print(f"{done} overlays; RSS after warm-up ({100 * args.warmup:.0f} % of the run) {at_warm:.0f} MB, "
          f"peak {peak:.0f} MB, last {final:.0f} MB -> growth {peak - at_warm:+.0f} MB (target < 100 MB)")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(times, rss)
    ax.axvline(args.warmup * wall, color="gray", ls="--", label="end of warm-up")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"segment_folder.py over {args.n} images (person model, overlays + JSON)")
    ax.set_ylim(0, max(rss) * 1.15)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "memory_rss.png", dpi=100)
    print(f"plot: {OUT / 'memory_rss.png'}")


if __name__ == "__main__":
    main()
