"""YOLOv5-seg / YOLOv7-seg instance segmentation (family ``yolo_seg``): raw network outputs ->
:class:`Segmentation`.

The network itself is a LiteRT model converted from the checkpoint by
:mod:`segkit.models.yolo_convert` (no PyTorch, no TensorFlow at run time). It sees a square
letterboxed RGB image scaled to 0..1 and returns, per image,

* ``pred`` [N, 4+1+nc+nm]: box centre x, centre y, width, height in input pixels, objectness,
  nc class scores (sigmoided) and nm raw mask coefficients;
* ``protos`` [S/4, S/4, nm]: the mask prototypes (NHWC).

Everything here is numpy + OpenCV, and :func:`decode` takes plain arrays so that a reference run
of the original PyTorch weights can be scored through exactly the same post-processing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from segkit.errors import SegkitError
from segkit.labels import COCO80_IDS, COCO_CATEGORIES, COCO_IDS_BY_NAME
from segkit.models.base import Segmenter
from segkit.segmentation import LazySoft, Segmentation

DEFAULT_IMGSZ = 640
PAD_VALUE = 114  # YOLOv5's letterbox grey: what the network saw around images in training
#: Candidates below this score never reach NMS whatever ``min_score`` says: COCO evaluation
#: protocol for YOLO (conf 0.001); lower only adds boxes that cannot rank among the best 100.
SCORE_FLOOR = 0.001
NMS_IOU = 0.45  # YOLOv5's default
MAX_DET = 100
MAX_NMS = 30000  # YOLOv5's cap on boxes handed to NMS (best scores first)


@dataclass(frozen=True)
class Letterbox:
    """Where the image sits inside the square network input."""

    size: int     # network input side
    sx: float     # input pixels per image pixel, horizontally (resized width / width)
    sy: float     # ... vertically
    left: int     # padding before the image, in input pixels
    top: int

    def to_image(self, boxes_xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
        """Input-pixel boxes -> image-pixel boxes, clipped to the image."""
        b = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4).copy()
        b[:, [0, 2]] = np.clip((b[:, [0, 2]] - self.left) / self.sx, 0, width)
        b[:, [1, 3]] = np.clip((b[:, [1, 3]] - self.top) / self.sy, 0, height)
        return b


def letterbox(image: np.ndarray, size: int = DEFAULT_IMGSZ, pad_value: int = PAD_VALUE,
              out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio so the long side is ``size`` and pad to a square, as
    YOLOv5's ``letterbox(auto=False)`` does (cv2 linear resize, padding split around the image).

    Writes into ``out`` ([size,size,3] uint8) when given, so a batch is filled in place.
    """
    h, w = image.shape[:2]
    if not h or not w:  # an empty image has no aspect ratio (was a ZeroDivisionError)
        raise ValueError(f"empty image ({w}x{h} pixels)")
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    left, top = int(round((size - nw) / 2 - 0.1)), int(round((size - nh) / 2 - 0.1))
    if out is None:
        out = np.empty((size, size, 3), np.uint8)
    out[:] = pad_value
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out[top:top + nh, left:left + nw] = resized
    return out, Letterbox(size, nw / w, nh / h, left, top)


def coco_ids_for(names: Sequence[str] | dict | None, nc: int) -> np.ndarray:
    """COCO category id of each of the network's contiguous class indices.

    By name when the checkpoint's names are COCO's; the 80 COCO classes in id order otherwise.
    """
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if names and len(names) == nc and all(str(n) in COCO_IDS_BY_NAME for n in names):
        return np.array([COCO_IDS_BY_NAME[str(n)] for n in names], np.int32)
    if nc == len(COCO80_IDS):
        return np.array(COCO80_IDS, np.int32)
    raise SegkitError(f"model has {nc} classes whose names are not COCO's; cannot map them to COCO ids")


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float,
        max_det: int) -> np.ndarray:
    """Class-aware NMS (OpenCV's): indices of the kept boxes, best score first."""
    if not len(scores):
        return np.zeros((0,), np.int64)
    xywh = boxes_xyxy.astype(np.float32).copy()
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores.astype(np.float32), classes.astype(np.int32),
                                   0.0, float(iou))
    keep = np.asarray(keep, np.int64).reshape(-1)
    # OpenCV returns them by descending score; keep that order explicitly (stable on ties).
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return keep[:max_det]


def select(pred: np.ndarray, nc: int, conf: float, iou: float = NMS_IOU, max_det: int = MAX_DET,
           multi_label: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates -> (boxes xyxy in input pixels, scores, class indices, mask coefficients).

    score = objectness x class score. ``multi_label`` lets one box stand for several classes
    (YOLOv5's val.py does that; detect.py keeps the best class only).
    """
    pred = pred[pred[:, 4] > conf]  # objectness alone bounds the score: cheap first cut
    cls_scores = pred[:, 5:5 + nc] * pred[:, 4:5]
    if multi_label:
        rows, cls = np.nonzero(cls_scores > conf)
        scores = cls_scores[rows, cls]
    else:
        cls = cls_scores.argmax(1) if len(pred) else np.zeros((0,), np.int64)
        scores = cls_scores[np.arange(len(pred)), cls]
        rows = np.flatnonzero(scores > conf)
        cls, scores = cls[rows], scores[rows]
    if len(scores) > MAX_NMS:
        best = np.argpartition(-scores, MAX_NMS)[:MAX_NMS]
        rows, cls, scores = rows[best], cls[best], scores[best]
    xywh = pred[rows, :4]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    keep = nms(boxes, scores, cls, iou, max_det)
    return boxes[keep], scores[keep].astype(np.float32), cls[keep], pred[rows[keep], 5 + nc:]


def paste_proto_masks(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, lb: Letterbox,
                      height: int, width: int, threshold: float = 0.5, with_soft: bool = False):
    """bool [K,H,W]: sigmoid(coeffs . protos) inside each box, at the ORIGINAL image size
    (> ``threshold``); ``with_soft``: (masks, soft), soft the probabilities themselves, uint8 x 255.

    Per box, only the prototype cells under it are combined, and one affine warp maps them
    straight from prototype space through the letterbox to the image pixels the box covers
    (bilinear, centre to centre; nothing outside the box is touched or kept).
    """
    mh, mw, nm = protos.shape
    gx, gy = lb.size / mw, lb.size / mh  # input pixels per prototype cell
    # prototype coordinate of image pixel j: u = ax * j + bx (pixel and cell centres)
    ax, bx = lb.sx / gx, (0.5 * lb.sx + lb.left) / gx - 0.5
    ay, by = lb.sy / gy, (0.5 * lb.sy + lb.top) / gy - 0.5
    out = np.zeros((len(boxes), height, width), bool)
    soft = np.zeros((len(boxes), height, width), np.uint8) if with_soft else None
    if not len(boxes):
        return (out, soft) if with_soft else out
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    # pixels whose centre lies inside the box: [r0, r1) per axis (all boxes at once)
    rx0 = np.maximum(np.ceil(b[:, 0] - 0.5), 0).astype(int)
    ry0 = np.maximum(np.ceil(b[:, 1] - 0.5), 0).astype(int)
    rx1 = np.minimum(np.floor(b[:, 2] - 0.5) + 1, width).astype(int)
    ry1 = np.minimum(np.floor(b[:, 3] - 0.5) + 1, height).astype(int)
    # the prototype cells those pixels interpolate between
    pu0 = np.clip(np.floor(ax * rx0 + bx), 0, mw - 1).astype(int)
    pu1 = np.clip(np.floor(ax * (rx1 - 1) + bx) + 2, 1, mw).astype(int)
    pv0 = np.clip(np.floor(ay * ry0 + by), 0, mh - 1).astype(int)
    pv1 = np.clip(np.floor(ay * (ry1 - 1) + by) + 2, 1, mh).astype(int)
    coeffs = np.asarray(coeffs, np.float32)
    for i, (x0, x1, y0, y1, u0, u1, v0, v1) in enumerate(zip(
            rx0.tolist(), rx1.tolist(), ry0.tolist(), ry1.tolist(),
            pu0.tolist(), pu1.tolist(), pv0.tolist(), pv1.tolist())):
        if x1 <= x0 or y1 <= y0:
            continue
        logits = protos[v0:v1, u0:u1] @ coeffs[i]
        prob = 1.0 / (1.0 + np.exp(-logits))
        affine = np.array([[ax, 0, ax * x0 + bx - u0], [0, ay, ay * y0 + by - v0]])
        region = cv2.warpAffine(prob, affine, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        np.greater(region, threshold, out=out[i, y0:y1, x0:x1])
        if soft is not None:  # rounds and saturates: >= 128 exactly where region >= 0.5
            soft[i, y0:y1, x0:x1] = cv2.convertScaleAbs(region, alpha=255.0)
    return (out, soft) if with_soft else out


def decode(pred: np.ndarray, protos: np.ndarray, lb: Letterbox, height: int, width: int, *,
           nc: int, class_ids: np.ndarray, conf: float = SCORE_FLOOR, iou: float = NMS_IOU,
           max_det: int = MAX_DET, multi_label: bool = False,
           label_names: dict[int, str] | None = None) -> Segmentation:
    """One image's raw outputs (``pred`` [N,5+nc+nm], ``protos`` [h,w,nm]) -> Segmentation."""
    boxes, scores, cls, coeffs = select(np.asarray(pred, np.float32), nc, conf, iou, max_det, multi_label)
    img_boxes = lb.to_image(boxes, height, width)
    protos = np.asarray(protos, np.float32)
    masks = paste_proto_masks(protos, coeffs, img_boxes, lb, height, width)

    def soft(idx, coeffs=coeffs, boxes=img_boxes):  # only if a cut-out or --refine-edges reads it
        return paste_proto_masks(protos, coeffs[idx], boxes[idx], lb, height, width, with_soft=True)[1]

    return Segmentation(height, width, masks=masks, soft=LazySoft(soft, len(img_boxes), height, width),
                        boxes=img_boxes,
                        class_ids=np.asarray(class_ids, np.int32)[cls].reshape(-1),
                        scores=scores, label_names=label_names or COCO_CATEGORIES)


class YoloSegSegmenter(Segmenter):
    """A ``RawYolo`` (see :mod:`segkit.models.yolo_convert`) as a Segmenter."""

    family = "yolo_seg"
    semantic = False

    def __init__(self, raw, name: str = "", *, iou: float = NMS_IOU, max_det: int = MAX_DET,
                 score_floor: float = SCORE_FLOOR, multi_label: bool = False):
        super().__init__(name)
        self.raw = raw
        self.imgsz = int(raw.imgsz)
        self.nc = int(raw.nc)
        self.max_batch = max(1, int(getattr(raw, "max_batch", 1) or 1))
        self.iou, self.max_det, self.score_floor, self.multi_label = iou, max_det, score_floor, multi_label
        self.coco_ids = coco_ids_for(getattr(raw, "names", None), self.nc)  # per contiguous index
        self.label_names = COCO_CATEGORIES

    def segment(self, images: Sequence[np.ndarray], min_score: float = 0.0) -> list[Segmentation]:
        conf = max(float(min_score), self.score_floor)
        results: list[Segmentation] = []
        s = self.imgsz
        for start in range(0, len(images), self.max_batch):
            chunk = images[start:start + self.max_batch]
            batch = np.empty((len(chunk), s, s, 3), np.uint8)
            boxes = [letterbox(im, s, out=batch[k])[1] for k, im in enumerate(chunk)]
            pred, protos = self.raw.run(batch.astype(np.float32) * np.float32(1 / 255.0))
            for k, (im, lb) in enumerate(zip(chunk, boxes)):
                results.append(decode(pred[k], protos[k], lb, im.shape[0], im.shape[1], nc=self.nc,
                                      class_ids=self.coco_ids, conf=conf, iou=self.iou,
                                      max_det=self.max_det, multi_label=self.multi_label,
                                      label_names=self.label_names))
        return results

    def close(self) -> None:
        close = getattr(self.raw, "close", None)
        if close is not None:
            close()
