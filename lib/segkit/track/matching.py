"""Overlap between tracks and detections, and the assignment that pairs them.

The assignment is SciPy's ``linear_sum_assignment`` (a maintained Jonker-Volgenant solver), with
pairs above a cost limit refused, as ByteTrack's ``lap.lapjv(..., cost_limit=...)`` does.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

#: cost of a pair that may never be matched (another class, no overlap at all)
FORBIDDEN = 1e6
#: masks are compared on a coarse grid: this many cells on the image's long side
MASK_GRID = 64


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of x0,y0,x1,y1 boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def grid_step(height: int, width: int) -> int:
    return max(1, max(height, width) // MASK_GRID)


def mask_grid(masks: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """bool [N,H,W] -> bool [N,h,w]: every step-th pixel of every step-th row (no resize).

    With ``boxes`` (x0,y0,x1,y1 of each mask) only the cells inside each box are read: a mask is
    empty outside its box, and reading a whole 854x480 mask per instance costs more than the
    rest of the tracker."""
    n = len(masks)
    if masks.ndim != 3 or not masks.shape[1] or not masks.shape[2]:
        return np.zeros((n, 0, 0), bool)
    height, width = masks.shape[1:]
    s = grid_step(height, width)
    if boxes is None:
        return np.ascontiguousarray(masks[:, ::s, ::s])
    gh, gw = -(-height // s), -(-width // s)
    grid = np.zeros((n, gh, gw), bool)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4).tolist()):
        # grid cells whose sampled pixel (row r*s, column c*s) lies inside the box, widened by a
        # pixel for boxes that do not quite enclose their mask
        r0, c0 = max(0, -(-(int(y0) - 1) // s)), max(0, -(-(int(x0) - 1) // s))
        r1, c1 = min(gh, (int(y1) + 1) // s + 1), min(gw, (int(x1) + 1) // s + 1)
        if r1 > r0 and c1 > c0:
            grid[i, r0:r1, c0:c1] = masks[i, r0 * s:r1 * s:s, c0 * s:c1 * s:s]
    return grid


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of grid masks of one shape (a matrix product, not a loop)."""
    if not len(a) or not len(b) or a.shape[1:] != b.shape[1:]:
        return np.zeros((len(a), len(b)))
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def assign(cost: np.ndarray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost pairs (row, col) whose cost is <= ``limit``; the rows and cols left over."""
    rows, cols = cost.shape
    if not rows or not cols:
        return [], list(range(rows)), list(range(cols))
    c = np.where(cost <= limit, cost, FORBIDDEN)
    r, k = linear_sum_assignment(c)
    pairs = [(int(i), int(j)) for i, j in zip(r, k) if cost[i, j] <= limit]
    used_r = {i for i, _ in pairs}
    used_c = {j for _, j in pairs}
    return pairs, [i for i in range(rows) if i not in used_r], [j for j in range(cols) if j not in used_c]
