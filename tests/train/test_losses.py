"""Jaccard loss and IoU / pixel-accuracy metrics on hand-made masks."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from segkit.train.losses import (CrossEntropy, IoUScore, JaccardLoss, PixelAccuracy, SumLoss,
                                 make_loss, make_metrics)


def _mask(rows):
    return np.asarray(rows, np.float32)[None, :, :, None]  # [1,H,W,1]


def test_jaccard_loss_zero_for_identical_masks_and_one_for_disjoint():
    y = _mask([[1, 1, 0], [0, 1, 0]])
    assert float(JaccardLoss(smooth=1e-6)(y, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(JaccardLoss(smooth=1e-6)(y, 1 - y)) == pytest.approx(1.0, abs=1e-5)
    # Soft predictions: I = 0.5+0.5, U = 2 + 1 - 1 = 2 -> loss 0.5 (no smoothing).
    y2, p2 = _mask([[1, 1]]), _mask([[0.5, 0.5]])
    assert float(JaccardLoss(smooth=0.0)(y2, p2)) == pytest.approx(0.5)


def test_jaccard_loss_multiclass_uses_one_hot_of_sparse_targets():
    y = np.array([0, 1, 2], np.float32).reshape(1, 1, 3, 1)  # class indices
    exact = keras.ops.one_hot(np.array([[[0, 1, 2]]]), 3)
    assert float(JaccardLoss(smooth=1e-6)(y, exact)) == pytest.approx(0.0, abs=1e-5)


def test_iou_metric_on_hand_made_example():
    y = _mask([[1, 1, 0, 0]])
    p = _mask([[0.9, 0.4, 0.6, 0.1]])  # hard prediction 1,0,1,0: I=1, U=3
    m = IoUScore()
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx(1 / 3)
    m.update_state(y, y)  # accumulated over the epoch: I=1+2, U=3+2
    assert float(m.result()) == pytest.approx(3 / 5)
    acc = PixelAccuracy()
    acc.update_state(y, p)
    assert float(acc.result()) == pytest.approx(0.5)


def test_per_class_iou_for_softmax_heads():
    y = np.array([0, 1, 1, 2], np.float32).reshape(1, 1, 4, 1)
    pred = np.array([0, 1, 2, 2])  # class 1: I=1 U=2; class 2: I=1 U=2; class 0: I=1 U=1
    p = np.eye(3, dtype=np.float32)[pred].reshape(1, 1, 4, 3)
    metrics = {m.name: m for m in make_metrics(3, ["background", "pet", "border"])}
    for m in metrics.values():
        m.update_state(y, p)
    assert float(metrics["iou_pet"].result()) == pytest.approx(0.5)
    assert float(metrics["iou_background"].result()) == pytest.approx(1.0)
    assert float(metrics["iou"].result()) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert float(metrics["pixel_accuracy"].result()) == pytest.approx(0.75)


def test_losses_compose_and_survive_serialization():
    loss = JaccardLoss() + 0.5 * CrossEntropy()
    assert isinstance(loss, SumLoss) and loss.weights == [1.0, 0.5]
    y, p = _mask([[1, 0]]), _mask([[0.7, 0.2]])
    expected = float(JaccardLoss()(y, p)) + 0.5 * float(CrossEntropy()(y, p))
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert float(again(y, p)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        make_loss("dice")


def test_split_iou_separates_images_with_and_without_the_class():
    from segkit.train.losses import SplitIoU

    y = np.zeros((2, 2, 4, 1), np.float32)
    y[0, :, :2] = 1                                 # image 0: a person on the left half
    p = np.zeros_like(y)
    p[0, :, :1] = 0.9                               # half of it found
    p[1, 0, :] = 0.8                                # image 1 (no person): a quarter... half painted
    with_cls, fp = SplitIoU("with_class"), SplitIoU("fp_without_class")
    with_cls.update_state(y, p)
    fp.update_state(y, p)
    assert float(with_cls.result()) == pytest.approx(2 / 4)    # the painted empty image not counted
    assert float(fp.result()) == pytest.approx(4 / 8)
    iou = IoUScore(1)
    iou.update_state(y, p)
    assert float(iou.result()) == pytest.approx(2 / 8)         # figure (1): all images pooled


def test_weight_channel_scales_cross_entropy_and_leaves_jaccard_alone():
    from segkit.train.losses import HardNegativeCE

    y = np.zeros((1, 1, 2, 2), np.float32)
    y[0, 0, 0] = [1, 48]                            # a small person's pixel, weight 3 (code 48/16)
    y[0, 0, 1] = [0, 16]                            # background, weight 1
    p = np.array([[[[0.5], [0.5]]]], np.float32)
    ce_w = float(CrossEntropy()(y, p))
    assert ce_w == pytest.approx(np.log(2), rel=1e-4)           # equal per-pixel loss: same mean
    p2 = np.array([[[[0.9], [0.5]]]], np.float32)
    unweighted = (-np.log(0.9) + np.log(2)) / 2
    weighted = (3 * -np.log(0.9) + np.log(2)) / 4
    assert float(CrossEntropy()(y, p2)) == pytest.approx(weighted, rel=1e-3)
    assert float(CrossEntropy()(y[..., :1], p2)) == pytest.approx(unweighted, rel=1e-3)
    assert float(JaccardLoss()(y, p2)) == pytest.approx(float(JaccardLoss()(y[..., :1], p2)))
    # hard negatives: only the worst background pixels count, people are ignored
    yb = np.zeros((1, 1, 4, 1), np.float32)
    yb[0, 0, 0] = 1
    pb = np.array([[[[0.01], [0.9], [0.2], [0.1]]]], np.float32)
    assert float(HardNegativeCE(0.25)(yb, pb)) == pytest.approx(-np.log(0.1), rel=1e-3)
