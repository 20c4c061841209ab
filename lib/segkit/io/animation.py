"""Animations out: GIF (Pillow, a palette per frame) and MP4 (the one video writer,
io.video_writer), as sinks a run or frames_to_gif.py feeds frame by frame."""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError, UsageError
from segkit.io.atomic import atomic_write_bytes
from segkit.io.sinks import Sink
from segkit.io.video_writer import VideoSink

OUTPUT_EXTS = (".gif", ".mp4")


@dataclass
class AnimationResult:
    path: Path
    frames: int        # frames in the written file
    fps: float         # its playback rate
    step: int          # one frame kept out of every `step`
    bytes: int
    width: int
    height: int


def to_palette(rgb: np.ndarray, colors: int = 256):
    """One frame -> Pillow 'P' image with its own adaptive palette (a GIF local colour table).

    Median cut, no dithering: dither noise defeats GIF's LZW compression. On carphone (528x144
    collage) this is Pillow's ADAPTIVE conversion: mean error 0.9/255 vs 1.8 for fast octree,
    which is 30 % smaller; fewer ``colors`` is the size knob.
    """
    from PIL import Image

    return Image.fromarray(rgb).quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def gif_durations(n: int, fps: float) -> list[int]:
    """Per-frame delays in ms, in GIF's 10 ms steps, whose running sum stays on real time
    (7.49 fps is 133.5 ms a frame: 130,130,140,... rather than 130 throughout, which drifts)."""
    ends = [round((i + 1) * 100 / fps) for i in range(n)]  # centiseconds since the start
    return [10 * max(1, e - s) for s, e in zip([0] + ends[:-1], ends)]


def encode_gif(frames: list, fps: float, loop: int = 0) -> bytes:
    """Pillow 'P' frames -> GIF bytes. ``loop``: 0 forever, N = play N times in all."""
    if not frames:
        raise SegkitError("no frames to write")
    buf = io.BytesIO()
    kw = {} if loop == 1 else {"loop": 0 if loop == 0 else loop - 1}  # GIF counts repeats
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=gif_durations(len(frames), fps), disposal=1, optimize=False, **kw)
    return buf.getvalue()


class GifSink(Sink):
    """An animated GIF, written atomically when the run closes. Frames were already taken every
    ``step``; with ``max_bytes``, more are dropped (evenly, keeping the duration) until the file
    fits. ``render``: (frame, seg) -> picture; None takes the frame's own pixels. ``result``: an
    AnimationResult once written."""

    def __init__(self, path: str | os.PathLike, fps: float, render=None, loop: int = 0, step: int = 1,
                 max_bytes: int | None = None, colors: int = 256):
        self.path, self.fps, self.render = Path(path), fps, render
        self.loop, self.step, self.max_bytes, self.colors = loop, step, max_bytes, colors
        self.result: AnimationResult | None = None
        self._frames: list = []

    def write(self, frame, seg) -> list[Path]:
        image = self.render(frame, seg) if self.render is not None else frame.image
        self._frames.append(to_palette(image, self.colors))
        return []

    def close(self, ok: bool) -> None:
        if not ok:
            return
        pal, path = self._frames, self.path
        if not pal:
            raise SegkitError(f"{path}: no frames to write")
        extra = 1
        while True:
            chosen = pal[::extra]
            data = encode_gif(chosen, self.fps / extra, self.loop)
            if self.max_bytes is None or len(data) <= self.max_bytes:
                break
            if len(chosen) == 1:
                raise UsageError(f"{path}: one frame alone is {len(data):,} bytes, over --max-size "
                                 f"{self.max_bytes:,}; make frames smaller with --resize")
            # frames cost roughly the same: thin out by the ratio we are over, at least one more step
            extra = max(extra + 1, math.ceil(extra * len(data) / self.max_bytes))
            extra = min(extra, len(pal))
        atomic_write_bytes(path, data)
        w, h = pal[0].size
        self.result = AnimationResult(path, len(chosen), self.fps / extra, self.step * extra, len(data), w, h)


class Mp4Sink(VideoSink):
    """An MP4 (H.264 with the index first, so browsers play it; mp4v without imageio-ffmpeg)
    through the one video writer, with
    the same ``result`` as GifSink."""

    def __init__(self, path: str | os.PathLike, fps: float, render=None, step: int = 1):
        super().__init__(path, fps, render, keep_partial=False)
        self.fps, self.step = fps, step
        self.result: AnimationResult | None = None

    def close(self, ok: bool) -> None:
        super().close(ok)
        if not ok:
            return
        w = self.writer
        if w.error is not None:
            raise SegkitError(f"{w.path}: {w.error}")
        if w.final is None:
            raise SegkitError(f"{w.path}: no frames to write")
        self.result = AnimationResult(w.final, w.frames_written, self.fps, self.step,
                                      w.final.stat().st_size, *w.size)


def animation_sink(path: Path, fps: float, *, loop: int = 0, step: int = 1, max_bytes: int | None = None,
                   colors: int = 256, render=None) -> Sink:
    """A GifSink or Mp4Sink by ``path``'s extension."""
    if Path(path).suffix.lower() == ".gif":
        return GifSink(path, fps, render, loop, step, max_bytes, colors)
    return Mp4Sink(path, fps, render, step)


def write_animation(images, path: str | os.PathLike, fps: float, **options) -> AnimationResult:
    """RGB pictures -> a GIF or MP4 at ``path`` (``options`` as animation_sink's); the file appears
    complete or not at all, also when reading a picture fails midway."""
    from segkit.io.sources import Frame

    sink, ok = animation_sink(Path(path), fps, **options), False
    try:
        for i, image in enumerate(images):
            sink.write(Frame(image, str(i), index=i), None)
        ok = True
    finally:
        sink.close(ok)
    return sink.result
