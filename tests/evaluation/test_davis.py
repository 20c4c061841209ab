"""DAVIS J and F on small hand-checked masks, and the per-sequence oracle / track protocol."""
from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest

from segkit.evaluation.davis import (SequenceScorer, bound_pixels, boundary_f, disk, jaccard,
                                     seg2bmap)


def box(x0, y0, x1, y1, h=480, w=854):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_jaccard_by_hand():
    a = box(0, 0, 10, 10, 20, 20)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, box(10, 10, 20, 20, 20, 20)) == 0.0
    assert jaccard(a, box(5, 0, 15, 10, 20, 20)) == pytest.approx(50 / 150)
    empty = np.zeros((20, 20), bool)
    assert jaccard(empty, empty) == 1.0 and jaccard(empty, a) == 0.0


def test_boundary_map_of_a_square_by_hand():
    m = np.zeros((6, 6), bool)
    m[1:4, 1:4] = True
    b = seg2bmap(m)
    # a pixel is on the boundary when it differs from its east, south or south-east neighbour:
    # the row and column just before the square, and the square's own last row and column
    expected = np.zeros((6, 6), bool)
    expected[0, 0:4] = expected[0:4, 0] = True
    expected[3, 1:4] = expected[1:4, 3] = True
    assert (b == expected).all()


def test_tolerance_is_0_008_of_the_diagonal():
    assert bound_pixels((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert disk(2).tolist() == [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]]


def test_f_identical_within_and_beyond_the_tolerance():
    gt = box(300, 100, 500, 400)
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(box(305, 100, 505, 400), gt) == 1.0       # 5 px: within the 8 px tolerance
    # 30 px: by hand, of each 1000-pixel boundary the horizontal edges match where they overlap
    # within 8 px (2 x 180 px), the vertical edges (2 x 300 px) miss but for the ends that lie
    # within 8 px of the other box's horizontal edges (~2 x 7 px): precision = recall ~ 374 / 1000
    assert boundary_f(box(330, 100, 530, 400), gt) == pytest.approx(0.374, abs=0.005)
    assert boundary_f(np.zeros_like(gt), gt) == 0.0
    assert boundary_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_f_is_the_davis_toolkit_f(monkeypatch):
    """Against TrackEval's port of the DAVIS toolkit's f_measure (its J&F metric), on random
    blobs; skimage.morphology.disk, which it imports, is stood in for by ours."""
    JAndF = pytest.importorskip("trackeval.metrics.j_and_f", reason="trackeval not installed").JAndF
    from pycocotools import mask as mask_utils

    fake = types.ModuleType("skimage.morphology")
    fake.disk = disk
    monkeypatch.setitem(sys.modules, "skimage", types.ModuleType("skimage"))
    monkeypatch.setitem(sys.modules, "skimage.morphology", fake)
    rng = np.random.default_rng(0)
    for _ in range(4):
        a = cv2.GaussianBlur(rng.random((120, 200)), (0, 0), 6) > 0.5
        b = cv2.GaussianBlur(rng.random((120, 200)), (0, 0), 6) > 0.5
        assert (seg2bmap(a) == JAndF._seg2bmap(a)).all()
        enc = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (a, b)]
        ref = JAndF._compute_f([[enc[1]]], [[enc[0]]], 0, 0, 0.008)[0]
        assert boundary_f(a, b) == pytest.approx(ref)


def test_track_j_picks_one_track_and_an_identity_switch_costs_the_frames_after_it():
    gt = box(100, 100, 300, 300)
    half = box(100, 100, 200, 300)
    s = SequenceScorer("seq")
    s.add(np.stack([gt]), np.array([1]), gt)            # track 1 is the object ...
    s.add(np.stack([gt, half]), np.array([2, 1]), gt)   # ... then the object is track 2 (a switch)
    s.add(np.stack([gt]), np.array([2]), gt)
    s.add(np.zeros((0, 480, 854), bool), np.zeros(0, np.int64), gt)  # nothing found
    r = s.score(seconds=2.0)
    assert r.oracle_j == pytest.approx(3 / 4)            # best instance per frame: 1, 1, 1, 0
    assert r.chosen_track == 2 and r.tracks == 2 and r.chosen_frames == 2
    assert r.track_j == pytest.approx(2 / 4)             # track 2 scores 0 where absent
    assert r.oracle_f == pytest.approx(3 / 4) and r.track_f == pytest.approx(2 / 4)
    assert r.fps == 2.0 and r.ratio == pytest.approx(2 / 3)


def test_without_tracks_only_the_oracle_counts():
    gt = box(0, 0, 50, 50)
    s = SequenceScorer("seq")
    s.add(np.stack([gt]), None, gt)
    r = s.score()
    assert r.oracle_j == 1.0 and r.track_j == 0.0 and r.chosen_track is None


# ----------------------------------------------------------------------------- a tracked run on a folder
def fake_davis(root, name="squares", n=8):
    """ROOT/JPEGImages/480p/NAME/*.jpg with two squares crossing, the right-moving one annotated."""
    from fixtures.moving_shapes import crossing_paths, square_frame

    images, annotations = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for i, (xa, xb) in enumerate(crossing_paths(n)):
        cv2.imwrite(str(images / f"{i:05d}.png"), square_frame([xa, xb]))
        cv2.imwrite(str(annotations / f"{i:05d}.png"), square_frame([xa])[..., 0])
    return root



def test_a_tracked_run_on_a_davis_folder(tmp_path):
    """BrightBlobs (a test double that finds bright squares, not a model) through the real
    tracker: the annotated square keeps one track while the other crosses it."""
    from fixtures.moving_shapes import BrightBlobs
    from segkit.evaluation.davis import evaluate_davis
    from segkit.flow import Filter
    from segkit.track import Tracker

    root = fake_davis(tmp_path)
    [s] = evaluate_davis(root, BrightBlobs(), Filter(None, 0.5, 100), Tracker, limit=6)
    assert s.sequence == "squares" and s.frames == 6 and s.failed == []
    assert s.oracle_j > 0.9 and s.track_j == pytest.approx(s.oracle_j) and s.chosen_frames == 6
    assert s.tracks == 2 and s.track_f == pytest.approx(s.oracle_f)


@pytest.mark.parametrize("args, message", [
    (["--sequences", "nope"], "no sequence nope (there are: squares)"),
    (["--annotations", "x.json"], "leave out --annotations"),
])
def test_evaluate_davis_bad_input_is_one_line_before_any_model_loads(args, message, tmp_path, capsys):
    from segkit import cli
    from segkit.commands import evaluate

    root = fake_davis(tmp_path)
    code = cli.run_main(evaluate.main, ["--davis", str(root), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def test_evaluate_davis_missing_annotation_folder(tmp_path, capsys):
    from segkit import cli
    from segkit.commands import evaluate

    (tmp_path / "JPEGImages" / "480p" / "a").mkdir(parents=True)
    code = cli.run_main(evaluate.main, ["--davis", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Annotations/480p: no such folder" in err
