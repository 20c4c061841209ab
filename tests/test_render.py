import numpy as np
import pytest
from PIL import Image

from segkit.errors import UsageError
from segkit.render import cutout, foreground_alpha, instance_colors, overlay, parse_background
from segkit.segmentation import Segmentation


def _seg(h=60, w=80):
    masks = np.zeros((2, h, w), bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 35:55, 40:70] = True
    return Segmentation(h, w, masks=masks, boxes=np.array([[10, 10, 30, 30], [40, 35, 70, 55]], np.float32),
                        class_ids=np.array([1, 18]), scores=np.array([0.9, 0.7], np.float32))


def test_colors_are_distinct():
    c = instance_colors(20).astype(int)
    d = np.abs(c[:, None] - c[None]).sum(-1) + np.eye(20, dtype=int) * 999
    assert d.min() > 30


def test_overlay_tints_instances_and_leaves_far_background_alone():
    img = np.full((60, 80, 3), 128, np.uint8)
    out = overlay(img, _seg(), boxes=False, labels=False)
    assert (out[20, 20] != 128).any() and (out[45, 55] != 128).any()
    assert (out[20, 20] != out[45, 55]).any()  # one colour per instance
    assert (out[5, 75] == 128).all()
    assert (img == 128).all()  # input untouched


def test_semantic_overlay_is_a_tint():
    probs = np.zeros((60, 80, 1), np.float32)
    probs[:, :40] = 0.9
    out = overlay(np.zeros((60, 80, 3), np.uint8), Segmentation(60, 80, probs=probs, prob_class_ids=(1,)))
    assert out[30, 10].any() and not out[30, 70].any()


@pytest.mark.parametrize("spec,pixel", [("white", [255, 255, 255]), ("#00ff00", [0, 255, 0]),
                                        ("10,20,30", [10, 20, 30]), ("black", [0, 0, 0])])
def test_cutout_colors(spec, pixel):
    img = np.full((60, 80, 3), 77, np.uint8)
    out = cutout(img, _seg().foreground(), parse_background(spec))
    assert out[0, 0].tolist() == pixel and out[20, 20].tolist() == [77, 77, 77]


def test_cutout_transparent_blur_and_image(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    fg = _seg().foreground()
    rgba = cutout(img, fg, parse_background("transparent"))
    assert rgba.shape == (60, 80, 4) and rgba[0, 0, 3] == 0 and rgba[20, 20, 3] == 255
    blurred = cutout(img, fg, parse_background("blur:5"))
    assert blurred[0:5, 0:5].std() < img[0:5, 0:5].std() and (blurred[20, 20] == img[20, 20]).all()
    Image.new("RGB", (16, 9), (1, 2, 3)).save(tmp_path / "bg.png")
    out = cutout(img, fg, parse_background(str(tmp_path / "bg.png")))
    assert out[0, 0].tolist() == [1, 2, 3]


def test_semantic_alpha_ramps_around_the_threshold():
    from segkit.edges import RAMP
    probs = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10, 1)
    seg = Segmentation(10, 10, probs=probs, prob_class_ids=(1,))
    a = foreground_alpha(seg)
    p = probs[..., 0]
    assert ((a >= 0.5) == seg.foreground()).all()  # the mask is the alpha at 0.5
    assert (a[p <= 0.5 - RAMP / 2] == 0).all() and (a[p >= 0.5 + RAMP / 2] == 1).all()
    a8 = cutout(np.zeros((10, 10, 3), np.uint8), a, parse_background("transparent"))[..., 3]
    # graded on both sides of the threshold (it used to jump from 0 straight to 128)
    assert ((a8 > 0) & (a8 < 128)).sum() >= 5 and ((a8 > 128) & (a8 < 255)).sum() >= 5
    assert (np.diff(a.reshape(-1)) >= 0).all()


def test_instance_alpha_comes_from_the_soft_masks():
    seg = _seg()
    soft = np.zeros(seg.masks.shape, np.uint8)
    soft[0, 10:30, 10:30] = 255
    soft[0, 10:30, 30] = 128  # a half-probability column beside the mask: on the edge
    soft[0, 10:30, 31] = 100  # p 0.39: faint
    soft[1, 35:55, 40:70] = 200
    seg = Segmentation(seg.height, seg.width, masks=soft >= 128, soft=soft, boxes=seg.boxes,
                       class_ids=seg.class_ids, scores=seg.scores)
    a = foreground_alpha(seg)
    assert a[20, 20] == 1 and a[45, 50] == 1 and a[0, 0] == 0
    assert 0.45 < a[20, 30] < 0.55 and 0 < a[20, 31] < 0.5
    assert ((a >= 0.5) == seg.foreground()).all()
    # filter keeps soft aligned with masks
    kept = seg.filter(classes={18})
    assert (foreground_alpha(kept)[10:30, 10:32] == 0).all() and foreground_alpha(kept)[45, 50] == 1


def test_transparent_cutout_keeps_no_original_pixel_under_alpha_zero():
    rng = np.random.default_rng(1)
    img = rng.integers(1, 256, (60, 80, 3), dtype=np.uint8)  # no zero anywhere in the photo
    probs = np.zeros((60, 80, 1), np.float32)
    probs[15:45, 20:60] = 0.9
    probs[15:45, 19] = 0.45  # a faint edge column: kept, graded
    seg = Segmentation(60, 80, probs=probs, prob_class_ids=(1,))
    rgba = cutout(img, foreground_alpha(seg), parse_background("transparent"))
    hidden = rgba[..., 3] == 0
    assert hidden.sum() > 2000
    assert (rgba[hidden][:, :3] == 0).all()  # the removed background is gone, not just hidden
    shown = rgba[..., 3] > 0
    assert (rgba[shown][:, :3] == img[shown]).all()  # visible colours are the photo's


@pytest.mark.parametrize("bad", ["purpleish", "300,0,0", "no/such/file.png"])
def test_bad_background_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        parse_background(bad)


def test_fast_blur_looks_like_the_full_gaussian():
    import cv2
    from segkit.render import fast_blur
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (640, 480))
    full = cv2.GaussianBlur(image, (0, 0), 15).astype(int)
    fast = fast_blur(image, 15).astype(int)
    assert fast.shape == full.shape and np.abs(fast - full).mean() < 1.5
    assert np.abs(image.astype(int) - full).mean() > 10  # the comparison is not trivially close


def test_instance_overlay_labels_each_instance_with_its_name_and_score():
    from dataclasses import replace
    img = np.full((60, 80, 3), 128, np.uint8)
    seg = _seg()
    plain = overlay(img, seg, labels=False)
    labelled = overlay(img, seg)
    band = (slice(24, 36), slice(40, 80))  # just above the second box, where its label sits
    assert (labelled[band] != plain[band]).any()
    rescored = overlay(img, replace(seg, scores=np.array([0.9, 0.3], np.float32)))
    renamed = overlay(img, replace(seg, class_ids=np.array([1, 22])))
    assert (rescored[band] != labelled[band]).any() and (renamed[band] != labelled[band]).any()


def test_a_tracked_instance_keeps_its_colour_and_label_whatever_its_place():
    """--track: the colour comes from the track id, the label says 'person #3 0.90'."""
    from dataclasses import replace

    from segkit.render import instance_label, track_colors
    img = np.zeros((60, 80, 3), np.uint8)
    seg = replace(_seg(), track_ids=np.array([3, 7], np.int64))
    swapped = replace(seg, masks=seg.masks[::-1], boxes=seg.boxes[::-1], class_ids=seg.class_ids[::-1],
                      scores=seg.scores[::-1], track_ids=seg.track_ids[::-1])
    a, b = overlay(img, seg, labels=False), overlay(img, swapped, labels=False)
    assert (a == b).all()  # same ids, same colours, in whatever order the instances come
    assert tuple(a[20, 20]) != tuple(overlay(img, replace(seg, track_ids=np.array([4, 7])), labels=False)[20, 20])
    assert (track_colors([3, 3, 9])[0] == track_colors([3])[0]).all()
    assert instance_label(seg, 0) == "person #3 0.90" and instance_label(_seg(), 0) == "person 0.90"
