#!/usr/bin/env python3
"""The toolkit's own work per image vs the Mask R-CNN forward pass, measured in one run.

Target (issue 2): decode + mask pasting + drawing + encoding <= 10 % of the model's forward
time for Mask R-CNN-sized outputs (100 detections at 1024x1024).

* forward: the Model Garden ``maskrcnn_resnetfpn_coco`` network (ResNet-50 FPN, 1024x1024, the
  serving module ``official.vision.serving.detection`` exports), randomly initialised: the
  weights do not change the cost of the graph, and no trained weights can be had here;
* toolkit: JPEG decode of a 1024x1024 photo, the Model Garden adapter's post-processing of
  100 detections (image_info mapping + pasting 100 28x28 masks), the overlay, PNG encoding, and
  (reported apart, since it is optional) the COCO RLE export.

    .venv/bin/python bench/bench_overhead.py [--runs 3] [--backbone 50]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SIZE = 1024


def median_time(fn, runs: int) -> float:
    fn()  # warm-up (graph tracing, caches)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def forward_seconds(runs: int, backbone: int) -> float:
    import tensorflow as tf
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401
    from official.vision.serving import detection

    params = exp_factory.get_exp_config("maskrcnn_resnetfpn_coco")
    params.task.model.input_size = [SIZE, SIZE, 3]
    params.task.model.backbone.resnet.model_id = backbone
    params.task.model.norm_activation.use_sync_bn = False
    params.task.model.detection_generator.nms_version = "batched"
    params.task.init_checkpoint = None
    module = detection.DetectionModule(params, batch_size=1, input_image_size=[SIZE, SIZE],
                                       input_type="image_tensor")
    serve = tf.function(module.serve)
    image = tf.constant(np.random.default_rng(0).integers(0, 255, (1, SIZE, SIZE, 3), np.uint8))
    return median_time(lambda: serve(image)["detection_masks"].numpy(), runs)


def fake_raw_outputs(n: int = 100) -> dict[str, np.ndarray]:
    """What the export returns for 100 detections on a square 1024 input (model-input pixels)."""
    rng = np.random.default_rng(1)
    y0, x0 = rng.uniform(0, SIZE - 300, n), rng.uniform(0, SIZE - 300, n)
    h, w = rng.uniform(20, 300, n), rng.uniform(20, 300, n)
    yy, xx = np.mgrid[:28, :28]
    blob = (((yy - 13.5) / 12) ** 2 + ((xx - 13.5) / 11) ** 2 < 1).astype(np.float32)
    return {
        "num_detections": np.array([n]),
        "detection_boxes": np.stack([y0, x0, y0 + h, x0 + w], 1)[None].astype(np.float32),
        "detection_scores": np.linspace(0.99, 0.5, n, dtype=np.float32)[None],
        "detection_classes": rng.integers(1, 90, (1, n)).astype(np.int32),
        "detection_masks": np.repeat(blob[None], n, 0)[None] * 0.98 + 0.01,
        "image_info": np.array([[[SIZE, SIZE], [SIZE, SIZE], [1.0, 1.0], [0, 0]]], np.float32),
    }


def toolkit_seconds(runs: int) -> dict[str, float]:
    from segkit.models.garden import GardenSegmenter
    from segkit.render import overlay
    from segkit.io.atomic import encode_image
    from segkit.io.sources import read_image

    src = cv2.resize(read_image(REPO / "images" / "000000519208.jpg"), (SIZE, SIZE))
    raw = fake_raw_outputs()
    post = GardenSegmenter.__new__(GardenSegmenter)  # post-processing only: no model needed
    post.label_names = {}
    with tempfile.TemporaryDirectory() as tmp:
        jpg = Path(tmp) / "photo.jpg"
        cv2.imwrite(str(jpg), src[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        image = read_image(jpg)
        seg = post._to_segmentation(raw, 0, (SIZE, SIZE), 0.0)
        assert len(seg) == 100
        vis = overlay(image, seg)
        return {
            "decode": median_time(lambda: read_image(jpg), runs),
            "postprocess (100 masks)": median_time(lambda: post._to_segmentation(raw, 0, (SIZE, SIZE), 0.0), runs),
            "overlay": median_time(lambda: overlay(image, seg), runs),
            "png encode": median_time(lambda: encode_image(vis, ".png"), runs),
            "coco rle (optional)": median_time(lambda: seg.to_coco_results(1), runs),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backbone", type=int, default=50, help="ResNet depth of the timed Mask R-CNN")
    args = ap.parse_args()
    parts = toolkit_seconds(max(args.runs, 5))
    fwd = forward_seconds(args.runs, args.backbone)
    core = sum(v for k, v in parts.items() if "optional" not in k)
    print(f"Mask R-CNN ResNet-{args.backbone} FPN forward at {SIZE}x{SIZE}: {fwd * 1000:.0f} ms (median of {args.runs})")
    for k, v in parts.items():
        print(f"  toolkit {k:<24} {v * 1000:7.1f} ms")
    print(f"toolkit work / forward = {core / fwd:.3f}  [target <= 0.10: {'OK' if core / fwd <= 0.10 else 'MISSED'}]"
          f"; with the COCO JSON export: {(core + parts['coco rle (optional)']) / fwd:.3f}")


if __name__ == "__main__":
    main()
