"""The tracker on synthetic moving shapes, through real Segmentation results."""
from __future__ import annotations

import json

import numpy as np
import pytest

from segkit.segmentation import Segmentation
from segkit.track import Detections, Tracker, TrackSettings
from segkit.track import kalman
from segkit.track.matching import assign, box_iou

H, W = 120, 200


def frame(*objects, h=H, w=W) -> Segmentation:
    """objects: (x0, y0, x1, y1, score[, class_id]) -> an instance result with box-shaped masks."""
    masks = np.zeros((len(objects), h, w), bool)
    boxes, scores, ids = [], [], []
    for i, o in enumerate(objects):
        x0, y0, x1, y1, score = o[:5]
        masks[i, max(int(y0), 0):max(int(y1), 0), max(int(x0), 0):max(int(x1), 0)] = True
        boxes.append([x0, y0, x1, y1])
        scores.append(score)
        ids.append(o[5] if len(o) > 5 else 1)
    return Segmentation(h, w, masks=masks, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                        class_ids=np.array(ids, np.int32), scores=np.array(scores, np.float32))


def ids_by_x(seg: Segmentation) -> dict[int, int]:
    """{rounded box x0: track id}"""
    return {int(round(float(b[0]))): int(t) for b, t in zip(seg.boxes, seg.track_ids)}


def test_first_frame_starts_ids_from_one_in_score_order():
    out = Tracker().update(frame((10, 10, 30, 40, 0.9), (100, 10, 120, 40, 0.8)), 0)
    assert out.track_ids.dtype == np.int64 and list(out.track_ids) == [1, 2]
    assert len(out) == 2 and out.masks.shape == (2, H, W)


def test_a_moving_object_keeps_its_id_and_the_filter_predicts_its_motion():
    tr = Tracker()
    for i in range(15):
        out = tr.update(frame((10 + 6 * i, 40, 40 + 6 * i, 80, 0.9)), i)
        assert list(out.track_ids) == [1]
    (t,) = tr.tracks
    assert t.mean[4] == pytest.approx(6, abs=0.5)  # learnt velocity, pixels per frame


def test_an_object_that_leaves_and_comes_back_within_the_buffer_keeps_its_id():
    tr = Tracker(max_age=10)
    for i in range(5):
        tr.update(frame((50, 40, 80, 80, 0.9), (150, 40, 180, 80, 0.9)), i)
    for i in range(5, 12):  # the first one is hidden for 7 frames
        out = tr.update(frame((150, 40, 180, 80, 0.9)), i)
        assert list(out.track_ids) == [2]
    out = tr.update(frame((50, 40, 80, 80, 0.9), (150, 40, 180, 80, 0.9)), 12)
    assert ids_by_x(out) == {50: 1, 150: 2}


def test_an_object_gone_longer_than_max_age_comes_back_with_a_new_id():
    tr = Tracker(max_age=3)
    tr.update(frame((50, 40, 80, 80, 0.9)), 0)
    tr.update(frame((50, 40, 80, 80, 0.9)), 1)
    for i in range(2, 7):
        assert len(tr.update(frame(), i)) == 0
    tr.update(frame((50, 40, 80, 80, 0.9)), 7)   # new, unconfirmed
    out = tr.update(frame((50, 40, 80, 80, 0.9)), 8)
    assert list(out.track_ids) == [2]


def test_two_objects_that_cross_keep_their_ids():
    tr = Tracker()
    seen = {1: [], 2: []}
    for i in range(30):
        a = 10 + 6 * i            # left to right
        b = 184 - 6 * i           # right to left, same row: the boxes overlap mid-way
        out = tr.update(frame((a, 40, a + 20, 80, 0.9), (b, 45, b + 20, 85, 0.85)), i)
        for box, tid in zip(out.boxes, out.track_ids):
            seen[int(tid)].append(float(box[0]))
    assert set(seen) == {1, 2}
    # track 1 always moved right, track 2 always left: no swap at the crossing
    assert np.all(np.diff(seen[1]) > 0) and np.all(np.diff(seen[2]) < 0)
    assert tr.next_id == 3


def test_dropped_frames_are_predicted_over():
    """A live source skips frame indices: the object moved further meanwhile, the id stays."""
    tr = Tracker()
    for i in range(6):
        tr.update(frame((10 + 8 * i, 40, 40 + 8 * i, 80, 0.9)), i)
    # frames 6..9 dropped: at frame 10 the box is 40 px on, no overlap with where it was at 5
    out = tr.update(frame((90, 40, 120, 80, 0.9)), 10)
    assert list(out.track_ids) == [1]
    assert tr.tracks[0].at == 10


def test_a_low_score_detection_keeps_an_occluded_track_alive():
    tr = Tracker(high_score=0.5)
    for i in range(3):
        tr.update(frame((50, 40, 80, 80, 0.9)), i)
    out = tr.update(frame((51, 40, 81, 80, 0.3)), 3)   # half hidden: the score drops
    assert list(out.track_ids) == [1] and out.scores[0] == pytest.approx(0.3)
    # but a low-score detection never starts a track, even seen twice
    tr.update(frame((51, 40, 81, 80, 0.3), (150, 10, 170, 30, 0.3)), 4)
    out = tr.update(frame((51, 40, 81, 80, 0.3), (150, 10, 170, 30, 0.3)), 5)
    assert list(out.track_ids) == [1] and len(tr.tracks) == 1


def test_a_single_frame_false_positive_gets_no_id():
    tr = Tracker()
    tr.update(frame((50, 40, 80, 80, 0.9)), 0)
    out = tr.update(frame((50, 40, 80, 80, 0.9), (150, 10, 170, 30, 0.9)), 1)  # new: unconfirmed
    assert list(out.track_ids) == [1]
    tr.update(frame((50, 40, 80, 80, 0.9)), 2)      # gone again: dropped
    tr.update(frame((50, 40, 80, 80, 0.9), (150, 60, 170, 90, 0.9)), 3)
    out = tr.update(frame((50, 40, 80, 80, 0.9), (150, 60, 170, 90, 0.9)), 4)
    assert sorted(out.track_ids) == [1, 2]   # ids without gaps


def test_tracks_match_their_own_class_only():
    tr = Tracker()
    tr.update(frame((50, 40, 80, 80, 0.9, 1)), 0)
    tr.update(frame((50, 40, 80, 80, 0.9, 18)), 1)       # a dog where the person was
    out = tr.update(frame((50, 40, 80, 80, 0.9, 18)), 2)
    assert list(out.track_ids) == [2]


def test_frames_must_come_in_order():
    tr = Tracker()
    tr.update(frame((50, 40, 80, 80, 0.9)), 5)
    with pytest.raises(ValueError, match="in order"):
        tr.update(frame(), 5)


def test_semantic_results_are_tracked_as_blobs():
    probs = np.zeros((H, W, 1), np.float32)
    probs[20:60, 10:40, 0] = 0.9
    probs[30:90, 120:160, 0] = 0.8
    probs[0:2, 0:2, 0] = 0.9   # a speck: under min_blob, no track
    seg = Segmentation(H, W, probs=probs, prob_class_ids=(1,))
    out = Tracker().update(seg, 0)
    assert not out.is_semantic and list(out.track_ids) == [1, 2]
    assert out.masks[0].sum() == 60 * 40 and out.boxes[0].tolist() == [120, 30, 160, 90]   # biggest first
    assert out.scores[1] == pytest.approx(0.9)


def test_state_round_trips_through_json_and_goes_on_identically():
    def run(tr, frames):
        return [list(tr.update(f, i).track_ids) for i, f in frames]

    frames = [(i, frame((10 + 5 * i, 40, 40 + 5 * i, 80, 0.9), (150 - 4 * i, 30, 170 - 4 * i, 70, 0.7)))
              for i in range(12) if i != 7]
    whole = run(Tracker(), frames)
    first = Tracker()
    run(first, frames[:6])
    resumed = Tracker.from_state(json.loads(json.dumps(first.state_dict())))
    assert whole[6:] == run(resumed, frames[6:])
    assert resumed.state_dict() == Tracker.from_state(resumed.state_dict()).state_dict()


def test_step_on_saved_detections_equals_update():
    seg = frame((10, 10, 30, 40, 0.9), (100, 10, 120, 40, 0.8))
    dets = Detections.of(seg)
    again = Detections.from_arrays(dets.to_arrays())
    a, b = Tracker(), Tracker()
    a.update(seg, 0)
    b.step(again, 0)
    assert a.state_dict() == b.state_dict()


def test_settings_come_from_the_defaults_and_unknown_keys_are_refused(monkeypatch):
    s = TrackSettings.from_defaults(high_score=0.3)
    assert s.high_score == 0.3 and s.start_score == 0.3 and s.max_age >= 1
    import segkit.config
    monkeypatch.setattr(segkit.config, "DEFAULTS", {"track": {"max_agee": 3}})
    with pytest.raises(ValueError, match="max_agee"):
        TrackSettings.from_defaults()


def test_kalman_round_trip_and_assignment_limits():
    boxes = np.array([[10, 20, 50, 100]], float)
    assert np.allclose(kalman.xyah_to_xyxy(kalman.xyxy_to_xyah(boxes)), boxes)
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [100, 100, 110, 110]]))
    assert iou[0].tolist() == pytest.approx([1 / 3, 0])
    pairs, rows, cols = assign(np.array([[0.1, 0.9], [0.95, 0.99]]), limit=0.8)
    assert pairs == [(0, 0)] and rows == [1] and cols == [1]


def test_a_long_gap_forgets_the_tracks_without_predicting_every_frame_of_it(monkeypatch):
    tr = Tracker(max_age=30)
    tr.update(frame((50, 40, 80, 80, 0.9)), 0)
    calls = []
    real = kalman.predict
    monkeypatch.setattr(kalman, "predict", lambda m, c: calls.append(1) or real(m, c))
    out = tr.update(frame((50, 40, 80, 80, 0.9)), 10_000_000)   # a camera back after a day
    assert calls == []   # the old track was forgotten before any prediction over the gap
    assert len(out) == 0 and len(tr.tracks) == 1 and not tr.tracks[0].id   # a new track, unconfirmed


def test_masks_tell_apart_objects_whose_boxes_coincide():
    """A person in front of another (one box for both, the masks differ: left and right half):
    the detections come in either score order; the mask IoU keeps each id on its own half, box
    IoU alone cannot (every pairing costs the same)."""
    def seg(left_first: bool) -> Segmentation:
        masks = np.zeros((2, H, W), bool)
        masks[0, 40:80, 50:70] = True    # left half of the box
        masks[1, 40:80, 70:90] = True    # right half
        order = [0, 1] if left_first else [1, 0]
        return Segmentation(H, W, masks=masks[order], boxes=np.array([[50, 40, 90, 80]] * 2, np.float32),
                            class_ids=np.ones(2, np.int32), scores=np.array([0.9, 0.8], np.float32))

    def left_ids(tracker) -> list[int]:
        got = []
        for i in range(8):
            out = tracker.update(seg(left_first=i % 3 != 1), i)
            left = [int(t) for m, t in zip(out.masks, out.track_ids) if m[60, 55]]
            got.append(left[0])
        return got

    assert len(set(left_ids(Tracker(mask_weight=0.3)))) == 1
    assert len(set(left_ids(Tracker(mask_weight=0.0)))) > 1


def test_a_tracked_person_model_keeps_its_soft_edges_for_cut_outs():
    from segkit.render import foreground_alpha

    yy, xx = np.mgrid[0:H, 0:W]
    probs = np.clip(1.2 - np.hypot(yy - 60, xx - 60) / 30, 0, 1).astype(np.float32)[..., None]  # a soft disc
    seg = Segmentation(H, W, probs=probs, prob_class_ids=(1,))
    out = Tracker().update(seg, 0)
    assert list(out.track_ids) == [1] and out.soft is not None
    a, b = foreground_alpha(seg), foreground_alpha(out)
    assert ((b > 0) & (b < 1)).any()                   # a ramp, not a 0/1 cut
    assert np.abs(a - b).max() < 0.02                  # the semantic result's own alpha
    assert ((b >= 0.5) == out.masks[0]).all()


def test_high_score_is_the_settings_or_with_null_the_run_threshold():
    from segkit.flow import Filter

    default = Tracker()
    default.detection_filter(Filter({1}, 0.25))
    assert default.settings.high_score == 0.5          # defaults.yaml: the kind default does not lower it
    open_tracker = Tracker(TrackSettings(high_score=None))
    f = open_tracker.detection_filter(Filter({1}, 0.25))
    assert open_tracker.settings.high_score == 0.25 and f.min_score == pytest.approx(0.1)
