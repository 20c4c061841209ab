"""COCO category ids <-> names (the official 1..90 ids with gaps) and class filters."""
from __future__ import annotations

import difflib
from typing import Iterable

COCO_CATEGORIES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}
COCO_IDS_BY_NAME: dict[str, int] = {name: cid for cid, name in COCO_CATEGORIES.items()}
#: the 80 COCO ids in id order: position = the contiguous 0..79 class index YOLO models use
COCO80_IDS: tuple[int, ...] = tuple(sorted(COCO_CATEGORIES))
_COCO80_INDEX = {cid: i for i, cid in enumerate(COCO80_IDS)}
PERSON_ID = 1


def class_name(class_id: int, names: dict[int, str] | None = None) -> str:
    """Name of a class id; unknown ids print as 'class N' rather than failing a render."""
    table = names if names is not None else COCO_CATEGORIES
    return table.get(int(class_id), f"class {int(class_id)}")


def parse_classes(spec: str | Iterable[str | int] | None,
                  names: dict[int, str] | None = None) -> set[int] | None:
    """'1,18' or 'person,dog' (or a mix, or a list) -> set of class ids; None/'' -> None (all).

    Raises ValueError naming the unknown entry and the closest known names.
    """
    if spec is None:
        return None
    table = names if names is not None else COCO_CATEGORIES
    by_name = {n.lower(): i for i, n in table.items()}
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    ids: set[int] = set()
    for raw in items:
        item = str(raw).strip().lower().replace("_", " ")
        if not item:
            continue
        if item.isdigit():
            cid = int(item)
            if cid not in table:
                raise ValueError(f"unknown class id {cid} (valid ids: {min(table)}..{max(table)}, "
                                 "see `segment_image.py --list-classes`)")
            ids.add(cid)
        elif item in by_name:
            ids.add(by_name[item])
        else:
            close = difflib.get_close_matches(item, list(by_name), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown class name {raw!r}{hint}")
    return ids or None


def coco80_index(class_id: int) -> int:
    """Contiguous 0..79 index of a COCO id (1..90 with gaps), as YOLO labels number them."""
    try:
        return _COCO80_INDEX[int(class_id)]
    except KeyError:
        raise ValueError(f"{class_id} is not a COCO category id") from None


def coco_id(name: str | int) -> int | None:
    """COCO id of a class name or id ('dog', 'teddy_bear', 18), else None."""
    if isinstance(name, int) or str(name).strip().isdigit():
        return int(name) if int(name) in COCO_CATEGORIES else None
    return COCO_IDS_BY_NAME.get(str(name).strip().lower().replace("_", " "))


def model_classes(names: Iterable[str | int]) -> tuple[list[int], dict[int, str] | None]:
    """Class ids of a semantic model's channel names ('background' left out) and its label table.

    COCO names map to their COCO ids (table None: the COCO table). A model trained with its own
    names (``--class-names background,pet,border``) numbers them 1, 2 ... in channel order and
    brings its own table, so overlays, ``--classes pet`` and evaluation use those names.
    """
    real = [n for n in names if str(n) != "background"]
    ids = [coco_id(n) for n in real]
    if all(i is not None for i in ids):
        return ids, None
    return list(range(1, len(real) + 1)), {0: "background", **{i + 1: str(n) for i, n in enumerate(real)}}
