"""Training data: COCO (pycocotools) and images/+masks/ folders -> one tf.data pipeline.

Every source yields ``(image uint8 [H,W,3], mask uint8 [H,W,1])`` where the mask holds the class
index of each pixel (binary: 0/1). Sources are mixed by listing ``(source, index)`` pairs, so
shuffling happens on cheap integers before any decoding; decoding runs with
``num_parallel_calls=AUTOTUNE`` and the batches are prefetched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
AUTOTUNE = tf.data.AUTOTUNE


#: Pixel weights ride in a second mask channel as uint8 code = round(weight * WEIGHT_SCALE), so
#: they crop, flip and resize (nearest) together with the mask; 1.0 everywhere else.
WEIGHT_SCALE = 16


def small_instance_weight(area: float, max_weight: float) -> float:
    """Loss weight of an instance's pixels: 96/sqrt(area), between 1 and ``max_weight`` (a person
    of 96² pixels or more weighs 1, 48² weighs 2, 32² weighs 3): each small person's pixels count
    more, so missing one costs more than a few pixels of a close-up's outline."""
    return float(min(max_weight, max(1.0, 96.0 / max(area, 1.0) ** 0.5)))


class CocoSource:
    """Binary mask of one COCO category: the union of all its instances, crowd regions included.

    ``include_negatives`` also keeps images without the category (all-background masks).
    ``small_weight`` (the largest weight, e.g. 3) adds a second mask channel of pixel weights
    that favour small instances (:func:`small_instance_weight`).
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path, category: str = "person",
                 include_negatives: bool = False, small_weight: float | None = None):
        self.small_weight = small_weight
        self.channels = 2 if small_weight else 1
        ann_file, image_dir = Path(ann_file), Path(image_dir)
        if not ann_file.is_file():
            raise ValueError(f"{ann_file}: COCO annotation file not found")
        if not image_dir.is_dir():
            raise ValueError(f"{image_dir}: COCO image folder not found")
        from pycocotools.coco import COCO

        with _quiet():
            try:
                self.coco = COCO(str(ann_file))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{ann_file}: not a COCO instances file ({e})") from None
        cats = self.coco.getCatIds(catNms=[category])
        if not cats:
            names = sorted(c["name"] for c in self.coco.loadCats(self.coco.getCatIds()))
            raise ValueError(f"{ann_file}: no category {category!r} (it has: {', '.join(names)})")
        self.category, self.cat_id = category, cats[0]
        ids = sorted(self.coco.getImgIds() if include_negatives
                     else self.coco.getImgIds(catIds=[self.cat_id]))
        self.image_ids = [i for i in ids if (image_dir / self.coco.imgs[i]["file_name"]).is_file()]
        if not self.image_ids:
            raise ValueError(f"{image_dir}: none of the {len(ids)} images of {ann_file.name} "
                             "with this category are there")
        self.paths = [str(image_dir / self.coco.imgs[i]["file_name"]) for i in self.image_ids]
        self.description = f"coco:{ann_file}:{category}"

    def __len__(self) -> int:
        return len(self.image_ids)

    def mask(self, index: int) -> np.ndarray:
        """uint8 [H,W,1]: 1 where any instance (crowd or not) of the category is."""
        img = self.coco.imgs[self.image_ids[int(index)]]
        out = np.zeros((img["height"], img["width"]), np.uint8)
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=img["id"], catIds=[self.cat_id],
                                                      iscrowd=None))
        weight = np.full(out.shape, WEIGHT_SCALE, np.uint8) if self.small_weight else None
        for ann in anns:
            m = self.coco.annToMask(ann)
            out |= m
            if weight is not None and not ann.get("iscrowd", 0):
                w = round(WEIGHT_SCALE * small_instance_weight(m.sum(), self.small_weight))
                np.maximum(weight, np.where(m > 0, w, 0).astype(np.uint8), out=weight)
        return out[..., None] if weight is None else np.stack([out, weight], axis=-1)

    def load(self, index):
        image = _decode_image(tf.gather(tf.constant(self.paths), index))
        mask = tf.numpy_function(self.mask, [index], tf.uint8, stateful=False)
        mask.set_shape([None, None, self.channels])
        return image, mask


class FolderSource:
    """``root/images/N.jpg`` with ``root/masks/N.png`` (same stem, same size).

    Binary (``num_classes=2``): a pixel is foreground when its mask value is > 127 for 0/255 masks,
    or > 0 for 0/1 masks. Multi-class: the mask value is the class index (0..num_classes-1).
    """

    def __init__(self, root: str | Path, num_classes: int = 2, weight_channel: bool = False):
        self.channels = 2 if weight_channel else 1  # weights: 1.0 (these masks have no instances)
        root = Path(root)
        images, masks = root / "images", root / "masks"
        if not images.is_dir() or not masks.is_dir():
            raise ValueError(f"{root}: expected images/ and masks/ folders inside")
        pairs = []
        mask_by_stem = {p.stem: p for p in masks.iterdir() if p.suffix.lower() == ".png"}
        for p in sorted(images.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS and p.stem in mask_by_stem:
                pairs.append((str(p), str(mask_by_stem[p.stem])))
        if not pairs:
            raise ValueError(f"{root}: no image in images/ has a PNG mask of the same name in masks/")
        self.image_paths, self.mask_paths = map(list, zip(*pairs))
        self.num_classes = num_classes
        self.description = f"folder:{root}"

    def __len__(self) -> int:
        return len(self.image_paths)

    def load(self, index):
        image_path = tf.gather(tf.constant(self.image_paths), index)
        mask_path = tf.gather(tf.constant(self.mask_paths), index)
        image = _decode_image(image_path)
        raw = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
        same_size = tf.debugging.Assert(
            tf.reduce_all(tf.shape(raw)[:2] == tf.shape(image)[:2]),
            [mask_path, "mask size differs from its image"])
        with tf.control_dependencies([same_size]):
            if self.num_classes <= 2:
                cut = tf.where(tf.reduce_max(raw) > 1, tf.constant(127, tf.uint8),
                               tf.constant(0, tf.uint8))
                mask = tf.cast(raw > cut, tf.uint8)
            else:
                in_range = tf.debugging.Assert(
                    tf.reduce_max(raw) < self.num_classes,
                    [mask_path, f"mask value >= --num-classes {self.num_classes}"])
                with tf.control_dependencies([in_range]):
                    mask = tf.identity(raw)
        if self.channels == 2:
            mask = tf.concat([mask, tf.fill(tf.shape(mask), tf.constant(WEIGHT_SCALE, tf.uint8))], -1)
        return image, mask


def _decode_image(path):
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


# ------------------------------------------------------------------ augmentation / resizing
def resize_pair(image, mask, size: int):
    """Image bilinear (float 0..1), mask nearest: both to size x size (aspect not kept,
    the same stretch the inference adapter applies)."""
    image = tf.image.resize(tf.image.convert_image_dtype(image, tf.float32), (size, size),
                            method="bilinear")
    mask = tf.image.resize(mask, (size, size), method="nearest")
    return tf.clip_by_value(image, 0.0, 1.0), tf.cast(mask, tf.uint8)


@dataclass
class Augment:
    """Random flip, scale/crop (a crop covering ``min_area``..1 of the image) and colour jitter."""

    flip: bool = True
    min_area: float = 0.35
    colour: bool = True

    def __call__(self, image, mask, size: int, seed):
        seeds = tf.random.experimental.stateless_split(seed, 6)
        if self.flip:
            flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            mask = tf.cond(flip, lambda: tf.image.flip_left_right(mask), lambda: mask)
        if self.min_area < 1.0:
            shape = tf.shape(image)
            begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
                shape, tf.zeros([1, 0, 4]), seed=seeds[1], min_object_covered=0.0,
                aspect_ratio_range=(0.75, 1.33), area_range=(self.min_area, 1.0),
                use_image_if_no_bounding_boxes=True)
            image = tf.slice(image, begin, crop_size)
            mask = tf.slice(mask, begin, crop_size)  # crop_size is [h, w, -1]: all channels
        image, mask = resize_pair(image, mask, size)
        if self.colour:
            image = tf.image.stateless_random_brightness(image, 0.15, seeds[2])
            image = tf.image.stateless_random_contrast(image, 0.75, 1.25, seeds[3])
            image = tf.image.stateless_random_saturation(image, 0.7, 1.3, seeds[4])
            image = tf.image.stateless_random_hue(image, 0.03, seeds[5])
            image = tf.clip_by_value(image, 0.0, 1.0)
        return image, mask


def make_dataset(sources, items, *, image_size: int, batch_size: int, training: bool,
                 augment: Augment | None = None, seed: int = 0) -> tf.data.Dataset:
    """Batched ``(image float32 [B,S,S,3] in 0..1, mask uint8 [B,S,S,1])`` over ``items``.

    ``items`` is a list of ``(source_index, item_index)``: the mix of sources and the
    train/validation split are decided there, not here.
    """
    if not items:
        raise ValueError("no training images left (check the sources and --val-split)")
    sids = tf.constant([s for s, _ in items], tf.int32)
    idxs = tf.constant([i for _, i in items], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((sids, idxs))
    if training:
        ds = ds.shuffle(len(items), seed=seed, reshuffle_each_iteration=True)
    branches = [s.load for s in sources]
    channels = max(getattr(s, "channels", 1) for s in sources)

    def load(sid, idx):
        image, mask = tf.switch_case(sid, [lambda b=b: b(idx) for b in branches])
        image.set_shape([None, None, 3])
        mask.set_shape([None, None, channels])
        return image, mask

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training and augment is not None:
        # One random stream per element, reproducible for a given seed and epoch order.
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
        ds = ds.map(lambda pair, s: augment(pair[0], pair[1], image_size, s),
                    num_parallel_calls=AUTOTUNE, deterministic=False)
    else:
        ds = ds.map(lambda i, m: resize_pair(i, m, image_size), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=False).prefetch(AUTOTUNE)


def split_items(sizes: list[int], val_split: float, seed: int = 0):
    """All ``(source, index)`` pairs, and a reproducible random hold-out for validation."""
    items = [(s, i) for s, n in enumerate(sizes) for i in range(n)]
    if not val_split:
        return items, []
    if not 0 < val_split < 1:
        raise ValueError(f"--val-split {val_split}: must be between 0 and 1")
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = max(1, int(round(len(items) * val_split)))
    if n_val >= len(items):
        raise ValueError(f"--val-split {val_split} leaves no training image of {len(items)}")
    val = sorted(items[k] for k in order[:n_val])
    train = sorted(items[k] for k in order[n_val:])
    return train, val


class _quiet:
    """pycocotools prints 'loading annotations...' to stdout: keep script output one line."""

    def __enter__(self):
        import contextlib
        import io

        self._redirect = contextlib.redirect_stdout(io.StringIO())
        self._redirect.__enter__()

    def __exit__(self, *exc):
        self._redirect.__exit__(*exc)
