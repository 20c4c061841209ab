"""Semantic scores: true/false positive and false negative pixels per class and image, reported
*pooled* (all pixels of the set together, what papers call IoU on a set) and as the *mean per
image* (every image weighs the same, small people count as much as close-ups); and the three
figures person models are compared on (``PersonFigures``)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from segkit.evaluation.coco import class_index, coco_class_truth
from segkit.labels import class_name
from segkit.segmentation import Segmentation


def pixel_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """int [3, C]: tp, fp, fn pixels per class of bool [C,H,W] masks in the same class order."""
    p, t = pred.reshape(len(pred), -1), truth.reshape(len(truth), -1)
    tp = np.count_nonzero(p & t, axis=1)
    return np.stack([tp, np.count_nonzero(p, axis=1) - tp, np.count_nonzero(t, axis=1) - tp])


@dataclass
class PixelCounts:
    """tp/fp/fn pixel counts per class, summed over the set, plus per-image scores."""

    class_ids: tuple[int, ...]
    tp: np.ndarray = None
    fp: np.ndarray = None
    fn: np.ndarray = None
    per_image: list[np.ndarray] = field(default_factory=list)  # [3, C] tp/fp/fn of each image
    images: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        n = len(self.class_ids)
        self.tp, self.fp, self.fn = (np.zeros(n, np.int64) for _ in range(3))

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """``pred``/``truth``: bool [C,H,W] in ``class_ids`` order."""
        errors = pixel_errors(pred, truth)
        with self._lock:
            self.tp += errors[0]
            self.fp += errors[1]
            self.fn += errors[2]
            self.per_image.append(errors)
            self.images += 1

    def scores(self) -> dict:
        """{class name: {iou, precision, recall (pooled), mean_iou, mean_precision, mean_recall
        (per image, over images where the score is defined), images}}."""
        per = np.stack(self.per_image) if self.per_image else np.zeros((0, 3, len(self.class_ids)), np.int64)
        out = {}
        for k, cid in enumerate(self.class_ids):
            tp, fp, fn = int(self.tp[k]), int(self.fp[k]), int(self.fn[k])
            itp, ifp, ifn = per[:, 0, k], per[:, 1, k], per[:, 2, k]
            out[class_name(cid)] = {
                "class_id": cid,
                "iou": _ratio(tp, tp + fp + fn), "precision": _ratio(tp, tp + fp),
                "recall": _ratio(tp, tp + fn),
                "mean_iou": _mean_ratio(itp, itp + ifp + ifn),
                "mean_precision": _mean_ratio(itp, itp + ifp),
                "mean_recall": _mean_ratio(itp, itp + ifn),
                "images": int(np.count_nonzero(itp + ifp + ifn)),
                "tp": tp, "fp": fp, "fn": fn,
            }
        return out


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _mean_ratio(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = b > 0  # an image with no such pixel anywhere says nothing about the class
    return float(np.mean(a[ok] / b[ok])) if ok.any() else None


def predicted_class_masks(seg: Segmentation, class_ids: tuple[int, ...]) -> np.ndarray:
    """bool [C,H,W] of a (filtered) result: semantic channels, or the union of instances."""
    pred = np.zeros((len(class_ids), seg.height, seg.width), bool)
    index = class_index(class_ids)
    if seg.is_semantic:
        for cid, m in seg.class_masks():
            if cid in index:
                pred[index[cid]] |= m
    else:
        for m, cid in zip(seg.masks, seg.class_ids):
            if int(cid) in index:
                pred[index[int(cid)]] |= m
    return pred


def semantic_coco_results(gt, results: list[dict], img_ids: list[int], class_ids: tuple[int, ...],
                          threshold: float, figures: "PersonFigures | None" = None) -> PixelCounts:
    """Pixel counts of a COCO results file (union of its masks scoring >= ``threshold``)."""
    from pycocotools import mask as mask_utils

    by_image: dict = {}
    for r in results:
        if r.get("score", 1.0) >= threshold and r["category_id"] in class_ids and "segmentation" in r:
            by_image.setdefault(r["image_id"], []).append(r)
    counts = PixelCounts(class_ids)
    index = class_index(class_ids)
    for iid in img_ids:
        truth = coco_class_truth(gt, iid, class_ids)
        pred = np.zeros_like(truth)
        for r in by_image.get(iid, []):
            rle = r["segmentation"]
            if isinstance(rle, list):  # polygons
                info = gt.imgs[iid]
                rle = mask_utils.merge(mask_utils.frPyObjects(rle, info["height"], info["width"]))
            pred[index[r["category_id"]]] |= mask_utils.decode(rle).astype(bool)
        counts.add(pred, truth)
        if figures is not None:
            figures.add(iid, pred, truth)
    return counts


#: Instance size buckets of pixel recall (COCO's small / medium / large, by mask area in pixels).
SIZE_BUCKETS = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, float("inf")))


class PersonFigures:
    """The three figures of a semantic (person) model on a COCO set, per class:

    1. ``iou_all``: pooled IoU over ALL images, the ones without the class included (a model that
       paints the class everywhere pays for it here);
    2. ``iou_with_class``: pooled IoU over only the images holding the class (the usual protocol
       for person models; blind to false positives on images without people);
    3. ``fp_share_without_class``: the share of pixels of images without the class that are
       predicted as the class, and ``recall_by_size``: the share of each ground-truth instance's
       pixels that are predicted, pooled per COCO size bucket (crowd regions left out).
    Checkpoints and models are compared on (1).
    """

    def __init__(self, gt, class_ids: tuple[int, ...]):
        self.gt, self.class_ids = gt, tuple(class_ids)
        n, b = len(self.class_ids), len(SIZE_BUCKETS)
        self._lock = threading.Lock()
        # pooled tp/fp/fn over images with / without the class; pixels of images without it
        self.with_cls = np.zeros((3, n), np.int64)
        self.without_cls = np.zeros((3, n), np.int64)
        self.pixels_without = np.zeros(n, np.int64)
        self.images_with = np.zeros(n, np.int64)
        self.images_without = np.zeros(n, np.int64)
        self.size_hit = np.zeros((n, b), np.int64)     # predicted pixels inside instances
        self.size_total = np.zeros((n, b), np.int64)   # instance pixels
        self.size_count = np.zeros((n, b), np.int64)   # instances

    def add(self, img_id: int, pred: np.ndarray, truth: np.ndarray) -> None:
        """``pred``/``truth``: bool [C,H,W] in ``class_ids`` order, of COCO image ``img_id``."""
        index = class_index(self.class_ids)
        hit = np.zeros_like(self.size_hit)
        total = np.zeros_like(self.size_total)
        count = np.zeros_like(self.size_count)
        for ann in self.gt.imgToAnns[img_id]:
            k = index.get(ann["category_id"])
            if k is None or ann.get("iscrowd", 0):
                continue
            m = self.gt.annToMask(ann).astype(bool)
            area = int(np.count_nonzero(m))
            if not area:
                continue
            b = next(j for j, (_, lo, hi) in enumerate(SIZE_BUCKETS) if lo <= area < hi)
            hit[k, b] += np.count_nonzero(pred[k] & m)
            total[k, b] += area
            count[k, b] += 1
        errors = pixel_errors(pred, truth)
        has = (errors[0] + errors[2]) > 0  # any truth pixel (tp + fn)
        with self._lock:
            self.with_cls += errors * has
            self.without_cls += errors * ~has
            self.pixels_without += int(np.prod(pred.shape[1:])) * ~has
            self.images_with += has
            self.images_without += ~has
            self.size_hit += hit
            self.size_total += total
            self.size_count += count

    def scores(self) -> dict:
        """{class name: {iou_all, iou_with_class, fp_share_without_class, recall_by_size:
        {small|medium|large: {recall, instances}}, images_with_class, images_without_class}}."""
        out = {}
        for k, cid in enumerate(self.class_ids):
            w, wo = self.with_cls[:, k], self.without_cls[:, k]
            tp, fp, fn = w + wo
            out[class_name(cid)] = {
                "iou_all": _ratio(int(tp), int(tp + fp + fn)),
                "iou_with_class": _ratio(int(w[0]), int(w.sum())),
                "fp_share_without_class": _ratio(int(wo[1]), int(self.pixels_without[k])),
                "recall_by_size": {
                    name: {"recall": _ratio(int(self.size_hit[k, j]), int(self.size_total[k, j])),
                           "instances": int(self.size_count[k, j])}
                    for j, (name, _, _) in enumerate(SIZE_BUCKETS)},
                "images_with_class": int(self.images_with[k]),
                "images_without_class": int(self.images_without[k]),
            }
        return out
