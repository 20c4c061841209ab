"""Does smoothing a track's mask over time raise DAVIS J? (issue #21, part 5: keep it only if so)

    .venv/bin/python bench/bench_mask_smoothing.py [--model yolov5s_seg_coco_int8]

Each sequence of ../shared/data/davis2016 is segmented and tracked ONCE (the sequence's class,
--track defaults); the tracked masks are then scored as they are and after an exponential
average per track, mask_t' = a * mask_t + (1 - a) * avg_{t-1} > 0.5, with the running average
carried along the track's box (scaled and moved from its last box to its new one, so a moving
object does not leave a trail). The model gives bool masks (no probabilities), so the average is
over them. Prints oracle J and track J per sequence for each ``a`` (1.0 = no smoothing); any
``a`` above 0.5 changes nothing (the new mask alone decides the threshold), so the weights tried
are at or below it: a pixel then needs the track's recent masks to agree.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
DAVIS = Path(os.environ.get("SEGKIT_SHARED", REPO.parent / "shared")) / "data" / "davis2016"
CLASSES = {"dance-twirl": "person", "car-shadow": "car", "dog": "dog"}


class MaskAverage:
    """Per track: a float running average of its masks, moved with its box."""

    def __init__(self, a: float):
        self.a = a
        self.avg: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (average, box)

    def __call__(self, masks, boxes, track_ids):
        out = masks.copy()
        seen = {}
        for i, (m, box, t) in enumerate(zip(masks, boxes, track_ids)):
            m = m.astype(np.float32)
            if int(t) in self.avg and self.a < 1.0:
                prev, pbox = self.avg[int(t)]
                sx = (box[2] - box[0]) / max(pbox[2] - pbox[0], 1e-3)
                sy = (box[3] - box[1]) / max(pbox[3] - pbox[1], 1e-3)
                affine = np.float32([[sx, 0, box[0] - sx * pbox[0]], [0, sy, box[1] - sy * pbox[1]]])
                moved = cv2.warpAffine(prev, affine, (m.shape[1], m.shape[0]), flags=cv2.INTER_LINEAR)
                m = self.a * m + (1 - self.a) * moved
            seen[int(t)] = (m, np.asarray(box, np.float32))
            out[i] = m > 0.5
        self.avg.update(seen)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolov5s_seg_coco_int8")
    p.add_argument("--alphas", default="1.0,0.45,0.4,0.3")
    args = p.parse_args()

    from segkit import options
    from segkit.evaluation.davis import SequenceScorer, davis_sequences, read_annotation
    from segkit.flow import Filter, Policy, run
    from segkit.io.sinks import Call
    from segkit.io.sources import Frames, read_frame
    from segkit.labels import parse_classes
    from segkit.models import load_segmenter

    alphas = [float(a) for a in args.alphas.split(",")]
    segmenter = load_segmenter(args.model, None, download=False)
    print(f"model {segmenter.name}; J per sequence: oracle / track, for each average weight a")
    print("| sequence | " + " | ".join(f"a={a:g} oracle J | a={a:g} track J" for a in alphas) + " |")
    for name, frames, gts in davis_sequences(DAVIS, list(CLASSES)):
        kept = []
        opts = argparse.Namespace(track=True, threshold=None)
        run(Frames(read_frame((f, f.stem), index=i) for i, f in enumerate(frames)), segmenter,
            [Call(lambda fr, seg: kept.append((np.packbits(seg.masks, axis=-1), seg.masks.shape, seg.boxes.copy(),
                                               seg.track_ids.copy())))],
            result_filter=Filter(parse_classes(CLASSES[name]), 0.5, 100), policy=Policy(writers=1),
            tracker=options.build_tracker(opts))
        cells = []
        for a in alphas:
            scorer, smooth = SequenceScorer(name), MaskAverage(a)
            for (packed, shape, boxes, tids), gt in zip(kept, gts):
                masks = np.unpackbits(packed, axis=-1, count=shape[-1]).astype(bool).reshape(shape)
                scorer.add(smooth(masks, boxes, tids), tids, read_annotation(gt))
            s = scorer.score()
            cells.append(f"{s.oracle_j:.3f} | {s.track_j:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
