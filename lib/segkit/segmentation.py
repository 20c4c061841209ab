"""The one result type every segmenter returns and every sink reads.

Instance models fill ``masks`` / ``boxes`` / ``class_ids`` / ``scores``; semantic models fill
``probs`` (per-class probability maps) and ``prob_class_ids``. Everything is at the ORIGINAL image
size, in original-image pixels, with COCO class ids, so sinks never need to know the model family.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from segkit.config import DEFAULTS, default_threshold
from segkit.labels import COCO_CATEGORIES, class_name, coco80_index


class LazySoft:
    """``Segmentation.soft`` computed only when something reads it (a cut-out, --refine-edges):
    YOLO pastes 100 candidate masks per image for COCO evaluation, and writing their
    probabilities too would double that work for runs that never look at them.

    ``compute(idx)`` -> uint8 [len(idx),H,W] for the instances ``idx`` of the original result.
    Indexing (``filter``, the tracker's ``take``) selects instances without computing anything;
    ``np.asarray`` computes (once)."""

    def __init__(self, compute, n: int, height: int, width: int, idx: np.ndarray | None = None):
        self._compute, self._n, self._h, self._w = compute, n, height, width
        self.idx = np.arange(n) if idx is None else np.asarray(idx, np.int64).reshape(-1)
        self._value: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.idx), self._h, self._w)

    dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, idx) -> "LazySoft":
        return LazySoft(self._compute, self._n, self._h, self._w, self.idx[idx])

    def __reduce__(self):  # pickled (Beam ships results between steps): as the computed array
        return (np.asarray, (np.asarray(self),))

    def __array__(self, dtype=None, copy=None):
        if self._value is None:
            self._value = (self._compute(self.idx) if len(self.idx)
                           else np.zeros((0, self._h, self._w), np.uint8))
        return self._value if dtype is None else self._value.astype(dtype)


@dataclass
class Segmentation:
    height: int
    width: int
    # Instances: masks bool [N,H,W]; boxes float32 [N,4] as x0,y0,x1,y1 in image pixels.
    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), bool))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    # Semantic: probs float32 [H,W,C] with the class id of each channel in prob_class_ids.
    probs: np.ndarray | None = None
    prob_class_ids: tuple[int, ...] = ()
    label_names: dict[int, str] = field(default_factory=lambda: COCO_CATEGORIES)
    # semantic probability above which a pixel belongs to a class (--threshold's default)
    mask_threshold: float = default_threshold(semantic=True)
    # Instances: the model's mask probability x 255, uint8 [N,H,W] at the image size (upsampled
    # from the model's own mask resolution, never from ``masks``), where cut-outs take a graded
    # alpha from (segkit.edges); ``masks`` is ``soft >= 128`` (probability 0.5). None when the
    # model gives hard masks only; a LazySoft when it is computed on first use (np.asarray).
    soft: "np.ndarray | LazySoft | None" = None
    # Tracking (--track): int64 [N], one identity per instance, the same object keeps its id
    # across a video's frames; None when the result was not tracked.
    track_ids: np.ndarray | None = None

    def __post_init__(self):
        if self.masks.size == 0 and self.masks.shape[1:] != (self.height, self.width):
            self.masks = np.zeros((0, self.height, self.width), bool)

    # ----------------------------------------------------------------- basics
    @property
    def is_semantic(self) -> bool:
        return self.probs is not None

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> list[str]:
        return [class_name(c, self.label_names) for c in self.class_ids]

    # -------------------------------------------------------------- filtering
    def filter(self, classes: set[int] | None = None, threshold: float | None = None,
               max_instances: int | None = None, min_area: float | None = None) -> "Segmentation":
        """Keep instances of ``classes`` scoring >= ``threshold``, best ``max_instances`` first.

        For semantic results, ``classes`` drops probability channels and ``threshold`` sets the
        probability above which a pixel counts as the class. ``min_area`` (a fraction of the
        image) drops semantic blobs (8-connected) and instance masks smaller than that.
        """
        if self.is_semantic:
            keep = [i for i, c in enumerate(self.prob_class_ids) if classes is None or c in classes]
            # every channel kept (the usual case): share the array, a copy of a full-size float
            # map costs a millisecond a frame
            probs = self.probs if len(keep) == self.probs.shape[-1] else self.probs[..., keep]
            out = replace(self, probs=probs,
                          prob_class_ids=tuple(self.prob_class_ids[i] for i in keep),
                          mask_threshold=self.mask_threshold if threshold is None else threshold)
            return out._without_specks(min_area) if min_area else out
        keep = np.ones(len(self), bool)
        if min_area:
            keep &= self.masks.reshape(len(self), -1).sum(axis=1) >= min_area * self.height * self.width
        if classes is not None:
            keep &= np.isin(self.class_ids, list(classes))
        if threshold is not None:
            keep &= self.scores >= threshold
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(-self.scores[idx], kind="stable")]
        if max_instances is not None:
            idx = idx[:max_instances]
        return replace(self, masks=self.masks[idx], boxes=self.boxes[idx],
                       soft=None if self.soft is None else self.soft[idx],
                       class_ids=self.class_ids[idx], scores=self.scores[idx],
                       track_ids=None if self.track_ids is None else self.track_ids[idx])

    def _without_specks(self, min_area: float) -> "Segmentation":
        """Semantic: probabilities set to 0 in blobs above the threshold covering less than
        ``min_area`` of the image (a copy; the other pixels keep their probabilities)."""
        probs = self.probs.copy()
        min_pixels = min_area * self.height * self.width
        for i in range(probs.shape[-1]):
            mask = (probs[..., i] >= self.mask_threshold).astype(np.uint8)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            small = stats[:, cv2.CC_STAT_AREA] < min_pixels
            small[0] = False  # label 0 is the background
            if small.any():
                probs[..., i][small[labels]] = 0.0
        return replace(self, probs=probs)

    # ----------------------------------------------------------------- masks
    def class_masks(self) -> list[tuple[int, np.ndarray]]:
        """(class id, bool mask) per semantic channel."""
        assert self.probs is not None
        return [(c, self.probs[..., i] >= self.mask_threshold)
                for i, c in enumerate(self.prob_class_ids)]

    def foreground(self) -> np.ndarray:
        """bool [H,W]: the union of every kept instance, or every kept semantic class."""
        fg = np.zeros((self.height, self.width), bool)
        if self.is_semantic:
            for _, m in self.class_masks():
                fg |= m
        elif len(self):
            np.any(self.masks, axis=0, out=fg)
        return fg

    def as_instances(self) -> "Segmentation":
        """Semantic maps -> one instance per present class (score = mean probability inside).

        Lets mask PNGs and COCO results JSON treat person models like instance models.
        """
        if not self.is_semantic:
            return self
        masks, boxes, ids, scores = [], [], [], []
        for i, (cid, m) in enumerate(self.class_masks()):
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            masks.append(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            ids.append(cid)
            scores.append(float(self.probs[..., i][m].mean()))
        if not masks:
            return Segmentation(self.height, self.width, label_names=self.label_names)
        return Segmentation(self.height, self.width, masks=np.stack(masks),
                            boxes=np.asarray(boxes, np.float32),
                            class_ids=np.asarray(ids, np.int32),
                            scores=np.asarray(scores, np.float32), label_names=self.label_names)

    # ----------------------------------------------------------------- drawing
    def plot(self, image: np.ndarray, alpha: float = DEFAULTS["alpha"], boxes: bool = True,
             labels: bool = True) -> np.ndarray:
        """RGB uint8 copy of ``image`` (the one segmented) with this result drawn over it:
        instances tinted, outlined, boxed and labelled; semantic classes tinted."""
        from segkit.render import overlay  # render imports this module

        return overlay(image, self, alpha, boxes=boxes, labels=labels)

    # ------------------------------------------------------------ serializing
    def masks_png(self) -> list[tuple[int, bytes]]:
        """(class id, PNG bytes) per instance (a semantic class counts as one): 0/255 grey
        PNGs at image size, the files ``--save-masks`` writes."""
        from segkit.io.atomic import encode_image

        inst = self.as_instances()
        return [(int(c), encode_image(m.astype(np.uint8) * 255, ".png"))
                for m, c in zip(inst.masks, inst.class_ids)]

    def to_yolo_txt(self, with_conf: bool = False) -> str:
        """Ultralytics ``save_txt`` segmentation lines: ``class x1 y1 x2 y2 ...`` per instance
        (``... conf`` with ``with_conf``, as ``save_conf``), points normalised to 0..1 by image
        width / height.

        The polygon is the largest external contour of the mask (cv2.findContours); an empty
        mask or one whose contour has fewer than 3 points writes no line. The class is the
        contiguous 0..79 index of the 80 COCO classes for COCO-labelled results (what a YOLO
        model trained on COCO writes), else the model's own class id. A tracked result ends each
        line with the track id (after the score), as Ultralytics' track mode. Empty result: "".
        """
        inst = self.as_instances()
        coco = self.label_names is COCO_CATEGORIES or self.label_names == COCO_CATEGORIES
        lines = []
        tracks = inst.track_ids if inst.track_ids is not None else [None] * len(inst)
        for m, cid, score, tid in zip(inst.masks, inst.class_ids, inst.scores, tracks):
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if not contours:
                continue
            pts = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
            if len(pts) < 3:
                continue
            pts /= (self.width, self.height)
            values = [coco80_index(cid) if coco else int(cid), *pts.reshape(-1)]
            if with_conf:
                values.append(float(score))
            if tid is not None:
                values.append(int(tid))
            lines.append(" ".join(f"{v:g}" for v in values))
        return "".join(f"{line}\n" for line in lines)

    def to_coco(self, image_id: int | str) -> list[dict]:
        """COCO results format (what ``COCO.loadRes`` reads): bbox xywh + RLE segmentation.

        A semantic model's results (one mask per class) are marked ``"semantic": true`` so that
        evaluate.py scores them with IoU rather than AP without being told; a tracked result's
        carry their ``"track_id"``.
        """
        from pycocotools import mask as mask_utils

        inst = self.as_instances()
        if not len(inst):
            return []
        results = []
        tracks = inst.track_ids if inst.track_ids is not None else [None] * len(inst)
        for m, box, cid, score, tid in zip(inst.masks, inst.boxes, inst.class_ids, inst.scores, tracks):
            # pycocotools wants Fortran-ordered uint8; one mask at a time is 3x faster than
            # transposing the whole [N,H,W] stack (bool and uint8 share their bytes).
            rle = mask_utils.encode(np.asfortranarray(m.view(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")  # bytes are not JSON
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append({"image_id": image_id, "category_id": int(cid),
                            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                            "score": round(float(score), 5), "segmentation": rle})
            if self.is_semantic:
                results[-1]["semantic"] = True
            if tid is not None:
                results[-1]["track_id"] = int(tid)
        return results

    to_coco_results = to_coco  # the name sinks and scripts have used


def paste_masks(box_masks: np.ndarray, boxes: np.ndarray, height: int, width: int,
                threshold: float = 0.5, with_soft: bool = False):
    """Paste box-relative soft masks [N,m,n] into bool image masks [N,H,W]; ``with_soft``:
    (masks, soft) with the pasted probabilities too, uint8 x 255 (``Segmentation.soft``).

    ``boxes`` are x0,y0,x1,y1 in image pixels (continuous coordinates: pixel j covers [j, j+1)).
    Mask cell u covers [x0 + u*bw/n, x0 + (u+1)*bw/n), so pixel centres are mapped back with one
    affine warp per box (the vectorised crop-and-resize; no per-pixel Python).
    """
    n = len(boxes)
    out = np.zeros((n, height, width), bool)
    soft = np.zeros((n, height, width), np.uint8) if with_soft else None
    for i in range(n):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        bw, bh = x1 - x0, y1 - y0
        if bw <= 0 or bh <= 0:
            continue
        rx0, ry0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        rx1, ry1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
        if rx1 <= rx0 or ry1 <= ry0:
            continue
        m = np.ascontiguousarray(box_masks[i], dtype=np.float32)
        mh, mw = m.shape
        sx, sy = bw / mw, bh / mh
        # dst = s * (u + 0.5) + origin - 0.5 - region offset  (centre-to-centre mapping)
        affine = np.array([[sx, 0, x0 + 0.5 * sx - 0.5 - rx0],
                           [0, sy, y0 + 0.5 * sy - 0.5 - ry0]], np.float32)
        region = cv2.warpAffine(m, affine, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        # Replicated borders would leak outside the box: clip to the box itself.
        ys = np.arange(ry0, ry1) + 0.5
        xs = np.arange(rx0, rx1) + 0.5
        inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
        out[i, ry0:ry1, rx0:rx1] = (region >= threshold) & inside
        if soft is not None:
            soft[i, ry0:ry1, rx0:rx1] = cv2.convertScaleAbs(region, alpha=255.0) * inside
    return (out, soft) if with_soft else out


def normalized_to_pixels(boxes_yxyx: np.ndarray, height: int, width: int) -> np.ndarray:
    """OD API boxes (normalised ymin,xmin,ymax,xmax) -> x0,y0,x1,y1 image pixels."""
    b = np.asarray(boxes_yxyx, np.float32).reshape(-1, 4)
    return np.stack([b[:, 1] * width, b[:, 0] * height, b[:, 3] * width, b[:, 2] * height], axis=1)
