"""The Python API: ``segkit.load_model(name)(image) -> Segmentation``.

A thin layer over what the scripts use (``load_segmenter``, ``Filter``, ``flow.run``), the way
``YOLO("x.pt")(img)`` or detectron2's ``DefaultPredictor`` serve people who script.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from segkit.labels import parse_classes
from segkit.models.base import Segmenter
from segkit import flow
from segkit.flow import Filter
from segkit.segmentation import Segmentation
from segkit.io.sources import Frame, read_image

_CONFIG = object()  # "not given": take the packaged default (segkit/defaults.yaml), as the scripts do


#: what a Model can be called on, in the words of its TypeError
ACCEPTED = ("an image file path (str or os.PathLike), an RGB uint8 numpy array [H,W,3], a PIL.Image, "
            "encoded image bytes (JPEG, PNG...), or a list of those")


class Model:
    """A loaded segmenter plus what to keep of its results. Call it on an image file path, an
    RGB uint8 ``[H,W,3]`` array, a PIL image or encoded bytes (JPEG/PNG); a list gives a list.
    Anything else is a TypeError, an empty or undecodable image a ValueError.

    Thread-safe: one Model may be called from many threads at once (a web app's request
    threads, a thread pool). The calls take turns on the model, which uses every core for each
    one itself (a LiteRT interpreter may not run two calls at once); decoding and filtering run
    in the calling threads."""

    def __init__(self, segmenter: Segmenter, result_filter: Filter):
        self.segmenter = _TakingTurns(segmenter)
        self.filter = result_filter

    @property
    def name(self) -> str:
        return self.segmenter.name

    @property
    def names(self) -> dict[int, str]:
        """{class id: name} of the labels this model's results use."""
        from segkit.labels import COCO_CATEGORIES

        return dict(getattr(self.segmenter, "label_names", None) or COCO_CATEGORIES)

    def __call__(self, images) -> Segmentation | list[Segmentation]:
        single = not isinstance(images, (list, tuple))
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

    def track(self, source, *, tracker=None, on_error=None, **settings) -> Iterator[Segmentation]:
        """Segment and track a video: yields one Segmentation per frame, in order, with
        ``track_ids`` (the same object keeps its id from frame to frame).

        ``source``: a video file, a folder of frames (name order), a printf pattern
        ('frames/%05d.jpg'), a camera index (int, or '0'), a stream URL, or any iterable of images
        (what the Model is called on: arrays, paths, PIL images, bytes). A frame that cannot be
        read is skipped, its one-line problem given to ``on_error`` (default: a warning); the
        tracker predicts over it (and over the frames a live
        camera drops). ``tracker``: a segkit.track.Tracker to go on with (e.g.
        ``Tracker.from_state(saved)``; an iterable's frames are then numbered on from its last
        frame), else a new one with segkit/defaults.yaml's ``track:``
        settings, any of which ``settings`` overrides (``max_age=60``)."""
        import warnings

        from segkit.track import Tracker

        if tracker is None:  # a threshold given to load_model starts tracks, as --threshold does
            explicit = None if getattr(self.filter, "kind_default", False) else self.filter.threshold
            tracker = Tracker(**{"high_score": explicit, **settings})
        elif settings:
            raise TypeError("give either a tracker or its settings, not both")
        # the model kind's default threshold resolved first: the tracker starts tracks from it
        model_filter = tracker.detection_filter(self.filter.for_model(self.segmenter))
        # an iterable's frames are numbered on from where a given tracker stopped
        with _video_source(source, 0 if tracker.frame is None else tracker.frame + 1) as frames:
            while (frame := frames.next()) is not None:
                if frame.error is not None:
                    if on_error is not None:
                        on_error(str(frame.error))
                    else:
                        warnings.warn(f"segkit: skipped {frame.error}", stacklevel=2)
                    continue
                seg = flow.segment(self.segmenter, [frame], model_filter)[0]
                yield tracker.update(seg, frame.index)

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
               min_area: float | None = None, download: bool = True, progress: bool = False,
               imgsz: int | None = None, iou: float | None = None) -> Model:
    """A zoo name (None: the default person model, bundled), or a checkpoint on disk (``path=``,
    or a first argument naming an existing file / folder) -> a callable :class:`Model`.

    ``classes`` ('person,dog', [1, 18]), ``threshold``, ``max_instances`` and ``min_area``
    filter every result as the scripts' flags do, checked by the same rules with the same words
    (a ValueError, before anything loads: ``threshold=2``, ``classes='dog'`` on a person-only
    model...); left out, threshold and max_instances take segkit/defaults.yaml's values
    (the threshold by the model's kind: instance scores or probability maps); None
    keeps everything. YOLO models also take ``imgsz`` (input side, converted once per size and
    cached) and ``iou`` (NMS), as ``--imgsz`` / ``--iou``.
    """
    from segkit import options
    from segkit.config import DEFAULTS
    from segkit.models import load_segmenter

    if path is None and model is not None and (isinstance(model, os.PathLike) or Path(model).exists()):
        model, path = None, model
    path = str(path) if path is not None else None
    if isinstance(classes, int) and not isinstance(classes, bool):
        classes = str(classes)  # one COCO id
    elif classes is not None and not isinstance(classes, str):
        classes = ",".join(str(c) for c in classes)
    opts = options.Options(model=model, model_path=path, classes=classes,
                           threshold=DEFAULTS["threshold"] if threshold is _CONFIG else threshold,
                           max_instances=DEFAULTS["max_instances"] if max_instances is _CONFIG else max_instances,
                           min_area=min_area, imgsz=imgsz, iou=iou)
    options.validate(opts)  # OptionError: a ValueError, in the command line's words
    # classes read against the model's zoo entry, before loading it; a .keras brings its own
    # names inside the file, so those are read once it is loaded
    known = options.classes_of_model(model, path)[1] if classes else None
    wanted = options.parse_class_filter(opts) if known is not None else None
    segmenter = load_segmenter(model, path, download=download, progress=progress, imgsz=imgsz, iou=iou)
    if classes and known is None:
        try:
            wanted = parse_classes(classes, getattr(segmenter, "label_names", None))
        except ValueError as e:
            segmenter.close()
            raise ValueError(f"--classes: {e}") from None
    checked = {k: None if getattr(opts, k) is None else options.CHECKS[k](getattr(opts, k))
               for k in ("threshold", "max_instances", "min_area")}  # "0.5" -> 0.5, as argparse gives
    return Model(segmenter, Filter(wanted, checked["threshold"], checked["max_instances"], checked["min_area"],
                                   kind_default=threshold is _CONFIG))


def _video_source(source, start: int = 0):
    """A flow source of ``source``'s frames, in order, each with its frame index (Model.track);
    an iterable's are numbered from ``start``."""
    from segkit.io.frame_folder import FrameFolder, is_frame_source
    from segkit.io.sources import Frames

    if isinstance(source, (str, os.PathLike, int)) and not isinstance(source, bool):
        if not isinstance(source, int) and is_frame_source(str(source)):
            return FrameFolder(source)
        from segkit.io.video_source import VideoSource

        return VideoSource(source if isinstance(source, int) else str(source))
    if isinstance(source, (bytes, bytearray, np.ndarray)) or _is_pil(source):
        raise TypeError("Model.track takes a video (file, folder of frames, pattern, camera index, URL) "
                        "or an iterable of images; for one image call the model")
    try:
        images = iter(source)
    except TypeError:
        raise TypeError(f"Model.track takes a video file, a frame folder, a printf pattern, a camera "
                        f"index or an iterable of images; got {type(source).__qualname__}") from None
    return Frames(Frame(_as_image(im), str(i), index=i) for i, im in enumerate(images, start))


class _TakingTurns:
    """A segmenter whose ``segment`` calls take turns (a lock): LiteRT interpreters, TF sessions
    and the adapters' scratch buffers are not safe to use from two threads at once. Everything
    else (name, max_batch, prepare...) is the segmenter's own."""

    def __init__(self, segmenter: Segmenter):
        self._segmenter = segmenter
        self._lock = threading.Lock()

    def segment(self, *args, **kwargs):
        with self._lock:
            return self._segmenter.segment(*args, **kwargs)

    def segment_one(self, image, min_score: float = 0.0):
        return self.segment([image], min_score=min_score)[0]

    def close(self) -> None:
        with self._lock:
            self._segmenter.close()

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_segmenter", "_lock"):  # copy/pickle probes: no recursion
            raise AttributeError(name)
        return getattr(self._segmenter, name)


def _as_image(image) -> np.ndarray:
    """One image as RGB uint8 [H,W,3], from whatever the caller passed (see ACCEPTED)."""
    from segkit.errors import InputError
    from segkit.io.sources import decode_image_bytes

    if isinstance(image, (str, os.PathLike)):
        return read_image(image)  # the scripts' decoder: EXIF orientation, 16-bit, alpha, bombs
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            return decode_image_bytes(bytes(image), "<bytes>")
        except InputError as e:
            raise ValueError(f"image bytes: {e.problem}") from None
    if _is_pil(image):
        image = np.asarray(image.convert("RGB"))
    elif not isinstance(image, np.ndarray):
        raise TypeError(f"segkit.Model takes {ACCEPTED}; got {type(image).__module__}.{type(image).__qualname__}"
                        .replace("builtins.", ""))
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image [H,W,3], got {image.dtype} {image.shape}")
    if not image.shape[0] or not image.shape[1]:
        raise ValueError(f"empty image: {image.shape[1]}x{image.shape[0]} pixels")
    return image


def _is_pil(image) -> bool:
    import sys

    pil = sys.modules.get("PIL.Image")  # never imported here: a PIL image means PIL is loaded
    return pil is not None and isinstance(image, pil.Image)
