"""The run folder's state: ``state.json`` (epochs done, the checkpoint that goes with them,
history, callback counters) and what --resume checks before it continues a run. Checkpoints and
the state file are written atomically (temp file + rename), so a run killed at any moment
leaves a state and a checkpoint of the same epoch."""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from segkit.train.config import TrainConfig

STATE_FILE = "state.json"
# What must match for --resume to continue the same run (the rest may change, e.g. --epochs).
RESUME_KEYS = ("encoder", "image_size", "num_classes", "class_names", "loss", "batch_size",
               "sources", "val_split", "seed", "max_images", "ema", "small_weight",
               "hard_negatives")


def run_signature(cfg: TrainConfig, class_names: list[str], val_split: float, sources) -> dict:
    """What a run was started with; --resume compares the ``RESUME_KEYS`` of it."""
    return {"encoder": cfg.encoder, "image_size": cfg.image_size,
            "num_classes": cfg.num_classes, "class_names": class_names, "loss": cfg.loss,
            "batch_size": cfg.batch_size, "val_split": val_split, "seed": cfg.seed,
            "max_images": cfg.max_images, "ema": cfg.ema,
            "small_weight": cfg.small_weight, "hard_negatives": cfg.hard_negatives,
            "sources": [s.description for s in sources]}


def start_state(cfg: TrainConfig, run_dir: Path, signature: dict) -> dict:
    """The state to start from: a fresh one, or (``--resume``) the run folder's, once its
    signature matches and its checkpoint is there."""
    state_path = run_dir / STATE_FILE
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
    return {"signature": signature, "config": config_dict(cfg), "epoch": 0, "checkpoint": None,
            "history": [], "best_iou": None, "best_epoch": None}


def config_dict(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))


def save_atomic(model, path: Path) -> None:
    """A Keras checkpoint, written whole or not at all."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")  # .keras suffix: Keras checks it
    model.save(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    """Indented JSON (state.json is read by people too), written whole or not at all."""
    from segkit.io.atomic import atomic_write_bytes  # here: importing the train package stays light

    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())
