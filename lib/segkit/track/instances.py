"""What the tracker follows: instances. A semantic result (the person models: one probability map
per class) becomes one instance per connected blob, so ``--track`` works with every model."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from segkit.segmentation import Segmentation


def instances_of(seg: Segmentation, min_fraction: float = 0.0) -> Segmentation:
    """Instance results as they are; semantic ones as their 8-connected blobs per class, each with
    its box and the mean probability inside as score. Blobs under ``min_fraction`` of the image
    are left out (a speck would start a track of its own). A blob lying inside a hole of another
    is part of that one (its outline holds it)."""
    if not seg.is_semantic:
        return seg
    min_pixels = max(1.0, min_fraction * seg.height * seg.width)
    found = []  # (area, class id, x, y, w, h, blob inside its box, score)
    for i, (cid, m) in enumerate(seg.class_masks()):
        prob = seg.probs[..., i]
        # the outer contours find the blobs (a fifth of connectedComponents' time at video sizes)
        contours, _ = cv2.findContours(m.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            if w * h < min_pixels:
                continue
            # the blob: its outline filled, inside the mask (work in its box only)
            filled = np.zeros((h, w), np.uint8)
            cv2.drawContours(filled, [c], -1, 1, thickness=cv2.FILLED, offset=(-x, -y))
            inside = filled.view(bool) & m[y:y + h, x:x + w]
            area = int(np.count_nonzero(inside))
            if area >= min_pixels:
                found.append((area, cid, x, y, w, h, inside, float(prob[y:y + h, x:x + w][inside].mean())))
    out = Segmentation(seg.height, seg.width, label_names=seg.label_names, mask_threshold=seg.mask_threshold)
    if not found:
        return out
    found.sort(key=lambda f: -f[0])  # biggest first
    masks = np.zeros((len(found), seg.height, seg.width), bool)  # written in each box only
    for k, (_, _, x, y, w, h, inside, _) in enumerate(found):
        masks[k, y:y + h, x:x + w] = inside
    return replace(out, masks=masks,
                   boxes=np.array([[x, y, x + w, y + h] for _, _, x, y, w, h, _, _ in found], np.float32),
                   class_ids=np.array([f[1] for f in found], np.int32),
                   scores=np.array([f[7] for f in found], np.float32))


def take(seg: Segmentation, idx, track_ids=None) -> Segmentation:
    """The instances ``idx`` of an instance result, in that order, with ``track_ids``."""
    idx = np.asarray(idx, np.int64)
    ids = None if track_ids is None else np.asarray(track_ids, np.int64).reshape(-1)
    if len(idx) == len(seg) and (idx == np.arange(len(seg))).all():
        return replace(seg, track_ids=ids)  # every instance, in order: no copy of the masks
    return replace(seg, masks=seg.masks[idx], boxes=seg.boxes[idx], class_ids=seg.class_ids[idx],
                   scores=seg.scores[idx], soft=None if seg.soft is None else seg.soft[idx],
                   track_ids=ids)
