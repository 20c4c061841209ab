"""Model soups: average the weights of several runs fine-tuned from the same pretrained start.

Why: on a few hundred training images each fine-tuning run's best epoch is a noisy pick (its
validation IoU moves by +-0.02 from epoch to epoch), and runs with other learning rates or
schedules land in the same basin around the pretrained weights. Their uniform average (a
"uniform soup", Wortsman et al. 2022) costs nothing at inference and was steadier than any
single run here. Only runs that share an architecture and a pretrained start make sense to
average: weights trained from different random starts do not line up.

``soup_runs`` reads each run folder's ``state.json`` (its configuration) and
``checkpoints/best.keras`` (its best epoch), averages, scores the soup on the validation data the
same way training does, and exports it like a trained model (export.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from segkit.train.state import STATE_FILE

#: What must be equal for two runs' weights to be averaged.
SAME_NETWORK = ("encoder", "num_classes", "class_names", "category")


def read_run(run_dir: str | Path) -> dict:
    """A finished run: its configuration and the path of its best checkpoint."""
    run_dir = Path(run_dir)
    state_path = run_dir / STATE_FILE
    best = run_dir / "checkpoints" / "best.keras"
    if not state_path.is_file():
        raise ValueError(f"{run_dir}: not a training run folder (no {STATE_FILE})")
    if not best.is_file():
        raise ValueError(f"{run_dir}: no checkpoints/best.keras (the run has no finished epoch)")
    state = json.loads(state_path.read_text())
    config = dict(state.get("config") or {})
    config["class_names"] = state.get("signature", {}).get("class_names")
    return {"run_dir": run_dir, "best": best, "config": config,
            "best_iou": state.get("best_iou"), "best_epoch": state.get("best_epoch"),
            "epochs": state.get("epoch"), "train_seconds": state.get("train_seconds")}


def check_compatible(runs: list[dict]) -> None:
    if len(runs) < 2:
        raise ValueError("a soup needs at least two runs")
    first = runs[0]
    for run in runs[1:]:
        for key in SAME_NETWORK:
            a, b = first["config"].get(key), run["config"].get(key)
            if a != b:
                raise ValueError(f"{run['run_dir']}: {key} {b!r} differs from {a!r} in "
                                 f"{first['run_dir']}: only runs of one network can be averaged")
    weights = {r["config"].get("encoder_weights") for r in runs}
    if None in weights or len(weights) > 1:
        raise ValueError("runs trained from scratch (or from different pretrained weights) do "
                         "not share a starting point; their weights cannot be averaged")


def average_weights(weight_lists: list[list]) -> list:
    """Element-wise mean of several models' weight lists (all the same shapes)."""
    import numpy as np

    shapes = [[w.shape for w in ws] for ws in weight_lists]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError("the models' weights have different shapes: not one network")
    return [np.mean([ws[i] for ws in weight_lists], axis=0, dtype=np.float64).astype(w.dtype)
            for i, w in enumerate(weight_lists[0])]


def soup_runs(run_dirs: list, output: str | Path, *, image_size: int | None = None,
              val_coco: list | None = None, val_folders: list | None = None,
              tflite: bool = True) -> dict:
    """Average the best checkpoints of ``run_dirs`` into one model exported at ``output``.

    ``image_size`` (default: the first run's) is the input size of the exported network; the
    runs may have been trained at other sizes when the network is fully convolutional.
    Returns the metrics written to ``output/metrics.json``.
    """
    import time

    started = time.perf_counter()
    runs = [read_run(d) for d in run_dirs]
    check_compatible(runs)  # before TensorFlow loads: a wrong mix fails in a fraction of a second

    import keras

    # losses: importing it registers the custom loss classes the checkpoints were compiled with
    from segkit.train import data, export, losses, nets

    cfg = runs[0]["config"]
    size = int(image_size or cfg["image_size"])
    class_names = cfg["class_names"] or [cfg.get("category", "person")]
    num_classes = int(cfg["num_classes"])
    # architecture only, but built from the runs' own start: a network started from a segkit
    # export has that file's layer order, which differs from MediaPipe's original graph
    soup = nets.build_unet(cfg["encoder"], size, num_classes, cfg.get("encoder_weights"))
    ingredients = [[w.numpy() for w in keras.saving.load_model(r["best"]).weights] for r in runs]
    soup.set_weights(average_weights(ingredients))

    val_iou, check = None, None
    if val_coco or val_folders:
        category = cfg.get("category", "person")
        # every image, the ones without the category too: the figure training selects on
        sources = [data.CocoSource(ann, images, category, include_negatives=True)
                   for ann, images in val_coco or []]
        sources += [data.FolderSource(f, num_classes) for f in val_folders or []]
        items = data.split_items([len(s) for s in sources], 0)[0]
        ds = data.make_dataset(sources, items, image_size=size, batch_size=8, training=False)
        channels = 1 if num_classes <= 2 else num_classes
        metric = losses.IoUScore(channels, name="iou")
        for images, masks in ds:
            metric.update_state(masks, soup(images, training=False))
            if check is None:
                check = images.numpy()[:4]
        val_iou = float(metric.result())

    metrics = {
        "encoder": cfg["encoder"], "encoder_weights": cfg.get("encoder_weights"),
        "image_size": size, "num_classes": num_classes, "loss": cfg.get("loss"),
        "params": int(soup.count_params()), "monitor": "val_iou", "best_iou": val_iou,
        "soup": {"method": "uniform average of the runs' best checkpoints",
                 "runs": [{"run_dir": str(r["run_dir"]), "epochs": r["epochs"],
                           "best_epoch": r["best_epoch"], "best_val_iou": r["best_iou"],
                           "training_seconds": r["train_seconds"],
                           "config": {k: r["config"].get(k) for k in
                                      ("coco", "folders", "image_size", "epochs", "lr", "ema",
                                       "batch_size", "loss", "augment", "include_negatives",
                                       "small_weight", "hard_negatives", "seed")}}
                          for r in runs]},
        "training_seconds": round(sum(r["train_seconds"] or 0 for r in runs), 1),
        "soup_seconds": round(time.perf_counter() - started, 1),
    }
    iou = f", val_iou {val_iou:.3f}" if val_iou is not None else ""
    network = ("MediaPipe selfie network" if cfg["encoder"] == "selfie"
               else f"U-Net ({cfg['encoder']})")
    description = (f"{network} fine-tuned here, average of {len(runs)} runs, "
                   f"{'/'.join(class_names)} {size}x{size}{iou}")
    return export.export_model(soup, output, classes=class_names, metrics=metrics,
                               description=description, check_images=check, tflite=tflite)
