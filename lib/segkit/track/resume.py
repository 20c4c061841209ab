"""Tracking in a resumable folder run: a killed ``segment_folder --track`` run, run again, gives
the ids an uninterrupted run gives.

Each frame's detections (what the tracker reads: boxes, scores, classes, coarse masks; a few
kilobytes) are saved atomically under ``<out>/.segkit/tracker/<name>.npz`` on the model thread,
before any of the frame's outputs is written, and that file is one of the frame's expected
outputs. So a frame is complete only with its detections saved, and a rerun replays the saved
detections of the complete frames through the tracker, in frame order between the frames it
segments again: the tracker goes through exactly the states of the uninterrupted run (the
model is deterministic) without running the model on a frame that is done.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from segkit.io.atomic import atomic_write_bytes
from segkit.io.resume import STATE_DIR
from segkit.io.sinks import Sink
from segkit.io.sources import Frame
from segkit.segmentation import Segmentation
from segkit.track.instances import take
from segkit.track.tracker import Detections, Tracker


def detections_dir(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / "tracker"


class SavedDetections(Sink):
    """The detections file as a frame's output: a frame without it is not complete (the run's
    ResumingTracker writes it; this sink only names it)."""

    def __init__(self, out_dir: Path):
        self.root = detections_dir(out_dir)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.npz"

    def expected(self, frame: Frame) -> list[Path]:
        return [self.path(frame.name)]


class ResumingTracker:
    """A Tracker for a folder run (see the module docstring).

    ``frames``: (output name, frame index) of every frame of the folder, in order; ``done``: the
    names an earlier run completed (their detections are replayed, not segmented)."""

    def __init__(self, tracker: Tracker, out_dir: Path, frames: list[tuple[str, int]], done: set[str]):
        self.tracker = tracker
        self.saved = SavedDetections(out_dir)
        self.name_of = dict((i, n) for n, i in frames)
        self._replay = sorted(i for n, i in frames if n in done)
        self.replayed = 0

    @property
    def settings(self):
        return self.tracker.settings

    @property
    def next_id(self) -> int:
        return self.tracker.next_id

    def detection_filter(self, result_filter):
        return self.tracker.detection_filter(result_filter)

    def update(self, seg: Segmentation, frame_index: int) -> Segmentation:
        self.replay_until(frame_index)
        inst, dets = self.tracker.detections_of(seg)
        save_detections(self.saved.path(self.name_of[frame_index]), dets)
        idx, ids = self.tracker.step(dets, frame_index)
        return take(inst, idx, ids)

    def replay_until(self, frame_index: int) -> None:
        """Every completed frame before ``frame_index`` through the tracker, from its file."""
        while self._replay and self._replay[0] < frame_index:
            i = self._replay.pop(0)
            dets = load_detections(self.saved.path(self.name_of[i]))
            if dets is not None:  # unreadable: a gap, predicted over
                self.tracker.step(dets, i)
                self.replayed += 1


def save_detections(path: Path, dets: Detections) -> None:
    buf = io.BytesIO()
    np.savez(buf, **dets.to_arrays())
    atomic_write_bytes(path, buf.getvalue())


def load_detections(path: Path) -> Detections | None:
    try:
        with np.load(path, allow_pickle=False) as a:
            return Detections.from_arrays(a)
    except (OSError, ValueError, KeyError):
        return None
