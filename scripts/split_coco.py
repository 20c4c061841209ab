#!/usr/bin/env python3
"""Split a COCO annotation file into a training part and a held-out part (images with and
without the category split in the same proportion), for checkpoint selection on images that are
neither trained on nor the set the model is reported on.
  scripts/split_coco.py ../shared/data/coco_extra/annotations/instances.json runs/coco_extra \\
      --holdout 0.2        # -> runs/coco_extra/train.json, runs/coco_extra/holdout.json
"""
import argparse
import json
import os
import random
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("annotations")
    p.add_argument("out_dir")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--category", default="person")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    data = json.loads(Path(a.annotations).read_text())
    cat = next(c["id"] for c in data["categories"] if c["name"] == a.category)
    has = {ann["image_id"] for ann in data["annotations"] if ann["category_id"] == cat}
    rng = random.Random(a.seed)
    held = set()
    for group in ([i["id"] for i in data["images"] if i["id"] in has],
                  [i["id"] for i in data["images"] if i["id"] not in has]):
        group = sorted(group)
        rng.shuffle(group)
        held |= set(group[:round(len(group) * a.holdout)])
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train", lambda i: i not in held), ("holdout", lambda i: i in held)):
        part = {**data, "images": [i for i in data["images"] if keep(i["id"])],
                "annotations": [x for x in data["annotations"] if keep(x["image_id"])]}
        tmp = out / f".{name}.json.tmp"
        tmp.write_text(json.dumps(part))
        os.replace(tmp, out / f"{name}.json")
        n_has = sum(i["id"] in has for i in part["images"])
        print(f"{out / (name + '.json')}: {len(part['images'])} images, {n_has} with {a.category}")


if __name__ == "__main__":
    main()
