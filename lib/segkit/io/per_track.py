"""``--per-track DIR``: one cut-out video per track of a tracked run, ``DIR/<class>_<id>.mp4``
(``person_3.mp4``): the frames the object is seen in, everything but that object replaced by
``--background`` (default ``black``, :data:`DEFAULT_BACKGROUND`: the usual matte, and flat, so
the clips stay small; ``white``, a colour, ``blur`` or an image also work; videos have no alpha).

- Tracks seen in fewer than ``min_track_frames`` frames (``--min-track-frames``, default in
  segkit/defaults.yaml) are skipped: flickering false detections would otherwise each leave a clip.
- Memory is bounded: a clip's encoder starts once its track reaches the minimum, frames before
  that wait in memory (at most ``min_frames`` pictures per such track), and a track unseen for
  longer than the tracker keeps lost tracks (``track: max_age``, after which the tracker never
  gives its id again) is finalised (its encoder released) or, when still short, forgotten. A
  track that comes back after that anyway starts a second clip (``person_3_2.mp4``).
- Every clip is written by the project's :class:`AtomicVideoWriter`: it appears whole, when its
  track ends or the run does (also when the run is interrupted: the clips of what was seen).

A stream (camera, video, frame folder run by segment_webcam) is cut as it goes. A resumable
folder run keeps each frame's tracked masks in ``<out>/.segkit/tracks/`` and cuts the clips when
the run ends, reading the frames again in the folder's order, so a killed and resumed run gives
the same clips as an uninterrupted one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segkit.config import DEFAULTS
from segkit.errors import SegkitError, UsageError
from segkit.io.atomic import atomic_write_bytes
from segkit.io.resume import STATE_DIR
from segkit.io.sinks import Sink
from segkit.io.sources import Frame
from segkit.labels import class_name
from segkit.render import Background, cutout, parse_background
from segkit.segmentation import Segmentation

DEFAULT_BACKGROUND = "black"
#: frames per second of clips cut from a frame folder without a manifest (video_to_frames' keeps it)
FOLDER_FPS = 10.0


def clip_background(spec: str | None) -> Background:
    """--background for the clips; transparent is refused (MP4 has no alpha)."""
    bg = parse_background(spec or DEFAULT_BACKGROUND)
    if bg.has_alpha:
        raise UsageError("--per-track with --background transparent: videos have no alpha channel; "
                         "use a colour, blur or an image")
    return bg


@dataclass
class _Clip:
    stem: str
    first: int                  # frame index the track was first seen at (this clip)
    last: int                   # frame index it was last seen at
    pending: list = field(default_factory=list)  # pictures waiting for the minimum length
    frames: int = 0
    writer: object = None       # AtomicVideoWriter once long enough


class ClipCutter:
    """Per-track clips from (frame index, picture, tracked result), fed in frame order."""

    def __init__(self, out_dir: str | os.PathLike, background: Background, fps: float,
                 min_frames: int | None = None, idle_frames: int | None = None):
        self.out_dir = Path(out_dir)
        self.background, self.fps = background, fps
        self.min_frames = max(1, int(DEFAULTS["min_track_frames"] if min_frames is None else min_frames))
        self.idle_frames = int((DEFAULTS.get("track") or {}).get("max_age", 30) if idle_frames is None else idle_frames)
        self.clips: dict[int, _Clip] = {}
        self.parts: dict[int, int] = {}   # track id -> clips started (a track that came back)
        self.written: list[Path] = []     # finished clips
        self.skipped = 0                  # tracks shorter than min_frames
        self.error: BaseException | None = None
        self._plain: np.ndarray | None = None  # a frame of the background colour

    def add(self, index: int, image: np.ndarray, seg: Segmentation) -> None:
        if seg.track_ids is None:
            raise SegkitError("--per-track needs a tracked run (--track)")
        for m, tid, cid in zip(seg.masks, seg.track_ids, seg.class_ids):
            tid = int(tid)
            clip = self.clips.get(tid)
            if clip is None:
                self.parts[tid] = self.parts.get(tid, 0) + 1
                part = self.parts[tid]
                stem = f"{class_name(cid, seg.label_names).replace(' ', '_')}_{tid}" + (f"_{part}" if part > 1 else "")
                clip = self.clips[tid] = _Clip(stem, index, index)
            clip.last = index
            picture = self._picture(image, m)
            clip.frames += 1
            if clip.writer is None:
                clip.pending.append(picture)
                if clip.frames >= self.min_frames:
                    self._start(clip)
            else:
                clip.writer.write(picture)
        self._retire(lambda c: index - c.last > self.idle_frames)

    def _picture(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The cut-out of one object. On a plain colour only the object's box is copied over a
        ready colour frame (0.5 ms instead of render.cutout's 11 ms at 768x576: a clip per
        person must not slow a live run down); blur and images go through render.cutout."""
        if self.background.kind != "color":
            return cutout(image, mask, self.background)
        if self._plain is None or self._plain.shape != image.shape:
            self._plain = np.empty_like(image)
            self._plain[:] = self.background.color
        out = self._plain.copy()
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        np.copyto(out[y:y + h, x:x + w], image[y:y + h, x:x + w], where=mask[y:y + h, x:x + w, None])
        return out

    def _start(self, clip: _Clip) -> None:
        from segkit.io.video_writer import AtomicVideoWriter

        clip.writer = AtomicVideoWriter(self.out_dir / f"{clip.stem}.mp4", self.fps)
        for picture in clip.pending:
            clip.writer.write(picture)
        clip.pending = []

    def _retire(self, done) -> None:
        for tid in [t for t, c in self.clips.items() if done(c)]:
            clip = self.clips.pop(tid)
            if clip.writer is None:
                self.skipped += 1
                continue
            final = clip.writer.close()
            if final is not None:
                self.written.append(final)
            elif clip.writer.error is not None and self.error is None:
                self.error = clip.writer.error

    def finish(self) -> list[Path]:
        """Finalise every clip still open (short ones are skipped); the clips written."""
        self._retire(lambda c: True)
        self.written.sort()
        return self.written


def _fps_of(run) -> float:
    fps = getattr(getattr(run, "source", None), "fps", None)
    return float(fps) if fps and fps > 0 else FOLDER_FPS


class PerTrackClips(Sink):
    """``--per-track DIR`` (see the module docstring). ``items`` (a folder run's inputs, in frame
    order) with ``state_dir`` (its output folder): masks are kept per frame and the clips cut when
    the run ends; otherwise the clips are cut as the frames come (one writer, in order)."""

    def __init__(self, out_dir: str | os.PathLike, background: str | None = None, fps: float | None = None,
                 items: list[tuple[Path, str]] | None = None, state_dir: str | os.PathLike | None = None,
                 min_frames: int | None = None, max_pixels: int | None = None):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UsageError(f"--per-track {self.out_dir}: is a file; give a folder for the clips")
        self.background = clip_background(background)
        self.fps, self.items, self.min_frames, self.max_pixels = fps, items, min_frames, max_pixels
        self.cache = Path(state_dir) / STATE_DIR / "tracks" if state_dir is not None else None
        self.cutter: ClipCutter | None = None
        self.written: list[Path] = []

    def _cached(self, name: str) -> Path:
        return self.cache / f"{name}.txt"

    def expected(self, frame: Frame) -> list[Path]:
        return [self._cached(frame.name)] if self.cache is not None else []

    def open(self, run) -> None:
        fps = self.fps or _fps_of(run)
        self.cutter = ClipCutter(self.out_dir, self.background, fps, self.min_frames)

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        if self.cache is not None:
            path = self._cached(frame.name)
            atomic_write_bytes(path, _track_lines(seg).encode())
            return [path]
        self.cutter.add(frame.index, frame.image, seg)
        return []

    def close(self, ok: bool) -> None:
        if self.cutter is None:
            return
        if self.cache is not None and ok:
            self._cut_folder()
        self.written = self.cutter.finish()
        if self.cutter.error is not None:
            raise SegkitError(f"{self.out_dir}: writing a per-track clip failed ({self.cutter.error})")

    def _cut_folder(self) -> None:
        from segkit.io.sources import MAX_PIXELS, read_image

        for index, (path, name) in enumerate(self.items or []):
            cached = self._cached(name)
            if not cached.is_file():
                continue  # a frame that failed
            seg = _read_track_lines(cached.read_text())
            if seg is None:
                continue
            self.cutter.add(index, read_image(path, self.max_pixels or MAX_PIXELS), seg)


def _track_lines(seg: Segmentation) -> str:
    """A frame's tracked masks, one ``track_id class_id height width rle`` line each."""
    from pycocotools import mask as mask_utils

    if seg.track_ids is None:
        raise SegkitError("--per-track needs a tracked run (--track)")
    inst = seg.as_instances()
    lines = [f"# {seg.height} {seg.width}\n"]
    for m, tid, cid in zip(inst.masks, seg.track_ids, inst.class_ids):
        rle = mask_utils.encode(np.asfortranarray(m.view(np.uint8)))
        lines.append(f"{int(tid)} {int(cid)} {rle['counts'].decode('ascii')}\n")
    return "".join(lines)


def _read_track_lines(text: str) -> Segmentation | None:
    from pycocotools import mask as mask_utils

    rows = text.splitlines()
    if not rows or not rows[0].startswith("# "):
        return None
    h, w = (int(v) for v in rows[0][2:].split())
    masks, tids, cids = [], [], []
    for row in rows[1:]:
        tid, cid, counts = row.split(" ", 2)
        masks.append(mask_utils.decode({"size": [h, w], "counts": counts.encode()}).astype(bool))
        tids.append(int(tid))
        cids.append(int(cid))
    n = len(masks)
    return Segmentation(h, w, masks=np.stack(masks) if n else np.zeros((0, h, w), bool),
                        boxes=np.zeros((n, 4), np.float32), class_ids=np.asarray(cids, np.int32),
                        scores=np.ones(n, np.float32), track_ids=np.asarray(tids, np.int64))
