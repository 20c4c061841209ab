"""OD API adapters against shape-finder doubles with the real export interfaces (no weights)."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fixtures.od_api_models import (GREEN_CLASS, GREEN_SCORE, RED_CLASS, RED_SCORE,
                                    TF1_MASK_SIZE, TF2_MASK_SIZE)
from segkit.models.od_api import OdApiFrozenGraph, OdApiSavedModel, paste_od_api_masks

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

SIZES = [(333, 517), (517, 333)]  # odd, both orientations (H, W)


@pytest.fixture(scope="session")
def tf2_segmenter(tf2_model_dir):
    with OdApiSavedModel(tf2_model_dir, name="shape_finder_tf2") as seg:
        yield seg


@pytest.fixture(scope="session")
def tf1_segmenter(tf1_graph_file):
    with OdApiFrozenGraph(tf1_graph_file, name="shape_finder_tf1") as seg:
        yield seg


@pytest.fixture(params=["tf2", "tf1"])
def segmenter(request):
    return request.getfixturevalue(f"{request.param}_segmenter")


# ------------------------------------------------------------------ drawing helpers
def draw_ellipse(img, color, center=(0.45, 0.55), axes=(0.35, 0.22), angle=30):
    h, w = img.shape[:2]
    s = min(h, w)
    cv2.ellipse(img, (int(w * center[0]), int(h * center[1])),
                (int(s * axes[0]), int(s * axes[1])), angle, 0, 360, color, -1)


def draw_rotated_rect(img, color, center=(0.5, 0.45), size=(0.6, 0.35), angle=25):
    h, w = img.shape[:2]
    s = min(h, w)
    pts = cv2.boxPoints(((w * center[0], h * center[1]), (s * size[0], s * size[1]), angle))
    cv2.fillPoly(img, [pts.astype(np.int32)], color)


def extent(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("draw", [draw_ellipse, draw_rotated_rect], ids=["ellipse", "rot_rect"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mask_box_and_class_match_drawn_shape(segmenter, size, draw):
    img = np.zeros((*size, 3), np.uint8)
    draw(img, (255, 0, 0))
    drawn = img[..., 0] > 0

    seg = segmenter.segment_one(img)

    assert (seg.height, seg.width) == size
    assert len(seg) == 1
    assert seg.masks.shape == (1, *size) and seg.masks.dtype == bool
    assert iou(seg.masks[0], drawn) >= 0.95
    np.testing.assert_allclose(seg.boxes[0], extent(drawn), atol=1.5)
    assert seg.class_ids.dtype == np.int32 and seg.class_ids.tolist() == [RED_CLASS]
    assert seg.class_names == ["dog"]
    assert seg.scores[0] == pytest.approx(RED_SCORE)


def test_paste_matches_od_api_reframing():
    """Same pixels as OD API utils.ops.reframe_box_masks_to_image_masks (crop_and_resize of the
    box mask over the box expressed in box-relative coordinates, 0 outside) + threshold 0.5."""
    rng = np.random.default_rng(0)
    height, width, n = 333, 517, 12
    box_masks = rng.random((n, TF1_MASK_SIZE, TF1_MASK_SIZE)).astype(np.float32)
    mins = rng.random((n, 2)) * 0.6
    boxes = np.concatenate([mins, mins + 0.05 + rng.random((n, 2)) * 0.35], 1).astype(np.float32)

    lo, hi = boxes[:, :2], boxes[:, 2:]
    unit_in_box = np.concatenate([-lo / (hi - lo), (1 - lo) / (hi - lo)], 1)
    reference = tf.image.crop_and_resize(box_masks[..., None], unit_in_box, tf.range(n),
                                         [height, width], extrapolation_value=0).numpy()[..., 0]
    reference = reference > 0.5

    pasted = paste_od_api_masks(box_masks, boxes, height, width)

    assert reference.sum() > 10000  # the comparison is not over empty masks
    assert (pasted != reference).sum() <= 1e-4 * reference.sum()


def test_min_score_drops_low_score_detections_and_num_detections_is_respected(segmenter):
    img = np.zeros((241, 307, 3), np.uint8)
    draw_ellipse(img, (255, 0, 0), center=(0.3, 0.4), axes=(0.25, 0.18))
    draw_rotated_rect(img, (0, 255, 0), center=(0.75, 0.6), size=(0.3, 0.2))

    everything = segmenter.segment_one(img, min_score=0.0)
    # 2 real detections out of 100 rows: padding rows (score 0) must not come through.
    assert everything.class_ids.tolist() == [RED_CLASS, GREEN_CLASS]
    np.testing.assert_allclose(everything.scores, [RED_SCORE, GREEN_SCORE], rtol=1e-6)
    assert iou(everything.masks[1], img[..., 1] > 0) >= 0.9
    assert everything.class_names == ["dog", "person"]

    confident = segmenter.segment_one(img, min_score=0.5)
    assert confident.class_ids.tolist() == [RED_CLASS]
    assert confident.masks.shape == (1, 241, 307)
    np.testing.assert_array_equal(confident.masks[0], everything.masks[0])


def test_empty_image_gives_no_instances(segmenter):
    seg = segmenter.segment_one(np.zeros((97, 131, 3), np.uint8))
    assert len(seg) == 0
    assert seg.masks.shape == (0, 97, 131)
    assert seg.boxes.shape == (0, 4)


def test_images_of_different_sizes_in_one_call(segmenter):
    small, large = np.zeros((50, 70, 3), np.uint8), np.zeros((211, 157, 3), np.uint8)
    draw_ellipse(small, (255, 0, 0))
    draw_ellipse(large, (255, 0, 0))
    out = segmenter.segment([small, large])
    assert [(s.height, s.width, len(s)) for s in out] == [(50, 70, 1), (211, 157, 1)]
    assert out[1].masks.shape == (1, 211, 157)


def test_adapter_attributes(tf2_segmenter, tf1_segmenter):
    assert (tf2_segmenter.family, tf1_segmenter.family) == ("od_api_tf2", "od_api_tf1")
    for seg in (tf2_segmenter, tf1_segmenter):
        assert seg.semantic is False and seg.max_batch == 1


def test_already_loaded_savedmodel_and_label_names(tf2_model_dir):
    loaded = tf.saved_model.load(str(tf2_model_dir))
    seg = OdApiSavedModel(tf2_model_dir, loaded=loaded, label_names={RED_CLASS: "shape"})
    assert seg._loaded is loaded
    img = np.zeros((64, 64, 3), np.uint8)
    draw_ellipse(img, (255, 0, 0))
    assert seg.segment_one(img).class_names == ["shape"]


@pytest.mark.parametrize("bad", [np.zeros((20, 20), np.uint8), np.zeros((20, 20, 4), np.uint8),
                                 np.zeros((20, 20, 3), np.float32)], ids=["gray", "rgba", "float"])
def test_rejects_non_rgb_uint8_images(segmenter, bad):
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.segment_one(bad)


def test_savedmodel_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}.*no saved_model.pb"):
        OdApiSavedModel(tmp_path)

    class GardenLikeModule(tf.Module):  # Model Garden exports take `inputs`, not input_tensor
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
        def __call__(self, inputs):
            return {"detection_boxes": tf.zeros([1, 100, 4])}

    module = GardenLikeModule()
    out = tmp_path / "garden"
    tf.saved_model.save(module, str(out), signatures=module.__call__.get_concrete_function())
    with pytest.raises(ValueError, match=r"garden.*'inputs'.*not a TF2 Object Detection API"):
        OdApiSavedModel(out)


def test_frozen_graph_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no such frozen graph"):
        OdApiFrozenGraph(tmp_path / "missing.pb")

    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\x00not a graph\xff" * 10)
    with pytest.raises(ValueError, match=f"{garbage}"):
        OdApiFrozenGraph(garbage)

    boxes_only = tmp_path / "ssd.pb"  # a box detector: no detection_masks
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.placeholder(tf.uint8, (None, None, None, 3), name="image_tensor")
        for name in ("num_detections", "detection_boxes", "detection_scores", "detection_classes"):
            tf.constant(0.0, name=name)
    boxes_only.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(ValueError, match="lacks detection_masks"):
        OdApiFrozenGraph(boxes_only)


def test_module_import_does_not_import_tensorflow():
    code = "import sys, segkit.models.od_api; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_mask_sizes_of_the_doubles_mirror_the_real_exports(tf2_model_dir, tf1_graph_file):
    signature = tf.saved_model.load(str(tf2_model_dir)).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["input_tensor"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [1, None, None, 3]
    assert signature.structured_outputs["detection_masks"].shape.as_list() == [
        1, 100, TF2_MASK_SIZE, TF2_MASK_SIZE]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(tf1_graph_file.read_bytes())
    assert {"image_tensor", "detection_masks"} <= {node.name for node in graph_def.node}
