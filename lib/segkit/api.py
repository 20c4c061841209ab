"""The Python API: ``segkit.load_model(name)(image) -> Segmentation``.

A thin layer over what the scripts use (``load_segmenter``, ``Filter``, ``flow.run``), the way
``YOLO("x.pt")(img)`` or detectron2's ``DefaultPredictor`` serve people who script.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from segkit.labels import parse_classes
from segkit.models.base import Segmenter
from segkit import flow
from segkit.flow import Filter
from segkit.segmentation import Segmentation
from segkit.io.sources import Frame, read_image

_CONFIG = object()  # "not given": take the packaged default (segkit/defaults.yaml), as the scripts do


class Model:
    """A loaded segmenter plus what to keep of its results. Call it on RGB uint8 images
    (``[H,W,3]`` arrays) or image file paths; a list gives a list."""

    def __init__(self, segmenter: Segmenter, result_filter: Filter):
        self.segmenter = segmenter
        self.filter = result_filter

    @property
    def name(self) -> str:
        return self.segmenter.name

    @property
    def names(self) -> dict[int, str]:
        """{class id: name} of the labels this model's results use."""
        from segkit.labels import COCO_CATEGORIES

        return dict(getattr(self.segmenter, "label_names", None) or COCO_CATEGORIES)

    def __call__(self, images: np.ndarray | str | os.PathLike | Sequence) -> Segmentation | list[Segmentation]:
        single = isinstance(images, (np.ndarray, str, os.PathLike))
        batch = [_as_image(im) for im in ([images] if single else images)]
        frames = [Frame(im, str(i), index=i) for i, im in enumerate(batch)]
        segs = flow.segment(self.segmenter, frames, self.filter) if frames else []  # the run loop's model step
        return segs[0] if single else segs

    def run(self, inputs: str | os.PathLike | Iterable[str | os.PathLike], sinks: Sequence,
            workers: int = 2) -> flow.RunStats:
        """Image files, folders (recursively) or globs through the scripts' own run loop into
        ``sinks`` (segkit.io.sinks: Picture, Masks, YoloTxt, ...; a Call(fn) gets each result):
        decoding and writing overlap with the model, an unreadable file is counted and skipped."""
        from segkit.io.sources import ImageFiles, expand_inputs

        specs = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
        items = expand_inputs([str(s) for s in specs], recursive=True)
        with ImageFiles(items, workers=workers, prepare=self.segmenter.prepare) as source:
            return flow.run(source, self.segmenter, sinks, result_filter=self.filter,
                            policy=flow.Policy.files(workers))

    def close(self) -> None:
        self.segmenter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"segkit.Model({self.name!r}, family={self.segmenter.family!r})"


def load_model(model: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None,
               classes: str | Iterable[str | int] | None = None, threshold=_CONFIG, max_instances=_CONFIG,
               min_area: float | None = None, download: bool = True, progress: bool = False) -> Model:
    """A zoo name (None: the default person model, bundled), or a checkpoint on disk (``path=``,
    or a first argument naming an existing file / folder) -> a callable :class:`Model`.

    ``classes`` ('person,dog', [1, 18]), ``threshold`` and ``max_instances`` filter every result
    as the scripts' flags do; left out, threshold and max_instances take segkit/defaults.yaml's
    values; None keeps everything.
    """
    from segkit.config import DEFAULTS
    from segkit.models import load_segmenter

    if path is None and model is not None and (isinstance(model, os.PathLike) or Path(model).exists()):
        model, path = None, model
    segmenter = load_segmenter(model, str(path) if path is not None else None, download=download,
                               progress=progress)
    try:
        wanted = parse_classes(classes, getattr(segmenter, "label_names", None))
    except ValueError as e:
        segmenter.close()
        raise ValueError(f"classes: {e}") from None
    return Model(segmenter, Filter(
        wanted,
        DEFAULTS["threshold"] if threshold is _CONFIG else threshold,
        DEFAULTS["max_instances"] if max_instances is _CONFIG else max_instances,
        min_area))


def _as_image(image) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)  # the scripts' decoder: EXIF orientation, 16-bit, alpha, bombs
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image [H,W,3], got {image.dtype} {image.shape}")
    return image
