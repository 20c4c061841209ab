"""segkit.edges: the alpha ramp, its fringe, and the guided filter that snaps edges to the photo."""
import numpy as np

from segkit import edges
from segkit.segmentation import Segmentation


def test_ramp_passes_through_half_at_the_threshold_and_stays_in_0_1():
    p = np.linspace(0, 1, 101, dtype=np.float32)
    for t in (0.5, 0.25, 0.9, 1.0, 0.0):
        a = edges.ramp(p, t)
        assert a.min() >= 0 and a.max() <= 1 and (np.diff(a) >= 0).all()
        assert ((a >= 0.5) == (p >= t)).all()
    a = edges.ramp(p, 0.5)
    assert a[p <= 0.35].max() == 0 and a[p >= 0.66].min() == 1 and ((a > 0) & (a < 1)).sum() >= 25


def test_below_threshold_alpha_is_a_fringe_of_the_mask_never_a_ghost():
    p = np.zeros((100, 100), np.float32)
    p[20:60, 20:60] = 0.9
    p[18:20, 20:60] = 0.45   # just outside the mask: a soft edge
    p[80:95, 80:95] = 0.45   # a doubtful blob far from it
    a = edges.edge_alpha(p, 0.5)
    assert 0 < a[19, 40] < 0.5 and a[85, 85] == 0 and a[40, 40] == 1


H, W, EDGE = 480, 854, 300  # a DAVIS frame's size: the filter's radius is 10 px there


def _photo_and_offset_probability(offset=6):
    """A photo whose object ends at column EDGE (sharp), and a probability whose 0.5 crossing is
    ``offset`` px off, soft like an upsampled network output."""
    import cv2
    h, w = H, W
    rng = np.random.default_rng(0)
    photo = np.empty((h, w, 3), np.uint8)
    photo[:, :EDGE] = (200, 60, 40)
    photo[:, EDGE:] = (30, 90, 160)
    photo = np.clip(photo.astype(int) + rng.integers(-8, 9, photo.shape), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), bool)
    truth[:, :EDGE] = True
    shifted = np.zeros((h, w), np.float32)
    shifted[:, :EDGE + offset] = 1
    return photo, truth, cv2.GaussianBlur(shifted, (0, 0), 3)


def test_refining_moves_a_semantic_edge_onto_the_photos_edge():
    photo, truth, p = _photo_and_offset_probability()
    seg = Segmentation(H, W, probs=p[..., None], prob_class_ids=(1,))
    before = seg.foreground()
    after = edges.refine(photo, seg).foreground()
    row_before, row_after = before.sum(axis=1), after.sum(axis=1)
    assert np.median(row_before) == EDGE + 6  # 6 px off
    # pulled toward the photo's edge: one pass closes a third of the gap or more, a second all of it
    assert EDGE <= np.median(row_after) <= EDGE + 4
    passes = edges.PASSES
    try:
        edges.PASSES = 2
        assert EDGE <= np.median(edges.refine(photo, seg).foreground().sum(axis=1)) <= EDGE + 1
    finally:
        edges.PASSES = passes
    assert (after ^ truth).sum() <= (before ^ truth).sum() * 0.7


def test_refining_instances_keeps_them_apart_and_aligned():
    photo, truth, p = _photo_and_offset_probability()
    soft = np.zeros((2, H, W), np.uint8)
    soft[0, :, :400] = np.round(p[:, :400] * 255)
    soft[1, 300:400, 600:700] = 255  # a second, unrelated instance
    seg = Segmentation(H, W, masks=soft >= 128, soft=soft,
                       boxes=np.array([[0, 0, 310, H], [600, 300, 700, 400]], np.float32),
                       class_ids=np.array([1, 18], np.int32), scores=np.array([0.9, 0.8], np.float32))
    out = edges.refine(photo, seg)
    assert out.masks.shape == seg.masks.shape and np.array_equal(out.masks, out.soft >= 128)
    assert EDGE <= np.median(out.masks[0].sum(axis=1)) <= EDGE + 4  # from 6 px off
    assert not out.masks[0][:, 340:].any()  # nothing far outside its own box
    # a square on a plain part of the photo stays itself (corners rounded by the window)
    assert out.masks[1, 315:385, 615:685].all() and not out.masks[1, :280].any()
    assert abs(int(out.masks[1].sum()) - 100 * 100) < 500
    assert len(edges.refine(photo, seg.filter(classes={99}))) == 0  # nothing kept: nothing to do


def test_tracked_results_keep_their_probabilities_aligned():
    from segkit.render import foreground_alpha
    from segkit.track.instances import instances_of, take
    p = np.zeros((60, 80), np.float32)
    p[10:30, 10:30] = 0.9
    p[10:30, 30] = 0.52     # a soft edge beside the first blob (under the threshold)
    p[40:55, 50:75] = 0.8
    seg = Segmentation(60, 80, probs=p[..., None], prob_class_ids=(1,), mask_threshold=0.6)
    inst = instances_of(seg)
    assert len(inst) == 2 and inst.soft.shape == inst.masks.shape
    assert np.array_equal(inst.soft >= 128, inst.masks)  # the threshold (0.6) is 128 there
    assert 0 < foreground_alpha(inst)[20, 30] < 0.5  # the soft edge survives the split
    one = take(inst, [1], [7])
    assert np.array_equal(one.soft, inst.soft[1:2]) and one.track_ids.tolist() == [7]
