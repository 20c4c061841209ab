"""Model.track(source): one tracked Segmentation per frame, from every kind of video source."""
from __future__ import annotations

import numpy as np
import pytest

import segkit
from fixtures.clips import make_clip
from fixtures.moving_shapes import BrightBlobs, crossing_paths, square_frame, write_frames
from segkit.api import Model
from segkit.flow import Filter
from segkit.track import Tracker


@pytest.fixture
def blobs():
    return Model(BrightBlobs(), Filter(threshold=0.5))


def test_an_iterable_of_images_is_tracked_frame_by_frame(blobs):
    frames = [square_frame(xs) for xs in crossing_paths(20)]
    out = list(blobs.track(frames))
    assert len(out) == 20
    assert all(seg.track_ids is not None for seg in out)
    first, last = out[0], out[-1]
    assert dict(zip(first.track_ids.tolist(), first.boxes[:, 0].tolist())) == {1: 10, 2: 130}
    assert dict(zip(last.track_ids.tolist(), last.boxes[:, 0].tolist())) == {1: 124, 2: 16}  # crossed, kept


def test_a_frame_folder_and_a_pattern_with_an_unreadable_frame_skipped(blobs, tmp_path):
    paths = write_frames(tmp_path / "f", 8)
    paths[3].write_bytes(b"broken")
    errors = []
    out = list(blobs.track(tmp_path / "f", on_error=errors.append))
    assert len(out) == 7 and all(seg.track_ids.tolist() == [1] for seg in out)
    assert len(errors) == 1 and "00003.png" in errors[0]
    assert len(list(blobs.track(str(tmp_path / "f" / "%05d.png"), on_error=errors.append))) == 7


def test_a_tracker_can_be_given_to_go_on_with_its_state(blobs):
    frames = [square_frame(xs) for xs in crossing_paths(12)]
    whole = [s.track_ids.tolist() for s in blobs.track(frames)]
    t = Tracker()
    head = [s.track_ids.tolist() for s in blobs.track(frames[:6], tracker=t)]
    saved = t.state_dict()
    tail = [s.track_ids.tolist() for s in blobs.track(frames[6:], tracker=Tracker.from_state(saved))]
    assert head + tail == whole
    with pytest.raises(TypeError, match="either"):
        next(blobs.track(frames, tracker=t, max_age=3))


def test_a_video_file_with_the_default_person_model(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 5)
    with segkit.load_model() as model:
        out = list(model.track(clip))
    assert len(out) == 5 and all(s.track_ids is not None and not s.is_semantic for s in out)
    assert any(len(s) for s in out)


def test_one_image_is_not_a_video(blobs):
    with pytest.raises(TypeError, match="iterable of images"):
        next(blobs.track(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(TypeError):
        next(blobs.track(3.5))
