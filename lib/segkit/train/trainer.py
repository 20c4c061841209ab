"""The training run: ``train(TrainConfig(...))`` builds the data (data.py), the network (nets.py)
and the loss (losses.py), fits with validation, a checkpoint and a resumable state file each
epoch (callbacks.py, state.py), early stopping and ReduceLROnPlateau, then exports the best
epoch (export.py). TensorFlow is imported only when training starts."""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from segkit.train.callbacks import callback_types, restore_counters
from segkit.train.config import TrainConfig, check_inputs
from segkit.train.curves import plot_curves
from segkit.train.state import STATE_FILE, run_signature, start_state, write_json


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: the run stops with this message (exit code 3 in the CLI)."""

    exit_code = 3


def build_sources(cfg: TrainConfig, coco_pairs, folders, validation: bool = False):
    """Training sources, or validation sources: those always keep the images without the
    category, so the validation IoU is figure (1) of ``segkit.evaluation.pixels.PersonFigures`` (pooled
    over all images) and checkpoints are not picked for painting the class everywhere."""
    from segkit.train.data import CocoSource, FolderSource

    # validation masks carry a weight channel too (all 1.0): Keras wants one mask shape
    weights = (1.0 if validation else cfg.small_weight) if cfg.small_weight else None
    sources = [CocoSource(a, i, cfg.category, validation or cfg.include_negatives, weights)
               for a, i in coco_pairs]
    sources += [FolderSource(f, cfg.num_classes, weight_channel=bool(weights)) for f in folders]
    return sources


def train(cfg: TrainConfig) -> dict:
    """Train, validate each epoch, checkpoint, export. Returns the metrics written."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    check_inputs(cfg)
    from segkit.train import distribute

    dist = distribute.make_distribution(cfg.strategy)  # first: before any other TF op runs
    run_dir, output, scratch = distribute.worker_dirs(
        dist, Path(cfg.run_dir or Path("runs") / Path(cfg.output).name), Path(cfg.output))
    try:
        return _train(cfg, dist, run_dir, output)
    finally:
        distribute.remove_scratch(scratch)  # a non-chief worker's private copy


def _train(cfg: TrainConfig, dist, run_dir: Path, output: Path) -> dict:
    class_names = cfg.resolved_class_names()
    train_sources = build_sources(cfg, cfg.coco, cfg.folders)
    val_sources = build_sources(cfg, cfg.val_coco, cfg.val_folders, validation=True)
    val_split = cfg.val_split if cfg.val_split is not None else (0.0 if val_sources else 0.1)

    import keras
    import numpy as np

    from segkit.train import data, distribute, losses, nets

    keras.utils.set_random_seed(cfg.seed)
    train_items, held_out = data.split_items([len(s) for s in train_sources], val_split, cfg.seed)
    if cfg.max_images:
        order = np.random.default_rng(cfg.seed).permutation(len(train_items))[:cfg.max_images]
        train_items = sorted(train_items[k] for k in order)
    sources = train_sources + val_sources
    val_items = held_out + [(len(train_sources) + s, i) for s, i in
                            data.split_items([len(v) for v in val_sources], 0)[0]]
    augment = data.Augment() if cfg.augment else None
    # --batch-size is per replica: tf.distribute splits each global batch between replicas.
    batch_size = dist.global_batch_size(cfg.batch_size)
    train_ds = distribute.shard_by_data(data.make_dataset(
        sources, train_items, image_size=cfg.image_size, batch_size=batch_size, training=True,
        augment=augment, seed=cfg.seed))
    val_ds = (distribute.shard_by_data(data.make_dataset(
        sources, val_items, image_size=cfg.image_size, batch_size=batch_size, training=False))
        if val_items else None)

    ckpt_dir = run_dir / "checkpoints"
    state = start_state(cfg, run_dir, run_signature(cfg, class_names, val_split, sources))
    initial_epoch = state["epoch"]

    with dist.strategy.scope():  # model, optimizer and metric variables live on every replica
        if initial_epoch:
            model = keras.saving.load_model(ckpt_dir / state["checkpoint"])  # + optimizer state
        else:
            model = nets.build_unet(cfg.encoder, cfg.image_size, cfg.num_classes,
                                    cfg.encoder_weights)
            # No XLA: on CPU it compiled MobileNetV2 U-Net for 90 s and then ran 1.6x slower.
            # use_ema: Adam keeps an exponential moving average of the weights beside them.
            optimizer = (keras.optimizers.Adam(cfg.lr, use_ema=True, ema_momentum=cfg.ema)
                         if cfg.ema else keras.optimizers.Adam(cfg.lr))
            loss = losses.make_loss(cfg.loss)
            if cfg.hard_negatives:
                loss = loss + losses.HardNegativeCE(cfg.hard_negatives)
            model.compile(optimizer=optimizer,
                          loss=loss,
                          metrics=losses.make_metrics(cfg.channels, class_names),
                          jit_compile=False)
    distribute.build_from_local_batch(model, dist)

    monitor = "val_iou" if val_ds is not None else "iou"
    cbs = callback_types()
    nan_guard = cbs.StopOnNaN()
    early = keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=cfg.patience)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss" if val_ds is not None else "loss", factor=0.5,
        patience=cfg.lr_patience, min_lr=1e-6, verbose=0)
    restore_counters(state, early=early, plateau=plateau)
    clock = cbs.Throughput(len(train_items))
    saver = cbs.EpochState(run_dir, state, monitor, nan_guard, early=early, plateau=plateau,
                           clock=clock)
    # First, so validation, the counters and the checkpoints all see the averaged weights.
    ema = [cbs.SwapEMA(resumed=initial_epoch > 0)] if cfg.ema else []
    callbacks = [*ema, nan_guard, clock, early, plateau,
                 # one replica only: under a multi-worker strategy the eager calls would
                 # recalibrate each worker on its own shard and diverge the copies
                 *([cbs.PreciseBN(train_ds)] if val_ds is not None and dist.replicas == 1 else []),
                 keras.callbacks.TensorBoard(run_dir / "logs", write_graph=False,
                                             profile_batch=0),
                 saver]  # last: it records the counters the others just updated

    # Keras warns that fit's shuffle flag does not apply to datasets: ours shuffles itself.
    warnings.filterwarnings("ignore", message=".*shuffle=True.*", category=UserWarning)
    started = time.perf_counter()
    if initial_epoch < cfg.epochs and not state.get("stopped_early"):
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=cfg.verbose)
    state["train_seconds"] = state.get("train_seconds", 0.0) + time.perf_counter() - started
    write_json(run_dir / STATE_FILE, state)
    if nan_guard.where is not None:
        epoch, batch = nan_guard.where
        raise TrainingDiverged(
            f"loss became NaN/inf at epoch {epoch + 1}, batch {batch + 1}; training stopped "
            f"(last good checkpoint: {ckpt_dir / str(state.get('checkpoint'))}); "
            "try a lower --lr")
    plot_curves(state["history"], run_dir / "training_curves.png")
    metrics = {**summarize(cfg, state, model, sources, train_items, val_items, monitor),
               **dist.summary(cfg.batch_size)}
    if not dist.chief:  # the chief exports (from best.keras: no collective op left to join)
        return {**metrics, "chief": False}
    if not cfg.export:
        return metrics

    from segkit.train.export import export_model

    best = ckpt_dir / "best.keras"
    final = keras.saving.load_model(best) if best.exists() else model
    check = None
    if val_ds is not None:
        check = next(iter(val_ds.take(1)))[0].numpy()[:4]
    network = ("MediaPipe selfie segmentation network fine-tuned here"
               if cfg.encoder == "selfie" and cfg.encoder_weights else
               f"segkit U-Net ({cfg.encoder}) trained here")
    description = (f"{network}, {'/'.join(class_names)} "
                   f"{cfg.image_size}x{cfg.image_size}, {monitor} {metrics['best_iou']:.3f}")
    return export_model(final, output, classes=class_names, metrics=metrics,
                        description=description, check_images=check, tflite=cfg.tflite,
                        extra_files={"training_curves.png": run_dir / "training_curves.png"})



def summarize(cfg, state, model, sources, train_items, val_items, monitor) -> dict:
    """metrics.json of the run: configuration, data counts, best epoch, speed, versions."""
    history = state["history"]
    last = history[-1] if history else {}
    speeds = [h["images_per_s"] for h in history[1:] if h.get("images_per_s")] or \
        [h["images_per_s"] for h in history if h.get("images_per_s")]
    counts = {}
    for s, _ in train_items:
        counts[sources[s].description] = counts.get(sources[s].description, 0) + 1
    val_counts = {}
    for s, _ in val_items:
        val_counts[sources[s].description] = val_counts.get(sources[s].description, 0) + 1
    return {
        "encoder": cfg.encoder, "encoder_weights": cfg.encoder_weights or "none",
        "image_size": cfg.image_size, "num_classes": cfg.num_classes, "loss": cfg.loss,
        "params": int(model.count_params()),
        "data": {"train": counts, "validation": val_counts, "category": cfg.category,
                 "augment": cfg.augment},
        "epochs": state["epoch"], "stopped_early": bool(state.get("stopped_early")),
        "best_epoch": state.get("best_epoch"),
        "monitor": monitor, "best_iou": state.get("best_iou"),
        "final": {k: v for k, v in last.items() if k != "epoch"},
        "batch_size": cfg.batch_size, "lr": cfg.lr,
        "training_seconds": round(state.get("train_seconds", 0.0), 1),
        "train_images_per_s": round(sum(speeds) / len(speeds), 2) if speeds else None,
        "versions": _versions(),
    }


def outcome(metrics: dict, output: Path) -> str:
    """The line ``segkit train`` ends with: what was trained, its best epoch, and where it went."""
    early = " (early stop)" if metrics.get("stopped_early") else ""
    if metrics.get("chief") is False:
        return (f"trained as a non-chief worker for {metrics['epochs']} epochs{early}; "
                "the chief writes the outputs")
    return (f"trained {metrics['encoder']} {metrics['image_size']}px for {metrics['epochs']} epochs"
            f"{early}: best {metrics['monitor']} {metrics['best_iou']:.3f} (epoch "
            f"{metrics['best_epoch']}), {metrics['train_images_per_s']} images/s -> {output}")


def _versions() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}
