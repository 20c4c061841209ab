"""The Sink protocol, and the sinks that write files named after each input.

A run (segkit.flow.run) calls, on every sink it was given:

``open(run)``          once, before the first frame (``run``: a flow.RunInfo: source, model, stats)
``write(frame, seg)``  for each segmented frame, on a writer thread; returns the files written
``fail(frame, err)``   for each frame that failed (unreadable input, a write that failed)
``close(ok)``          once, on every way out; ``ok`` is False when the run was interrupted or
                       failed (a video is still finalised, a results JSON is not merged)

and between frames, on the main thread, ``poll()``: a reason to stop (a window's quit key) or None.
``expected(frame)`` lists the files ``write`` would create for a frame: a resumed run skips the
frames whose files all exist, and nothing may be written over an input.

Sinks are atomic by contract: every file appears whole or not at all (segkit.io.atomic), so a run
killed at any moment leaves only complete outputs.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from segkit.config import DEFAULTS
from segkit.io.atomic import atomic_dir, atomic_write_bytes, encode_image, write_image
from segkit.io.sources import Frame
from segkit.render import Background, cutout, foreground_alpha, overlay
from segkit.segmentation import Segmentation


class Sink:
    """Base with the protocol's no-op defaults: a sink overrides what it needs."""

    def open(self, run) -> None:
        pass

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        return []

    def fail(self, frame: Frame, err: Exception) -> None:
        pass

    def close(self, ok: bool) -> None:
        pass

    def expected(self, frame: Frame) -> list[Path]:
        return []

    def poll(self) -> str | None:
        return None


class Renderer:
    """(frame, seg) -> the annotated picture: the overlay, or a cut-out on ``background``.

    Sinks showing the same picture (a video and a window) share one renderer, which draws once
    per frame: the flow writes a frame's sinks one after the other on one thread."""

    def __init__(self, background: Background | None = None, alpha: float | None = None,
                 mask_only: bool = False):
        self.background = background
        self.alpha = DEFAULTS["alpha"] if alpha is None else alpha
        self.mask_only = mask_only  # --only-mask: the alpha alone, one 8-bit channel (rembg -om)
        self._last = threading.local()

    @property
    def lossless(self) -> bool:
        """A picture that must be PNG: it carries alpha, or is the alpha itself."""
        return self.mask_only or (self.background is not None and self.background.has_alpha)

    def __call__(self, frame: Frame, seg: Segmentation) -> np.ndarray:
        last = getattr(self._last, "item", None)
        if last is not None and last[0] is frame and last[1] is seg:
            return last[2]
        if self.mask_only:
            a = np.asarray(foreground_alpha(seg), np.float32)
            vis = (a * 255 + 0.5).astype(np.uint8)  # [H,W]: encodes as an 8-bit grey PNG
        elif self.background is not None:
            vis = cutout(frame.image, foreground_alpha(seg), self.background)
        else:
            vis = overlay(frame.image, seg, self.alpha)
        self._last.item = (frame, seg, vis)
        return vis

    def __getstate__(self):  # Beam pickles sinks to ship them to its workers
        return {k: v for k, v in self.__dict__.items() if k != "_last"}

    def __setstate__(self, state):
        self.__dict__.update(state, _last=threading.local())


class Picture(Sink):
    """``<out>/<name>.jpg|.png``: the overlay, or the cut-out when a background is chosen.

    The format follows the input (JPEG in, JPEG out at quality 95: a tenth of the PNG's size and
    encoding time; anything else PNG) unless ``ext`` chooses one; a transparent cut-out is always
    PNG (JPEG has no alpha)."""

    def __init__(self, out_dir: Path, render: Renderer, ext: str | None = None):
        self.out_dir, self.render = Path(out_dir), render
        self.ext = (ext if ext.startswith(".") else f".{ext}") if ext else None

    def path(self, frame: Frame) -> Path:
        if self.render.lossless:
            ext = ".png"
        elif self.ext:
            ext = self.ext
        else:
            src = frame.path.suffix.lower() if frame.path is not None else ""
            ext = ".jpg" if src in (".jpg", ".jpeg") else ".png"
        return self.out_dir / f"{frame.name}{ext}"

    def expected(self, frame: Frame) -> list[Path]:
        return [self.path(frame)]

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        path = self.path(frame)
        write_image(path, self.render(frame, seg))
        return [path]


class StreamPicture(Picture):
    """The picture encoded into a byte stream instead of a file (``-o -``: stdout), PNG unless
    ``ext`` says jpg. The stream carries the image alone: every message goes to stderr."""

    def __init__(self, stream, render: Renderer, ext: str | None = None):
        super().__init__(Path("."), render, ext or "png")
        self.stream = stream

    def expected(self, frame: Frame) -> list[Path]:
        return []  # no file

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        data = encode_image(self.render(frame, seg), self.path(frame).suffix)
        self.stream.write(data)
        self.stream.flush()
        return []


class Masks(Sink):
    """``<out>/<name>_masks/NNN_<class>.png``: one 0/255 PNG per instance (--save-masks); the
    folder is built aside and renamed into place."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)

    def expected(self, frame: Frame) -> list[Path]:
        return [self.out_dir / f"{frame.name}_masks"]

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        inst = seg.as_instances()
        final = self.expected(frame)[0]
        with atomic_dir(final) as tmp:
            for i, ((_, data), cname) in enumerate(zip(inst.masks_png(), inst.class_names)):
                (tmp / f"{i:03d}_{cname.replace(' ', '_')}.png").write_bytes(data)
        return [final]


class YoloTxt(Sink):
    """``<out>/<name>.txt``: one YOLO polygon line per instance, Ultralytics ``save_txt`` format
    (``with_conf``: the score ends each line, as ``save_conf``)."""

    def __init__(self, out_dir: Path, with_conf: bool = False):
        self.out_dir, self.with_conf = Path(out_dir), with_conf

    def expected(self, frame: Frame) -> list[Path]:
        return [self.out_dir / f"{frame.name}.txt"]

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        # written even when empty (Ultralytics writes none then): a resumed run needs it to exist
        path = self.expected(frame)[0]
        atomic_write_bytes(path, seg.to_yolo_txt(with_conf=self.with_conf).encode())
        return [path]


class Call(Sink):
    """A function of (frame, seg) as a sink: what a caller computes from each result (evaluate's
    scores, an API user's collection)."""

    def __init__(self, fn):
        self.fn = fn

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        self.fn(frame, seg)
        return []
