"""``<out>/<name>_crops/NNN_<class>.jpg``: each kept instance cut out of the photo along its box
(``--save-crop``, as Ultralytics' ``save_crop``), e.g. to build a dataset from detections.

The folder is built aside and renamed into place (complete or absent), so a resumed run knows
an image's crops are done when the folder exists; an image with nothing kept gets an empty one.
"""
from __future__ import annotations

import math
from pathlib import Path

from segkit.io.atomic import atomic_dir, encode_image
from segkit.io.sinks import Sink


class Crops(Sink):
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)

    def expected(self, frame) -> list[Path]:
        return [self.out_dir / f"{frame.name}_crops"]

    def write(self, frame, seg) -> list[Path]:
        inst = seg.as_instances()
        h, w = frame.image.shape[:2]
        final = self.expected(frame)[0]
        with atomic_dir(final) as tmp:
            for i, (box, cname) in enumerate(zip(inst.boxes, inst.class_names)):
                # boxes are continuous pixel coordinates: take every pixel the box touches
                x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
                x1, y1 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
                if x1 > x0 and y1 > y0:
                    crop = frame.image[y0:y1, x0:x1]
                    (tmp / f"{i:03d}_{cname.replace(' ', '_')}.jpg").write_bytes(encode_image(crop, ".jpg"))
        return [final]
