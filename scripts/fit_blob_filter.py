#!/usr/bin/env python3
"""Fit the blob filter of a gated person model (segkit.models.blob_filter) on COCO photos.

    scripts/fit_blob_filter.py --model-path model_zoo/person_selfie_coco \\
        --annotations runs/coco_extra/train.json --images ../shared/data/coco_extra/images \\
        -o model_zoo/person_selfie_coco/blob_filter.json

Every blob the main network finds in a photo becomes one example: its features
(blob_filter.FEATURES) and whether keeping it raises pooled IoU, which holds when its person
pixels outnumber ``--ref-iou`` times its other pixels (the set's IoU moves by tp - IoU * fp).
Each example weighs what is at stake, |tp - IoU * fp| pixels. A logistic regression
(scikit-learn, standardised features) is fitted to that and stored as JSON beside the model,
which then keeps a blob when the fitted probability is >= 0.5. Fit on photos the main network
never trained on, and keep the photos you report on out of it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def blob_examples(model, gt, images: Path, threshold: float):
    """(features [n, F], person pixels [n], other pixels [n]) of every blob of every image."""
    import cv2
    from tqdm import tqdm

    from segkit.evaluation.coco import coco_class_truth
    from segkit.io.sources import read_image
    from segkit.models.blob_filter import blob_features
    from segkit.models.tflite import gate_like

    xs, tps, fps = [], [], []
    for img_id in tqdm(sorted(gt.imgs), unit="img", desc="blobs"):
        image = read_image(images / gt.imgs[img_id]["file_name"])
        probs = model.network_probs(image)
        gate = gate_like(model.gate.network_probs(image), probs)
        labels, x = blob_features(probs[..., 0], gate[..., 0], threshold)
        if not len(x):
            continue
        truth = coco_class_truth(gt, img_id, (1,))[0].astype(np.float32)
        # person share of each network cell; a cell stands for this many image pixels
        share = cv2.resize(truth, (probs.shape[1], probs.shape[0]), interpolation=cv2.INTER_AREA)
        cell = image.shape[0] * image.shape[1] / share.size
        n = len(x) + 1
        tp = np.bincount(labels.ravel(), weights=share.ravel(), minlength=n)[1:] * cell
        area = np.bincount(labels.ravel(), minlength=n)[1:] * cell
        xs.append(x)
        tps.append(tp)
        fps.append(area - tp)
    return np.concatenate(xs), np.concatenate(tps), np.concatenate(fps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", required=True, help="the gated model's folder (zoo.yaml, model + gate)")
    p.add_argument("--annotations", required=True, action="append", help="COCO annotation file (repeatable)")
    p.add_argument("--images", required=True, action="append", help="its image folder (one per --annotations)")
    p.add_argument("-o", "--output", required=True, help="blob filter JSON to write")
    p.add_argument("--ref-iou", type=float, default=0.5, help="the pooled IoU a kept blob must beat (default 0.5)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the regression")
    a = p.parse_args(argv)
    if len(a.annotations) != len(a.images):
        p.error("one --images per --annotations")

    from sklearn.linear_model import LogisticRegression

    import dataclasses

    from segkit import zoo
    from segkit.evaluation.coco import load_coco
    from segkit.models import build_segmenter, detect_family
    from segkit.models.blob_filter import BlobFilter
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
    x, tp, fp = (np.concatenate(v) for v in zip(*parts))
    gain = tp - a.ref_iou * fp
    mean, scale = x.mean(0), x.std(0) + 1e-9
    reg = LogisticRegression(C=a.C, max_iter=5000).fit((x - mean) / scale, gain > 0, sample_weight=np.abs(gain) + 1)
    bf = BlobFilter(mean=mean.tolist(), scale=scale.tolist(), coef=reg.coef_[0].tolist(),
                    intercept=float(reg.intercept_[0]),
                    fitted_on=f"{len(x)} blobs of {' + '.join(a.annotations)}; ref IoU {a.ref_iou}")
    bf.save(a.output)
    keep = bf.keep(x)
    print(f"{a.output}: {len(x)} blobs, {int(keep.sum())} kept on the fitting set; person pixels kept "
          f"{tp[keep].sum() / tp.sum():.1%}, other pixels kept {fp[keep].sum() / fp.sum():.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
