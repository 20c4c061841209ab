#!/usr/bin/env python3
"""What --refine-edges costs per 854x480 frame, beside what a cut-out costs without it.

The models run once per DAVIS frame (not timed); then, alternated frame by frame in one run so
that the machine's load falls on both alike:

* ``cut-out``: alpha from the probabilities (segkit.render.foreground_alpha) + the cut-out on
  white, what every frame of a ``--background`` run costs after the model;
* ``refine``: ``segkit.edges.refine`` (the guided filter) alone, what --refine-edges adds.

Wall time (median) and CPU time of the calling thread are both printed: on a shared machine the
wall time also counts waiting for a core. Target (#23): refine <= 15 ms per 854x480 frame.

    .venv/bin/python bench/bench_edges.py [--frames 20] [--models person_selfie_coco,yolov5s_seg_coco_int8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

import numpy as np  # noqa: E402

from segkit.edges import refine  # noqa: E402
from segkit.io.sources import read_image  # noqa: E402
from segkit.models import load_segmenter  # noqa: E402
from segkit.render import cutout, foreground_alpha, parse_background  # noqa: E402

DAVIS = REPO.parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p"
#: the annotated object's COCO class per sequence (shared/data/README.md)
CLASSES = {"dance-twirl": 1, "car-shadow": 3, "dog": 18}


def frames(n: int) -> list[tuple[np.ndarray, int]]:
    out = []
    for seq, cid in CLASSES.items():
        paths = sorted((DAVIS / seq).glob("*.jpg"))
        step = max(1, len(paths) // max(1, n // len(CLASSES)))
        out += [(read_image(p), cid) for p in paths[::step][:max(1, n // len(CLASSES))]]
    return out


def timed(fn):
    w, c = time.perf_counter(), time.thread_time()
    result = fn()
    return result, (time.perf_counter() - w) * 1000, (time.thread_time() - c) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--models", default="person_selfie_coco,yolov5s_seg_coco_int8")
    args = ap.parse_args()
    if not DAVIS.is_dir():
        print(f"no DAVIS frames at {DAVIS}", file=sys.stderr)
        return 1
    white = parse_background("white")
    images = frames(args.frames)
    print(f"{len(images)} DAVIS frames, 854x480; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| model | cut-out ms (wall / CPU) | refine ms (wall / CPU) | refine / cut-out |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        model = load_segmenter(name, download=False, progress=False)
        segs = []
        for image, cid in images:
            seg = model.segment([image], min_score=0.25)[0]
            segs.append(seg if seg.is_semantic else seg.filter(classes={cid}, threshold=0.25))
        model.close()
        cut_w, cut_c, ref_w, ref_c = [], [], [], []
        for _ in range(2):  # the first round warms caches up; both rounds are kept alike
            for (image, _), seg in zip(images, segs):
                _, w, c = timed(lambda: cutout(image, foreground_alpha(seg), white))
                cut_w.append(w)
                cut_c.append(c)
                _, w, c = timed(lambda: refine(image, seg))
                ref_w.append(w)
                ref_c.append(c)
        half = len(cut_w) // 2
        cw, cc = statistics.median(cut_w[half:]), statistics.median(cut_c[half:])
        rw, rc = statistics.median(ref_w[half:]), statistics.median(ref_c[half:])
        print(f"| {name} | {cw:.1f} / {cc:.1f} | {rw:.1f} / {rc:.1f} | {rw / cw:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
