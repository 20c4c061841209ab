"""Training of the project's own segmentation models (``segkit train`` is the thin CLI).

    config.py     TrainConfig and the checks that fail fast, before TensorFlow loads
    trainer.py    train(): data, network, loss, fit, summary, export of the best epoch
    callbacks.py  the Keras callbacks (NaN stop, throughput, per-epoch state, PreciseBN, EMA)
    state.py      the run folder's state.json, --resume checks, atomic checkpoint writes
    curves.py     training_curves.png
    data.py, losses.py, nets.py, export.py, distribute.py, soup.py, tflite_import.py

A run folder (``--run-dir``, default ``runs/NAME``) holds what training needs to continue:
``checkpoints/epochNNN.keras`` (weights + optimizer state of the last epoch),
``checkpoints/best.keras``, ``state.json`` (epochs done, which checkpoint goes with them,
history, callback counters), ``logs/`` (TensorBoard) and
``training_curves.png``. TensorFlow is imported only when training starts.
"""
from segkit.train.config import TrainConfig, check_inputs, coco_paths
from segkit.train.trainer import TrainingDiverged, outcome, train

__all__ = ["TrainConfig", "TrainingDiverged", "check_inputs", "coco_paths", "outcome", "train"]
