"""segkit.track.matching and instances: the coarse mask grids and the instance subsets."""
from __future__ import annotations

import numpy as np
import pytest

from segkit.segmentation import Segmentation
from segkit.track.instances import take
from segkit.track.matching import mask_grid, mask_iou


@pytest.mark.parametrize("h,w", [(480, 854), (131, 77), (64, 64), (1000, 13)])
def test_the_grid_read_inside_the_boxes_equals_the_whole_masks_grid(h, w):
    rng = np.random.default_rng(h * w)
    masks, boxes = np.zeros((6, h, w), bool), []
    for k in range(6):
        y0, x0 = (0, 0) if k == 0 else (rng.integers(0, h - 1), rng.integers(0, w - 1))
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        masks[k, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > 0.3
        boxes.append([x0, y0, x1, y1])
    whole = mask_grid(masks)
    assert whole.any() and (mask_grid(masks, np.array(boxes, np.float32)) == whole).all()


def test_mask_iou_on_grids():
    a = np.zeros((1, 4, 4), bool)
    a[0, :2] = True
    b = np.zeros((2, 4, 4), bool)
    b[0, :1] = True
    b[1, 2:] = True
    assert mask_iou(a, b)[0].tolist() == pytest.approx([0.5, 0.0])


def test_take_keeps_every_per_instance_field_aligned():
    masks = np.zeros((3, 4, 5), bool)
    for i in range(3):
        masks[i, i] = True
    seg = Segmentation(4, 5, masks=masks, boxes=np.arange(12, dtype=np.float32).reshape(3, 4),
                       class_ids=np.array([1, 2, 3], np.int32), scores=np.array([0.9, 0.8, 0.7], np.float32),
                       soft=masks.astype(np.uint8) * 200)
    out = take(seg, [2, 0], [7, 9])
    assert out.class_ids.tolist() == [3, 1] and out.track_ids.tolist() == [7, 9]
    assert out.masks[0, 2].all() and out.soft[0, 2].all() and out.boxes[1].tolist() == [0, 1, 2, 3]
    same = take(seg, [0, 1, 2], [1, 2, 3])
    assert same.masks is seg.masks and same.track_ids.tolist() == [1, 2, 3]   # nothing copied
