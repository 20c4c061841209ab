"""``training_curves.png`` of a run folder: loss, IoU, pixel accuracy and learning rate per
epoch, drawn with matplotlib (imported on first use)."""
from __future__ import annotations

import io
import math
from pathlib import Path


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
    from segkit.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
