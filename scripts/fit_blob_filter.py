#!/usr/bin/env python3
"""Fit the blob filter of a gated person model (segkit.models.blob_filter) on COCO photos.

    scripts/fit_blob_filter.py --model-path model_zoo/person_selfie_coco \\
        --annotations runs/coco_extra/train.json --images ../shared/data/coco_extra/images \\
        -o model_zoo/person_selfie_coco/blob_filter.json \\
        [--check-annotations VAL.json --check-images VAL_DIR --bootstrap 20]

Every blob the main network finds in a photo becomes one example: its features
(blob_filter.FEATURES) and whether keeping it raises pooled IoU, which holds when its person
pixels outnumber ``--ref-iou`` times its other pixels (the set's IoU moves by tp - IoU * fp).
Each example weighs what is at stake, |tp - IoU * fp| pixels (``--medium-weight W`` counts the
pixels of medium people, COCO's 32²-96² instances, W more times: issue #15's recall figure,
which pooled IoU barely sees). A logistic regression (scikit-learn, standardised features) is
fitted to that and stored as JSON beside the model, which then keeps a blob when the fitted
probability is >= 0.5. Fit on photos the main network never trained on, and keep the photos you
report on out of it.

``--check-*`` scores a second set at blob level: pooled person IoU over all its images (the
ground truth at the network's resolution, so within a few thousandths of bin/evaluate.py) and
pixel recall of its medium people, with every blob kept, with the blobs the gate touches, and
with this filter; ``--bootstrap N`` refits on N resamples of the fitting photos and prints the
spread of that figure (how much the filter depends on which photos it saw).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


@dataclass
class Blobs:
    """Every blob of a photo set: features [n, F], person and other pixels [n], pixels of medium
    people (32²-96² instances) [n], the photo each came from [n], and the set's person and
    medium-person pixels in all (blobs or not)."""

    x: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    medium: np.ndarray
    photo: np.ndarray
    person_pixels: float
    medium_pixels: float

    def pooled_iou(self, keep: np.ndarray) -> float:
        return float(self.tp[keep].sum() / (self.person_pixels + self.fp[keep].sum()))

    def medium_recall(self, keep: np.ndarray) -> float:
        return float(self.medium[keep].sum() / max(self.medium_pixels, 1.0))

    def figures(self, keep: np.ndarray) -> str:
        return f"{self.pooled_iou(keep):.3f} (medium recall {self.medium_recall(keep):.2f})"


def medium_people(gt, img_id: int, shape: tuple[int, int]) -> np.ndarray:
    """bool [h,w]: the pixels of the photo's medium person instances (as bin/evaluate.py sizes
    them: COCO's 32²-96² bucket, crowds left out)."""
    from segkit.evaluation.pixels import SIZE_BUCKETS

    _, lo, hi = next(b for b in SIZE_BUCKETS if b[0] == "medium")
    out = np.zeros(shape, bool)
    for ann in gt.imgToAnns[img_id]:
        if ann["category_id"] == 1 and not ann.get("iscrowd", 0):
            m = gt.annToMask(ann).astype(bool)
            if lo <= np.count_nonzero(m) < hi:
                out |= m
    return out


def blob_examples(model, gt, images: Path, threshold: float) -> Blobs:
    import cv2
    from tqdm import tqdm

    from segkit.evaluation.coco import coco_class_truth
    from segkit.io.sources import read_image
    from segkit.models.blob_filter import FEATURES, blob_features
    from segkit.models.tflite import gate_like

    xs, tps, fps, meds, photos, person, medium = [np.zeros((0, len(FEATURES)))], [], [], [], [], 0.0, 0.0
    for img_id in tqdm(sorted(gt.imgs), unit="img", desc="blobs"):
        image = read_image(images / gt.imgs[img_id]["file_name"])
        truth = coco_class_truth(gt, img_id, (1,))[0]
        person += float(np.count_nonzero(truth))
        mid = medium_people(gt, img_id, truth.shape)
        medium += float(np.count_nonzero(mid))
        probs = model.network_probs(image)
        gate = gate_like(model.gate.network_probs(image), probs)
        labels, x = blob_features(probs[..., 0], gate[..., 0], threshold)
        if not len(x):
            continue
        # person share of each network cell; a cell stands for this many image pixels
        n, cell = len(x) + 1, image.shape[0] * image.shape[1] / labels.size

        def pixels_per_blob(mask):
            share = cv2.resize(mask.astype(np.float32), (probs.shape[1], probs.shape[0]),
                               interpolation=cv2.INTER_AREA)
            return np.bincount(labels.ravel(), weights=share.ravel(), minlength=n)[1:] * cell

        tp = pixels_per_blob(truth)
        area = np.bincount(labels.ravel(), minlength=n)[1:] * cell
        xs.append(x)
        tps.append(tp)
        fps.append(area - tp)
        meds.append(pixels_per_blob(mid))
        photos.append(np.full(len(x), img_id))
    return Blobs(np.concatenate(xs), np.concatenate(tps or [[]]), np.concatenate(fps or [[]]),
                 np.concatenate(meds or [[]]), np.concatenate(photos or [[]]).astype(int), person, medium)


def fit(blobs: Blobs, ref_iou: float, C: float, fitted_on: str = "", medium_weight: float = 0.0):
    from sklearn.linear_model import LogisticRegression

    from segkit.models.blob_filter import BlobFilter

    gain = blobs.tp + medium_weight * blobs.medium - ref_iou * blobs.fp
    if (gain > 0).all() or (gain <= 0).all():
        raise SystemExit("fit_blob_filter: every blob of the fitting set is on one side: nothing to learn")
    mean, scale = blobs.x.mean(0), blobs.x.std(0) + 1e-9
    reg = LogisticRegression(C=C, max_iter=5000).fit((blobs.x - mean) / scale, gain > 0,
                                                     sample_weight=np.abs(gain) + 1)
    return BlobFilter(mean=mean.tolist(), scale=scale.tolist(), coef=reg.coef_[0].tolist(),
                      intercept=float(reg.intercept_[0]), fitted_on=fitted_on)


def resample(blobs: Blobs, rng: np.random.Generator) -> Blobs:
    """The blobs of len(photos) photos drawn with replacement from the set's photos."""
    ids = np.unique(blobs.photo)
    rows = np.concatenate([np.flatnonzero(blobs.photo == i) for i in rng.choice(ids, len(ids))])
    return Blobs(blobs.x[rows], blobs.tp[rows], blobs.fp[rows], blobs.medium[rows], blobs.photo[rows],
                 blobs.person_pixels, blobs.medium_pixels)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", required=True, help="the gated model's folder (zoo.yaml, model + gate)")
    p.add_argument("--annotations", required=True, action="append", help="COCO annotation file (repeatable)")
    p.add_argument("--images", required=True, action="append", help="its image folder (one per --annotations)")
    p.add_argument("-o", "--output", required=True, help="blob filter JSON to write")
    p.add_argument("--ref-iou", type=float, default=0.5, help="the pooled IoU a kept blob must beat (default 0.5)")
    p.add_argument("--medium-weight", type=float, default=0.0,
                   help="count medium people's pixels this many times more (default 0)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the regression")
    p.add_argument("--check-annotations", help="COCO annotation file of a set to score at blob level")
    p.add_argument("--check-images", help="its image folder")
    p.add_argument("--bootstrap", type=int, default=0, help="refits on resampled fitting photos, scored on the check set")
    a = p.parse_args(argv)
    if len(a.annotations) != len(a.images):
        p.error("one --images per --annotations")
    if bool(a.check_annotations) != bool(a.check_images) or (a.bootstrap and not a.check_annotations):
        p.error("--check-annotations and --check-images go together (and --bootstrap needs them)")

    import dataclasses

    from segkit import zoo
    from segkit.evaluation.coco import load_coco
    from segkit.models import build_segmenter, detect_family
    from segkit.models.blob_filter import FEATURES
    from segkit.models.tflite import CONFIRM_THRESHOLD

    family, path = detect_family(Path(a.model_path))
    spec = zoo.entry_beside(path)
    if spec is not None:  # the networks alone: the filter being fitted may not exist yet
        extra = {k: v for k, v in spec.extra.items() if k != "blob_filter_file"}
        spec = dataclasses.replace(spec, extra=extra)
    model = build_segmenter(family, path, name=spec.name if spec else path.name, spec=spec, progress=False)
    if getattr(model, "gate", None) is None:
        p.error(f"{a.model_path}: not a gated TFLite model (its zoo.yaml names no gate_file)")
    parts = [blob_examples(model, load_coco(ann), Path(im), CONFIRM_THRESHOLD)
             for ann, im in zip(a.annotations, a.images)]
    blobs = Blobs(*(np.concatenate([getattr(b, k) for b in parts]) for k in ("x", "tp", "fp", "medium", "photo")),
                  sum(b.person_pixels for b in parts), sum(b.medium_pixels for b in parts))
    weighted = f"; medium weight {a.medium_weight:g}" if a.medium_weight else ""
    bf = fit(blobs, a.ref_iou, a.C, medium_weight=a.medium_weight,
             fitted_on=f"{len(blobs.x)} blobs of {' + '.join(a.annotations)}; ref IoU {a.ref_iou}{weighted}")
    bf.save(a.output)
    keep = bf.keep(blobs.x)
    print(f"{a.output}: {len(blobs.x)} blobs, {int(keep.sum())} kept on the fitting set; person pixels kept "
          f"{blobs.tp[keep].sum() / blobs.tp.sum():.1%}, other pixels kept {blobs.fp[keep].sum() / blobs.fp.sum():.1%}")

    if a.check_annotations:
        check = blob_examples(model, load_coco(a.check_annotations), Path(a.check_images), CONFIRM_THRESHOLD)
        touched = check.x[:, FEATURES.index("gate_max")] >= CONFIRM_THRESHOLD
        print(f"check set {a.check_annotations}: pooled person IoU over all its photos, at blob level: "
              f"every blob {check.figures(np.ones(len(check.x), bool))}, "
              f"blobs the gate touches {check.figures(touched)}, this filter {check.figures(bf.keep(check.x))}")
        if a.bootstrap:
            rng = np.random.default_rng(0)
            got = np.array([check.pooled_iou(fit(resample(blobs, rng), a.ref_iou, a.C,
                                                 medium_weight=a.medium_weight).keep(check.x))
                            for _ in range(a.bootstrap)])
            print(f"{a.bootstrap} refits on resampled fitting photos: {got.min():.3f}-{got.max():.3f} "
                  f"(median {np.median(got):.3f}; {int((got >= 0.5).sum())} of {a.bootstrap} >= 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
