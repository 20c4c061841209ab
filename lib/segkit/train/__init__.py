"""Training of the project's own segmentation models (bin/train_person_unet.py is a thin CLI).

``train(TrainConfig(...))`` builds the data (data.py), the network (nets.py) and the loss
(losses.py), fits with validation, a checkpoint and a resumable state file each epoch, early
stopping and ReduceLROnPlateau, then exports the best epoch (export.py).

A run folder (``--run-dir``, default ``runs/NAME``) holds what training needs to continue:
``checkpoints/epochNNN.keras`` (weights + optimizer state of the last epoch),
``checkpoints/best.keras``, ``state.json`` (epochs done, which checkpoint goes with them,
history, callback counters), ``logs/`` (TensorBoard) and
``training_curves.png``. TensorFlow is imported only when training starts.
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
import types
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "state.json"
# What must match for --resume to continue the same run (the rest may change, e.g. --epochs).
RESUME_KEYS = ("encoder", "image_size", "num_classes", "class_names", "loss", "batch_size",
               "sources", "val_split", "seed", "max_images", "ema", "small_weight",
               "hard_negatives")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: the run stops with this message (exit code 3 in the CLI)."""

    exit_code = 3


@dataclass
class TrainConfig:
    output: Path                                   # export folder, e.g. model_zoo/person_unet
    coco: list = field(default_factory=list)       # [(annotation json, image dir)]
    folders: list = field(default_factory=list)    # [images/+masks/ root]
    val_coco: list = field(default_factory=list)
    val_folders: list = field(default_factory=list)
    val_split: float | None = None                 # None: 0.1 unless a validation source is given
    category: str = "person"
    include_negatives: bool = False
    small_weight: float | None = None              # largest loss weight of small instances' pixels
    hard_negatives: float | None = None            # fraction of background pixels mined (OHEM term)
    num_classes: int = 2                           # including background; 2 = binary (sigmoid)
    class_names: list | None = None
    encoder: str = "mobilenetv2"
    encoder_weights: str | None = None
    image_size: int = 256
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    loss: str = "jaccard+ce"
    augment: bool = True
    patience: int = 8                              # early stopping (epochs without val IoU gain)
    lr_patience: int = 3                           # ReduceLROnPlateau (epochs without val loss gain)
    ema: float | None = None                       # weight EMA momentum (validate/export the average)
    max_images: int | None = None                  # cap on training images (smoke runs)
    run_dir: Path | None = None
    resume: bool = False
    seed: int = 0
    export: bool = True
    tflite: bool = True
    verbose: int = 2
    strategy: str = "default"                      # tf.distribute: default/mirrored/multiworker

    def resolved_class_names(self) -> list[str]:
        if self.class_names:
            if len(self.class_names) != self.channels:
                raise ValueError(f"--class-names has {len(self.class_names)} names but the model "
                                 f"has {self.channels} output channels")
            return list(self.class_names)
        if self.num_classes <= 2:
            return [self.category]
        return ["background"] + [f"class{i}" for i in range(1, self.num_classes)]

    @property
    def channels(self) -> int:
        return 1 if self.num_classes <= 2 else self.num_classes


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of a standard COCO layout."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: COCO root folder not found")
    ann = root / "annotations" / f"instances_{split}.json"
    if not ann.is_file():
        raise ValueError(f"{root}: no annotations/instances_{split}.json inside")
    images = root / split
    if not images.is_dir():
        raise ValueError(f"{root}: no {split}/ image folder inside")
    return ann, images


def imagenet_weights_file(encoder: str, input_size: int) -> str:
    """File name keras.applications looks up in its cache (~/.keras/models/) for no-top weights."""
    if encoder == "mobilenetv2":
        rows = input_size if input_size in (96, 128, 160, 192, 224) else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    if encoder == "vgg16":
        return "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    raise ValueError(f"encoder {encoder!r} has no pretrained weights (use --encoder-weights none)")


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps downloads: $KERAS_HOME or ~/.keras (as Keras decides)."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


#: The zoo model the ``selfie`` encoder starts from (bundled, Apache-2.0).
SELFIE_MODEL = "selfie_segmentation"


def check_encoder_weights(encoder: str, input_size: int, weights: str | None) -> str | None:
    """The weights file to load (None: from scratch). ImageNet weights are taken only from Keras'
    download cache: nothing can be downloaded here, so a missing file fails fast. The ``selfie``
    encoder takes ``mediapipe`` (the bundled selfie model) or a .tflite file instead."""
    if weights in (None, "none", ""):
        return None
    if encoder == "selfie":
        if weights == "imagenet":
            raise ValueError("the selfie encoder has no ImageNet weights (use --encoder-weights "
                             "mediapipe, none, or a selfie-style .tflite file)")
        if weights == "mediapipe":
            from segkit import zoo

            return str(zoo.resolve(zoo.load_registry().get(SELFIE_MODEL), progress=False))
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"--encoder-weights {weights}: {path} not found")
        return str(path)
    if weights == "mediapipe":
        raise ValueError(f"--encoder-weights mediapipe is only for --encoder selfie, not {encoder}")
    if weights != "imagenet":
        if encoder == "shallow":
            imagenet_weights_file(encoder, input_size)  # raises: no pretrained weights
        if not Path(weights).is_file():
            raise ValueError(f"--encoder-weights {weights}: no such file")
        return str(weights)
    path = keras_cache_dir() / "models" / imagenet_weights_file(encoder, input_size)
    if not path.is_file():
        raise ValueError(f"ImageNet weights for {encoder} not found at {path} and cannot be "
                         "downloaded here; copy the file there or train from scratch "
                         "(--encoder-weights none)")
    return str(path)


def check_inputs(cfg: TrainConfig) -> None:
    """Fail on missing files before TensorFlow is imported (a fast, one-line error)."""
    for ann, images in [*cfg.coco, *cfg.val_coco]:
        if not Path(ann).is_file():
            raise ValueError(f"{ann}: COCO annotation file not found")
        if not Path(images).is_dir():
            raise ValueError(f"{images}: COCO image folder not found")
    for root in [*cfg.folders, *cfg.val_folders]:
        if not (Path(root) / "images").is_dir() or not (Path(root) / "masks").is_dir():
            raise ValueError(f"{root}: expected images/ and masks/ folders inside")
    if not (cfg.coco or cfg.folders):
        raise ValueError("no training data: give --coco-root, --coco-ann/--coco-images or --folder")
    if cfg.num_classes < 2:
        raise ValueError(f"--num-classes {cfg.num_classes}: need at least 2 (background + one)")
    if cfg.num_classes > 2 and (cfg.coco or cfg.val_coco):
        raise ValueError("--num-classes > 2 needs folder masks (COCO sources give binary masks)")
    if cfg.ema is not None and not 0 < cfg.ema < 1:
        raise ValueError(f"--ema {cfg.ema}: the averaging momentum must be between 0 and 1")
    if cfg.hard_negatives is not None and not 0 < cfg.hard_negatives <= 1:
        raise ValueError(f"--hard-negatives {cfg.hard_negatives}: a fraction of pixels in (0, 1]")
    if cfg.small_weight is not None and cfg.small_weight < 1:
        raise ValueError(f"--small-weight {cfg.small_weight}: the largest weight, at least 1")
    if (cfg.small_weight or cfg.hard_negatives) and cfg.num_classes > 2:
        raise ValueError("--small-weight and --hard-negatives are for binary (COCO category) models")
    if cfg.image_size < 32:
        raise ValueError(f"--image-size {cfg.image_size}: too small (at least 32)")
    check_encoder_weights(cfg.encoder, cfg.image_size, cfg.encoder_weights)
    cfg.resolved_class_names()
    from segkit.train.distribute import check_strategy

    check_strategy(cfg.strategy)


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
    state_path = run_dir / STATE_FILE
    signature = {"encoder": cfg.encoder, "image_size": cfg.image_size,
                 "num_classes": cfg.num_classes, "class_names": class_names, "loss": cfg.loss,
                 "batch_size": cfg.batch_size, "val_split": val_split, "seed": cfg.seed,
                 "max_images": cfg.max_images, "ema": cfg.ema,
                 "small_weight": cfg.small_weight, "hard_negatives": cfg.hard_negatives,
                 "sources": [s.description for s in sources]}
    state = _start_state(cfg, run_dir, state_path, signature)
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
    _write_json(state_path, state)
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


# ------------------------------------------------------------------------------ callbacks
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
            _save_atomic(self.model, ckpt / name)
            value = float(logs.get(self.monitor, float("nan")))
            if self.state.get("best_iou") is None or value > self.state["best_iou"]:
                self.state.update(best_iou=value, best_epoch=epoch + 1)
                _save_atomic(self.model, ckpt / "best.keras")
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
            _write_json(self.run_dir / STATE_FILE, self.state)
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


# --------------------------------------------------------------------------------- helpers
def _start_state(cfg: TrainConfig, run_dir: Path, state_path: Path, signature: dict) -> dict:
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if not cfg.resume:
            raise ValueError(f"{run_dir}: holds a run ({state['epoch']} epochs done); pass "
                             "--resume to continue it or choose another --run-dir")
        old = state.get("signature", {})
        for key in RESUME_KEYS:
            if old.get(key) != signature.get(key):
                raise ValueError(f"{run_dir}: --resume with a different {key} "
                                 f"({old.get(key)!r} then, {signature.get(key)!r} now)")
        ckpt = run_dir / "checkpoints" / str(state.get("checkpoint"))
        if state["epoch"] and not ckpt.is_file():
            raise ValueError(f"{ckpt}: checkpoint missing, cannot resume")
        return state
    if cfg.resume:
        raise ValueError(f"{run_dir}: nothing to resume (no {STATE_FILE})")
    run_dir.mkdir(parents=True, exist_ok=True)
    return {"signature": signature, "config": _config_dict(cfg), "epoch": 0, "checkpoint": None,
            "history": [],
            "best_iou": None, "best_epoch": None}


def _config_dict(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))


def _save_atomic(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")  # .keras suffix: Keras checks it
    model.save(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def summarize(cfg, state, model, sources, train_items, val_items, monitor) -> dict:
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


def _versions() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss, IoU, pixel accuracy and learning rate per epoch (train and validation)."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    panels = [("loss", "loss"), ("iou", "IoU"), ("pixel_accuracy", "pixel accuracy"),
              ("learning_rate", "learning rate")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = [h.get(prefix + key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [math.nan if v is None else v for v in values], style,
                        ms=3, label=(prefix or "train_").rstrip("_"))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if key == "learning_rate":
            ax.set_yscale("log")
        else:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
