#!/usr/bin/env python3
"""Segment every image of a folder (tree): resumable, safe to kill, failures recorded, not fatal."""
from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from functools import partial
from pathlib import Path

from segkit import cli
from segkit.batch import (OutputLock, ResultsCache, check_output_dir, load_image_ids, plan_run,
                          remove_stale_temps, settings_changed, unique_names)
from segkit.config import DEFAULTS, parse_args
from segkit.errors import InputError, OutputError, UsageError
from segkit.pipeline import FlowStats, prefetch_map, run_flow
from segkit.sources import MAX_PIXELS, expand_inputs, read_frame

EPILOG = """examples:
  segment_folder.py -i images/ -o segmented_images/                 # person model, overlays
  segment_folder.py -i photos/ --recursive --pattern '*.jpg' --background white --save-masks
  segment_folder.py -i 'shots/**/*.png' --model-path exported/saved_model --classes person,dog --json
  segment_folder.py -i val2017/ --json --coco-annotations instances_val2017.json

Run it again to finish an interrupted run: complete outputs are skipped (--overwrite redoes them).
Files that cannot be read are listed in OUT/failures.jsonl and the run goes on.

exit codes: 0 all images done (or already done), 1 none could be done (or a fatal error),
            2 bad arguments, 3 some images failed (see failures.jsonl), 130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("segment_folder.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", action="append", required=True, metavar="DIR|GLOB",
                   help="folder of images or glob ('shots/**/*.jpg'); repeat -i for more")
    p.add_argument("-r", "--recursive", action="store_true", help="also take images in sub-folders")
    p.add_argument("--pattern", action="append", metavar="GLOB",
                   help="only file names matching GLOB ('*.jpg'); repeat for more")
    cli.add_model_args(p)
    cli.add_filter_args(p)
    cli.add_output_args(p, json_help="write one COCO results JSON (RLE masks, loadable by COCO.loadRes) "
                                     "for the whole folder; default name results.json in the output folder")
    g = p.add_argument_group("folder runs")
    g.add_argument("--coco-annotations", metavar="JSON",
                   help="COCO annotation file whose image ids (matched by file_name) the results JSON uses; "
                        "default: the file stem when it is a number")
    g.add_argument("--overwrite", action="store_true", help="redo images whose outputs already exist")
    g.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads decoding and threads encoding beside the model (default 2)")
    g.add_argument("--quiet", action="store_true", help="no progress bar; print only failures and the summary")
    g.add_argument("--runner", choices=("local", "beam"), default="local",
                   help="local: threads on this machine (default); beam: an Apache Beam pipeline "
                        "(RunInference), DirectRunner unless --beam-options names another")
    g.add_argument("--beam-options", metavar="'FLAGS'",
                   help="Beam pipeline options, passed through: '--runner=DataflowRunner --project=P "
                        "--region=R --temp_location=gs://B/tmp' (see README)")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.runner == "beam":
        from segkit.beam_runner import run_folder
        return run_folder(args, partial(cli.build_outputs, args), partial(cli.build_filter, args),
                          partial(_settings, args))
    for spec in args.input:
        if not Path(spec).is_dir() and not any(c in spec for c in "*?["):
            raise UsageError(f"{spec}: not a folder or glob (use segment_image.py for single images)")
    items = expand_inputs(args.input, recursive=args.recursive)
    if args.pattern:
        items = [(p, n) for p, n in items if any(fnmatch.fnmatch(p.name, g) for g in args.pattern)]
    out_dir = Path(args.output or DEFAULTS["output"])
    items = unique_names(check_output_dir(out_dir, args.input, items))
    if not items:
        raise UsageError(f"no images in {' '.join(args.input)}"
                         + ("" if args.recursive else " (sub-folders need --recursive)"))

    outputs, json_path = cli.build_outputs(args, out_dir)
    cli.refuse_to_overwrite_inputs(items, outputs, json_path)
    id_map = load_image_ids(args.coco_annotations) if args.coco_annotations else None
    result_filter = cli.build_filter(args)

    with OutputLock(out_dir):
        remove_stale_temps(out_dir)
        cache = ResultsCache(out_dir) if json_path else None
        plan = plan_run(items, outputs, cache, overwrite=args.overwrite)
        stats = FlowStats(skipped=len(plan.skipped))
        failures: list[tuple[Path, str]] = []
        segmenter = None
        try:
            if plan.todo:
                segmenter = cli.load_model(args, progress=not args.quiet)
                changed = settings_changed(out_dir, _settings(args, segmenter.name))
                if changed and plan.skipped and not args.overwrite:
                    cli.error(f"warning: {len(plan.skipped)} outputs in {out_dir} were made with other "
                              f"settings ({'; '.join(changed)}); they are kept: --overwrite redoes them")
                stats = _segment(plan, segmenter, outputs, cache, result_filter, args, failures)
        finally:
            # Even on Ctrl-C: what failed so far is recorded, what finished is already on disk.
            recorded = cli.record_failures(out_dir, failures)
        if json_path and stats.done + stats.skipped:
            try:
                n = cache.merge(items, json_path, id_map)
                if not args.quiet:
                    print(f"COCO results: {json_path} ({n} detections)")
            except OutputError as e:  # e.g. the disk filled up: the images are done, a rerun merges
                cli.error(str(e))
                stats.failed += 1

    if failures and recorded:
        print(f"failures: {recorded}", file=sys.stderr)
    model = f"; model {segmenter.name}" if segmenter is not None else ""
    print(f"segment_folder: {stats.summary()}{model}", file=sys.stderr if args.quiet else sys.stdout)
    if stats.failed:
        return cli.EXIT_SOME_FAILED if stats.done + stats.skipped else cli.EXIT_FAILED
    return cli.EXIT_OK


def _segment(plan, segmenter, outputs, cache, result_filter, args, failures) -> FlowStats:
    from tqdm import tqdm

    max_pixels = args.max_pixels or MAX_PIXELS

    def write(frame, seg):
        outputs.write(frame, seg)
        if cache is not None:
            cache.put(frame, seg)  # after the outputs: a results file means the image is complete

    def on_error(frame, err):
        reason = err.problem if isinstance(err, InputError) else str(err)  # OutputError names the output
        failures.append((frame.path, reason))
        tqdm.write(f"segkit: error: {frame.path}: {reason}", file=sys.stderr)

    workers = max(1, args.workers)
    with tqdm(total=len(plan.todo), unit="img", disable=args.quiet, file=sys.stderr,
              desc="segment_folder", dynamic_ncols=True) as bar:
        t0 = time.perf_counter()
        frames = prefetch_map(partial(read_frame, max_pixels=max_pixels), plan.todo, workers=workers,
                              lookahead=4 * workers)
        stats = run_flow(frames, segmenter, write, result_filter, on_error=on_error, progress=bar,
                         write_workers=workers, max_pending_writes=4 * workers)
        stats.seconds = time.perf_counter() - t0
    stats.skipped = len(plan.skipped)
    if stats.stopped:
        stats.not_attempted = len(plan.todo) - stats.done - stats.failed
    return stats


def _settings(args, model_name: str) -> dict:
    """What shapes the outputs: a rerun with other values warns that old outputs are kept."""
    return {"model": model_name, "classes": args.classes, "threshold": args.threshold,
            "max_instances": args.max_instances, "background": args.background,
            "alpha": args.alpha, "save_masks": args.save_masks, "no_visual": args.no_visual}


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
