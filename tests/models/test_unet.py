"""The Keras U-Net adapter: original-size probabilities, batching, class ids from metadata."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fixtures.unet_models import export_tiny_unet
from segkit.models.unet import UnetSegmenter


@pytest.fixture(scope="session")
def person_export(tmp_path_factory):
    return export_tiny_unet(tmp_path_factory.mktemp("unet") / "tiny_person")


@pytest.fixture(scope="session")
def trimap_export(tmp_path_factory):
    return export_tiny_unet(tmp_path_factory.mktemp("unet") / "tiny_trimap", num_classes=3,
                            classes=("background", "pet", "border"))


def _images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 70), (33, 33), (90, 41))]


def test_probabilities_at_original_size_and_equal_to_keras_plus_resize(person_export):
    seg = UnetSegmenter(person_export / "model.keras", max_batch=2)
    assert seg.semantic and seg.max_batch == 2 and seg.prob_class_ids == (1,)
    images = _images()
    results = seg.segment(images)
    assert len(results) == 3
    for im, r in zip(images, results):
        assert (r.height, r.width) == im.shape[:2]
        assert r.probs.shape == (*im.shape[:2], 1) and r.probs.dtype == np.float32
        assert 0.0 <= r.probs.min() and r.probs.max() <= 1.0
        assert r.class_names == [] and r.foreground().shape == im.shape[:2]
    # Reference: the raw network on the stretched image, resized back with INTER_LINEAR.
    im = images[0]
    x = cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32)[None] / 255
    ref = cv2.resize(np.asarray(seg.model(x))[0], (70, 50), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(results[0].probs[..., 0], ref, atol=1e-5)


def test_batched_equals_one_by_one(person_export):
    seg = UnetSegmenter(person_export, max_batch=3)
    images = _images()
    batched = seg.segment(images)
    for im, b in zip(images, batched):
        np.testing.assert_allclose(seg.segment_one(im).probs, b.probs, atol=1e-5)


def test_multiclass_drops_background_and_names_own_classes(trimap_export):
    seg = UnetSegmenter(trimap_export / "model.keras")
    assert seg.prob_class_ids == (1, 2)
    r = seg.segment_one(_images()[1])
    assert r.probs.shape == (33, 33, 2)
    assert r.label_names == {0: "background", 1: "pet", 2: "border"}


def test_classes_come_from_metrics_json_and_mismatch_is_one_line(person_export, tmp_path):
    assert json.loads((person_export / "metrics.json").read_text())["classes"] == ["person"]
    assert UnetSegmenter(person_export, classes=["dog"]).prob_class_ids == (18,)
    with pytest.raises(ValueError, match="1 output channels but 2 class names"):
        UnetSegmenter(person_export, classes=["person", "dog"])
    with pytest.raises(ValueError, match="Keras model file not found"):
        UnetSegmenter(tmp_path / "missing.keras")


def test_inference_loads_custom_layers_without_the_training_package(tmp_path):
    """A model.keras with the project's custom layer, compiled with its custom loss (as training
    saves it), loads and runs in a process that never imports segkit.train."""
    import os
    import subprocess
    import sys

    import keras

    from segkit.models.unet_layers import ReverseChannels
    from segkit.train.losses import JaccardLoss

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = ReverseChannels(name="rgb_to_bgr")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
    model.compile(loss=JaccardLoss())
    model.save(tmp_path / "model.keras")
    image = np.random.default_rng(2).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    probe = ("import sys, numpy as np; from segkit.models import load_segmenter; "
             f"seg = load_segmenter(None, {str(tmp_path / 'model.keras')!r}); "
             f"np.save({str(tmp_path / 'probs.npy')!r}, seg.segment_one(np.load({str(tmp_path / 'image.npy')!r})).probs); "
             "print(sorted(m for m in sys.modules if m.startswith('segkit.train')))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
    # the same numbers as the Keras network itself, so the layer really ran (BGR flip included)
    x = cv2.resize(image, (16, 16), interpolation=cv2.INTER_LINEAR).astype(np.float32)[None] / 255
    ref = cv2.resize(np.asarray(model(x))[0], (24, 20), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy")[..., 0], ref, atol=1e-5)
