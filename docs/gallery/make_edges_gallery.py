#!/usr/bin/env python3
"""The README's edge crops: the same cut-out (on green, so that a halo shows) three ways, enlarged
3x without smoothing, for the bundled person model and the int8 YOLO:

1. before #23: the person model's alpha jumped from 0 to 0.5 at the threshold; YOLO's cut-out was
   its thresholded mask (all or nothing);
2. alpha from the model's probabilities at full size, through the short ramp (segkit.edges);
3. the same with --refine-edges (the guided filter snaps the edge to the photo's).

    .venv/bin/python docs/gallery/make_edges_gallery.py   # writes docs/gallery/edges_*.png

On the committed sample photos (images/, COCO val2017, CC BY 2.0: images/ATTRIBUTION.md).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lib"))

from segkit.edges import refine  # noqa: E402
from segkit.io.sources import read_image  # noqa: E402
from segkit.models import load_segmenter  # noqa: E402
from segkit.render import cutout, foreground_alpha, parse_background  # noqa: E402

GREEN = parse_background("0,177,64")
ZOOM = 3
#: (model, photo, crop x0, y0, x1, y1, file)
CROPS = [("person_selfie_coco", "images/000000183709.jpg", (120, 200, 240, 320), "edges_person.png"),
         ("yolov5s_seg_coco_int8", "images/000000519208.jpg", (290, 30, 410, 150), "edges_yolo.png")]


def old_alpha(seg) -> np.ndarray:
    """What foreground_alpha gave before #23."""
    if seg.is_semantic:
        p, t = seg.probs.max(axis=-1), seg.mask_threshold
        a = np.clip(0.5 + (p - t) / max(1 - t, 1e-6), 0, 1)
        a[p < t] = 0
        return a.astype(np.float32)
    return seg.foreground().astype(np.float32)


def panel(image, alpha, box, title):
    x0, y0, x1, y1 = box
    crop = cutout(image, alpha, GREEN)[y0:y1, x0:x1]
    big = cv2.resize(crop, ((x1 - x0) * ZOOM, (y1 - y0) * ZOOM), interpolation=cv2.INTER_NEAREST)
    head = np.full((28, big.shape[1], 3), 255, np.uint8)
    cv2.putText(head, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([head, big])


def main() -> int:
    out_dir = REPO / "docs" / "gallery"
    for name, photo, box, out in CROPS:
        model = load_segmenter(name, download=True, progress=False)
        image = read_image(REPO / photo)
        seg = model.segment([image], min_score=0.25)[0]
        model.close()
        if not seg.is_semantic:
            seg = seg.filter(threshold=0.25)
        gap = np.full((28 + (box[3] - box[1]) * ZOOM, 6, 3), 255, np.uint8)
        row = [panel(image, old_alpha(seg), box, "before"), gap,
               panel(image, foreground_alpha(seg), box, "alpha from probabilities"), gap,
               panel(image, foreground_alpha(refine(image, seg)), box, "--refine-edges")]
        path = out_dir / out
        cv2.imwrite(str(path), cv2.cvtColor(np.hstack(row), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{path.relative_to(REPO)}: {name} on {photo}, crop {box}, {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
