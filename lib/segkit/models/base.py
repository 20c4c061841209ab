"""What every checkpoint family adapter implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from segkit.segmentation import Segmentation

#: ``normalize`` of a zoo entry: float32 RGB 0..255 -> what the network was trained on
#: (one table for every adapter that feeds a network raw pixels: TFLite and Keras U-Net).
#: ``out``: write into this float32 array instead of a new one (it may be ``x`` itself).
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
NORMALIZERS = {
    "unit": lambda x, out=None: np.multiply(x, np.float32(1 / 255.0), out=out),
    "minus1_1": lambda x, out=None: np.subtract(np.multiply(x, np.float32(2 / 255.0), out=out),
                                                np.float32(1.0), out=out),
    "imagenet": lambda x, out=None: np.divide(np.subtract(np.multiply(x, np.float32(1 / 255.0), out=out),
                                                          _MEAN, out=out), _STD, out=out),
    "uint8": lambda x, out=None: x if out is None else np.copyto(out, x) or out,
}


class Segmenter(ABC):
    """Adapter from one checkpoint family to :class:`Segmentation`.

    ``segment`` takes RGB uint8 images of any size (a list, sizes may differ) and returns one
    Segmentation per image at that image's own size. ``min_score`` lets instance adapters skip
    pasting masks of detections that would be filtered out anyway (the expensive part).
    """

    family: str = "?"
    semantic: bool = False
    #: how many images one forward pass takes; the pipeline groups frames by this
    max_batch: int = 1

    def __init__(self, name: str = ""):
        self.name = name

    @abstractmethod
    def segment(self, images: Sequence[np.ndarray], min_score: float = 0.0) -> list[Segmentation]:
        ...

    def prepare(self, image: np.ndarray) -> object | None:
        """Work on one image that needs nothing but that image, done ahead of ``segment`` on a
        folder source's decode threads (io.sources.ImageFiles) so it overlaps the model; its
        result reaches ``segment(images, prepared=[...])``. None: nothing to do ahead (the
        default), and segment does all the work itself, as it always may."""
        return None

    def segment_one(self, image: np.ndarray, min_score: float = 0.0) -> Segmentation:
        return self.segment([image], min_score=min_score)[0]

    def close(self) -> None:
        """Release interpreter/session resources (default: nothing to do)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
