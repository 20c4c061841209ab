"""A video stored as numbered frame images: a folder in name order, or a printf pattern.

    FrameFolder("frames/")            # every image of the folder, in natural name order
    FrameFolder("frames/%05d.jpg")    # the files the pattern matches, in number order

It is a flow source like a video file (``unit = "frames"``, every frame handed out in order,
decoded ahead by threads). Frame indices are the positions in the folder, or the numbers of a
pattern (a number missing from the sequence is a frame gap, which a tracker predicts over).
A frame that cannot be read comes out with ``error`` set: the run counts it failed and goes on.
The folder's ``manifest.json`` (video_to_frames) gives the frame rate, else 30 fps.
"""
from __future__ import annotations

import os
import re
import time
from functools import partial
from pathlib import Path

from segkit.errors import InputError
from segkit.io.sources import IMAGE_EXTS, MAX_PIXELS, Frame, prefetch_map, read_frame

#: %d, %5d, %05d: the printf integer conversions ffmpeg's image2 accepts
_PRINTF = re.compile(r"%(0?)(\d*)d")
DEFAULT_FPS = 30.0


def is_pattern(spec: str) -> bool:
    return len(_PRINTF.findall(os.path.basename(str(spec)))) == 1


def is_frame_source(spec) -> bool:
    """A folder or a printf pattern (rather than a camera, video file or URL)."""
    return not isinstance(spec, int) and (is_pattern(str(spec)) or Path(str(spec)).is_dir())


def _natural(name: str):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def list_frames(spec: str | os.PathLike) -> list[tuple[Path, str, int]]:
    """(path, output name, frame index) of every frame, in order; InputError if there are none."""
    spec = str(spec)
    if is_pattern(spec):
        folder = Path(os.path.dirname(spec) or ".")
        base = os.path.basename(spec)
        m = _PRINTF.search(base)
        fill, width = m.groups()
        before, after = base[:m.start()], base[m.end():]
        digits = rf"\d{{{int(width)},}}" if fill and width else r"\d+"
        rx = re.compile(re.escape(before) + f"({digits})" + re.escape(after) + r"\Z")
        if not folder.is_dir():
            raise InputError(spec, f"no such folder {folder}")
        found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := rx.match(p.name)))
        if not found:
            raise InputError(spec, "no files match this frame pattern")
        return [(p, p.stem, n) for n, p in found]
    folder = Path(spec)
    if not folder.is_dir():
        raise InputError(spec, "no such folder")
    try:
        names = sorted((p for p in folder.iterdir()
                        if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")),
                       key=lambda p: _natural(p.name))
    except OSError as e:
        from segkit.io.sources import os_problem
        raise InputError(spec, os_problem(e)) from None
    if not names:
        raise InputError(spec, f"no frames: the folder holds no images ({', '.join(IMAGE_EXTS[:3])}, ...)")
    return [(p, p.stem, i) for i, p in enumerate(names)]


def _fps_of(folder: Path) -> float:
    from segkit.io.frames import read_manifest

    try:
        manifest = read_manifest(folder)
    except InputError:
        manifest = None
    return float(manifest.fps) if manifest is not None and manifest.fps else DEFAULT_FPS


def _image_size(frames) -> tuple[int, int]:
    """The first readable frame's size, from its header (no decoding)."""
    from PIL import Image

    for path, _, _ in frames:
        try:
            with Image.open(path) as im:
                return im.size
        except Exception:
            continue
    return 0, 0


class FrameFolder:
    """The frames of ``spec`` as a flow source (see the module docstring)."""

    unit = "frames"
    live = False
    dropped = 0
    is_camera = is_stream = False

    def __init__(self, spec: str | os.PathLike, max_pixels: int = MAX_PIXELS, workers: int = 2,
                 mirror: bool = False):
        self.spec = str(spec)
        self.frames = list_frames(self.spec)
        self.name = self.spec
        self.total = self.frame_count = len(self.frames)
        folder = Path(self.spec) if not is_pattern(self.spec) else Path(os.path.dirname(self.spec) or ".")
        self.fps = _fps_of(folder)
        self.width, self.height = _image_size(self.frames[:5])
        self.mirror = mirror
        self.read = self.delivered = 0
        self.read_seconds = 0.0
        self.ended = False
        read = partial(self._read, max_pixels)
        self._it = prefetch_map(read, self.frames, max(1, workers), 4 * max(1, workers))

    def _read(self, max_pixels: int, item) -> Frame:
        path, name, index = item
        t0 = time.perf_counter()
        frame = read_frame((path, name), max_pixels, index, listed=True)
        if frame.error is None and self.mirror:
            frame.image = frame.image[:, ::-1].copy()
        self.read_seconds += time.perf_counter() - t0  # summed over the reading threads
        return frame

    def next(self, timeout: float | None = None) -> Frame | None:
        try:
            frame = next(self._it)
        except StopIteration:
            self.ended = True
            return None
        self.read += 1
        self.delivered += 1
        return frame

    def __iter__(self):
        while (frame := self.next()) is not None:
            yield frame

    def close(self) -> None:
        self._it.close()  # stops the read-ahead pool of a run cut short

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
