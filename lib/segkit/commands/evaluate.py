#!/usr/bin/env python3
"""Score a model or a COCO results file: box/mask AP (instance models) or IoU/precision/recall
per class (semantic models), against a COCO annotation file or an images/ + masks/ folder; or a
tracked model on DAVIS video sequences (--davis): J and boundary F, oracle and one-track."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from segkit import cli
from segkit.config import DEFAULTS, threshold_help, parse_args

EPILOG = """examples:
  segkit evaluate --annotations instances_val2017.json --images val2017/                 # default person model: IoU
  segkit evaluate --annotations instances_val2017.json --images val2017/ --only-with-class  # images with people
  segkit evaluate --annotations instances_val2017.json --results segmented/results.json --per-class   # AP
  segkit evaluate --annotations instances_val2017.json --images val2017/ --model yolov5s_seg_coco --imgsz 320
  segkit evaluate --images person/images --masks person/masks --model-path model_zoo/person_unet -o metrics.json
  segkit evaluate --davis DAVIS --sequences dog --model yolov5s_seg_coco_int8 --classes dog -o davis.json
  (bin/evaluate.py is the same command, with the same options; COCO's val2017 layout above)

instance models (and results files) get COCO box and mask AP; semantic models get IoU, precision
and recall per class, pooled over all pixels of the set and as the mean per image.
--semantic scores an instance model / results file that way too (union of its masks per class).
On COCO, semantic scores add the three figures models are compared on: (1) pooled IoU over all
images, (2) pooled IoU over the images with the class, (3) the false-positive pixel share on
images without it, with pixel recall of instances by size (<32², 32²-96², >96² pixels).

--davis ROOT (ROOT/JPEGImages/480p/SEQ/*.jpg, ROOT/Annotations/480p/SEQ/*.png) runs the model
with --track over each sequence and scores, per sequence: oracle J (per frame the best IoU of
any instance with the annotated object), track J (the DAVIS unsupervised protocol: the one track
with the best J over all frames, 0 where it is absent), the boundary F of both (the DAVIS
toolkit's: tolerance 0.008 of the diagonal), the track count and the fps of model + tracker."""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("evaluate.py"), description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("ground truth")
    g.add_argument("--annotations", metavar="JSON", help="COCO instances annotation file")
    g.add_argument("--images", metavar="DIR", help="image folder (COCO images, or images/ beside --masks)")
    g.add_argument("--masks", metavar="DIR", help="folder of N.png masks (nonzero = the class) for images/N.*")
    g.add_argument("--davis", metavar="ROOT", help="DAVIS folder (JPEGImages/480p, Annotations/480p): "
                                                  "tracked J and F per video sequence")
    g.add_argument("--sequences", metavar="A,B", help="with --davis: only these sequences (default: all)")
    g.add_argument("--refine-edges", action="store_true",
                   help="with --davis: score the masks --refine-edges gives (snapped to the frames' edges)")
    g = p.add_argument_group("what to score")
    g.add_argument("--results", metavar="JSON", help="COCO results file (e.g. from segment_folder.py --json)")
    cli.add_model_args(p)
    p.add_argument("--classes", metavar="LIST", help="classes to score (semantic), e.g. 'person'")
    p.add_argument("--threshold", type=float, default=None,
                   help="semantic: probability (or instance score) a pixel/mask needs, "
                        f"{threshold_help()}; AP always keeps every score")
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
    from segkit.evaluation.report import format_report
    from segkit.evaluation.run import Options, evaluate
    from segkit.io.atomic import write_json

    args = parse_args(build_parser(), argv)
    if args.davis:
        return _davis(args)
    if args.sequences:
        raise cli.UsageError("--sequences goes with --davis")
    if args.refine_edges:
        raise cli.UsageError("--refine-edges goes with --davis")
    flags = {f.name for f in dataclasses.fields(Options)} - {"classes"}
    options = Options(**{k: v for k, v in vars(args).items() if k in flags},  # checks the combination
                      download=not args.no_download, progress=not args.quiet)
    options.classes = cli.parse_class_filter(args, with_model=not args.results)
    report = evaluate(options, on_error=cli.error)
    print(format_report(report))
    if args.metrics_file:
        write_json(args.metrics_file, report.metrics)
        print(f"metrics: {args.metrics_file}")
    return cli.EXIT_SOME_FAILED if report.failed else cli.EXIT_OK


def _davis(args) -> int:
    from tqdm import tqdm

    from segkit import options
    from segkit.evaluation.davis import davis_sequences, evaluate_davis, format_table, mean_scores
    from segkit.flow import Filter
    from segkit.io.atomic import write_json

    for flag in ("annotations", "images", "masks", "results"):
        if getattr(args, flag):
            raise cli.UsageError(f"--davis scores a model on its own frames: leave out --{flag}")
    if args.threshold is not None:
        options.validate(args)
    wanted = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    try:
        seqs = davis_sequences(args.davis, wanted)  # before the model loads: a bad folder is quick
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    classes = cli.parse_class_filter(args)
    result_filter = Filter(classes, args.threshold, DEFAULTS["max_instances"], args.min_area, args.refine_edges,
                           kind_default=True)
    args.track = True
    segmenter = options.load_model(args, progress=not args.quiet)
    result_filter = result_filter.for_model(segmenter)  # no --threshold: the model kind's default
    threshold = result_filter.threshold
    try:
        with tqdm(total=sum(len(f[:args.limit]) for _, f, _ in seqs), unit="frame", disable=args.quiet,
                  file=sys.stderr, desc="evaluate --davis", dynamic_ncols=True) as bar:
            scores = evaluate_davis(args.davis, segmenter, result_filter,
                                    lambda: options.build_tracker(args), [n for n, _, _ in seqs],
                                    progress=bar, limit=args.limit,
                                    on_error=lambda line: tqdm.write(f"segkit: error: {line}", file=sys.stderr))
    finally:
        segmenter.close()
    print(f"DAVIS {args.davis}: model {segmenter.name}, classes {args.classes or 'all'}, threshold {threshold}, --track"
          + (", --refine-edges" if args.refine_edges else ""))
    print(format_table(scores))
    if args.metrics_file:
        write_json(args.metrics_file, {"davis": args.davis, "model": segmenter.name, "classes": args.classes,
                                       "threshold": threshold, "refine_edges": args.refine_edges, "sequences": [s.as_dict() for s in scores],
                                       "mean": mean_scores(scores)})
        print(f"metrics: {args.metrics_file}")
    return cli.EXIT_SOME_FAILED if any(s.failed for s in scores) else cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
