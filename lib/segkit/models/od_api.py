"""TF Object Detection API exports -> Segmentation: TF2 SavedModel and TF1 frozen graph.

Both exports give, per image, ``num_detections`` [1], ``detection_boxes`` [1,N,4] (normalised
ymin,xmin,ymax,xmax), ``detection_scores`` [1,N], ``detection_classes`` [1,N] (float, 1-based
COCO ids) and ``detection_masks`` [1,N,m,m]: box-relative soft masks (33x33 for the TF2 zoo's
Inception-ResNet-v2, 15x15 for TF1 mask_rcnn_inception_v2). All float32 (exporter_lib_v2.py casts
every output; exporter.py writes them as float32 identity nodes).

TensorFlow is imported inside the constructors, so importing this module stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from segkit.errors import ModelError
from segkit.labels import COCO_CATEGORIES
from segkit.models.base import Segmenter
from segkit.segmentation import Segmentation, normalized_to_pixels, paste_masks

#: The outputs both families share and the adapters read (everything else is ignored).
DETECTION_KEYS = ("num_detections", "detection_boxes", "detection_scores",
                  "detection_classes", "detection_masks")
TF2_INPUT = "input_tensor"
TF1_INPUT = "image_tensor:0"


def paste_od_api_masks(box_masks: np.ndarray, boxes_yxyx: np.ndarray, height: int, width: int,
                       threshold: float = 0.5, with_soft: bool = False):
    """Box-relative OD API masks [N,m,n] + normalised boxes -> bool image masks [N,H,W]
    (``with_soft``: and their probabilities, uint8 x 255, as ``paste_masks``).

    OD API masks are ``tf.image.crop_and_resize`` samples of the object over the box (that is how
    the mask targets are cut, and ``utils.ops.reframe_box_masks_to_image_masks`` inverts it):
    mask row ``u`` samples image row ``ymin*(H-1) + u*(ymax-ymin)*(H-1)/(m-1)`` (pixel-index
    coordinates, corner-aligned) and nothing outside that span is painted. ``paste_masks``
    reads cells as bins instead, so it gets the box of bins whose centres are those sample points
    (half a sample step wider on each side), and the result is cut back to the sampled span.
    Pasting the masks straight into the detection box would shrink every mask by half a cell per
    side: 6-7 px for a 200 px object under a 15x15 mask.
    """
    b = np.asarray(boxes_yxyx, np.float64).reshape(-1, 4)
    n = len(b)
    if n == 0:
        empty = np.zeros((0, height, width), bool)
        return (empty, empty.view(np.uint8)) if with_soft else empty
    mh, mw = box_masks.shape[1:3]
    # First/last sample position in pixel-index coordinates (pixel j's centre is at j).
    y_lo, y_hi = b[:, 0] * (height - 1), b[:, 2] * (height - 1)
    x_lo, x_hi = b[:, 1] * (width - 1), b[:, 3] * (width - 1)
    step_y = (y_hi - y_lo) / max(mh - 1, 1)
    step_x = (x_hi - x_lo) / max(mw - 1, 1)
    # Bins in continuous coordinates (pixel j covers [j, j+1)), as paste_masks expects.
    bins = np.stack([x_lo + 0.5 - step_x / 2, y_lo + 0.5 - step_y / 2,
                     x_hi + 0.5 + step_x / 2, y_hi + 0.5 + step_y / 2], axis=1)
    masks, soft = paste_masks(box_masks, bins.astype(np.float32), height, width, threshold, with_soft=True)
    rows, cols = np.arange(height), np.arange(width)
    for i in range(n):
        # crop_and_resize extrapolates 0 outside the sampled span: cut the replicated border.
        for m in (masks, soft):
            m[i, (rows < y_lo[i]) | (rows > y_hi[i])] = 0
            m[i][:, (cols < x_lo[i]) | (cols > x_hi[i])] = 0
    return (masks, soft) if with_soft else masks


def detections_to_segmentation(det: dict[str, np.ndarray], height: int, width: int,
                               min_score: float, label_names: dict[int, str]) -> Segmentation:
    """One image's OD API output dict (batch dim 1) -> Segmentation at the image size."""
    num = int(np.asarray(det["num_detections"]).reshape(-1)[0])
    scores = np.asarray(det["detection_scores"], np.float32)[0, :num]
    keep = np.flatnonzero(scores >= min_score)  # pasting is the expensive part: filter first
    boxes_n = np.asarray(det["detection_boxes"], np.float32)[0, keep]
    box_masks = np.asarray(det["detection_masks"], np.float32)[0, keep]
    # Classes come as floats (e.g. 18.0): round, never truncate (17.999 must stay a dog).
    class_ids = np.rint(np.asarray(det["detection_classes"])[0, keep]).astype(np.int32)
    masks, soft = paste_od_api_masks(box_masks, boxes_n, height, width, with_soft=True)
    return Segmentation(height, width, masks=masks, soft=soft,
                        boxes=normalized_to_pixels(boxes_n, height, width).astype(np.float32),
                        class_ids=class_ids, scores=scores[keep], label_names=label_names)


def _check_image(image: np.ndarray, model: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ModelError(f"{model}: expects RGB uint8 images [H,W,3], got {image.dtype} "
                         f"{list(image.shape)}")
    return image


class OdApiSavedModel(Segmenter):
    """TF2 Object Detection API SavedModel (``exporter_main_v2.py`` output, ``serving_default``).

    ``path`` is the folder holding ``saved_model.pb``; ``loaded`` is an object already returned
    by ``tf.saved_model.load(path)`` so a big model is loaded once.
    """

    family = "od_api_tf2"
    semantic = False
    max_batch = 1

    def __init__(self, path, name: str = "", loaded=None,
                 label_names: dict[int, str] | None = None):
        super().__init__(name or Path(path).name)
        import tensorflow as tf

        self._tf = tf
        self.path = Path(path)
        self.label_names = label_names if label_names is not None else COCO_CATEGORIES
        if loaded is None:
            if not (self.path / "saved_model.pb").is_file():
                raise ModelError(f"{self.path}: not a SavedModel folder (no saved_model.pb)")
            try:
                loaded = tf.saved_model.load(str(self.path))
            except Exception as exc:  # noqa: BLE001 - TF raises many types for broken files
                raise ModelError(f"{self.path}: cannot load SavedModel: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                                 ) from exc
        self._loaded = loaded  # keeps the variables alive as long as the signature
        signature = getattr(loaded, "signatures", {}).get("serving_default")
        if signature is None:
            raise ModelError(f"{self.path}: SavedModel has no 'serving_default' signature")
        inputs = signature.structured_input_signature[1]
        if TF2_INPUT not in inputs:
            raise ModelError(f"{self.path}: serving_default takes {sorted(inputs)}, not "
                             f"'{TF2_INPUT}': not a TF2 Object Detection API export "
                             "(a Model Garden export is family 'garden')")
        missing = [k for k in DETECTION_KEYS if k not in signature.structured_outputs]
        if missing:
            raise ModelError(f"{self.path}: serving_default lacks {', '.join(missing)} "
                             "(segkit needs a Mask R-CNN export with detection_masks)")
        self._input_dtype = inputs[TF2_INPUT].dtype
        if self._input_dtype not in (tf.uint8, tf.float32):
            raise ModelError(f"{self.path}: input_tensor is {self._input_dtype.name}; only "
                             "image_tensor / float_image_tensor exports are supported")
        self._signature = signature

    def segment(self, images: Sequence[np.ndarray], min_score: float = 0.0) -> list[Segmentation]:
        tf = self._tf
        results = []
        for image in images:
            image = _check_image(image, self.name)
            out = self._signature(**{TF2_INPUT: tf.cast(image[None], self._input_dtype)})
            det = {k: out[k].numpy() for k in DETECTION_KEYS}
            results.append(detections_to_segmentation(det, image.shape[0], image.shape[1],
                                                       min_score, self.label_names))
        return results

    def close(self) -> None:
        self._signature = self._loaded = None


class OdApiFrozenGraph(Segmenter):
    """TF1 Object Detection API frozen graph (``frozen_inference_graph.pb``).

    The GraphDef is imported once into its own graph and run with a ``tf.compat.v1.Session``.
    """

    family = "od_api_tf1"
    semantic = False
    max_batch = 1

    def __init__(self, path, name: str = "", label_names: dict[int, str] | None = None):
        super().__init__(name or Path(path).stem)
        import tensorflow as tf

        self.path = Path(path)
        self.label_names = label_names if label_names is not None else COCO_CATEGORIES
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such frozen graph file")
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(self.path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
            raise ModelError(f"{self.path}: not a TensorFlow GraphDef (.pb): {exc}") from exc
        graph = tf.Graph()
        with graph.as_default():
            try:
                tf.compat.v1.import_graph_def(graph_def, name="")
            except Exception as exc:  # noqa: BLE001 - unknown ops, bad attrs, ...
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ModelError(f"{self.path}: cannot import graph: {first}") from exc
        names = {op.name for op in graph.get_operations()}
        missing = [k for k in (TF1_INPUT.split(":")[0],) + DETECTION_KEYS if k not in names]
        if missing:
            raise ModelError(f"{self.path}: graph lacks {', '.join(missing)}: not a TF1 "
                             "Object Detection API Mask R-CNN frozen graph")
        self._input = graph.get_tensor_by_name(TF1_INPUT)
        self._fetches = {k: graph.get_tensor_by_name(f"{k}:0") for k in DETECTION_KEYS}
        self._session = tf.compat.v1.Session(graph=graph)

    def segment(self, images: Sequence[np.ndarray], min_score: float = 0.0) -> list[Segmentation]:
        results = []
        for image in images:
            image = _check_image(image, self.name)
            det = self._session.run(self._fetches, feed_dict={self._input: image[None]})
            results.append(detections_to_segmentation(det, image.shape[0], image.shape[1],
                                                       min_score, self.label_names))
        return results

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
