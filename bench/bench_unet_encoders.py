#!/usr/bin/env python3
"""Shallow baseline vs MobileNetV2 vs VGG16 U-Net vs the fine-tuned selfie network, trained and
measured the same way.

Each encoder is trained by bin/train_person_unet.py on the same data with the same schedule,
then scored by bin/evaluate.py (pooled person IoU over the COCO val2017 images that hold
people, the protocol the MediaPipe selfie model's ~0.49 refers to) and timed per frame on its
exported TFLite file (LiteRT, 2 threads). The selfie model is scored in the same run, as it
comes and (encoder ``selfie``) fine-tuned from its own weights.

    .venv/bin/python bench/bench_unet_encoders.py --image-size 128 --epochs 8
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")


def person_iou(model_args: list[str], out: Path) -> float:
    run([sys.executable, "bin/evaluate.py", "--annotations", str(DATA / "coco/annotations/instances_val2017.json"),
         "--images", str(DATA / "coco/val2017"), "--classes", "person", "--only-with-class", "--quiet",
         "-o", str(out), *model_args])
    return float(json.loads(out.read_text())["semantic"]["person"]["iou"])


def ms_per_frame(tflite: Path, runs: int = 50) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite), num_threads=2)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).random(inp["shape"]).astype(np.float32)
    for _ in range(5):
        it.set_tensor(inp["index"], x)
        it.invoke()
    t = time.perf_counter()
    for _ in range(runs):
        it.set_tensor(inp["index"], x)
        it.invoke()
    return (time.perf_counter() - t) / runs * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default="shallow,mobilenetv2,vgg16,selfie")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--keep", help="keep the trained models in this folder")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="segkit-encoders-"))
    rows = []
    sel = REPO / "model_zoo/selfie_segmentation/selfie_segmentation.tflite"
    rows.append(("MediaPipe selfie (pretrained)", person_iou(["--model", "selfie_segmentation"], work / "selfie.json"),
                 None, ms_per_frame(sel), None))
    for enc in args.encoders.split(","):
        out = work / f"unet_{enc}"
        t = time.perf_counter()
        run([sys.executable, "bin/train_person_unet.py", "--coco-root", str(DATA / "coco"),
             "--folder", str(DATA / "person"), "--val-coco-root", str(DATA / "coco"), "--encoder", enc,
             "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--batch-size",
             str(args.batch_size), "--output", str(out), "--run-dir", str(work / f"run_{enc}"), "--quiet"])
        train_s = time.perf_counter() - t
        meta = json.loads((out / "metrics.json").read_text())
        rows.append(("selfie fine-tuned" if enc == "selfie" else f"U-Net {enc}", person_iou(["--model-path", str(out / "model.tflite")], work / f"{enc}.json"),
                     meta.get("params"), ms_per_frame(out / "model.tflite"), train_s))
        print(f"done {enc} in {train_s:.0f} s", file=sys.stderr)
    print(f"\n{args.epochs} epochs at {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"COCO train2017 persons + shared/person; IoU: pooled, COCO val2017 images with people\n")
    print("| model | person IoU | parameters | ms / frame (TFLite, 2 threads) | training time |")
    print("|---|---|---|---|---|")
    for name, iou, params, ms, train_s in rows:
        print(f"| {name} | {iou:.3f} | {f'{params / 1e6:.2f} M' if params else '—'} | {ms:.1f} | "
              f"{f'{train_s / 60:.1f} min' if train_s else '—'} |")


if __name__ == "__main__":
    main()
