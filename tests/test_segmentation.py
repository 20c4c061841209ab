import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segkit.segmentation import Segmentation, normalized_to_pixels, paste_masks


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("h,w", [(333, 517), (517, 333), (64, 64)])
def test_pasted_full_mask_fills_exactly_its_box(h, w):
    box = np.array([[10.0, 20.0, w * 0.6, h * 0.7]], np.float32)
    got = paste_masks(np.ones((1, 33, 33), np.float32), box, h, w)[0]
    want = np.zeros((h, w), bool)
    # a pixel belongs to the box when its centre (j + 0.5) lies inside it
    want[20:int(np.floor(h * 0.7 + 0.5)), 10:int(np.floor(w * 0.6 + 0.5))] = True
    assert iou(got, want) >= 0.99
    assert not got[:20].any() and not got[:, :10].any()


def test_shape_survives_box_relative_round_trip():
    """A drawn ellipse, cropped to its box at 28x28 (like Mask R-CNN heads) and pasted back."""
    h, w = 333, 517
    truth = np.zeros((h, w), np.uint8)
    cv2.ellipse(truth, (260, 170), (150, 90), 25, 0, 360, 1, -1)
    ys, xs = np.nonzero(truth)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    small = cv2.resize(truth[y0:y1, x0:x1].astype(np.float32), (28, 28), interpolation=cv2.INTER_AREA)
    got = paste_masks(small[None], np.array([[x0, y0, x1, y1]], np.float32), h, w)[0]
    assert iou(got, truth.astype(bool)) >= 0.95


def test_pasted_probabilities_are_graded_and_agree_with_the_masks():
    h, w = 120, 160
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))  # left 0 .. right 1
    masks, soft = paste_masks(ramp[None], np.array([[20, 10, 140, 110]], np.float32), h, w, with_soft=True)
    assert soft.dtype == np.uint8 and soft.shape == masks.shape
    assert np.array_equal(soft >= 128, masks)
    row = soft[0, 60, 20:140].astype(int)
    assert (np.diff(row) >= 0).all() and len(np.unique(row)) > 50  # smooth, not stair-stepped
    assert not soft[0, :10].any() and not soft[0, :, 140:].any()  # nothing outside the box


def test_boxes_outside_the_image_are_clipped_not_crashing():
    got = paste_masks(np.ones((2, 15, 15)), np.array([[-50, -50, 10, 10], [600, 600, 700, 700]]), 100, 100)
    assert got[0, :10, :10].all() and not got[1].any()


def test_normalized_to_pixels():
    px = normalized_to_pixels(np.array([[0.1, 0.2, 0.5, 1.0]]), 200, 100)
    np.testing.assert_allclose(px, [[20, 20, 100, 100]])


def _instances():
    masks = np.zeros((3, 40, 60), bool)
    masks[0, 5:15, 5:25] = True
    masks[1, 20:30, 30:50] = True
    masks[2, 0:5, 0:5] = True
    return Segmentation(40, 60, masks=masks,
                        boxes=np.array([[5, 5, 25, 15], [30, 20, 50, 30], [0, 0, 5, 5]], np.float32),
                        class_ids=np.array([1, 18, 1], np.int32),
                        scores=np.array([0.9, 0.8, 0.3], np.float32))


def test_filter_by_class_threshold_and_count():
    seg = _instances()
    assert list(seg.filter(classes={1}).class_ids) == [1, 1]
    assert list(seg.filter(threshold=0.5).scores) == pytest.approx([0.9, 0.8])
    assert seg.filter(max_instances=1).class_names == ["person"]
    assert seg.filter(classes={18}, threshold=0.85).masks.shape == (0, 40, 60)


def test_coco_results_decode_back_to_the_same_masks():
    seg = _instances()
    res = seg.to_coco_results(image_id=7)
    assert [r["category_id"] for r in res] == [1, 18, 1]
    assert res[1]["bbox"] == [30.0, 20.0, 20.0, 10.0]
    assert isinstance(res[0]["segmentation"]["counts"], str)
    for r, m in zip(res, seg.masks):
        assert (mask_utils.decode(r["segmentation"]).astype(bool) == m).all()


def test_semantic_result_becomes_one_instance_per_present_class():
    probs = np.zeros((40, 60, 1), np.float32)
    probs[10:20, 10:30] = 0.9
    seg = Segmentation(40, 60, probs=probs, prob_class_ids=(1,))
    inst = seg.as_instances()
    assert len(inst) == 1 and inst.class_ids[0] == 1
    assert list(inst.boxes[0]) == [10, 10, 30, 20]
    assert inst.scores[0] == pytest.approx(0.9)
    assert seg.foreground().sum() == 200
    assert seg.filter(threshold=0.95).foreground().sum() == 0
    assert len(seg.filter(classes={18}).as_instances()) == 0


def test_min_area_drops_specks_not_people():
    probs = np.zeros((100, 100, 1), np.float32)
    probs[10:60, 10:40] = 0.9        # a person: 15 % of the image
    probs[80:82, 80:82] = 0.8        # a speck: 0.04 %
    probs[90:95, 5:10] = 0.3         # below the threshold: left as it is
    seg = Segmentation(100, 100, probs=probs, prob_class_ids=(1,))
    kept = seg.filter(threshold=0.5, min_area=0.001)
    assert kept.foreground().sum() == 50 * 30
    assert kept.probs[90, 5, 0] == pytest.approx(0.3) and seg.probs[80, 80, 0] == pytest.approx(0.8)
    assert seg.filter(threshold=0.5).foreground().sum() == 50 * 30 + 4
    # instances: masks smaller than the fraction go
    masks = np.zeros((2, 100, 100), bool)
    masks[0, :50, :50] = True
    masks[1, :2, :2] = True
    inst = Segmentation(100, 100, masks=masks, boxes=np.zeros((2, 4), np.float32),
                        class_ids=np.array([1, 1], np.int32), scores=np.array([0.9, 0.95], np.float32))
    assert len(inst.filter(min_area=0.001)) == 1 and len(inst.filter()) == 2


def test_filter_keeps_track_ids_aligned_with_their_instances():
    masks = np.zeros((3, 4, 4), bool)
    seg = Segmentation(4, 4, masks=masks, boxes=np.zeros((3, 4), np.float32),
                       class_ids=np.array([1, 3, 1], np.int32), scores=np.array([0.2, 0.9, 0.6], np.float32),
                       track_ids=np.array([7, 8, 9]))
    kept = seg.filter(classes={1}, threshold=0.5)
    assert kept.track_ids.tolist() == [9]
    assert seg.filter().track_ids.tolist() == [8, 9, 7]  # best score first, ids follow


def test_a_tracked_result_writes_its_ids_in_save_txt_and_coco():
    """Ultralytics' track mode ends each save_txt line with the id (after the score)."""
    from dataclasses import replace

    masks = np.zeros((2, 40, 50), bool)
    masks[0, 5:20, 5:20] = True
    masks[1, 25:35, 30:45] = True
    seg = Segmentation(40, 50, masks=masks, boxes=np.array([[5, 5, 20, 20], [30, 25, 45, 35]], np.float32),
                       class_ids=np.array([1, 18], np.int32), scores=np.array([0.9, 0.6], np.float32),
                       track_ids=np.array([4, 11], np.int64))
    lines = seg.to_yolo_txt(with_conf=True).splitlines()
    assert [ln.split()[0] for ln in lines] == ["0", "16"]
    assert [ln.split()[-2:] for ln in lines] == [["0.9", "4"], ["0.6", "11"]]
    assert [ln.split()[-1] for ln in seg.to_yolo_txt().splitlines()] == ["4", "11"]
    assert [d["track_id"] for d in seg.to_coco(7)] == [4, 11]
    untracked = replace(seg, track_ids=None)
    assert "track_id" not in untracked.to_coco(7)[0]
    assert len(untracked.to_yolo_txt().splitlines()[0].split()) == len(lines[0].split()) - 2
