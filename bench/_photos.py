"""The COCO photos the benches run on: val2017 then train2017 from ../shared/data/coco (or
$SEGKIT_SHARED/data/coco), and a folder of links to them for a command's -i."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COCO = Path(os.environ.get("SEGKIT_SHARED", REPO.parent / "shared")) / "data" / "coco"


def coco_photos(n: int | None = None) -> list[Path]:
    """The first ``n`` photos (all without ``n``); exits naming the folder if there are fewer."""
    files = sorted((COCO / "val2017").glob("*.jpg")) + sorted((COCO / "train2017").glob("*.jpg"))
    if n is not None and len(files) < n:
        sys.exit(f"only {len(files)} images under {COCO}")
    return files[:n]


def linked_folder(files: list[Path], folder: Path) -> Path:
    """``folder`` (created) holding a symlink to each of ``files``: an input folder, no copying."""
    folder.mkdir(parents=True)
    for f in files:
        os.symlink(f, folder / f.name)
    return folder
