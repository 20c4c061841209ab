"""The tf.data pipeline: COCO masks equal pycocotools' annToMask union, folders, mixing, augmentation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_path
from segkit.train import coco_paths
from segkit.train.data import Augment, CocoSource, FolderSource, make_dataset, split_items

CROWD_IMAGE = 433998  # train2017 image with a person iscrowd=1 region (uncompressed RLE)


@pytest.fixture(scope="module")
def coco_train():
    ann, images = coco_paths(shared_path("coco"), "train2017")
    return CocoSource(ann, images, "person")


def _reference_union(coco, image_id, cat_id):
    img = coco.imgs[image_id]
    ref = np.zeros((img["height"], img["width"]), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=[cat_id], iscrowd=None)):
        ref = np.maximum(ref, coco.annToMask(ann))
    return ref


def test_coco_masks_match_anntomask_union_including_crowd(coco_train):
    src = coco_train
    assert CROWD_IMAGE in src.image_ids
    crowd = src.coco.loadAnns(src.coco.getAnnIds(imgIds=CROWD_IMAGE, catIds=[1], iscrowd=True))
    assert crowd, "the crowd test image lost its crowd annotation"
    picks = [src.image_ids.index(CROWD_IMAGE), 0, len(src) - 1]
    items = [(0, i) for i in picks]
    ds = make_dataset([src], items, image_size=64, batch_size=1, training=False)
    # The raw (unresized) pair from the source's own tf loader.
    for i in picks:
        image, mask = (t.numpy() for t in src.load(np.int64(i)))
        img = src.coco.imgs[src.image_ids[i]]
        assert image.shape == (img["height"], img["width"], 3)
        np.testing.assert_array_equal(mask[..., 0], _reference_union(src.coco, img["id"], 1))
    # The crowd region is inside the training mask.
    crowd_mask = src.coco.annToMask(crowd[0]).astype(bool)
    _, mask = src.load(np.int64(picks[0]))
    assert crowd_mask.any() and mask.numpy()[..., 0][crowd_mask].all()
    # Resized batches keep 0/1 values and the foreground share roughly.
    for (x, y), i in zip(ds, picks):
        assert x.shape == (1, 64, 64, 3) and y.shape == (1, 64, 64, 1)
        assert set(np.unique(y.numpy())) <= {0, 1}
        ref = _reference_union(src.coco, src.image_ids[i], 1)
        assert abs(y.numpy().mean() - ref.mean()) < 0.05


def test_other_category_and_unknown_category(coco_train):
    ann, images = coco_paths(shared_path("coco"), "train2017")
    dogs = CocoSource(ann, images, "dog")
    assert 0 < len(dogs) < len(coco_train)
    with pytest.raises(ValueError, match="no category 'persn'"):
        CocoSource(ann, images, "persn")


def _write_folder(root, masks, size=(40, 60)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n, m in enumerate(masks):
        image = np.zeros((*size, 3), np.uint8)
        image[m > 0] = 255  # the image shows its own mask: alignment is checkable
        cv2.imwrite(str(root / "images" / f"{n}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{n}.png"), m)
    return root


def test_folder_binary_0_255_and_multiclass_values(tmp_path):
    m = np.zeros((40, 60), np.uint8)
    m[5:20, 10:30] = 255
    src = FolderSource(_write_folder(tmp_path / "bin", [m]), num_classes=2)
    _, mask = src.load(np.int64(0))
    np.testing.assert_array_equal(mask.numpy()[..., 0], (m > 0).astype(np.uint8))
    tri = np.zeros((40, 60), np.uint8)
    tri[5:20, 10:30], tri[20:25, 10:30] = 1, 2
    src3 = FolderSource(_write_folder(tmp_path / "tri", [tri]), num_classes=3)
    np.testing.assert_array_equal(src3.load(np.int64(0))[1].numpy()[..., 0], tri)
    import tensorflow as tf

    four = tri.copy()
    four[30:35, 0:5] = 3  # a class the model would not have
    src_bad = FolderSource(_write_folder(tmp_path / "four", [four]), num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask value >= --num-classes 3"):
        src_bad.load(np.int64(0))
    with pytest.raises(ValueError, match="expected images/ and masks/"):
        FolderSource(tmp_path)


def test_augmentation_keeps_mask_aligned_and_sources_mix(tmp_path):
    masks = []
    for n in range(6):
        m = np.zeros((40, 60), np.uint8)
        m[5 + n:25 + n, 8 + 3 * n:30 + 3 * n] = 255
        masks.append(m)
    src_a = FolderSource(_write_folder(tmp_path / "a", masks[:3]))
    src_b = FolderSource(_write_folder(tmp_path / "b", masks[3:]))
    train, val = split_items([len(src_a), len(src_b)], 1 / 3, seed=0)
    assert len(train) == 4 and len(val) == 2 and not set(train) & set(val)
    items = [(0, i) for i in range(3)] + [(1, i) for i in range(3)]
    ds = make_dataset([src_a, src_b], items, image_size=32, batch_size=3, training=True,
                      augment=Augment(colour=False), seed=3)
    seen = 0
    for x, y in ds:
        x, y = x.numpy(), y.numpy()
        # Bilinear edges blur the image; away from them the image still equals its mask.
        bright, dark = x[..., 0] > 0.9, x[..., 0] < 0.1
        assert (y[..., 0][bright] == 1).mean() > 0.97 and (y[..., 0][dark] == 0).mean() > 0.97
        seen += len(x)
    assert seen == 6


def test_small_instances_weigh_more(coco_train):
    from segkit.train.data import WEIGHT_SCALE, small_instance_weight

    assert small_instance_weight(96 ** 2, 3) == 1.0 and small_instance_weight(48 ** 2, 3) == 2.0
    assert small_instance_weight(10, 3) == 3.0 and small_instance_weight(500 ** 2, 3) == 1.0
    ann, images = coco_paths(shared_path("coco"), "train2017")
    src, plain = CocoSource(ann, images, small_weight=3), coco_train
    for k in range(8):
        m, base = src.mask(k), plain.mask(k)
        assert m.shape[-1] == 2 and np.array_equal(m[..., :1], base)
        w = m[..., 1]
        assert w[base[..., 0] == 0].max(initial=WEIGHT_SCALE) >= WEIGHT_SCALE  # background: 1
        assert WEIGHT_SCALE <= w.min() and w.max() <= 3 * WEIGHT_SCALE
    assert any((src.mask(k)[..., 1] > WEIGHT_SCALE).any() for k in range(len(src)))
