"""Box and mask AP of COCO results: pycocotools' ``COCOeval`` itself, per class on request."""
from __future__ import annotations

import contextlib
import io
from typing import Iterable

from segkit.errors import SegkitError

# COCO AP counts at most 100 detections per image (maxDets): the protocol, not --max-instances.
COCO_MAX_DETS = 100

AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_ap(gt, results: list[dict], iou_types: Iterable[str] = ("bbox", "segm"),
            per_class: bool = False, img_ids: Iterable[int] | None = None) -> dict:
    """{"bbox": {"AP": .., "AP50": .., ..., ["per_class": {name: AP}]}, "segm": {...}}.

    AP values are fractions 0..1 (COCOeval's), -1 where COCOeval has nothing to score.
    """
    from pycocotools.cocoeval import COCOeval

    known = set(gt.getImgIds())
    unknown = {r.get("image_id") for r in results} - known
    if unknown:
        sample = ", ".join(repr(i) for i in sorted(unknown, key=str)[:3])
        raise SegkitError(f"{len(unknown)} result image ids are not in the annotation file (e.g. {sample}); "
                          "write the results with --coco-annotations so ids come from the file")
    metrics: dict = {}
    for iou_type in iou_types:
        dets = [r for r in results if iou_type != "segm" or "segmentation" in r]
        if not dets:
            metrics[iou_type] = {k: 0.0 for k in AP_NAMES}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(r) for r in dets])  # loadRes adds fields: keep the caller's intact
            ev = COCOeval(gt, dt, iou_type)
            if img_ids is not None:
                ev.params.imgIds = sorted(img_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        m = {k: float(v) for k, v in zip(AP_NAMES, ev.stats)}
        if per_class:
            m["per_class"] = _per_class_ap(ev, gt)
        metrics[iou_type] = m
    return metrics


def _per_class_ap(ev, gt) -> dict[str, float]:
    # precision: [IoU thresholds, recall points, classes, area ranges, max dets]
    prec = ev.eval["precision"]
    out = {}
    for k, cid in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, -1]
        p = p[p > -1]
        if p.size:  # classes absent from the ground truth have no AP
            out[gt.cats[cid]["name"]] = float(p.mean())
    return out
