#!/usr/bin/env python3
"""Milliseconds per 640x480 frame of the default person model (both networks, LiteRT, the whole
segment call: resize, forward passes, gating, upsampling to 640x480), the figure issue #15's
budget (<= 8 ms on 2 cores) is about. With --before DIR, the same in another checkout of segkit;
with --model-path DIR, another model folder (e.g. a candidate configuration of the person model)
in this checkout; all alternated in one run.

    .venv/bin/python bench/bench_person_frame.py [--before /tmp/segkit-before] [--model-path DIR] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "images" / "000000519208.jpg"  # one person on a tennis court


def measure(frames: int, model_path: str | None = None) -> float:
    import cv2

    from segkit.models import load_segmenter

    try:
        from segkit.io.sources import read_image
    except ImportError:  # a checkout from before segkit.io
        from segkit.sources import read_image
    model = load_segmenter(None, model_path) if model_path else load_segmenter(None)
    image = cv2.resize(read_image(PHOTO), (640, 480))
    for _ in range(20):
        model.segment([image])
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        model.segment([image])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, help="another checkout to time alternately")
    ap.add_argument("--model-path", help="another model folder to time alternately (in this checkout)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: print the median
    args = ap.parse_args()
    if args.one:
        print(f"{measure(args.frames, args.model_path):.3f}")
        return
    # label: (checkout, model folder or None for the default model)
    runs = {"this": (REPO, None)} | ({"before": (args.before, None)} if args.before else {}) | \
        ({"model": (REPO, args.model_path)} if args.model_path else {})
    got: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for label, (checkout, model_path) in runs.items():
            other = ["--model-path", str(Path(model_path).resolve())] if model_path else []
            r = subprocess.run([sys.executable, __file__, "--one", "--frames", str(args.frames), *other],
                               env={**os.environ, "PYTHONPATH": str(Path(checkout) / "lib")}, cwd=checkout,
                               capture_output=True, text=True, check=True)
            got[label].append(float(r.stdout.split()[-1]))
    print(f"ms per 640x480 frame, median of {args.frames} frames per round, {args.rounds} rounds alternated "
          f"(load average {os.getloadavg()[0]:.2f}):")
    for label, values in got.items():
        print(f"  {label:6s} {statistics.median(values):.2f} ms  (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    if args.before:
        print(f"  this/before = {statistics.median(got['this']) / statistics.median(got['before']):.2f}")
    if args.model_path:
        print(f"  model = {args.model_path}; model/this = "
              f"{statistics.median(got['model']) / statistics.median(got['this']):.2f}")


if __name__ == "__main__":
    main()
