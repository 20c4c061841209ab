"""``--save-mots FILE``: a tracked run in the MOTS text format (MOTSChallenge / KITTI MOTS), what
TrackEval's MOTS readers and the MOTS tools read:

    frame track_id class_id height width rle

one line per object per frame, space-separated:

- ``frame``: the 1-based frame number (MOTSChallenge counts from 1; frame index + 1, so frames a
  live source dropped leave gaps, they are not renumbered);
- ``track_id``: the tracker's id (``Segmentation.track_ids``), the same number as the overlays'
  ``#id``;
- ``class_id``: the MOTS ids where MOTS has the class, **1 = car, 2 = pedestrian** (COCO
  person), and **100 + the COCO category id** for every other class (dog = 118, bicycle = 102),
  so no other class can be read as a MOTS car, pedestrian or ignore region (10);
- ``height width rle``: the mask as a COCO compressed RLE string (pycocotools, column-major).

MOTS forbids overlapping masks: a pixel claimed by two instances goes to the higher score (the
lower one keeps the rest; an instance left with no pixel is not written).

Written atomically. A stream (camera, video, frame folder) goes line by line into a temp file
beside FILE, renamed into place when the run ends (also when it is interrupted: the file then
holds the frames seen). A resumable folder run keeps each frame's lines in
``<out>/.segkit/mots/`` and merges them, in the folder's frame order, when the run ends, so a
killed and resumed run writes the same file as an uninterrupted one.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from segkit.errors import UsageError
from segkit.io.atomic import FILE_MODE, atomic_file, atomic_write_bytes, output_error, temp_prefix
from segkit.io.resume import STATE_DIR
from segkit.io.sinks import Sink
from segkit.io.sources import Frame
from segkit.segmentation import Segmentation

#: COCO category id -> MOTS class id (KITTI MOTS / MOTSChallenge: 1 car, 2 pedestrian)
MOTS_CLASSES = {3: 1, 1: 2}
#: other classes are written as this + their COCO id, clear of MOTS' 1, 2 and 10 (ignore)
OTHER_CLASS_OFFSET = 100


def mots_class_id(class_id: int) -> int:
    """The class id a MOTS line carries for a COCO category id (see the module docstring)."""
    return MOTS_CLASSES.get(int(class_id), OTHER_CLASS_OFFSET + int(class_id))


def without_overlaps(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """bool [N,H,W] copy of ``masks`` in which each pixel belongs to at most one instance: the
    highest-scoring one that covers it (ties: the first)."""
    out = masks.copy()
    if len(out) < 2:
        return out
    claimed = np.zeros(out.shape[1:], bool)
    for i in np.argsort(-scores, kind="stable"):
        out[i] &= ~claimed
        claimed |= out[i]
    return out


def mots_lines(seg: Segmentation, frame_number: int) -> str:
    """The MOTS lines of one tracked result (``frame_number`` 1-based), overlaps resolved."""
    from pycocotools import mask as mask_utils

    if seg.track_ids is None:
        raise ValueError("MOTS lines need a tracked result (Segmentation.track_ids is None)")
    inst = seg.as_instances()
    if not len(inst):
        return ""
    masks = without_overlaps(inst.masks, inst.scores)
    lines = []
    for m, tid, cid in zip(masks, seg.track_ids, inst.class_ids):
        if not m.any():
            continue
        rle = mask_utils.encode(np.asfortranarray(m.view(np.uint8)))
        h, w = rle["size"]
        lines.append(f"{frame_number} {int(tid)} {mots_class_id(cid)} {h} {w} {rle['counts'].decode('ascii')}\n")
    return "".join(lines)


def check_mots_path(path: str | os.PathLike) -> Path:
    """The MOTS file to write; UsageError for a folder or a name that could be an input image."""
    from segkit.io.sources import IMAGE_EXTS

    p = Path(path)
    if p.is_dir():
        raise UsageError(f"--save-mots {p}: is a folder; give a file name such as tracks.txt")
    if p.suffix.lower() in IMAGE_EXTS:
        raise UsageError(f"--save-mots {p}: named like an image, it could overwrite an input; give it a .txt name")
    return p


class MotsFile(Sink):
    """One MOTS text file for a tracked run (see the module docstring).

    ``cache`` (a folder run's output folder) with ``items`` (every input, in frame order): each
    frame's lines are kept under ``<cache>/.segkit/mots/`` and merged at the end, frame number =
    position in ``items`` + 1. Without it: streamed in arrival order, frame number = index + 1.
    ``path`` is the file once written, ``lines`` the objects written."""

    def __init__(self, path: str | os.PathLike, cache: str | os.PathLike | None = None,
                 items: list[tuple[Path, str]] | None = None):
        self.target = check_mots_path(path)
        self.cache = Path(cache) / STATE_DIR / "mots" if cache is not None else None
        self.items = items
        self.path: Path | None = None
        self.lines = 0
        self._frames = 0
        self._tmp: Path | None = None
        self._file = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_file")}

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock(), _file=None)

    def _cached(self, name: str) -> Path:
        return self.cache / f"{name}.txt"

    def expected(self, frame: Frame) -> list[Path]:
        return [self._cached(frame.name)] if self.cache is not None else []

    def open(self, run) -> None:
        if self.cache is not None:
            return
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(self.target.name), suffix=".tmp",
                                       dir=self.target.parent)
        except OSError as e:
            raise output_error(self.target, e) from None
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "w")

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        if self.cache is not None:
            # the frame number is given at merge time: the folder's order, resumed or not
            path = self._cached(frame.name)
            atomic_write_bytes(path, mots_lines(seg, 0).encode())
            return [path]
        text = mots_lines(seg, frame.index + 1)
        with self._lock:
            try:
                self._file.write(text)
            except OSError as e:
                raise output_error(self.target, e) from None
            self._frames += 1
            self.lines += text.count("\n")
        return []

    def close(self, ok: bool) -> None:
        if self.cache is not None:
            if ok:
                self._merge()
            return
        if self._file is None:
            return
        try:
            try:
                self._file.close()
            except OSError as e:
                raise output_error(self.target, e) from None
            finally:
                self._file = None
            if self._frames:  # what was seen, also when the run was cut short
                os.chmod(self._tmp, FILE_MODE)
                os.replace(self._tmp, self.target)
                self.path = self.target
        finally:
            if self._tmp is not None and os.path.lexists(self._tmp):
                self._tmp.unlink(missing_ok=True)

    def _merge(self) -> None:
        count, frames = 0, 0
        with atomic_file(self.target, "w") as out:
            for number, (_, name) in enumerate(self.items or [], start=1):
                cached = self._cached(name)
                if not cached.is_file():
                    continue  # a frame that failed: no lines
                frames += 1
                for line in cached.read_text().splitlines():
                    if line:
                        _, rest = line.split(" ", 1)
                        out.write(f"{number} {rest}\n")
                        count += 1
        self.lines, self._frames, self.path = count, frames, self.target
