"""COCO files: the annotation file (ground truth), results files (detections), and the ground
truth of a class as a mask: the union of its instances, crowd regions included (a crowd of
people is people)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Iterable

import numpy as np

from segkit.errors import SegkitError


def load_coco(annotation_file: str | Path):
    from pycocotools.coco import COCO

    p = Path(annotation_file)
    if not p.is_file():
        raise SegkitError(f"{p}: no such annotation file")
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() chats on stdout
        try:
            return COCO(str(p))
        except (ValueError, KeyError, TypeError) as e:
            raise SegkitError(f"{p}: not a COCO annotation file ({type(e).__name__}: {e})") from None


def load_results(path: str | Path) -> list[dict]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise SegkitError(f"{p}: no such results file") from None
    except ValueError as e:
        raise SegkitError(f"{p}: not JSON ({e})") from None
    if not isinstance(data, list):
        raise SegkitError(f"{p}: a COCO results file is a JSON list of detections")
    return data


def gt_as_results(gt) -> list[dict]:
    """The ground truth written as detections (score 1, RLE masks): must score AP 1.0.

    Crowd regions are left out, as a detector's output would be (COCOeval ignores them)."""
    out = []
    for ann in gt.dataset["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        rle = gt.annToRLE(ann)
        if isinstance(rle["counts"], bytes):
            rle = {**rle, "counts": rle["counts"].decode("ascii")}
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                    "bbox": [float(v) for v in ann["bbox"]], "score": 1.0, "segmentation": rle})
    return out


def class_index(class_ids: Iterable[int]) -> dict[int, int]:
    """class id -> its row in the [C,H,W] masks of ``class_ids``."""
    return {c: k for k, c in enumerate(class_ids)}


def coco_class_truth(gt, img_id: int, class_ids: tuple[int, ...]) -> np.ndarray:
    """bool [C,H,W]: union of every instance of each class, crowd regions included."""
    info = gt.imgs[img_id]
    truth = np.zeros((len(class_ids), info["height"], info["width"]), bool)
    index = class_index(class_ids)
    for ann in gt.imgToAnns[img_id]:
        k = index.get(ann["category_id"])
        if k is not None:
            truth[k] |= gt.annToMask(ann).astype(bool)
    return truth


def images_with_classes(gt, img_ids: Iterable[int], class_ids: Iterable[int]) -> list[int]:
    """The images holding at least one instance of ``class_ids`` (the usual protocol for person
    models: images without people then add no false positives to the score)."""
    have = set()
    for cid in class_ids:
        have |= set(gt.getImgIds(catIds=[cid]))
    return [i for i in img_ids if i in have]
