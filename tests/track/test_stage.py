"""The tracker as a stage of the one flow (segkit.flow.run(..., tracker=...))."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures.moving_shapes import BrightBlobs, crossing_paths, square_frame, write_frames
from segkit.flow import STREAM, Filter, Policy, run
from segkit.io.frame_folder import FrameFolder
from segkit.io.sinks import Call
from segkit.io.sources import Frame, Frames
from segkit.segmentation import Segmentation
from segkit.track import Tracker
from segkit.track.stage import detection_filter


def collect(results: dict):
    return Call(lambda frame, seg: results.__setitem__(frame.index, seg))


@pytest.mark.parametrize("policy", [STREAM, Policy.files(4)], ids=["one writer", "four writers"])
def test_ids_follow_frame_order_whatever_the_writers(policy):
    frames = [Frame(square_frame(xs), f"{i:03d}", None, i) for i, xs in enumerate(crossing_paths(20))]
    results: dict[int, Segmentation] = {}
    stats = run(Frames(frames), BrightBlobs(max_batch=3), [collect(results)], policy=policy, tracker=Tracker())
    assert stats.done == 20 and stats.track_s > 0
    for i, (a, b) in enumerate(crossing_paths(20)):
        seg = results[i]
        by_id = {int(t): float(box[0]) for t, box in zip(seg.track_ids, seg.boxes)}
        if a + 20 <= b or b + 20 <= a:  # apart (while they overlap they are one blob)
            assert by_id == {1: a, 2: b}, i


def test_an_unreadable_frame_in_a_folder_is_failed_and_the_track_survives(tmp_path):
    paths = write_frames(tmp_path / "frames", 10)
    paths[4].write_bytes(b"not a png")
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")  # ignored: not an image name
    results: dict[int, Segmentation] = {}
    errors = []
    with FrameFolder(tmp_path / "frames") as source:
        stats = run(source, BrightBlobs(), [collect(results)], policy=STREAM, tracker=Tracker(),
                    on_error=errors.append)
    assert (stats.done, stats.failed) == (9, 1)
    assert len(errors) == 1 and "00004.png" in errors[0]
    assert sorted(results) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert all(list(seg.track_ids) == [1] for seg in results.values())


def test_low_scores_reach_the_tracker_but_not_an_untracked_run():
    seg = Segmentation(4, 4, masks=np.ones((3, 4, 4), bool), boxes=np.zeros((3, 4), np.float32),
                       class_ids=np.array([1, 1, 2], np.int32), scores=np.array([0.9, 0.3, 0.05], np.float32))
    f = detection_filter(Filter({1, 2}, 0.5), low_score=0.1)
    assert f.min_score == 0.1
    assert f(seg).scores.tolist() == pytest.approx([0.9, 0.3])
    assert Filter({1, 2}, 0.5)(seg).scores.tolist() == pytest.approx([0.9])
    # a semantic result keeps the run's threshold: it is where its masks are cut
    probs = np.full((4, 4, 1), 0.3, np.float32)
    sem = Segmentation(4, 4, probs=probs, prob_class_ids=(1,))
    assert f(sem).mask_threshold == 0.5


def test_the_tracking_filter_keeps_every_setting_of_the_runs_filter():
    """Filter grows settings (refine_edges...): each one reaches the tracked run unchanged."""
    from dataclasses import fields

    base = Filter({1}, 0.4, 7, 0.01)
    for f in fields(Filter):  # every field set to something other than its default
        if f.type in (bool, "bool"):
            setattr(base, f.name, True)
    made = detection_filter(base, 0.1)
    assert all(getattr(made, f.name) == getattr(base, f.name) for f in fields(Filter))
    assert made.low_score == 0.1 and detection_filter(Filter(), 0.1).__dict__.get("refine_edges", False) is False


def test_a_live_camera_that_drops_frames_keeps_the_track():
    """A 100 fps camera and a model taking 25 ms: most frames are dropped, the indices the
    tracker sees jump, and the square keeps its id across the gaps."""
    import time

    from fixtures.clips import FakeCamera
    from segkit.io.video_source import VideoSource

    class SquareCamera(FakeCamera):
        def read(self):
            ok, img = super().read()
            if ok:
                img[:] = 0
                x = 4 + (self.reads % 60) * 2   # 2 px per camera frame, back to the left every 60
                img[40:60, x:x + 20] = 255
            return ok, img

    class SlowBlobs(BrightBlobs):
        def segment(self, images, min_score=0.0):
            time.sleep(0.025)
            return super().segment(images, min_score)

    results: dict[int, Segmentation] = {}
    cam = SquareCamera(frames=55, fps=100)
    with VideoSource(0, capture=cam) as source:
        stats = run(source, SlowBlobs(), [collect(results)], policy=STREAM, tracker=Tracker())
        dropped = source.dropped
    indices = sorted(results)
    assert dropped > 10 and stats.done == len(indices) >= 5
    assert max(b - a for a, b in zip(indices, indices[1:])) > 1   # gaps the tracker predicted over
    assert all(seg.track_ids.tolist() == [1] for seg in results.values())
