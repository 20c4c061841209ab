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
    is part of that one (its outline holds it).

    Each blob keeps its probabilities as ``soft`` (x 255, the threshold moved to 128, in its box
    widened by the edge fringe), so cut-outs of a tracked person model keep their soft edges."""
    if not seg.is_semantic:
        return seg
    from segkit.edges import FRINGE, ramp

    height, width = seg.height, seg.width
    min_pixels = max(1.0, min_fraction * height * width)
    pad = max(2, int(round(FRINGE * float(np.hypot(height, width))))) + 1
    found = []  # (area, class index, class id, box, widened box, blob in the widened box, score)
    for i, (cid, m) in enumerate(seg.class_masks()):
        prob = seg.probs[..., i]
        # the outer contours find the blobs (a fifth of connectedComponents' time at video sizes)
        contours, _ = cv2.findContours(m.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            if w * h < min_pixels:
                continue
            # the blob: its outline filled, inside the mask (work in its box, widened, only)
            x0, y0 = max(0, x - pad), max(0, y - pad)
            x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
            filled = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.drawContours(filled, [c], -1, 1, thickness=cv2.FILLED, offset=(-x0, -y0))
            inside = filled.view(bool) & m[y0:y1, x0:x1]
            area = int(np.count_nonzero(inside))
            if area >= min_pixels:
                found.append((area, i, cid, (x, y, x + w, y + h), (x0, y0, x1, y1), inside,
                              float(prob[y0:y1, x0:x1][inside].mean())))
    out = Segmentation(height, width, label_names=seg.label_names, mask_threshold=seg.mask_threshold)
    if not found:
        return out
    found.sort(key=lambda f: -f[0])  # biggest first
    masks = np.zeros((len(found), height, width), bool)  # written in each box only
    soft = np.zeros((len(found), height, width), np.uint8)
    t = float(seg.mask_threshold)
    for k, (_, i, _, _, (x0, y0, x1, y1), inside, _) in enumerate(found):
        masks[k, y0:y1, x0:x1] = inside
        p = seg.probs[y0:y1, x0:x1, i]
        # probability -> soft with the threshold at 0.5 (as instance models' soft masks);
        # another blob's pixels in the widened box are not this one's
        q = ramp(p, t, width=2.0)  # the whole 0..1 range: 0 -> 0, t -> 0.5, 1 -> 1
        q[(p >= t) & ~inside] = 0
        soft[k, y0:y1, x0:x1] = np.clip(q * 255 + 0.5, 0, 255).astype(np.uint8)
    return replace(out, masks=masks, soft=soft,
                   boxes=np.array([f[3] for f in found], np.float32),
                   class_ids=np.array([f[2] for f in found], np.int32),
                   scores=np.array([f[6] for f in found], np.float32))


def take(seg: Segmentation, idx, track_ids=None) -> Segmentation:
    """The instances ``idx`` of an instance result, in that order, with ``track_ids``."""
    idx = np.asarray(idx, np.int64)
    ids = None if track_ids is None else np.asarray(track_ids, np.int64).reshape(-1)
    if len(idx) == len(seg) and (idx == np.arange(len(seg))).all():
        return replace(seg, track_ids=ids)  # every instance, in order: no copy of the masks
    return replace(seg, masks=seg.masks[idx], boxes=seg.boxes[idx], class_ids=seg.class_ids[idx],
                   scores=seg.scores[idx], soft=None if seg.soft is None else seg.soft[idx],
                   track_ids=ids)
