#!/usr/bin/env python3
"""Segment photos: overlay, cut-out, per-instance mask PNGs and COCO results JSON."""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from segkit import cli
from segkit.config import DEFAULTS, parse_args
from segkit.errors import UsageError
from segkit.flow import run
from segkit.io.results import CocoResults, Failures
from segkit.io.resume import STATE_DIR, OutputLock
from segkit.io.sinks import Picture
from segkit.io.sources import IMAGE_EXTS, MAX_PIXELS, Frame, ImageFiles, expand_inputs

EPILOG = """examples:
  segment_image.py -i images/person.jpg                       # person model, overlay into segmented_images/
  segment_image.py -i images/person.jpg --background white -o cut.png
  segment_image.py -i 'photos/*.jpg' --model mask_rcnn_inception_v2_coco_2018_01_28 --classes person,dog --json
  segment_image.py -i photo.jpg --model-path ~/Downloads/exported/saved_model --save-masks

Outputs already there are replaced, and the line of each input says "(replaced)". Into a folder
a segment_folder run is writing, it refuses (one line, exit 2) instead of replacing its files.

exit codes: 0 all inputs done, 1 nothing done (or a fatal error), 2 bad arguments,
            3 some inputs failed (each named on stderr, listed in OUT/failures.jsonl),
            130 interrupted (Ctrl+C), 143 terminated (SIGTERM)"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("segment_image.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", action="append", required=True, metavar="IMAGE",
                   help="image file or glob ('photos/*.jpg'); repeat -i for more")
    cli.add_model_args(p)
    cli.add_filter_args(p)
    cli.add_output_args(p, json_help="write one COCO results JSON (RLE masks, loadable by "
                                     "COCO.loadRes) for all inputs; default name results.json in the output folder")
    p.add_argument("--show", action="store_true",
                   help="show each result in a window (only when a display exists)")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    items = expand_inputs(args.input, folders=False)
    if not items:
        raise UsageError(f"no images match {' '.join(args.input)}")
    out = Path(args.output or DEFAULTS["output"])
    # "-o out/x.jpg/": the trailing slash names a folder, whatever its name looks like
    names_folder = (args.output or "").endswith(("/", os.sep))
    single_file = len(items) == 1 and out.suffix.lower() in IMAGE_EXTS and not names_folder
    out_dir = out.parent if single_file else out
    sinks, json_path = cli.build_outputs(args, out_dir)
    if single_file:
        for s in sinks:
            if isinstance(s, Picture):
                s.ext = out.suffix
        items = [(items[0][0], out.stem)]
    cli.refuse_to_overwrite_inputs(items, sinks, json_path)

    result_filter = cli.build_filter(args)
    # a segment_folder run's output folder: hold its lock (taken before the model loads, so a
    # refusal comes at once), so that neither run replaces the other's files or results.json
    with ExitStack() as locks:
        folders = {out_dir.resolve(): out_dir}
        if json_path is not None:  # --json /elsewhere/results.json
            folders.setdefault(json_path.parent.resolve(), json_path.parent)
        for folder in folders.values():
            if (folder / STATE_DIR).is_dir():
                locks.enter_context(OutputLock(folder))
        return _segment(args, items, sinks, json_path, out_dir, result_filter)


def _segment(args, items, sinks, json_path, out_dir: Path, result_filter) -> int:
    t0 = time.perf_counter()
    segmenter = cli.load_model(args)
    load_s = time.perf_counter() - t0

    # this run's inputs leave failures.jsonl (their earlier lines are stale), its failures join it
    failures = Failures(out_dir, replace=False, redone=[p for p, _ in items])
    results = CocoResults(json_path) if json_path else None
    json_existed = json_path is not None and json_path.exists()
    # Outputs already there (another model, an earlier run) are replaced: said per input, and counted
    existing = {name for p, name in items
                if any(t.exists() for s in sinks for t in s.expected(Frame(None, name, p)))}
    shown: list[Path] = []
    stats = None

    def report(frame, seg, written):
        replaced = frame.name in existing
        if replaced:
            stats.replaced += 1
        if not args.quiet:
            kept = f"{len(seg)} instances" if not seg.is_semantic else \
                f"{seg.foreground().mean() * 100:.1f}% foreground"
            print(f"{frame.path}: {kept} -> {', '.join(str(w) for w in written) or '(no image)'}"
                  f"{' (replaced)' if replaced else ''}")
        shown.extend(w for w in written if w.suffix.lower() in IMAGE_EXTS)

    from segkit.flow import RunStats

    stats = RunStats()
    with ImageFiles(items, args.max_pixels or MAX_PIXELS) as source:
        run(source, segmenter, sinks + [s for s in (results, failures) if s is not None],
            result_filter=result_filter, report=report, stats=stats)
    if failures.path:
        print(f"failures: {failures.path}", file=sys.stderr)
    if results is not None and results.path:
        print(f"COCO results: {results.path} ({results.count} detections"
              f"{', replaced the earlier file' if json_existed else ''})")
    if args.show:
        _show(shown)
    print(f"segment_image: {stats.summary()}; model {segmenter.name} loaded in {load_s:.1f} s",
          file=sys.stderr if args.quiet else sys.stdout)
    return stats.exit_code()


def _show(paths: list[Path]) -> None:
    if not cli.display_available():
        print("segment_image: --show ignored: no display (DISPLAY is not set); results are in the files above")
        return
    from segkit.io.sources import read_image
    from segkit.io.window import Window

    with Window("segkit") as win:
        for p in paths:
            win.show(read_image(p))
            if win.wait(0) in ("quit", "closed"):
                break


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
