"""TF Model Garden Mask R-CNN exports (``official/vision/serving``, input type ``image_tensor``).

What such an export's ``serving_default`` signature does (checked against tf-models-official
2.20, serving/detection.py and ops/preprocess_ops.py):

* input ``inputs``: uint8 ``[B,H,W,3]`` with B fixed at export (usually 1), H, W free;
* ``image_info`` ``[B,4,2]``: rows are original (h, w), *desired* (h, w) (the model input size,
  not the resized image inside it), scale (y, x) = resized / original per axis (both rounded,
  so they differ slightly), offset (y, x) (0 in serving);
* ``detection_boxes`` ``[B,100,4]`` ymin, xmin, ymax, xmax in model-input pixels, clipped to the
  desired size, so a box can reach into the padding, i.e. past the original image border;
* ``detection_masks`` ``[B,100,28,28]``: box-relative probabilities (the model applies the
  sigmoid itself; there is no flag for it in the signature);
* ``detection_classes`` int32 COCO ids (0 is background, never emitted), ``detection_scores``,
  ``num_detections``.
"""
from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import Sequence

import numpy as np

from segkit.errors import ModelError
from segkit.labels import COCO_CATEGORIES
from segkit.models.base import Segmenter
from segkit.segmentation import Segmentation, paste_masks

SIGNATURE = "serving_default"
INPUT_NAME = "inputs"
REQUIRED_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes",
                    "num_detections", "detection_masks", "image_info")
# When the export takes any batch size, this many same-sized images share one forward pass.
DYNAMIC_BATCH = 8


def saved_model_dir(path: str | Path) -> Path:
    """The SavedModel folder of an export: ``path`` itself or its ``saved_model/`` (the layout of
    ``export_saved_model.py``: params.yaml + checkpoint/ + saved_model/)."""
    path = Path(path)
    for candidate in (path, path / "saved_model"):
        if (candidate / "saved_model.pb").is_file():
            return candidate
    raise ModelError(f"{path}: not a Model Garden export (no saved_model.pb in it or in "
                     "saved_model/)")


def is_garden_export(path: str | Path) -> bool:
    """Whether ``path`` holds a Model Garden detection export, without loading TensorFlow models.

    Model Garden names its input ``inputs`` and returns ``image_info``; a TF2 Object Detection
    API SavedModel takes ``input_tensor`` and has no ``image_info``.
    """
    try:
        sm_dir = saved_model_dir(path)
    except ValueError:
        return False
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((sm_dir / "saved_model.pb").read_bytes())
    except DecodeError:
        return False  # not ours to judge: loading it reports the damage
    for meta in proto.meta_graphs:
        sig = meta.signature_def.get(SIGNATURE)
        if sig is not None and INPUT_NAME in sig.inputs and "image_info" in sig.outputs:
            return True
    return False


class GardenSegmenter(Segmenter):
    family = "garden"

    def __init__(self, path: str | Path, name: str = "", loaded=None,
                 label_names: dict[int, str] | None = None):
        super().__init__(name or Path(path).name)
        import tensorflow as tf  # lazily: importing TensorFlow alone costs seconds

        self._tf = tf
        self.path = Path(path)
        if loaded is None:
            loaded = tf.saved_model.load(str(saved_model_dir(path)))
        self._loaded = loaded  # the signature needs its owner alive (variables)
        if SIGNATURE not in loaded.signatures:
            raise ModelError(f"{path}: SavedModel has no '{SIGNATURE}' signature")
        self._fn = loaded.signatures[SIGNATURE]
        inputs = self._fn.structured_input_signature[1]
        spec = inputs.get(INPUT_NAME)
        if spec is None or spec.dtype != tf.uint8 or spec.shape.rank != 4:
            raise ModelError(f"{path}: not a Model Garden image_tensor export (signature input "
                             f"{sorted(inputs)} instead of '{INPUT_NAME}' uint8 [B,H,W,3])")
        missing = [k for k in REQUIRED_OUTPUTS if k not in self._fn.structured_outputs]
        if missing:
            raise ModelError(f"{path}: Model Garden export lacks outputs {missing} "
                             "(segkit needs a Mask R-CNN export with masks)")
        batch = spec.shape[0]
        self.max_batch = DYNAMIC_BATCH if batch is None else int(batch)
        self.label_names = COCO_CATEGORIES if label_names is None else label_names

    def segment(self, images: Sequence[np.ndarray], min_score: float = 0.0) -> list[Segmentation]:
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ModelError(f"{self.name}: expects RGB uint8 [H,W,3] images, got "
                                 f"{image.dtype} {image.shape}")
        results: list[Segmentation] = []
        # One dense input tensor: only images of one size can share a forward pass.
        for _, same in groupby(images, key=lambda im: im.shape):
            same = list(same)
            for start in range(0, len(same), self.max_batch):
                chunk = same[start:start + self.max_batch]
                raw = self.run_raw(np.stack(chunk))
                results.extend(self._to_segmentation(raw, i, im.shape[:2], min_score)
                               for i, im in enumerate(chunk))
        return results

    def run_raw(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The signature's outputs as numpy for a uint8 [B,H,W,3] batch (no post-processing)."""
        out = self._fn(**{INPUT_NAME: self._tf.constant(batch)})
        return {k: v.numpy() for k, v in out.items()}

    def _to_segmentation(self, raw: dict[str, np.ndarray], i: int, size: tuple[int, int],
                         min_score: float) -> Segmentation:
        info = raw["image_info"][i]
        height, width = size
        n = int(raw["num_detections"][i])
        scores = raw["detection_scores"][i, :n].astype(np.float32)
        keep = np.flatnonzero(scores >= min_score)
        scores = scores[keep]
        class_ids = np.rint(raw["detection_classes"][i, :n][keep]).astype(np.int32)
        # Model-input pixels (ymin, xmin, ymax, xmax) -> original pixels: undo the crop offset,
        # then the per-axis resize scale.
        (scale_y, scale_x), (off_y, off_x) = info[2], info[3]
        yxyx = raw["detection_boxes"][i, :n][keep].astype(np.float64)
        boxes = np.stack([(yxyx[:, 1] + off_x) / scale_x, (yxyx[:, 0] + off_y) / scale_y,
                          (yxyx[:, 3] + off_x) / scale_x, (yxyx[:, 2] + off_y) / scale_y],
                         axis=1).astype(np.float32).reshape(-1, 4)
        box_masks = raw["detection_masks"][i, :n][keep]
        if box_masks.size and (box_masks.min() < 0 or box_masks.max() > 1):
            box_masks = 1.0 / (1.0 + np.exp(-box_masks))  # an export returning logits
        # Paste with the unclipped box (the mask cells belong to it), then clip the box: boxes
        # are clipped to the padded model input, so they can overhang the original image.
        masks, soft = paste_masks(box_masks, boxes, height, width, with_soft=True)
        boxes = np.clip(boxes, 0, np.array([width, height, width, height], np.float32))
        return Segmentation(height, width, masks=masks, soft=soft, boxes=boxes, class_ids=class_ids,
                            scores=scores, label_names=self.label_names)

    def close(self) -> None:
        self._fn = self._loaded = None
