"""Custom Keras layers that a project ``model.keras`` may contain.

They live on the inference side so the unet adapter can load a model without importing the
training package (segkit.train.nets builds networks from them). Registered under the package
``segkit``, the name saved files refer to, so models exported before this move still load.
"""
from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="segkit")
class ReverseChannels(layers.Layer):
    """RGB <-> BGR (a registered layer, not a Lambda, so model.keras loads in safe mode)."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)
