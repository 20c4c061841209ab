"""Segmentation networks: U-Net over a keras.applications encoder, a shallow baseline, and
MediaPipe's selfie segmentation network rebuilt in Keras from its pretrained weights (``selfie``).

Every model takes RGB float32 in 0..1 (``normalize: unit`` in the zoo) and does the encoder's own
preprocessing inside the graph, so the Keras, SavedModel and TFLite exports are fed the same way.
Output: one sigmoid channel for a binary mask, or ``num_classes`` softmax channels.
"""
from __future__ import annotations

import keras
from keras import layers

from segkit.models.unet_layers import ReverseChannels  # the layers live where inference loads them
from segkit.train.config import check_encoder_weights

ENCODERS = ("mobilenetv2", "vgg16", "shallow", "selfie")

# Encoder feature maps the decoder concatenates, deepest first (strides 16, 8, 4, 2[, 1]).
_SKIPS = {
    "mobilenetv2": ("block_13_expand_relu", "block_6_expand_relu", "block_3_expand_relu",
                    "block_1_expand_relu"),
    "vgg16": ("block5_conv3", "block4_conv3", "block3_conv3", "block2_conv2", "block1_conv2"),
}
_BOTTLENECK = {"mobilenetv2": "out_relu", "vgg16": "block5_pool"}
# Decoder widths per upsampling stage. MobileNetV2 gets a lighter decoder: with the
# segmentation_models widths (256, ...) the decoder is 3/4 of the params and 2.6x slower per
# training step on CPU, for a model meant to run on CPU.
DECODER_FILTERS = {"mobilenetv2": (128, 64, 48, 32, 16), "vgg16": (256, 128, 64, 32, 16)}


def _conv_bn_relu(x, filters: int, name: str, dilation: int = 1, strides: int = 1):
    x = layers.Conv2D(filters, 3, padding="same", strides=strides, dilation_rate=dilation,
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _head(x, num_classes: int):
    channels = 1 if num_classes <= 2 else num_classes
    activation = "sigmoid" if channels == 1 else "softmax"
    x = layers.Conv2D(channels, 3, padding="same", name="logits")(x)
    # float32 output even under mixed precision: probabilities are compared and exported.
    return layers.Activation(activation, dtype="float32", name="probs")(x)


def _preprocess(inputs, encoder: str):
    """Unit RGB -> what the encoder was trained on (ImageNet weights care; scratch is harmless)."""
    if encoder == "mobilenetv2":
        return layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inputs)
    if encoder == "vgg16":
        # caffe mode: BGR, 0..255, minus the ImageNet channel means.
        x = ReverseChannels(name="rgb_to_bgr")(inputs)
        return layers.Normalization(mean=[103.939 / 255, 116.779 / 255, 123.68 / 255],
                                    variance=[1 / 255.0**2] * 3, name="caffe_mean")(x)
    return inputs


def build_unet(encoder: str = "mobilenetv2", input_size: int = 256, num_classes: int = 2,
               encoder_weights: str | None = None,
               decoder_filters: tuple[int, ...] | None = None) -> keras.Model:
    """U-Net with a keras.applications encoder, or the ``shallow`` baseline.

    ``num_classes`` counts classes in the mask including background: 2 -> one sigmoid channel.
    """
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r} (choose from {', '.join(ENCODERS)})")
    if encoder == "shallow":
        if encoder_weights not in (None, "none", ""):
            raise ValueError("the shallow encoder has no pretrained weights")
        return build_shallow(input_size, num_classes)
    if encoder == "selfie":
        return build_selfie(input_size, num_classes, encoder_weights)
    if input_size % 32:
        raise ValueError(f"--image-size {input_size}: U-Net encoders need a multiple of 32")
    # A file path, never "imagenet": keras.applications would try to download a missing file.
    weights = check_encoder_weights(encoder, input_size, encoder_weights)

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _preprocess(inputs, encoder)
    # input_shape as well as input_tensor: without it MobileNetV2 picks the 224 weights file.
    shape = (input_size, input_size, 3)
    if encoder == "mobilenetv2":
        backbone = keras.applications.MobileNetV2(input_tensor=x, input_shape=shape,
                                                  include_top=False, weights=weights)
    else:
        backbone = keras.applications.VGG16(input_tensor=x, input_shape=shape, include_top=False,
                                            weights=weights)
    # keras.applications' MobileNetV2 uses BN momentum 0.999: its moving statistics need
    # thousands of steps to catch up, so small runs validate far worse than they train.
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.99
    x = backbone.get_layer(_BOTTLENECK[encoder]).output
    skips = [backbone.get_layer(n).output for n in _SKIPS[encoder]]
    for i, filters in enumerate(decoder_filters or DECODER_FILTERS[encoder]):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        if i < len(skips):
            x = layers.Concatenate(name=f"dec{i}_cat")([x, skips[i]])
        x = _conv_bn_relu(x, filters, f"dec{i}_a")
        x = _conv_bn_relu(x, filters, f"dec{i}_b")
    return keras.Model(inputs, _head(x, num_classes), name=f"unet_{encoder}")


def build_shallow(input_size: int = 256, num_classes: int = 2) -> keras.Model:
    """A small plain conv net (stride 4, a dilated context layer, bilinear upsampling).

    The baseline every U-Net must beat; also what the tests train because it is cheap.
    """
    if input_size % 4:
        raise ValueError(f"--image-size {input_size}: the shallow net needs a multiple of 4")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _conv_bn_relu(inputs, 16, "s1", strides=2)
    x = _conv_bn_relu(x, 32, "s2", strides=2)
    x = _conv_bn_relu(x, 32, "s3")
    x = _conv_bn_relu(x, 32, "s4", dilation=2)
    x = _conv_bn_relu(x, 32, "s5", dilation=4)
    x = layers.UpSampling2D(4, interpolation="bilinear", name="up")(x)
    return keras.Model(inputs, _head(x, num_classes), name="shallow")


def build_selfie(input_size: int = 256, num_classes: int = 2,
                 weights: str | None = "mediapipe") -> keras.Model:
    """MediaPipe's selfie segmentation network (MobileNetV3-style encoder, skip-connected
    decoder, 0.1 M parameters) as a Keras model, for fine-tuning.

    ``weights``: ``mediapipe`` (the bundled pretrained model), a .tflite file of the same kind,
    or None / ``none`` (the same architecture, randomly initialised: the ablation that shows what
    the pretraining is worth). Multi-class heads replace the last (transposed) convolution.
    """
    from segkit.train.tflite_import import keras_model_from_tflite

    if input_size % 32:
        raise ValueError(f"--image-size {input_size}: the selfie network needs a multiple of 32")
    pretrained = check_encoder_weights("selfie", input_size, weights or "none")
    graph = pretrained or check_encoder_weights("selfie", input_size, "mediapipe")
    net = keras_model_from_tflite(graph, input_size, name="selfie")
    if pretrained is None:  # same graph, fresh Keras initialisation
        net = keras.models.clone_model(net)
    # The pretrained head is transposed conv "segment" + sigmoid; a softmax head needs its own.
    # MediaPipe's file names its last layer "segment"; a segkit export (the bundled model, used
    # to start a further fine-tuning) carries it inside a longer TFLite tensor name.
    head = next((layer for layer in net.layers if layer.name == "segment"), None) or \
        [layer for layer in net.layers if "segment" in layer.name][-1]
    features = head.input
    if num_classes <= 2:
        logits = head.output
    else:
        logits = layers.Conv2DTranspose(num_classes, 2, strides=2, padding="same",
                                        name="logits")(features)
    activation = "sigmoid" if num_classes <= 2 else "softmax"
    probs = layers.Activation(activation, dtype="float32", name="probs")(logits)
    return keras.Model(net.input, probs, name="unet_selfie")
