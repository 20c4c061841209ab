"""How good is a model: COCO box/mask AP for instance models, IoU / precision / recall for
semantic (per-class mask) models.

Instance AP is pycocotools' ``COCOeval`` itself (no re-implementation to drift from the official
numbers). Semantic scores count true/false positive and false negative pixels per class and
image; they are reported *pooled* (all pixels of the set together, what papers call IoU on a
set) and as the *mean per image* (every image weighs the same, small people count as much as
close-ups). Ground truth for a class in a COCO file is the union of its instances, crowd regions
included (a crowd of people is people).
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from segkit.config import DEFAULTS
from segkit.errors import InputError, SegkitError
from segkit.labels import class_name
from segkit.flow import Filter, run
from segkit.io.sinks import Call
from segkit.io.sources import Frames, prefetch_map
from segkit.segmentation import Segmentation
from segkit.io.sources import Frame, read_image

# COCO AP counts at most 100 detections per image (maxDets): the protocol, not --max-instances.
COCO_MAX_DETS = 100

AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def load_coco(annotation_file: str | Path):
    from pycocotools.coco import COCO

    p = Path(annotation_file)
    if not p.is_file():
        raise SegkitError(f"{p}: no such annotation file")
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() chats on stdout
        try:
            return COCO(str(p))
        except (ValueError, KeyError, TypeError) as e:
            raise SegkitError(f"{p}: not a COCO annotation file ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------- instance AP
def gt_as_results(gt) -> list[dict]:
    """The ground truth written as detections (score 1, RLE masks): must score AP 1.0.

    Crowd regions are left out, as a detector's output would be (COCOeval ignores them)."""
    out = []
    for ann in gt.dataset["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        rle = gt.annToRLE(ann)
        if isinstance(rle["counts"], bytes):
            rle = {**rle, "counts": rle["counts"].decode("ascii")}
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                    "bbox": [float(v) for v in ann["bbox"]], "score": 1.0, "segmentation": rle})
    return out


def load_results(path: str | Path) -> list[dict]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise SegkitError(f"{p}: no such results file") from None
    except ValueError as e:
        raise SegkitError(f"{p}: not JSON ({e})") from None
    if not isinstance(data, list):
        raise SegkitError(f"{p}: a COCO results file is a JSON list of detections")
    return data


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


def predict_coco(segmenter, gt, image_dir: str | Path, img_ids: list[int],
                 result_filter: Filter | None = None, progress=None,
                 on_error: Callable[[str], None] | None = None) -> list[dict]:
    """Run ``segmenter`` over COCO images -> COCO results with the annotation file's image ids."""
    results: list[dict] = []
    lock = threading.Lock()

    def write(frame: Frame, seg: Segmentation):
        res = seg.to_coco_results(frame.index)
        with lock:
            results.extend(res)

    _run(_coco_frames(gt, image_dir, img_ids), segmenter, write,
         result_filter or Filter(max_instances=COCO_MAX_DETS), on_error, progress)
    return results


def _run(frames, segmenter, write, result_filter: Filter, on_error, progress) -> None:
    """The one flow with the scoring function as its sink."""
    with Frames(frames) as source:
        run(source, segmenter, [Call(write)], result_filter=result_filter, progress=progress,
            **({"on_error": on_error} if on_error else {}))


def _coco_frames(gt, image_dir, img_ids) -> Iterator[Frame]:
    """Decoded COCO images (frame.index = COCO image id), in a reading thread pool."""
    image_dir = Path(image_dir)

    def read(iid):
        info = gt.imgs[iid]
        path = image_dir / info["file_name"]
        try:
            img = read_image(path)
            if img.shape[:2] != (info["height"], info["width"]):
                raise InputError(path, f"image is {img.shape[1]}x{img.shape[0]} but the annotation file "
                                       f"says {info['width']}x{info['height']}")
            return Frame(img, Path(info["file_name"]).stem, path, iid)
        except InputError as e:
            return Frame(None, Path(info["file_name"]).stem, path, iid, error=e)

    return prefetch_map(read, img_ids)


# --------------------------------------------------------------------------- semantic IoU
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
        p, t = pred.reshape(len(self.class_ids), -1), truth.reshape(len(self.class_ids), -1)
        tp = np.count_nonzero(p & t, axis=1)
        fp = np.count_nonzero(p, axis=1) - tp
        fn = np.count_nonzero(t, axis=1) - tp
        with self._lock:
            self.tp += tp
            self.fp += fp
            self.fn += fn
            self.per_image.append(np.stack([tp, fp, fn]))
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


def coco_class_truth(gt, img_id: int, class_ids: tuple[int, ...]) -> np.ndarray:
    """bool [C,H,W]: union of every instance of each class, crowd regions included."""
    info = gt.imgs[img_id]
    truth = np.zeros((len(class_ids), info["height"], info["width"]), bool)
    index = {c: k for k, c in enumerate(class_ids)}
    for ann in gt.imgToAnns[img_id]:
        k = index.get(ann["category_id"])
        if k is not None:
            truth[k] |= gt.annToMask(ann).astype(bool)
    return truth


def images_with_classes(gt, img_ids: Iterable[int], class_ids: Iterable[int]) -> list[int]:
    """The images holding at least one instance of ``class_ids`` (the usual protocol for person
    models: images without people then add no false positives to the score)."""
    have = set()
    for cid in class_ids:
        have |= set(gt.getImgIds(catIds=[cid]))
    return [i for i in img_ids if i in have]


def predicted_class_masks(seg: Segmentation, class_ids: tuple[int, ...]) -> np.ndarray:
    """bool [C,H,W] of a (filtered) result: semantic channels, or the union of instances."""
    pred = np.zeros((len(class_ids), seg.height, seg.width), bool)
    index = {c: k for k, c in enumerate(class_ids)}
    if seg.is_semantic:
        for cid, m in seg.class_masks():
            if cid in index:
                pred[index[cid]] |= m
    else:
        for m, cid in zip(seg.masks, seg.class_ids):
            if int(cid) in index:
                pred[index[int(cid)]] |= m
    return pred


def semantic_coco(segmenter, gt, image_dir, img_ids: list[int], class_ids: tuple[int, ...],
                  threshold: float = DEFAULTS["threshold"], progress=None, on_error=None,
                  figures: "PersonFigures | None" = None, min_area: float | None = None) -> PixelCounts:
    """Run a model over COCO images and count pixels against the union of instances
    (``figures``, if given, sees every image's masks too)."""
    counts = PixelCounts(class_ids)

    def write(frame: Frame, seg: Segmentation):
        pred, truth = predicted_class_masks(seg, class_ids), coco_class_truth(gt, frame.index, class_ids)
        counts.add(pred, truth)
        if figures is not None:
            figures.add(frame.index, pred, truth)

    _run(_coco_frames(gt, image_dir, img_ids), segmenter, write,
         Filter(set(class_ids), threshold, min_area=min_area), on_error, progress)
    return counts


def semantic_coco_results(gt, results: list[dict], img_ids: list[int], class_ids: tuple[int, ...],
                          threshold: float = DEFAULTS["threshold"], figures: "PersonFigures | None" = None) -> PixelCounts:
    """Pixel counts of a COCO results file (union of its masks scoring >= ``threshold``)."""
    from pycocotools import mask as mask_utils

    by_image: dict = {}
    for r in results:
        if r.get("score", 1.0) >= threshold and r["category_id"] in class_ids and "segmentation" in r:
            by_image.setdefault(r["image_id"], []).append(r)
    counts = PixelCounts(class_ids)
    index = {c: k for k, c in enumerate(class_ids)}
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


def semantic_folder(segmenter, images_dir, masks_dir, class_id: int, threshold: float = DEFAULTS["threshold"],
                    limit: int | None = None, progress=None, on_error=None) -> PixelCounts:
    """images/N.* against masks/N.png (nonzero = the class), for one-class (person) models."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    pairs = []
    for img in sorted(images_dir.iterdir()):
        mask = masks_dir / f"{img.stem}.png"
        if img.is_file() and not img.name.startswith(".") and mask.is_file():
            pairs.append((img, mask))
    if not pairs:
        raise SegkitError(f"{images_dir}: no image has a mask of the same name in {masks_dir}")
    pairs = pairs[:limit] if limit else pairs
    counts = PixelCounts((class_id,))
    mask_of = dict(pairs)

    def read(pair):
        img, _ = pair
        try:
            return Frame(read_image(img), img.stem, img)
        except InputError as e:
            return Frame(None, img.stem, img, error=e)

    def write(frame: Frame, seg: Segmentation):
        truth = read_image(mask_of[frame.path])[..., 0] > 127
        if truth.shape != (seg.height, seg.width):
            raise InputError(mask_of[frame.path], f"mask is {truth.shape[1]}x{truth.shape[0]}, "
                                                  f"image is {seg.width}x{seg.height}")
        counts.add(predicted_class_masks(seg, (class_id,)), truth[None])

    _run(prefetch_map(read, pairs), segmenter, write, Filter({class_id}, threshold), on_error, progress)
    return counts


# --------------------------------------------------------------------------- person figures
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
        index = {c: k for k, c in enumerate(self.class_ids)}
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
        p, t = pred.reshape(len(self.class_ids), -1), truth.reshape(len(self.class_ids), -1)
        tp = np.count_nonzero(p & t, axis=1)
        fp = np.count_nonzero(p, axis=1) - tp
        fn = np.count_nonzero(t, axis=1) - tp
        has = np.count_nonzero(t, axis=1) > 0
        stats = np.stack([tp, fp, fn])
        with self._lock:
            self.with_cls += stats * has
            self.without_cls += stats * ~has
            self.pixels_without += p.shape[1] * ~has
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


def format_figures(figures: dict) -> str:
    """Readable text of :meth:`PersonFigures.scores`."""
    lines = [f"{'class':<14} {'IoU all':>8} {'IoU w/':>8} {'FP w/o':>7}   recall by size "
             f"(<32², 32²-96², >96²)  images w/ | w/o"]
    for name, f in figures.items():
        r = f["recall_by_size"]
        sizes = "  ".join(f"{_pct(r[b]['recall']):>5} ({r[b]['instances']})" for b, _, _ in SIZE_BUCKETS)
        lines.append(f"{name:<14} {_pct(f['iou_all']):>8} {_pct(f['iou_with_class']):>8} "
                     f"{_pct(f['fp_share_without_class']):>7}   {sizes}  "
                     f"{f['images_with_class']} | {f['images_without_class']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- report
def format_table(metrics: dict) -> str:
    """Readable text of what :func:`coco_ap` / :meth:`PixelCounts.scores` return."""
    lines = []
    for iou_type in ("bbox", "segm"):
        m = metrics.get(iou_type)
        if not m:
            continue
        lines.append(f"{'box' if iou_type == 'bbox' else 'mask'} AP  " + "  ".join(
            f"{k} {_pct(m[k])}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
        if "per_class" in m:
            lines.append(f"  {'class':<16} {'AP':>6}")
            for name, ap in sorted(m["per_class"].items(), key=lambda kv: -kv[1]):
                lines.append(f"  {name:<16} {_pct(ap):>6}")
    sem = metrics.get("semantic")
    if sem:
        lines.append(f"{'class':<14} {'IoU':>6} {'prec':>6} {'recall':>6}   per image: "
                     f"{'IoU':>6} {'prec':>6} {'recall':>6}  images")
        for name, s in sem.items():
            lines.append(f"{name:<14} {_pct(s['iou']):>6} {_pct(s['precision']):>6} {_pct(s['recall']):>6}"
                         f"              {_pct(s['mean_iou']):>6} {_pct(s['mean_precision']):>6} "
                         f"{_pct(s['mean_recall']):>6}  {s['images']:>6}")
    return "\n".join(lines)


def _pct(v) -> str:
    return "  n/a" if v is None or v < 0 else f"{100 * v:.1f}"
