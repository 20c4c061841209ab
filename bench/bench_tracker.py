#!/usr/bin/env python3
"""The tracker's cost (#21): per frame with 20 objects, and a live run's fps with and without it.

    python bench/bench_tracker.py [--objects 20] [--frames 300] [--run-frames 120] [--rounds 3]
                                  [--model NAME]

Timings are wall-clock medians; the tracker's is also given as the CPU time of its thread
(time.thread_time), which other processes on a shared machine inflate less.

1. Tracker.update on synthetic 854x480 frames (DAVIS' size) of ``--objects`` elliptic objects
   moving and bouncing (a real Segmentation per frame, built outside the timing): ms per frame
   for the whole update (mask grids, matching, Kalman) and for its step() alone. Target <= 2 ms.
2. segment_webcam's flow (capture thread, model, one writer drawing the overlay) over a 640x480
   clip of the shared vtest.avi (pedestrians), every frame, with and without the tracker,
   alternated in ``--rounds`` rounds in one process so the shared machine's load hits both
   alike: fps of each (median over the rounds), the ratio of those medians, and the median of
   each round's with/without ratio (its two runs are adjacent, so they share the load: the
   figure the verdict uses). Target >= 95 %.
Figures only; not a test.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(REPO / "bench"))


def synthetic_frames(n_objects: int, h: int = 480, w: int = 854, seed: int = 0):
    """Yields (frame index, Segmentation) of objects moving at constant speed, bouncing off the
    borders (they cross each other often)."""
    import cv2

    from segkit.segmentation import Segmentation

    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 90, (n_objects, 2))
    pos = rng.uniform([0, 0], [w - 90, h - 90], (n_objects, 2))
    vel = rng.uniform(-6, 6, (n_objects, 2))
    i = 0
    while True:
        masks = np.zeros((n_objects, h, w), np.uint8)
        for k in range(n_objects):
            cx, cy = pos[k] + size[k] / 2
            cv2.ellipse(masks[k], (int(cx), int(cy)), (int(size[k, 0] / 2), int(size[k, 1] / 2)), 0, 0, 360, 1, -1)
        boxes = np.concatenate([pos, pos + size], axis=1).astype(np.float32)
        scores = rng.uniform(0.3, 0.95, n_objects).astype(np.float32)  # some in the low band
        yield i, Segmentation(h, w, masks=masks.astype(bool), boxes=boxes, class_ids=np.ones(n_objects, np.int32),
                              scores=scores)
        pos += vel
        bounce = (pos < 0) | (pos + size > [w, h])
        vel[bounce] *= -1
        pos = np.clip(pos, 0, [w, h] - size)
        i += 1


def tracker_cost(n_objects: int, frames: int) -> dict:
    from segkit.track import Tracker

    update_tracker, step_tracker = Tracker(), Tracker()
    update_s, step_s, update_cpu = [], [], []
    for i, seg in synthetic_frames(n_objects):
        if i == frames:
            break
        t0, c0 = time.perf_counter(), time.thread_time()
        update_tracker.update(seg, i)
        t1, c1 = time.perf_counter(), time.thread_time()
        _, dets = step_tracker.detections_of(seg)
        t2 = time.perf_counter()
        step_tracker.step(dets, i)
        t3 = time.perf_counter()
        update_s.append(t1 - t0)
        update_cpu.append(c1 - c0)
        step_s.append(t3 - t2)
    warm = slice(5, None)  # the first frames start the tracks
    return {"update_ms": 1000 * statistics.median(update_s[warm]), "update_p95_ms": 1000 * float(np.percentile(update_s[warm], 95)),
            "step_ms": 1000 * statistics.median(step_s[warm]),
            "update_cpu_ms": 1000 * statistics.median(update_cpu[warm]), "tracks": update_tracker.next_id - 1,
            "live": sum(1 for t in update_tracker.tracks if t.id and not t.lost)}


def live_fps(clip: Path, model: str | None, rounds: int) -> dict:
    from segkit.flow import STREAM, Filter, run
    from segkit.io.sinks import Call, Renderer
    from segkit.io.video_source import VideoSource
    from segkit.models import load_segmenter
    from segkit.track import Tracker

    segmenter = load_segmenter(model)
    render = Renderer()
    drawn = [0]

    def draw(frame, seg):  # what a window or video sink costs: the overlay of every frame
        render(frame, seg)
        drawn[0] += 1

    fps = {"off": [], "on": []}
    track_ms = []
    try:
        for r in range(rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                tracker = Tracker() if mode == "on" else None
                with VideoSource(str(clip)) as source:
                    stats = run(source, segmenter, [Call(draw)], result_filter=Filter({1}, 0.5), policy=STREAM,
                                tracker=tracker)
                fps[mode].append(stats.done / stats.seconds)
                if tracker is not None:
                    track_ms.append(stats.ms(stats.track_s))
    finally:
        segmenter.close()
    off, on = statistics.median(fps["off"]), statistics.median(fps["on"])
    # each round's two runs are adjacent in time: their ratio sees the same load
    paired = statistics.median(b / a for a, b in zip(fps["off"], fps["on"]))
    return {"model": segmenter.name, "fps_off": off, "fps_on": on, "ratio": on / off, "paired": paired, "track_ms": statistics.median(track_ms),
            "all_off": fps["off"], "all_on": fps["on"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--run-frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", action="append", help="zoo name (repeat; default: the default person model)")
    args = ap.parse_args(argv)

    c = tracker_cost(args.objects, args.frames)
    print(f"tracker, {args.objects} objects at 854x480, {args.frames} frames: update {c['update_ms']:.2f} ms/frame "
          f"(p95 {c['update_p95_ms']:.2f}; CPU time of its thread, median: {c['update_cpu_ms']:.2f}), step alone {c['step_ms']:.2f} ms; {c['tracks']} ids given, "
          f"{c['live']} live at the end; target <= 2 ms (its thread's CPU time): "
          f"{'met' if c['update_cpu_ms'] <= 2 else 'NOT met'}", flush=True)

    from bench_webcam import make_clip

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "vtest_640.mp4", args.run_frames)
        for model in args.model or [None]:
            f = live_fps(clip, model, args.rounds)
            print(f"live run, {f['model']}, vtest 640x480 x {args.run_frames} frames, {args.rounds} alternated rounds: "
                  f"{f['fps_off']:.1f} fps without --track, {f['fps_on']:.1f} fps with (tracker "
                  f"{f['track_ms']:.2f} ms/frame): ratio of the medians {f['ratio']:.3f}, median of "
                  f"the rounds' ratios {f['paired']:.3f}; target >= 0.95 (rounds' ratios): "
                  f"{'met' if f['paired'] >= 0.95 else 'NOT met'}  [off {', '.join(f'{v:.1f}' for v in f['all_off'])}; "
                  f"on {', '.join(f'{v:.1f}' for v in f['all_on'])}; per round "
                  f"{', '.join(f'{b / a:.3f}' for a, b in zip(f['all_off'], f['all_on']))}]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
