"""A constant-velocity Kalman filter on a box, batched over tracks (ByteTrack's KalmanFilterXYAH).

State (8): centre x, centre y, aspect ratio w/h, height, and their velocities per frame. The
noise scales with the box height, so a near (big) object may move more pixels than a far one.
Every function takes and returns stacked arrays (means [N,8], covariances [N,8,8]): one NumPy
call per step for all tracks, instead of a Python loop per track.
"""
from __future__ import annotations

import numpy as np

_STD_POSITION = 1.0 / 20
_STD_VELOCITY = 1.0 / 160

#: x' = x + v (one frame); the measurement is the first four entries
_MOTION = np.eye(8)
_MOTION[:4, 4:] = np.eye(4)
_UPDATE = np.eye(4, 8)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], np.maximum(b[:, 3] - b[:, 1], 1e-6)
    return np.stack([b[:, 0] + w / 2, b[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    x = np.asarray(xyah, np.float64).reshape(-1, 4)
    h = x[:, 3]
    w = x[:, 2] * h
    return np.stack([x[:, 0] - w / 2, x[:, 1] - h / 2, x[:, 0] + w / 2, x[:, 1] + h / 2], axis=1)


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from xyah measurements [N,4]: zero velocity, wide velocity uncertainty."""
    m = np.asarray(measurements, np.float64).reshape(-1, 4)
    mean = np.concatenate([m, np.zeros_like(m)], axis=1)
    h = m[:, 3]
    std = np.stack([2 * _STD_POSITION * h, 2 * _STD_POSITION * h, np.full_like(h, 1e-2), 2 * _STD_POSITION * h,
                    10 * _STD_VELOCITY * h, 10 * _STD_VELOCITY * h, np.full_like(h, 1e-5),
                    10 * _STD_VELOCITY * h], axis=1)
    return mean, _diag(std ** 2)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead."""
    if not len(mean):
        return mean, cov
    h = mean[:, 3]
    std = np.stack([_STD_POSITION * h, _STD_POSITION * h, np.full_like(h, 1e-2), _STD_POSITION * h,
                    _STD_VELOCITY * h, _STD_VELOCITY * h, np.full_like(h, 1e-5), _STD_VELOCITY * h], axis=1)
    mean = mean @ _MOTION.T
    cov = _MOTION @ cov @ _MOTION.T + _diag(std ** 2)
    return mean, cov


def update(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct the predictions with xyah measurements [N,4] (one per track)."""
    if not len(mean):
        return mean, cov
    h = mean[:, 3]
    std = np.stack([_STD_POSITION * h, _STD_POSITION * h, np.full_like(h, 1e-1), _STD_POSITION * h], axis=1)
    proj_mean = mean[:, :4]
    proj_cov = cov[:, :4, :4] + _diag(std ** 2)        # S = H P H' + R (H picks the first four)
    # K = P H' S^-1, solved rather than inverted (S is symmetric positive definite)
    gain = np.linalg.solve(proj_cov, cov[:, :4, :]).transpose(0, 2, 1)   # [N,8,4]
    innovation = np.asarray(measurements, np.float64).reshape(-1, 4) - proj_mean
    mean = mean + (gain @ innovation[:, :, None])[:, :, 0]
    cov = cov - gain @ proj_cov @ gain.transpose(0, 2, 1)
    return mean, cov


def _diag(values: np.ndarray) -> np.ndarray:
    n, d = values.shape
    out = np.zeros((n, d, d))
    idx = np.arange(d)
    out[:, idx, idx] = values
    return out
