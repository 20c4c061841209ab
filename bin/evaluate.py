#!/usr/bin/env python3
"""Score a model or a COCO results file: box/mask AP (instance models) or IoU/precision/recall
per class (semantic models), against a COCO annotation file or an images/ + masks/ folder."""
from __future__ import annotations

import argparse
import sys
import time

from segkit import cli
from segkit.config import apply_config
from segkit.errors import UsageError

EPILOG = """examples:
  evaluate.py --annotations instances_val2017.json --images val2017/                 # default person model: IoU
  evaluate.py --annotations instances_val2017.json --images val2017/ --only-with-class  # images with people
  evaluate.py --annotations instances_val2017.json --results segmented/results.json --per-class   # AP
  evaluate.py --annotations instances_val2017.json --images val2017/ --model mask_rcnn_inception_v2_coco_2018_01_28
  evaluate.py --images person/images --masks person/masks --model-path model_zoo/person_unet -o metrics.json

instance models (and results files) get COCO box and mask AP; semantic models get IoU, precision
and recall per class, pooled over all pixels of the set and as the mean per image.
--semantic scores an instance model / results file that way too (union of its masks per class).
On COCO, semantic scores add the three figures models are compared on: (1) pooled IoU over all
images, (2) pooled IoU over the images with the class, (3) the false-positive pixel share on
images without it, with pixel recall of instances by size (<32², 32²-96², >96² pixels)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("ground truth")
    g.add_argument("--annotations", metavar="JSON", help="COCO instances annotation file")
    g.add_argument("--images", metavar="DIR", help="image folder (COCO images, or images/ beside --masks)")
    g.add_argument("--masks", metavar="DIR", help="folder of N.png masks (nonzero = the class) for images/N.*")
    g = p.add_argument_group("what to score")
    g.add_argument("--results", metavar="JSON", help="COCO results file (e.g. from segment_folder.py --json)")
    cli.add_model_args(p)
    p.add_argument("--classes", metavar="LIST", help="classes to score (semantic), e.g. 'person'")
    p.add_argument("--threshold", type=float, default=None,
                   help="semantic: probability (or instance score) a pixel/mask needs, default 0.5")
    p.add_argument("--min-area", type=float, metavar="F",
                   help="semantic models: drop predicted blobs smaller than this fraction of the image")
    p.add_argument("--semantic", action="store_true",
                   help="score IoU/precision/recall even for an instance model or results file")
    p.add_argument("--only-with-class", action="store_true",
                   help="semantic on COCO: only the images holding at least one of the scored classes "
                        "(default: every image, so false positives on images without them count)")
    p.add_argument("--per-class", action="store_true", help="also print AP per class")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (quick checks)")
    p.add_argument("-o", "--output", dest="metrics_file", metavar="JSON", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from segkit import evaluate as ev
    from segkit.labels import parse_classes
    from segkit.sinks import write_json

    parser = build_parser()
    apply_config(parser, argv)
    args = parser.parse_args(argv)
    if args.threshold is None:
        args.threshold = 0.5
    if args.masks and args.annotations:
        raise UsageError("give --annotations (COCO) or --masks (mask folder), not both")
    if not args.masks and not args.annotations:
        raise UsageError("say what to score against: --annotations FILE or --images DIR --masks DIR")
    if args.results and args.masks:
        raise UsageError("--results needs --annotations (COCO ids)")
    if not args.results and not args.images:
        raise UsageError("--images DIR is needed to run a model")
    try:
        classes = parse_classes(args.classes)
    except ValueError as e:
        raise UsageError(f"--classes: {e}") from None

    t0 = time.perf_counter()
    failed: list[str] = []
    on_error = lambda frame, err: (failed.append(str(err)), cli.error(str(err)))  # noqa: E731
    metrics: dict = {}
    bar = None
    if args.masks:
        seg = cli.load_model(args, progress=not args.quiet)
        cid = min(classes) if classes else (seg_classes(seg)[0])
        bar = _bar(args, None)
        counts = ev.semantic_folder(seg, args.images, args.masks, cid, args.threshold, args.limit,
                                    progress=bar, on_error=on_error)
        metrics["semantic"] = counts.scores()
        source = f"{args.images} vs {args.masks}"
    else:
        gt = ev.load_coco(args.annotations)
        img_ids = sorted(gt.getImgIds())[: args.limit] if args.limit else sorted(gt.getImgIds())
        if args.results:
            results = ev.load_results(args.results)
            if args.semantic:
                cids = tuple(sorted(classes)) if classes else tuple(sorted({r["category_id"] for r in results}))
                if args.only_with_class:
                    img_ids = ev.images_with_classes(gt, img_ids, cids)
                figures = ev.PersonFigures(gt, cids)
                metrics["semantic"] = ev.semantic_coco_results(gt, results, img_ids, cids, args.threshold,
                                                               figures=figures).scores()
                metrics["figures"] = figures.scores()
            else:
                metrics.update(ev.coco_ap(gt, results, per_class=args.per_class,
                                          img_ids=img_ids if args.limit else None))
            source = args.results
        else:
            seg = cli.load_model(args, progress=not args.quiet)
            bar = _bar(args, len(img_ids))
            if seg.semantic or args.semantic:
                cids = tuple(sorted(classes)) if classes else tuple(seg_classes(seg))
                if args.only_with_class:
                    img_ids = ev.images_with_classes(gt, img_ids, cids)
                    bar.total = len(img_ids)
                figures = ev.PersonFigures(gt, cids)
                metrics["semantic"] = ev.semantic_coco(seg, gt, args.images, img_ids, cids, args.threshold,
                                                       progress=bar, on_error=on_error,
                                                       figures=figures, min_area=args.min_area).scores()
                metrics["figures"] = figures.scores()
            else:
                from segkit.pipeline import Filter
                results = ev.predict_coco(seg, gt, args.images, img_ids, Filter(classes, None, 100),
                                          progress=bar, on_error=on_error)
                metrics.update(ev.coco_ap(gt, results, per_class=args.per_class, img_ids=img_ids))
            source = f"{getattr(seg, 'name', '')} on {args.images}"
    if bar is not None:
        bar.close()
    metrics["source"] = source
    metrics["threshold"] = args.threshold
    if "semantic" in metrics:
        metrics["images"] = "with the scored classes" if args.only_with_class else "all"
    metrics["failed_images"] = failed
    print(f"evaluate: {source} ({time.perf_counter() - t0:.1f} s)")
    print(ev.format_table(metrics))
    if metrics.get("figures"):
        print(ev.format_figures(metrics["figures"]))
    if args.metrics_file:
        write_json(args.metrics_file, metrics)
        print(f"metrics: {args.metrics_file}")
    return cli.EXIT_SOME_FAILED if failed else cli.EXIT_OK


def seg_classes(segmenter) -> list[int]:
    """Classes a model predicts: a semantic adapter names its channels; instance: all COCO."""
    ids = getattr(segmenter, "class_ids", None)
    if ids:
        return list(ids)
    from segkit.labels import COCO_CATEGORIES
    return sorted(COCO_CATEGORIES)


def _bar(args, total):
    from tqdm import tqdm
    return tqdm(total=total, unit="img", disable=args.quiet, file=sys.stderr, desc="evaluate")


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
