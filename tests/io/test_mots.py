"""--save-mots: the MOTS text file of a tracked run, read back with pycocotools and TrackEval."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segkit.io.mots import MotsFile, mots_class_id, mots_lines, without_overlaps
from segkit.io.sources import Frame
from segkit.segmentation import Segmentation

H, W = 24, 32


def box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def tracked(masks, class_ids, scores, track_ids):
    masks = np.stack(masks) if masks else np.zeros((0, H, W), bool)
    boxes = np.array([[0, 0, 1, 1]] * len(class_ids), np.float32).reshape(-1, 4)
    return Segmentation(H, W, masks=masks, boxes=boxes, class_ids=np.array(class_ids, np.int32),
                        scores=np.array(scores, np.float32), track_ids=np.array(track_ids, np.int64))


def two_people_and_a_dog(t: int) -> Segmentation:
    """Frame t: person #1 walks right, person #7 stands and is overlapped by #1 from t=2, dog #4."""
    return tracked([box_mask(2 + 3 * t, 4, 10 + 3 * t, 20), box_mask(12, 2, 20, 22), box_mask(24, 14, 30, 20)],
                   [1, 1, 18], [0.9, 0.6, 0.8], [1, 7, 4])


def test_class_ids_follow_mots_where_it_has_the_class_and_stay_clear_of_it_elsewhere():
    assert mots_class_id(1) == 2   # COCO person -> MOTS pedestrian
    assert mots_class_id(3) == 1   # COCO car -> MOTS car
    assert mots_class_id(18) == 118
    assert mots_class_id(2) == 102  # bicycle must not read as a pedestrian
    assert mots_class_id(10) == 110  # traffic light must not read as an ignore region


def test_overlaps_go_to_the_higher_score():
    a, b = box_mask(0, 0, 10, 10), box_mask(5, 5, 15, 15)
    out = without_overlaps(np.stack([a, b]), np.array([0.4, 0.9]))
    assert not (out[0] & out[1]).any()
    assert (out[1] == b).all()          # the better one keeps everything
    assert (out[0] == (a & ~b)).all()   # the other one loses only the shared pixels


def test_lines_decode_to_the_masks(tmp_path):
    seg = two_people_and_a_dog(2)
    lines = mots_lines(seg, 3).splitlines()
    assert len(lines) == 3
    resolved = without_overlaps(seg.masks, seg.scores)
    for line, m, tid, cid in zip(lines, resolved, seg.track_ids, seg.class_ids):
        frame, track, cls, h, w, rle = line.split(" ")
        assert (int(frame), int(track), int(cls), int(h), int(w)) == (3, tid, mots_class_id(cid), H, W)
        decoded = mask_utils.decode({"size": [H, W], "counts": rle.encode()})
        assert (decoded.astype(bool) == m).all()
    assert not (resolved[0] & resolved[1]).any() and (seg.masks[0] & seg.masks[1]).any()


def test_an_instance_left_without_pixels_is_not_written():
    m = box_mask(0, 0, 8, 8)
    seg = tracked([m, m], [1, 1], [0.9, 0.5], [3, 5])
    assert [ln.split()[1] for ln in mots_lines(seg, 1).splitlines()] == ["3"]


def test_untracked_results_are_refused():
    with pytest.raises(ValueError, match="tracked"):
        mots_lines(Segmentation(H, W), 1)


def write_stream(path, n=4, skip=()):
    sink = MotsFile(path)
    sink.open(None)
    for t in range(n):
        if t not in skip:
            sink.write(Frame(np.zeros((H, W, 3), np.uint8), f"{t:05d}", index=t), two_people_and_a_dog(t))
    assert not path.exists()  # nothing at the final path before the run closes
    sink.close(True)
    return sink


def test_stream_file_is_atomic_one_based_and_keeps_gaps(tmp_path):
    path = tmp_path / "out" / "tracks.txt"
    sink = write_stream(path, n=4, skip=(2,))
    assert sink.path == path and sorted(p.name for p in path.parent.iterdir()) == ["tracks.txt"]
    frames = [int(ln.split()[0]) for ln in path.read_text().splitlines()]
    assert sorted(set(frames)) == [1, 2, 4]  # the dropped frame 3 (index 2) is a gap
    assert sink.lines == 9


def test_folder_cache_merges_in_folder_order_whatever_order_frames_came(tmp_path):
    out = tmp_path / "out"
    items = [(tmp_path / f"{t:05d}.jpg", f"{t:05d}") for t in range(3)]
    for order in ([2, 0], [1]):  # a first run killed after frames 2 and 0, then the resumed run
        sink = MotsFile(out / "tracks.txt", cache=out, items=items)
        sink.open(None)
        for t in order:
            sink.write(Frame(None, items[t][1], items[t][0], index=t), two_people_and_a_dog(t))
        sink.close(t == 1)
    resumed = (out / "tracks.txt").read_text()
    straight = tmp_path / "straight.txt"
    write_stream(straight, n=3)
    assert resumed == straight.read_text()


def test_trackeval_mots_challenge_reader_parses_it(tmp_path):
    """The real TrackEval MOTSChallenge dataset reads the file (1-based frames, no overlaps, RLE)
    and, scored against itself as ground truth, gives a perfect MOTSA and no identity switch."""
    trackeval = pytest.importorskip("trackeval", reason="pip install --no-deps -r requirements-dev-nodeps.txt")
    n = 5
    gt_dir, trk_dir = tmp_path / "gt", tmp_path / "trackers"
    (gt_dir / "seq" / "gt").mkdir(parents=True)
    (gt_dir / "seq" / "seqinfo.ini").write_text(f"[Sequence]\nname=seq\nseqLength={n}\n")
    (trk_dir / "segkit" / "data").mkdir(parents=True)
    write_stream(trk_dir / "segkit" / "data" / "seq.txt", n=n)
    (gt_dir / "seq" / "gt" / "gt.txt").write_text((trk_dir / "segkit" / "data" / "seq.txt").read_text())
    dataset = trackeval.datasets.MOTSChallenge({
        "GT_FOLDER": str(gt_dir), "TRACKERS_FOLDER": str(trk_dir), "SKIP_SPLIT_FOL": True,
        "SEQ_INFO": {"seq": n}, "TRACKERS_TO_EVAL": ["segkit"], "PRINT_CONFIG": False})
    raw = dataset.get_raw_seq_data("segkit", "seq")
    assert [sorted(ids.tolist()) for ids in raw["tracker_ids"]] == [[1, 4, 7]] * n
    assert [sorted(c.tolist()) for c in raw["tracker_classes"]] == [[2, 2, 118]] * n
    data = dataset.get_preprocessed_seq_data(raw, "pedestrian")
    assert data["num_tracker_dets"] == 2 * n  # the dog is not a pedestrian
    clear = trackeval.metrics.CLEAR({"PRINT_CONFIG": False}).eval_sequence(data)
    assert clear["MOTA"] == pytest.approx(1.0) and clear["IDSW"] == 0  # MOTSA, computed on masks
