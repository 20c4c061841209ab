#!/usr/bin/env python3
"""YOLO-seg (family yolo_seg) on this machine's CPUs, all figures measured side by side in one run.

    python bench/bench_yolo.py [--models yolov5s_seg_coco yolov5s_seg_coco_int8 yolov5s_seg_coco_320] [--repeat 20]
                               [--frames 120] [--convert] [--no-live]

  1. forward: ms per image of the converted network (LiteRT, as load_segmenter sets it up: one
     thread per core up to 4) of each zoo entry at its input size, batch 1;
  2. the toolkit's own cost on a real COCO photo (768x576-ish) cut to 100 detections: letterbox,
     candidate scoring + class-aware NMS (conf 0.001, as in evaluation), mask decoding and pasting
     at the original size; printed as a fraction of (1) at the same size;
  3. cold start: a fresh process that loads the cached conversion and segments one photo
     (and whether it imported TensorFlow: it must not);
  4. --convert: converting the .pt into an empty cache (imports TensorFlow; ~a minute);
  5. live: bin/segment_webcam.py --model M --source vtest.avi --no-show, end to end fps from its
     own summary line (every frame of the file is segmented and drawn).
Targets (issue 11, 2 cores): forward <= 100 ms at 640, own cost <= 15 % of it, live >= 8 fps.
Figures only; not a test.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
SHARED = Path(os.environ.get("SEGKIT_SHARED", REPO.parent / "shared")) / "data"
PHOTO = REPO / "images" / "000000183709.jpg"  # a busy street: 100 detections at conf 0.001


def median_ms(fn, repeat: int, warmup: int = 2, cpu: bool = False):
    """Median wall ms of fn(); with cpu=True also the median CPU ms of this process (all its
    threads): on a machine shared with other jobs the wall time grows with their load, the CPU
    time much less, so it tells what the work costs on idle cores."""
    for _ in range(warmup):
        fn()
    times, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    wall = statistics.median(times) * 1000
    return (wall, statistics.median(cpus) * 1000) if cpu else wall


def forward_and_own_cost(models: list[str], repeat: int) -> list[dict]:
    from segkit.models import load_segmenter
    from segkit.models import yolo_seg as ys
    from segkit.io.sources import read_image

    image = read_image(PHOTO)
    h, w = image.shape[:2]
    rows = []
    for model in models:
        raw = load_segmenter(model).raw  # as the scripts load it (threads included)
        s = raw.imgsz
        ids = ys.coco_ids_for(raw.names, raw.nc)
        x, lb = ys.letterbox(image, s)
        batch = x[None].astype(np.float32) / 255
        fwd, fwd_cpu = median_ms(lambda: raw.run(batch), repeat, cpu=True)
        pred, protos = raw.run(batch)
        pred, protos = pred[0], protos[0]
        boxes, scores, cls, coeffs = ys.select(pred, raw.nc, ys.SCORE_FLOOR, max_det=100)
        img_boxes = lb.to_image(boxes, h, w)

        def prep():
            xx, _ = ys.letterbox(image, s)
            return xx[None].astype(np.float32) * np.float32(1 / 255)

        t_prep = median_ms(prep, repeat)
        t_nms = median_ms(lambda: ys.select(pred, raw.nc, ys.SCORE_FLOOR, max_det=100), repeat)
        t_mask = median_ms(lambda: ys.paste_proto_masks(protos, coeffs, img_boxes, lb, h, w), repeat)
        t_all, c_all = median_ms(lambda: ys.decode(pred, protos, lb, h, w, nc=raw.nc, class_ids=ids), repeat,
                                 cpu=True)
        _, c_prep = median_ms(prep, repeat, cpu=True)
        own = t_prep + t_all
        rows.append({"model": model, "imgsz": s, "forward_ms": fwd, "dets": len(scores), "letterbox_ms": t_prep,
                     "nms_ms": t_nms, "masks_ms": t_mask, "own_ms": own, "own_fraction": own / fwd,
                     "forward_cpu_ms": fwd_cpu, "own_cpu_ms": c_prep + c_all,
                     "own_cpu_fraction": (c_prep + c_all) / fwd_cpu})
        close = getattr(raw, "close", None)
        if close:
            close()
    return rows


COLD = """
import sys, time
t0 = time.perf_counter()
from segkit.models import load_segmenter
from segkit.io.sources import read_image
seg = load_segmenter(sys.argv[1], progress=False)
t1 = time.perf_counter()
out = seg.segment_one(read_image(sys.argv[2]), min_score=0.25)
t2 = time.perf_counter()
print(f"COLD load {t1 - t0:.2f} first {t2 - t1:.2f} n {len(out)} tf {'tensorflow' in sys.modules}")
"""


def cold_start(model: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", COLD, model, str(PHOTO)], capture_output=True, text=True,
                       env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("COLD")]
    if r.returncode or not line:
        return f"failed: {r.stderr.strip().splitlines()[-1:]}"
    return f"{line[0][5:]}  (process wall {wall:.2f} s, interpreter start included)"


CONVERT = """
import sys, time
from segkit import zoo
from segkit.models import yolo_convert
spec = zoo.load_registry().get(sys.argv[1])
pt = zoo.resolve(spec, progress=False)
t0 = time.perf_counter()
raw = yolo_convert.load_raw_model(pt, sys.argv[2], imgsz=int(sys.argv[3]), progress=False)
print(f"CONVERT {time.perf_counter() - t0:.1f}")
"""


def conversion(model: str, imgsz: int) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"))
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-c", CONVERT, model, tmp, str(imgsz)], capture_output=True,
                           text=True, env=env, cwd=REPO)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("CONVERT")]
    if r.returncode or not line:
        return f"failed: {r.stderr.strip().splitlines()[-1:]}"
    return f"{line[0].split()[1]} s (into an empty cache, TensorFlow import included)"


def live(model: str, frames: int) -> dict:
    video = SHARED / "videos" / "vtest.avi"
    cmd = [sys.executable, str(REPO / "bin" / "segment_webcam.py"), "--model", model, "--source", str(video),
           "--no-show", "--max-frames", str(frames), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "frames done" in ln]
    if r.returncode or not lines:
        return {"line": f"failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}", "fps": float("nan")}
    frames = int(re.search(r"(\d+) frames done", lines[-1]).group(1))
    # CPU seconds the whole run used (start-up included), per frame: on 2 idle cores the run
    # could go at most 2/cpu fps (perfect overlap) and at least 1/cpu fps (none)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / max(frames, 1)
    return {"line": lines[-1], "fps": float(re.search(r"\(([\d.]+)/s\)", lines[-1]).group(1)),
            "cpu_ms": cpu * 1000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["yolov5s_seg_coco", "yolov5s_seg_coco_int8", "yolov5s_seg_coco_320"])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--frames", type=int, default=120, help="frames of the live run")
    p.add_argument("--no-live", action="store_true", help="skip the live runs")
    p.add_argument("--convert", action="store_true", help="also time a conversion from the .pt")
    args = p.parse_args()

    print(f"bench_yolo: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, photo {PHOTO.name}")
    rows = forward_and_own_cost(args.models, args.repeat)
    print(f"{'model':<22} {'imgsz':>5} {'forward ms':>10} {'dets':>4} {'letterbox':>9} {'NMS':>6} "
          f"{'masks':>6} {'own ms':>7} {'own/fwd':>7} | {'CPU ms: fwd':>11} {'own':>6} {'own/fwd':>7}")
    for r in rows:
        print(f"{r['model']:<22} {r['imgsz']:5d} {r['forward_ms']:10.1f} {r['dets']:4d} {r['letterbox_ms']:9.2f} "
              f"{r['nms_ms']:6.2f} {r['masks_ms']:6.2f} {r['own_ms']:7.2f} {r['own_fraction']:7.1%} | "
              f"{r['forward_cpu_ms']:11.1f} {r['own_cpu_ms']:6.2f} {r['own_cpu_fraction']:7.1%}")
    print(f"cold start (cached conversion), {args.models[0]}: {cold_start(args.models[0])}")
    if args.convert:
        print(f"conversion of {args.models[0]}: {conversion(args.models[0], rows[0]['imgsz'])}")
    for name in [] if args.no_live else args.models:
        res = live(name, args.frames)
        idle = (f"; {res['cpu_ms']:.0f} CPU ms per frame (whole process): on 2 idle cores "
                f"{1000 / res['cpu_ms']:.1f}..{2000 / res['cpu_ms']:.1f} fps") if "cpu_ms" in res else ""
        print(f"live {name}: {res['fps']:.1f} fps measured{idle}  [{res['line'].strip()}]")


if __name__ == "__main__":
    main()
