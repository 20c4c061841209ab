"""Which blobs of a person mask to keep: a logistic regression over each blob's features.

The bundled person model's main network outlines people well but paints person-free scenes; a
gate network fine-tuned with person-free photos finds fewer false blobs but draws people smaller
(issue #15). "Keep a blob if the gate touches it at all" (``tflite.keep_confirmed``) uses one bit
of what the two networks say about a blob. This filter looks at more of it: the blob's size and
shape, where it lies, how sure each network is on it and how much of the image is foreground,
and keeps the blobs whose pixels are more likely to raise pooled IoU than to lower it.

Fitted by ``scripts/fit_blob_filter.py`` on photos the main network never trained on; stored as
JSON beside the model (zoo key ``blob_filter_file``). NumPy and OpenCV only: no scikit-learn at
run time.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from segkit.errors import SegkitError

#: one row per blob, in this order (``blob_features``)
FEATURES = ("log_area", "main_mean", "main_max", "gate_cover", "gate_mean", "gate_max", "fill",
            "center_y", "height", "width", "image_main_fg", "image_gate_fg", "log_blobs")


def blob_features(probs: np.ndarray, gate: np.ndarray, threshold: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``probs``, ``gate``: float [h,w] probabilities of the main and the gate network at the same
    (network) resolution. Returns (int32 [h,w] blob labels, 0 = background; float64 [n, F]
    features of blobs 1..n, in ``FEATURES`` order)."""
    h, w = probs.shape
    fg = (probs >= threshold).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return labels, np.zeros((0, len(FEATURES)))
    on = np.flatnonzero(fg)  # sums over blob pixels only: a fraction of the map
    blob_of = labels.ravel()[on]
    gate_on = gate >= threshold

    def per_blob_sum(values):
        return np.bincount(blob_of, weights=values.ravel()[on], minlength=n)[1:]

    # each blob's peak of both maps, within its box (np.maximum.at costs 30x more)
    peaks = np.empty((n - 1, 2))
    for k, (x0, y0, bw_, bh_) in enumerate(stats[1:, :4], start=1):
        box = (slice(y0, y0 + bh_), slice(x0, x0 + bw_))
        mine = labels[box] == k
        peaks[k - 1] = probs[box][mine].max(), gate[box][mine].max()

    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    bw, bh = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    image = np.broadcast_to([len(on) / fg.size, gate_on.mean(), np.log1p(n - 1)], (n - 1, 3))
    x = np.column_stack([np.log(area / (h * w)), per_blob_sum(probs) / area, peaks[:, 0],
                         per_blob_sum(gate_on) / area, per_blob_sum(gate) / area,
                         peaks[:, 1], area / (bw * bh), centroids[1:, 1] / h, bh / h, bw / w,
                         image])
    return labels, x


@dataclass
class BlobFilter:
    """Standardised logistic regression: keep a blob when P(keeping it helps) >= ``threshold``."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float = 0.5
    features: tuple[str, ...] = FEATURES
    fitted_on: str = ""

    def __post_init__(self):
        self.features = tuple(self.features)
        if self.features != FEATURES or not (len(self.mean) == len(self.scale) == len(self.coef) == len(FEATURES)):
            raise SegkitError(f"features {list(self.features)} are not this segkit's {list(FEATURES)}")

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def keep(self, x: np.ndarray) -> np.ndarray:
        return self.probability(x) >= self.threshold

    @classmethod
    def load(cls, path: str | Path) -> "BlobFilter":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise SegkitError(f"{path}: not a blob filter ({e})") from None
        except SegkitError as e:
            raise SegkitError(f"{path}: blob filter made for another segkit: {e}") from None

    def save(self, path: str | Path) -> None:
        from segkit.io.atomic import atomic_write_bytes
        data = asdict(self)
        data["features"] = list(self.features)
        atomic_write_bytes(Path(path), (json.dumps(data, indent=1) + "\n").encode())


def keep_scored(probs: np.ndarray, gate: np.ndarray, blob_filter: BlobFilter,
                threshold: float = 0.5) -> np.ndarray:
    """``probs`` [h,w,C] with every blob the filter rejects set to 0 (``gate``: the gate
    network's [h,w,C] at the same resolution)."""
    out = probs.copy()
    for c in range(probs.shape[-1]):
        labels, x = blob_features(probs[..., c], gate[..., c], threshold)
        if len(x) == 0:
            continue
        drop = np.concatenate([[False], ~blob_filter.keep(x)])
        if drop.any():
            out[..., c][drop[labels]] = 0.0
    return out
