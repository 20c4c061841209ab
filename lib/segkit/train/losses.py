"""Segmentation losses and metrics as small composable Keras objects.

Targets are always *sparse* masks ``[B,H,W,1]`` holding the class index of each pixel (0/1 for a
binary mask). Predictions are either one sigmoid channel (binary: probability of class 1) or C
softmax channels. Every object here accepts both, so one data pipeline serves both heads.

Losses compose like in qubvel/segmentation_models: ``JaccardLoss() + CrossEntropy()``,
``0.5 * JaccardLoss()``. All are registered under the package ``segkit`` so ``model.keras`` files
and checkpoints reload without passing custom objects.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "segkit"


def dense_targets(y_true, channels: int):
    """Sparse class-index mask [B,H,W,1] -> float targets with ``channels`` channels.

    One channel (sigmoid head) keeps the 0/1 mask itself; C channels become one-hot.
    """
    y_true = ops.cast(y_true[..., :1], "float32")  # a second channel holds pixel weights
    if channels == 1:
        return y_true
    return ops.one_hot(ops.cast(y_true[..., 0], "int32"), channels, dtype="float32")


def pixel_weights(y_true):
    """[B,H,W] loss weight of each pixel: the mask's second channel (data.WEIGHT_SCALE = 1.0) if
    it has one, else None."""
    if y_true.shape[-1] is None or y_true.shape[-1] < 2:
        return None
    return ops.cast(y_true[..., 1], "float32") / 16.0


def predicted_classes(y_pred, threshold: float = 0.5):
    """Class index per pixel [B,H,W]: threshold for a sigmoid head, argmax for softmax."""
    if y_pred.shape[-1] == 1:
        return ops.cast(y_pred[..., 0] >= threshold, "int32")
    return ops.cast(ops.argmax(y_pred, axis=-1), "int32")


def _per_replica(value):
    """Shape (1,), not a scalar: Keras 3 divides a loss by the number of replicas only when it is
    not a scalar, so a scalar would make loss and gradient N times too large under
    tf.distribute with N replicas (shape (1,) averages to the same value on one replica)."""
    return ops.reshape(value, (1,))


class _Composable:
    """`a + b` and `w * a` for losses."""

    def __add__(self, other):
        return SumLoss([self, other])

    def __mul__(self, weight):
        return SumLoss([self], [float(weight)])

    __rmul__ = __mul__


@keras.saving.register_keras_serializable(package=PACKAGE)
class JaccardLoss(_Composable, keras.losses.Loss):
    """1 - soft IoU, computed over the whole batch per channel, averaged over channels.

    Batch-wise (not per image) so images without any foreground do not dominate the gradient;
    ``smooth`` keeps the empty-vs-empty case at loss 0 and the gradient finite.
    """

    def __init__(self, smooth: float = 1.0, name: str = "jaccard_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y = dense_targets(y_true, y_pred.shape[-1])
        axes = (0, 1, 2)
        intersection = ops.sum(y * y_pred, axis=axes)
        union = ops.sum(y, axis=axes) + ops.sum(y_pred, axis=axes) - intersection
        iou = (intersection + self.smooth) / (union + self.smooth)
        return _per_replica(1.0 - ops.mean(iou))

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CrossEntropy(_Composable, keras.losses.Loss):
    """Pixel cross-entropy on sparse targets: binary for one channel, categorical otherwise."""

    def __init__(self, name: str = "cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        if y_pred.shape[-1] == 1:
            ce = keras.losses.binary_crossentropy(ops.cast(y_true[..., :1], "float32"), y_pred)
        else:
            ce = keras.losses.sparse_categorical_crossentropy(y_true[..., 0], y_pred)
        w = pixel_weights(y_true)
        if w is not None:  # small-instance weighting (data.small_instance_weight)
            return _per_replica(ops.sum(ce * w) / ops.sum(w))
        return _per_replica(ops.mean(ce))


@keras.saving.register_keras_serializable(package=PACKAGE)
class HardNegativeCE(_Composable, keras.losses.Loss):
    """Online hard-negative mining: the mean cross-entropy of the ``fraction`` of background pixels
    of the batch that the model gets most wrong (sigmoid heads).

    Person-free photos are mostly easy background; their few person-like regions (statues,
    posters, animals) are what the plain mean hides. This term puts the gradient there.
    """

    def __init__(self, fraction: float = 0.02, name: str = "hard_negative_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.fraction = float(fraction)

    def call(self, y_true, y_pred):
        p = ops.reshape(ops.cast(y_pred[..., 0], "float32"), (-1,))
        bg = ops.reshape(ops.cast(y_true[..., 0], "float32"), (-1,)) < 0.5
        eps = keras.config.epsilon()
        ce = -ops.log(ops.clip(1.0 - p, eps, 1.0))  # background pixels' loss
        ce = ops.where(bg, ce, ops.zeros_like(ce))
        k = ops.maximum(ops.cast(ops.cast(ops.shape(ce)[0], "float32") * self.fraction, "int32"), 1)
        top = ops.top_k(ce, k)[0]
        return _per_replica(ops.mean(top))

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SumLoss(_Composable, keras.losses.Loss):
    """Weighted sum of losses (what ``+`` and ``*`` build)."""

    def __init__(self, losses, weights=None, name: str | None = None, **kwargs):
        losses = [keras.losses.deserialize(l) if isinstance(l, dict) else l for l in losses]
        # Flatten nested sums so `a + b + c` stays one level deep.
        flat, flat_w = [], []
        for loss, w in zip(losses, weights or [1.0] * len(losses)):
            if isinstance(loss, SumLoss):
                flat += loss.losses
                flat_w += [w * v for v in loss.weights]
            else:
                flat.append(loss)
                flat_w.append(float(w))
        name = name or "_plus_".join(l.name for l in flat)
        super().__init__(name=name, **kwargs)
        self.losses, self.weights = flat, flat_w

    def call(self, y_true, y_pred):
        return sum(w * loss.call(y_true, y_pred) for loss, w in zip(self.losses, self.weights))

    def get_config(self):
        return {**super().get_config(), "weights": self.weights,
                "losses": [keras.losses.serialize(l) for l in self.losses]}


LOSSES = {
    "jaccard": lambda: JaccardLoss(),
    "ce": lambda: CrossEntropy(),
    "jaccard+ce": lambda: JaccardLoss() + CrossEntropy(),
}


def make_loss(name: str) -> keras.losses.Loss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r} (choose from {', '.join(LOSSES)})")
    return LOSSES[name]()


@keras.saving.register_keras_serializable(package=PACKAGE)
class IoUScore(keras.metrics.Metric):
    """Intersection over union of hard masks, accumulated over all pixels of the epoch.

    ``class_index=None`` gives the mean over classes (for a sigmoid head: the foreground IoU);
    an index gives that class alone. Classes absent from both prediction and target are left out
    of the mean rather than counted as 0 or 1.
    """

    def __init__(self, num_channels: int = 1, class_index: int | None = None,
                 threshold: float = 0.5, name: str = "iou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_channels, self.class_index, self.threshold = num_channels, class_index, threshold
        # A sigmoid head has one class of interest (foreground = 1).
        self._classes = 1 if num_channels == 1 else num_channels
        self.intersection = self.add_variable((self._classes,), initializer="zeros",
                                              name="intersection")
        self.union = self.add_variable((self._classes,), initializer="zeros", name="union")

    def update_state(self, y_true, y_pred, sample_weight=None):
        pred = predicted_classes(y_pred, self.threshold)
        true = ops.cast(y_true[..., 0], "int32")
        if self.num_channels == 1:
            p = ops.cast(pred == 1, "float32")[..., None]
            t = ops.cast(true == 1, "float32")[..., None]
        else:
            p = ops.one_hot(pred, self._classes, dtype="float32")
            t = ops.one_hot(true, self._classes, dtype="float32")
        inter = ops.sum(p * t, axis=(0, 1, 2))
        self.intersection.assign_add(inter)
        self.union.assign_add(ops.sum(p, axis=(0, 1, 2)) + ops.sum(t, axis=(0, 1, 2)) - inter)

    def result(self):
        if self.class_index is not None:
            return ops.divide_no_nan(self.intersection[self.class_index],
                                     self.union[self.class_index])
        present = ops.cast(self.union > 0, "float32")
        ious = ops.divide_no_nan(self.intersection, self.union)
        return ops.divide_no_nan(ops.sum(ious * present), ops.sum(present))

    def get_config(self):
        return {**super().get_config(), "num_channels": self.num_channels,
                "class_index": self.class_index, "threshold": self.threshold}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SplitIoU(keras.metrics.Metric):
    """The person figures of ``segkit.evaluation.pixels.PersonFigures`` at the network's input size
    (sigmoid heads): ``part="with_class"`` the pooled IoU over only the images holding the class,
    ``part="fp_without_class"`` the share of predicted pixels on images without it."""

    def __init__(self, part: str = "with_class", threshold: float = 0.5, name: str | None = None,
                 **kwargs):
        super().__init__(name=name or f"iou_{part}", **kwargs)
        self.part, self.threshold = part, threshold
        self.num = self.add_variable((), initializer="zeros", name="num")
        self.den = self.add_variable((), initializer="zeros", name="den")

    def update_state(self, y_true, y_pred, sample_weight=None):
        p = ops.cast(predicted_classes(y_pred, self.threshold) == 1, "float32")
        t = ops.cast(ops.cast(y_true[..., 0], "int32") == 1, "float32")
        has = ops.cast(ops.sum(t, axis=(1, 2)) > 0, "float32")  # [B]
        if self.part == "with_class":
            inter = ops.sum(p * t, axis=(1, 2))
            union = ops.sum(p, axis=(1, 2)) + ops.sum(t, axis=(1, 2)) - inter
            self.num.assign_add(ops.sum(inter * has))
            self.den.assign_add(ops.sum(union * has))
        else:
            pixels = ops.cast(ops.shape(p)[1] * ops.shape(p)[2], "float32")
            self.num.assign_add(ops.sum(ops.sum(p, axis=(1, 2)) * (1.0 - has)))
            self.den.assign_add(ops.sum(1.0 - has) * pixels)

    def result(self):
        return ops.divide_no_nan(self.num, self.den)

    def get_config(self):
        return {**super().get_config(), "part": self.part, "threshold": self.threshold}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelAccuracy(keras.metrics.MeanMetricWrapper):
    """Fraction of pixels whose predicted class equals the target class."""

    def __init__(self, threshold: float = 0.5, name: str = "pixel_accuracy", **kwargs):
        self.threshold = threshold
        super().__init__(fn=self._accuracy, name=name, **kwargs)

    def _accuracy(self, y_true, y_pred):
        pred = predicted_classes(y_pred, self.threshold)
        return ops.cast(pred == ops.cast(y_true[..., 0], "int32"), "float32")

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


def make_metrics(num_channels: int, class_names: list[str]) -> list[keras.metrics.Metric]:
    """IoU (mean), pixel accuracy and, for multi-class heads, one IoU per class."""
    metrics = [IoUScore(num_channels, name="iou"), PixelAccuracy()]
    if num_channels == 1:  # figures (2) and (3) beside the pooled IoU over all images (1)
        metrics += [SplitIoU("with_class", name="iou_with_class"),
                    SplitIoU("fp_without_class", name="fp_without_class")]
    if num_channels > 1:
        metrics += [IoUScore(num_channels, class_index=i, name=f"iou_{_slug(n)}")
                    for i, n in enumerate(class_names)]
    return metrics


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())
