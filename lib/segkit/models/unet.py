"""Keras U-Net adapter: the project's own trained models (``model.keras`` from the export).

The network takes float32 RGB in 0..1 at a fixed S x S; each image is stretched to S x S with
``cv2.resize`` (INTER_LINEAR, the same stretch training used) and the probabilities are resized
back to the image's own size. Channels named ``background`` are dropped, so ``foreground()`` is
the union of the real classes. Keras/TensorFlow are imported only when a model is opened.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from segkit.errors import ModelError
from segkit.labels import COCO_CATEGORIES, model_classes
from segkit.models.base import NORMALIZERS, Segmenter
from segkit.segmentation import Segmentation

class UnetSegmenter(Segmenter):
    family = "unet"
    semantic = True

    def __init__(self, path: str | Path, name: str = "", classes: Sequence[str | int] | None = None,
                 normalize: str | None = None, max_batch: int = 8, **_ignored):
        super().__init__(name or Path(path).parent.name)
        path = Path(path)
        if path.is_dir():
            path = path / "model.keras"
        if not path.is_file():
            raise ModelError(f"{path}: Keras model file not found")
        meta = _read_metadata(path)
        import keras

        # registers the custom layers; losses/metrics are not needed with compile=False, and
        # inference never imports segkit.train
        import segkit.models.unet_layers  # noqa: F401

        try:
            self.model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError) as e:
            raise ModelError(f"{path}: cannot load Keras model ({str(e).splitlines()[0]})") from None
        _, self.height_in, self.width_in, _ = self.model.input_shape
        names = list(classes if classes is not None else meta.get("classes") or ["person"])
        channels = int(self.model.output_shape[-1])
        if channels > 1 and len(names) == channels - 1:
            names = ["background", *names]  # the registry's convention: background first
        if len(names) != channels:
            raise ModelError(f"{path}: model has {channels} output channels but "
                             f"{len(names)} class names {names}")
        self.normalize = normalize or meta.get("normalize", "unit")
        if self.normalize not in NORMALIZERS:
            raise ModelError(f"{path}: unknown normalize {self.normalize!r}")
        # Keep every channel that is not background; COCO names keep their COCO ids, a model's
        # own names get ids 1, 2 ... and its own label table (segkit.labels.model_classes).
        self.keep = [i for i, n in enumerate(names) if str(n) != "background"]
        ids, own = model_classes(names)
        self.label_names = own if own is not None else dict(COCO_CATEGORIES)
        self.prob_class_ids = tuple(ids)
        self.max_batch = max(1, int(max_batch))

    def segment(self, images: Sequence[np.ndarray], min_score: float = 0.0) -> list[Segmentation]:
        results = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start:start + self.max_batch]
            batch = np.stack([cv2.resize(im, (self.width_in, self.height_in),
                                         interpolation=cv2.INTER_LINEAR) for im in chunk])
            batch = NORMALIZERS[self.normalize](batch.astype(np.float32))
            probs = np.asarray(self.model(batch, training=False), np.float32)
            for im, p in zip(chunk, probs):
                h, w = im.shape[:2]
                p = cv2.resize(p[..., self.keep], (w, h), interpolation=cv2.INTER_LINEAR)
                if p.ndim == 2:  # cv2 drops a single channel
                    p = p[..., None]
                results.append(Segmentation(h, w, probs=np.clip(p, 0.0, 1.0),
                                            prob_class_ids=self.prob_class_ids,
                                            label_names=self.label_names))
        return results


def _read_metadata(model_path: Path) -> dict:
    """classes / normalize of the export: metrics.json beside the model, else zoo.yaml."""
    metrics = model_path.with_name("metrics.json")
    if metrics.is_file():
        try:
            return json.loads(metrics.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"{metrics}: not valid JSON ({e})") from None
    zoo = model_path.with_name("zoo.yaml")
    if zoo.is_file():
        from segkit.zoo.registry import read_yaml  # no aliases, size capped, one-line errors

        entries = (read_yaml(zoo) or {}).get("models") or {}
        if entries:
            return next(iter(entries.values()))
    return {}
