"""TFLite -> Keras import: the rebuilt selfie network computes what LiteRT computes, exported
fine-tuned models import back exactly, and what cannot be expressed is a one-line error."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import REPO
from segkit.train.tflite_import import UnsupportedGraph, keras_model_from_tflite

SELFIE = REPO / "model_zoo" / "selfie_segmentation"


def _litert(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], x)
    it.invoke()
    return it.get_tensor(out["index"])


@pytest.mark.parametrize("name", ["selfie_segmentation", "selfie_segmentation_landscape"])
def test_rebuilt_selfie_model_matches_litert_on_a_real_photo(name):
    """Both MediaPipe graphs (AVERAGE_POOL_2D / MEAN squeeze-excite, custom transposed conv)."""
    path = SELFIE / f"{name}.tflite"
    model = keras_model_from_tflite(path)
    _, h, w, _ = model.input_shape
    image = cv2.imread(str(REPO / "images" / "000000519208.jpg"))[..., ::-1]
    x = (cv2.resize(image, (w, h)).astype(np.float32) / 255)[None]
    want = _litert(path, x)
    got = np.asarray(model.predict(x, verbose=0))
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3  # float16 weights widened the same way; op round-off
    assert 0.05 < (want > 0.5).mean() < 0.95  # a real mask, not an all-background/all-person one
    assert ((got > 0.5) == (want > 0.5)).mean() > 0.999


def test_rebuilt_network_runs_at_other_input_sizes():
    """Global pools and 2x upsamplings instead of the exported fixed sizes: any multiple of 32."""
    model = keras_model_from_tflite(SELFIE / "selfie_segmentation.tflite", input_size=(320, 192))
    out = np.asarray(model.predict(np.full((1, 320, 192, 3), 0.5, np.float32), verbose=0))
    assert out.shape == (1, 320, 192, 1)
    assert np.isfinite(out).all() and (0 <= out).all() and (out <= 1).all()


def _convert(model, tmp_path):
    import tensorflow as tf

    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    path = tmp_path / "m.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert())
    return path


def test_keras_export_round_trips_exactly(tmp_path):
    """What export.py writes for a fine-tuned selfie net (builtin TRANSPOSE_CONV with a computed
    output shape, fused activations, MEAN) comes back as the same function."""
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    gate = layers.Conv2D(8, 1, activation="sigmoid")(layers.GlobalAveragePooling2D(keepdims=True)(y))
    y = layers.Activation("hard_swish")(layers.Add()([x, layers.Multiply()([y, gate])]))
    y = layers.Conv2D(4, 1)(layers.Conv2D(8, 3, strides=2, padding="same")(y))
    y = layers.UpSampling2D(2, interpolation="bilinear")(y)
    out = layers.Activation("sigmoid")(layers.Conv2DTranspose(1, 2, strides=2, padding="same")(y))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
    rebuilt = keras_model_from_tflite(_convert(model, tmp_path))
    x = rng.random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def test_unsupported_operator_is_named(tmp_path):
    import keras
    from keras import layers

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, layers.Softmax()(layers.Conv2D(4, 1)(inp)))
    with pytest.raises(UnsupportedGraph, match=r"m\.tflite: operator SOFTMAX is not supported"):
        keras_model_from_tflite(_convert(model, tmp_path))


def test_not_a_tflite_file(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(UnsupportedGraph, match="x.tflite: not a TFLite flatbuffer"):
        keras_model_from_tflite(bad)
