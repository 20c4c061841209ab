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
    are left out (a speck would start a track of its own)."""
    if not seg.is_semantic:
        return seg
    min_pixels = max(1.0, min_fraction * seg.height * seg.width)
    masks, boxes, ids, scores = [], [], [], []
    for i, (cid, m) in enumerate(seg.class_masks()):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m.view(np.uint8), connectivity=8)
        prob = seg.probs[..., i]
        for k in np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1:  # biggest first
            if stats[k, cv2.CC_STAT_AREA] < min_pixels:
                break
            x, y, w, h = (int(v) for v in stats[k, :4])
            blob = labels == k
            masks.append(blob)
            boxes.append([x, y, x + w, y + h])
            ids.append(cid)
            scores.append(float(prob[blob].mean()))
    out = Segmentation(seg.height, seg.width, label_names=seg.label_names, mask_threshold=seg.mask_threshold)
    if masks:
        out = replace(out, masks=np.stack(masks), boxes=np.asarray(boxes, np.float32),
                      class_ids=np.asarray(ids, np.int32), scores=np.asarray(scores, np.float32))
    return out


def take(seg: Segmentation, idx, track_ids=None) -> Segmentation:
    """The instances ``idx`` of an instance result, in that order, with ``track_ids``."""
    idx = np.asarray(idx, np.int64)
    return replace(seg, masks=seg.masks[idx], boxes=seg.boxes[idx], class_ids=seg.class_ids[idx],
                   scores=seg.scores[idx],
                   track_ids=None if track_ids is None else np.asarray(track_ids, np.int64).reshape(-1))
