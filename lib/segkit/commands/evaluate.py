#!/usr/bin/env python3
"""Score a model or a COCO results file: box/mask AP (instance models) or IoU/precision/recall
per class (semantic models), against a COCO annotation file or an images/ + masks/ folder."""
from __future__ import annotations

import argparse
import sys
import time

from segkit import cli
from segkit.config import DEFAULTS, parse_args
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
    p = cli.ArgumentParser(prog=cli.prog("evaluate.py"), description=__doc__, epilog=EPILOG,
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
                   help="semantic: probability (or instance score) a pixel/mask needs, "
                        f"default {DEFAULTS['threshold']}")
    p.add_argument("--min-area", type=float, metavar="F",
                   help="semantic models: drop predicted blobs smaller than this fraction of the image")
    p.add_argument("--semantic", action="store_true",
                   help="score IoU/precision/recall even for an instance model or results file")
    p.add_argument("--instance", action="store_true",
                   help="score box/mask AP even for a semantic (person) model's results file")
    p.add_argument("--only-with-class", action="store_true",
                   help="semantic on COCO: only the images holding at least one of the scored classes "
                        "(default: every image, so false positives on images without them count)")
    p.add_argument("--per-class", action="store_true", help="also print AP per class")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (quick checks)")
    p.add_argument("-o", "--output", dest="metrics_file", metavar="JSON", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from segkit.evaluation.ap import COCO_MAX_DETS, coco_ap
    from segkit.evaluation.coco import images_with_classes, load_coco, load_results
    from segkit.evaluation.pixels import PersonFigures, semantic_coco_results
    from segkit.evaluation.predict import predict_coco, semantic_coco, semantic_folder
    from segkit.evaluation.report import format_figures, format_table
    from segkit.sinks import write_json

    args = parse_args(build_parser(), argv)
    if args.threshold is None:
        args.threshold = DEFAULTS["threshold"]  # a --config file may set it to null
    if args.masks and args.annotations:
        raise UsageError("give --annotations (COCO) or --masks (mask folder), not both")
    if not args.masks and not args.annotations:
        raise UsageError("say what to score against: --annotations FILE or --images DIR --masks DIR")
    if args.results and args.masks:
        raise UsageError("--results needs --annotations (COCO ids)")
    if not args.results and not args.images:
        raise UsageError("--images DIR is needed to run a model")
    classes = cli.parse_class_filter(args, with_model=not args.results)

    t0 = time.perf_counter()
    failed: list[str] = []
    on_error = lambda frame, err: (failed.append(str(err)), cli.error(str(err)))  # noqa: E731
    metrics: dict = {}
    bar = None
    scope = None  # which of the annotated images are scored, and why
    if args.masks:
        seg = cli.load_model(args, progress=not args.quiet)
        cid = min(classes) if classes else (seg_classes(seg)[0])
        bar = _bar(args, None)
        counts = semantic_folder(seg, args.images, args.masks, cid, args.threshold, args.limit,
                                    progress=bar, on_error=on_error)
        metrics["semantic"] = counts.scores()
        source = f"{args.images} vs {args.masks}"
    else:
        gt = load_coco(args.annotations)
        img_ids = sorted(gt.getImgIds())[: args.limit] if args.limit else sorted(gt.getImgIds())
        if args.results:
            results = load_results(args.results)
            img_ids, scope = covered_by_results(gt, img_ids, results, args.results)
            if scoring_of_results(args, results) == "semantic":
                cids = tuple(sorted(classes)) if classes else tuple(sorted({r["category_id"] for r in results}))
                if args.only_with_class:
                    img_ids = images_with_classes(gt, img_ids, cids)
                figures = PersonFigures(gt, cids)
                metrics["semantic"] = semantic_coco_results(gt, results, img_ids, cids, args.threshold,
                                                               figures=figures).scores()
                metrics["figures"] = figures.scores()
            else:
                metrics.update(coco_ap(gt, results, per_class=args.per_class, img_ids=img_ids))
            source = args.results
        else:
            img_ids, scope = present_in_folder(gt, img_ids, args.images)
            seg = cli.load_model(args, progress=not args.quiet)
            bar = _bar(args, len(img_ids))
            if seg.semantic or args.semantic:
                cids = tuple(sorted(classes)) if classes else tuple(seg_classes(seg))
                if args.only_with_class:
                    img_ids = images_with_classes(gt, img_ids, cids)
                    bar.total = len(img_ids)
                figures = PersonFigures(gt, cids)
                metrics["semantic"] = semantic_coco(seg, gt, args.images, img_ids, cids, args.threshold,
                                                       progress=bar, on_error=on_error,
                                                       figures=figures, min_area=args.min_area).scores()
                metrics["figures"] = figures.scores()
            else:
                from segkit.pipeline import Filter
                results = predict_coco(seg, gt, args.images, img_ids, Filter(classes, None, COCO_MAX_DETS),
                                          progress=bar, on_error=on_error)
                metrics.update(coco_ap(gt, results, per_class=args.per_class, img_ids=img_ids))
            source = f"{getattr(seg, 'name', '')} on {args.images}"
    if bar is not None:
        bar.close()
    metrics["source"] = source
    metrics["threshold"] = args.threshold
    if "semantic" in metrics:
        metrics["images"] = "with the scored classes" if args.only_with_class else "all"
    metrics["failed_images"] = failed
    if scope is not None:
        metrics.update(scope)
    print(f"evaluate: {source} ({time.perf_counter() - t0:.1f} s)")
    if scope is not None:
        print(f"evaluate: scored {scope['images_scored']} of {scope['images_annotated']} annotated "
              f"images ({scope['images_which']})")
    print(format_table(metrics))
    if metrics.get("figures"):
        print(format_figures(metrics["figures"]))
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


def covered_by_results(gt, img_ids: list[int], results: list[dict], results_path) -> tuple[list[int], dict]:
    """The annotated images a results file covers: those it has detections for, plus those
    segment_folder.py processed without finding anything (its per-image records beside the file).

    Scoring every annotated image instead would count the images never segmented as misses.
    """
    from pathlib import Path

    from segkit.errors import SegkitError

    seen = {r.get("image_id") for r in results}
    how = "with results"
    records = Path(results_path).parent / ".segkit" / "results"
    if records.is_dir():
        by_file = {Path(info["file_name"]).stem: iid for iid, info in gt.imgs.items()}
        for rec in records.rglob("*.json"):
            stem = rec.stem
            iid = by_file.get(stem, int(stem) if stem.isdigit() else None)
            if iid is not None:
                seen.add(iid)
        how = "segmented by segment_folder.py"
    else:
        how = "with at least one detection; images segmented without one cannot be told apart"
    wanted = set(img_ids)
    covered = sorted(i for i in seen if i in wanted)
    if not covered:
        raise SegkitError(f"{results_path}: covers none of the {len(img_ids)} annotated images "
                          "(image ids differ? write results with --coco-annotations)")
    return covered, {"images_scored": len(covered), "images_annotated": len(img_ids), "images_which": how}


def present_in_folder(gt, img_ids: list[int], image_dir) -> tuple[list[int], dict]:
    """The annotated images whose file is in --images (a partial copy of val2017 scores what it holds)."""
    from pathlib import Path

    from segkit.errors import SegkitError

    folder = Path(image_dir)
    if not folder.is_dir():
        raise SegkitError(f"{folder}: no such folder")
    names = {p.name for p in folder.iterdir()}
    present = [i for i in img_ids if gt.imgs[i]["file_name"] in names]
    if not present:
        raise SegkitError(f"{folder}: holds none of the {len(img_ids)} annotated images")
    return present, {"images_scored": len(present), "images_annotated": len(img_ids),
                     "images_which": f"found in {folder}"}


def scoring_of_results(args, results: list[dict]) -> str:
    """IoU ("semantic") for a person model's results (segkit marks them), else AP ("instance")."""
    if args.semantic and args.instance:
        raise UsageError("--semantic or --instance, not both")
    if args.semantic or args.instance:
        return "semantic" if args.semantic else "instance"
    return "semantic" if results and all(r.get("semantic") for r in results) else "instance"


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
