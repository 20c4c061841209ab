"""GardenSegmenter against a real Model Garden Mask R-CNN export with known outputs.

The export (tests/fixtures/garden_model.py) always yields a 'dog' and a 'person' at known
fractions of the model input, whatever the image; what these tests check is everything the
adapter adds: mapping boxes back to the original image through image_info, pasting masks at the
original size, class ids and names, min_score.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

from fixtures import garden_model

pytest.importorskip("official.vision.serving.export_saved_model_lib")

# (height, width): wide, tall and small odd sizes, so the y and x scales all differ.
SIZES = [(333, 517), (517, 333), (61, 45)]
DOG, PERSON = 18, 1


@pytest.fixture(scope="session")
def segmenter(garden_export):
    from segkit.models.garden import GardenSegmenter

    start = time.perf_counter()
    seg = GardenSegmenter(garden_export, name="garden-fixture")
    print(f"\nModel Garden fixture load: {time.perf_counter() - start:.1f}s")
    yield seg
    seg.close()


def image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def box_region(box, height, width):
    """bool [H,W]: pixels whose centre lies in the box (x0, y0, x1, y1)."""
    ys, xs = np.arange(height) + 0.5, np.arange(width) + 0.5
    x0, y0, x1, y1 = box
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("height,width", SIZES)
def test_known_boxes_and_masks_come_out_at_the_original_size(segmenter, height, width):
    result = segmenter.segment_one(image(height, width))

    assert (result.height, result.width) == (height, width)
    assert result.masks.shape == (2, height, width) and result.masks.dtype == bool
    assert result.class_ids.dtype == np.int32
    assert result.class_ids.tolist() == [DOG, PERSON]
    assert result.class_names == ["dog", "person"]
    expected_scores = garden_model.expected_scores()
    np.testing.assert_allclose(result.scores, [expected_scores[DOG], expected_scores[PERSON]],
                               rtol=1e-4)
    for box, mask, cid in zip(result.boxes, result.masks, result.class_ids):
        want = garden_model.expected_box(int(cid), height, width)
        np.testing.assert_allclose(box, want, atol=0.5)
        assert box_iou(box, want) >= 0.95
        # The 28x28 mask is foreground everywhere: pasted, it must fill exactly the box.
        assert iou(mask, box_region(want, height, width)) >= 0.95


def test_box_overhanging_the_image_is_clipped_and_its_mask_stays_inside(segmenter):
    # The model clips boxes to its padded 128x128 input, not to the resized image in it: for
    # a wide image the tall person box (10%..90% of the input) reaches below the picture.
    height, width = 333, 517
    result = segmenter.segment_one(image(height, width))
    raw = segmenter.run_raw(image(height, width)[None])
    person_y1 = raw["detection_boxes"][0, 1, 2] / raw["image_info"][0, 2, 0]
    assert person_y1 > height + 50  # the case really happens in this export
    assert result.boxes[1, 3] == height
    assert result.masks[1, -1].any() and result.masks[1].shape == (height, width)


def test_min_score_drops_detections_before_pasting(segmenter):
    img = image(333, 517)
    scores = garden_model.expected_scores()
    between = (scores[DOG] + scores[PERSON]) / 2
    only_dog = segmenter.segment_one(img, min_score=between)
    assert only_dog.class_ids.tolist() == [DOG]
    assert only_dog.masks.shape == (1, 333, 517)
    nothing = segmenter.segment_one(img, min_score=0.99)
    assert len(nothing) == 0 and nothing.masks.shape == (0, 333, 517)
    assert nothing.boxes.shape == (0, 4)


def test_numbers_match_the_raw_signature_scaled_once(segmenter):
    height, width = 333, 517
    img = image(height, width, seed=3)
    raw = segmenter.run_raw(img[None])
    info = raw["image_info"][0]
    np.testing.assert_allclose(info[0], [height, width])
    assert info[2, 0] != info[2, 1]  # per-axis scales really differ for this size
    result = segmenter.segment_one(img)
    n = int(raw["num_detections"][0])
    assert len(result) == n == 2
    np.testing.assert_array_equal(result.class_ids, raw["detection_classes"][0, :n])
    np.testing.assert_array_equal(result.scores, raw["detection_scores"][0, :n])
    # The dog box lies inside the image, so no clipping: exactly the raw box over the scales.
    ymin, xmin, ymax, xmax = raw["detection_boxes"][0, 0]
    sy, sx = info[2]
    np.testing.assert_allclose(result.boxes[0], [xmin / sx, ymin / sy, xmax / sx, ymax / sy],
                               rtol=1e-5)
    assert not np.allclose(result.boxes[0], [xmin, ymin, xmax, ymax])


def test_batch_of_mixed_sizes_keeps_order(segmenter):
    assert segmenter.max_batch == 1  # exported with batch size 1: input [1, None, None, 3]
    sizes = [(333, 517), (61, 45), (333, 517)]
    results = segmenter.segment([image(h, w, seed=i) for i, (h, w) in enumerate(sizes)])
    assert [(r.height, r.width) for r in results] == sizes
    for r, (h, w) in zip(results, sizes):
        np.testing.assert_allclose(r.boxes[0], garden_model.expected_box(DOG, h, w), atol=0.5)


def test_reuses_an_already_loaded_savedmodel(segmenter, garden_export):
    from segkit.models.garden import GardenSegmenter

    again = GardenSegmenter(garden_export, loaded=segmenter._loaded,
                            label_names={18: "hound", 1: "human"})
    result = again.segment_one(image(61, 45))
    assert result.class_names == ["hound", "human"]
    assert again.family == "garden" and again.name == garden_export.name


def test_rejects_images_that_are_not_rgb_uint8(segmenter):
    with pytest.raises(ValueError, match="uint8"):
        segmenter.segment_one(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        segmenter.segment_one(np.zeros((10, 10), np.uint8))


@pytest.fixture(scope="session")
def od_api_like_savedmodel(tmp_path_factory):
    """A SavedModel with the TF2 OD API input name: the family rule must tell them apart."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8,
                                                    name="input_tensor")])
        def serve(self, input_tensor):
            return {"detection_boxes": tf.zeros([1, 1, 4])}

    path = tmp_path_factory.mktemp("od_api_like")
    module = Module()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_family_rule_tells_garden_exports_apart(garden_export, od_api_like_savedmodel, tmp_path):
    from segkit.models.garden import is_garden_export

    assert is_garden_export(garden_export)
    assert is_garden_export(garden_export / "saved_model")
    assert not is_garden_export(od_api_like_savedmodel)
    assert not is_garden_export(tmp_path)


def test_errors_name_the_file(od_api_like_savedmodel, tmp_path):
    from segkit.models.garden import GardenSegmenter

    with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + ".*saved_model.pb"):
        GardenSegmenter(tmp_path)
    with pytest.raises(ValueError, match=re.escape(str(od_api_like_savedmodel)) + ".*input_tensor"):
        GardenSegmenter(od_api_like_savedmodel)


def dynamic_batch_export(single, path):
    """A SavedModel like an export made with batch size None (``inputs`` [None, None, None, 3]):
    its signature runs the fixture's real signature once per image of the batch, and scales the
    scores by the image's first pixel / 255 so that every image of a batch has its own scores."""
    import tensorflow as tf

    inner = single.signatures["serving_default"]
    out_spec = {k: tf.TensorSpec(v.shape[1:], v.dtype) for k, v in inner.structured_outputs.items()}
    module = tf.Module()
    module.single = single  # tracks the variables the inner signature reads

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="inputs")])
    def serve(inputs):
        def one(im):
            out = {k: v[0] for k, v in inner(inputs=im[None]).items()}
            out["detection_scores"] *= tf.cast(im[0, 0, 0], tf.float32) / 255
            return out
        return tf.map_fn(one, inputs, fn_output_signature=out_spec)

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return tf.saved_model.load(str(path))


def test_dynamic_batch_export_groups_same_sized_images(segmenter, garden_export, monkeypatch,
                                                        tmp_path):
    from segkit.models import garden

    monkeypatch.setattr(garden, "DYNAMIC_BATCH", 2)
    loaded = dynamic_batch_export(segmenter._loaded, tmp_path / "dynamic")
    batched = garden.GardenSegmenter(tmp_path / "dynamic", loaded=loaded)
    assert batched.max_batch == 2
    calls = []
    run_raw = batched.run_raw
    monkeypatch.setattr(batched, "run_raw", lambda b: calls.append(b.shape) or run_raw(b))
    sizes = [(333, 517), (333, 517), (333, 517), (61, 45), (333, 517)]
    images = [image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    for i, im in enumerate(images):
        im[0, 0, 0] = 250 - 20 * i
    results = batched.segment(images)
    assert calls == [(2, 333, 517, 3), (1, 333, 517, 3), (1, 61, 45, 3), (1, 333, 517, 3)]
    for im, got in zip(images, results):
        want = segmenter.segment_one(im)
        assert (got.height, got.width) == (want.height, want.width)
        np.testing.assert_allclose(got.scores, want.scores * im[0, 0, 0] / 255, rtol=1e-5)
        np.testing.assert_allclose(got.boxes, want.boxes, rtol=1e-5)
        np.testing.assert_array_equal(got.masks, want.masks)
        assert got.class_ids.tolist() == [DOG, PERSON]
