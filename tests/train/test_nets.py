"""Networks: output heads for every encoder, fail-fast ImageNet weights, a few steps learn."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import shared_path
from segkit.train import nets
from segkit.train.config import imagenet_weights_file
from segkit.train.losses import make_loss, make_metrics


@pytest.mark.parametrize("encoder", ["shallow", "mobilenetv2", "vgg16"])
def test_heads_sigmoid_for_binary_softmax_for_multiclass(encoder):
    binary = nets.build_unet(encoder, 64, 2)
    assert binary.output_shape == (None, 64, 64, 1)
    assert binary.get_layer("probs").get_config()["activation"] == "sigmoid"
    if encoder == "shallow":  # one multi-class build is enough (the head is shared code)
        multi = nets.build_unet(encoder, 64, 3)
        assert multi.output_shape == (None, 64, 64, 3)
        out = np.asarray(multi(np.zeros((1, 64, 64, 3), np.float32)))
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_selfie_encoder_starts_from_the_bundled_mediapipe_weights():
    from segkit.train.tflite_import import keras_model_from_tflite

    pretrained = nets.build_unet("selfie", 64, 2, "mediapipe")
    assert pretrained.output_shape == (None, 64, 64, 1)
    assert pretrained.get_layer("probs").get_config()["activation"] == "sigmoid"
    reference = keras_model_from_tflite(
        nets.check_encoder_weights("selfie", 64, "mediapipe"), 64)
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(pretrained.predict(x, verbose=0), reference.predict(x, verbose=0),
                               atol=1e-6)
    scratch = nets.build_unet("selfie", 64, 2, None)  # same graph, fresh initialisation
    assert [w.shape for w in scratch.weights] == [w.shape for w in pretrained.weights]
    assert not np.allclose(scratch.get_layer("conv2d").get_weights()[0],
                           pretrained.get_layer("conv2d").get_weights()[0])
    multi = nets.build_unet("selfie", 64, 3, "mediapipe")  # new softmax head on the same features
    np.testing.assert_allclose(np.asarray(multi(x)).sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="selfie encoder has no ImageNet weights"):
        nets.build_unet("selfie", 64, 2, "imagenet")
    with pytest.raises(ValueError, match="only for --encoder selfie"):
        nets.build_unet("mobilenetv2", 64, 2, "mediapipe")


def test_bad_sizes_and_names_are_one_line_errors():
    with pytest.raises(ValueError, match="multiple of 32"):
        nets.build_unet("mobilenetv2", 100)
    with pytest.raises(ValueError, match="unknown encoder 'resnet'"):
        nets.build_unet("resnet", 64)


def test_imagenet_weights_fail_fast_when_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError, match=r"ImageNet weights for mobilenetv2 not found at .*"
                                         r"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_"
                                         r"224_no_top.h5"):
        nets.build_unet("mobilenetv2", 256, encoder_weights="imagenet")


def test_a_few_steps_on_real_images_lower_the_loss():
    from segkit.train.data import FolderSource, make_dataset

    src = FolderSource(shared_path("person"))
    x, y = next(iter(make_dataset([src], [(0, i) for i in range(8)], image_size=64,
                                  batch_size=8, training=False)))
    keras.utils.set_random_seed(0)
    model = nets.build_shallow(64)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=make_loss("jaccard+ce"),
                  metrics=make_metrics(1, ["person"]))
    # Training-mode losses (batch statistics): BN moving averages lag after so few steps.
    losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(15)]
    assert losses[-1] < 0.8 * losses[0]
    assert np.isfinite(losses).all()


def test_imagenet_weights_are_used_when_keras_has_them_cached(tmp_path, monkeypatch):
    """A stand-in weights file where Keras caches downloads is loaded, with no network."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / imagenet_weights_file("mobilenetv2", 96)
    cached.parent.mkdir()
    keras.utils.set_random_seed(7)
    donor = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                           weights=None)
    with h5py.File(cached, "w") as f:  # the format keras.applications' files have
        legacy_h5_format.save_weights_to_hdf5_group(f, donor)
    keras.utils.set_random_seed(8)
    model = nets.build_unet("mobilenetv2", 96, encoder_weights="imagenet")
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0],
                                  donor.get_layer("Conv1").get_weights()[0])


def test_precise_bn_sets_moving_statistics_to_the_mean_over_training_batches():
    import keras
    import tensorflow as tf

    from segkit.train.callbacks import callback_types

    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.999)(inputs))
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=3.0 + k, scale=2.0, size=(8, 4, 4, 2)).astype("float32") for k in range(4)]
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros((32, 4, 4, 1)))).batch(8)
    bn = model.layers[-1]
    assert np.allclose(bn.moving_mean.numpy(), 0)  # stale: what momentum 0.999 would still show
    cb = callback_types().PreciseBN(ds, batches=4)
    cb.set_model(model)
    cb.on_test_begin()
    want = np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), want, rtol=1e-5)
    assert bn.momentum == 0.999  # restored


def test_swap_ema_checkpoints_the_average_and_a_resume_trains_the_raw_weights(tmp_path):
    """--ema: what a checkpoint holds as model weights is the average; reloaded with
    resumed=True the callback swaps the raw weights back in before the next epoch trains."""
    import keras

    from segkit.train.callbacks import callback_types

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.9), loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
    saved = {}

    class SaveFirstEpoch(keras.callbacks.Callback):  # what EpochState does, after the swap
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.save(tmp_path / "ckpt.keras")
                saved["average"] = [w.numpy() for w in self.model.trainable_weights]
                saved["raw"] = [v.numpy() for v in
                                self.model.optimizer._model_variables_moving_average]

    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[callback_types().SwapEMA(resumed=False), SaveFirstEpoch()])
    assert not np.allclose(saved["average"][0], saved["raw"][0])
    loaded = keras.saving.load_model(tmp_path / "ckpt.keras")
    np.testing.assert_allclose(loaded.trainable_weights[0].numpy(), saved["average"][0])
    resumed = callback_types().SwapEMA(resumed=True)
    resumed.set_model(loaded)
    resumed.on_epoch_begin(1)
    np.testing.assert_allclose(loaded.trainable_weights[0].numpy(), saved["raw"][0], rtol=1e-6)
    np.testing.assert_allclose(loaded.optimizer._model_variables_moving_average[0].numpy(),
                               saved["average"][0], rtol=1e-6)
