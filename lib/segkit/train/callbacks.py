"""The Keras callbacks of a training run: stop on NaN, images per second, the per-epoch
checkpoint and state (``EpochState``), PreciseBN and the weight-EMA swap; and putting the early
stopping / ReduceLROnPlateau counters back on --resume. Keras is imported on first use only."""
from __future__ import annotations

import functools
import math
import time
import types
from pathlib import Path

from segkit.train.state import STATE_FILE, save_atomic, write_json


@functools.lru_cache(maxsize=None)
def callback_types():
    """The Keras callbacks below, defined on first use so importing segkit.train stays light."""
    import keras

    class StopOnNaN(keras.callbacks.TerminateOnNaN):
        """TerminateOnNaN that remembers where, so the CLI can say so and exit non-zero."""

        def __init__(self):
            super().__init__()
            self.where = None
            self._epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)) and self.where is None:
                self.where = (self._epoch, batch)
            super().on_batch_end(batch, logs)

    class Throughput(keras.callbacks.Callback):
        """Training images per second of each epoch (train batches only, not validation)."""

        def __init__(self, n_images: int):
            super().__init__()
            self.n_images = n_images
            self.last = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self._end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = self.n_images / max(self._end - self._start, 1e-9)

    class EpochState(keras.callbacks.Callback):
        """Each epoch: checkpoint (last + best) and state.json, both written atomically."""

        def __init__(self, run_dir: Path, state: dict, monitor: str, nan_guard,
                     clock: Throughput, **counted):
            super().__init__()
            self.run_dir, self.state, self.monitor = Path(run_dir), state, monitor
            self.nan_guard, self.clock, self.counted = nan_guard, clock, counted

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if self.nan_guard.where is not None or not math.isfinite(float(logs.get("loss", 0))):
                return  # never overwrite the last good checkpoint with NaN weights
            ckpt = self.run_dir / "checkpoints"
            ckpt.mkdir(parents=True, exist_ok=True)
            # A new file per epoch, then state.json names it, then the old one goes: a kill at
            # any moment leaves a state and a checkpoint of the same epoch.
            previous, name = self.state.get("checkpoint"), f"epoch{epoch + 1:03d}.keras"
            save_atomic(self.model, ckpt / name)
            value = float(logs.get(self.monitor, float("nan")))
            if self.state.get("best_iou") is None or value > self.state["best_iou"]:
                self.state.update(best_iou=value, best_epoch=epoch + 1)
                save_atomic(self.model, ckpt / "best.keras")
            logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
            logs["images_per_s"] = self.clock.last
            self.state["history"].append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()
                                                                 if v is not None}})
            self.state["epoch"], self.state["checkpoint"] = epoch + 1, name
            if self.model.stop_training:  # early stopping: a resumed run must not go on
                self.state["stopped_early"] = epoch + 1
            self.state["optimizer_iterations"] = int(self.model.optimizer.iterations.numpy())
            self.state["counters"] = {name: {k: _plain(getattr(cb, k)) for k in _COUNTERS[name]}
                                      for name, cb in self.counted.items()}
            write_json(self.run_dir / STATE_FILE, self.state)
            if previous and previous != name:
                (ckpt / previous).unlink(missing_ok=True)

    class PreciseBN(keras.callbacks.Callback):
        """Before each validation, set BatchNorm's moving statistics to the exact average over
        ``batches`` training batches with the current weights (detectron2's PreciseBN).

        Trained from scratch, a deep encoder's weights move faster than the exponential moving
        averages follow: the MobileNetV2 U-Net reached train IoU 0.53 in batch-statistics mode
        while inference mode (moving statistics) predicted no person at all. Validation,
        checkpoints and the export all see the recalibrated statistics.
        """

        def __init__(self, dataset, batches: int = 24):
            super().__init__()
            self.dataset, self.batches = dataset, batches

        def on_test_begin(self, logs=None):
            layers = [layer for layer in self.model._flatten_layers()
                      if isinstance(layer, keras.layers.BatchNormalization)]
            if not layers:
                return
            momenta = [layer.momentum for layer in layers]
            try:
                for k, (images, _) in enumerate(self.dataset.take(self.batches)):
                    for layer in layers:  # moving = cumulative mean of the k+1 batches so far
                        layer.momentum = k / (k + 1)
                    self.model(images, training=True)
            finally:
                for layer, m in zip(layers, momenta):
                    layer.momentum = m

    class SwapEMA(keras.callbacks.SwapEMAWeights):
        """Validate and checkpoint the weight average (``--ema``), train the raw weights.

        With swap_on_epoch the checkpoint written at an epoch's end holds the average as the
        model's weights and the raw weights in the optimizer's average slots, so a resumed run
        must swap back before training, as the uninterrupted run does at each epoch's start.
        """

        def __init__(self, resumed: bool):
            super().__init__(swap_on_epoch=True)
            self._ema_weights_in_model = resumed

    return types.SimpleNamespace(StopOnNaN=StopOnNaN, Throughput=Throughput,
                                 EpochState=EpochState, PreciseBN=PreciseBN, SwapEMA=SwapEMA)


# What EarlyStopping / ReduceLROnPlateau remember between epochs (restored by --resume).
_COUNTERS = {"early": ("wait", "best", "best_epoch"),
             "plateau": ("wait", "best", "cooldown_counter")}


def restore_counters(state: dict, **callbacks) -> None:
    """Put the counters back after ``on_train_begin`` resets them (wrapping it once)."""
    saved = state.get("counters") or {}
    for name, cb in callbacks.items():
        values = saved.get(name)
        if not values:
            continue
        begin = cb.on_train_begin

        def on_train_begin(logs=None, cb=cb, begin=begin, values=values):
            begin(logs)
            for k, v in values.items():
                setattr(cb, k, v)

        cb.on_train_begin = on_train_begin


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None

