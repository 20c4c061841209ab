#!/usr/bin/env python3
"""Segment photos: overlay, cut-out, per-instance mask PNGs and COCO results JSON."""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from segkit import cli
from segkit.config import DEFAULTS, parse_args
from segkit.errors import UsageError
from segkit.flow import run
from segkit.io.results import CocoResults, Failures
from segkit.io.resume import STATE_DIR, OutputLock
from segkit.io.sinks import Picture, StreamPicture
from segkit.io.sources import IMAGE_EXTS, MAX_PIXELS, Frame, Frames, ImageFiles, expand_inputs, is_glob
from segkit.io.streams import check_streams, is_stream, read_stream_frame, stream_name

EPILOG = """examples:
  segkit image -i images/000000519208.jpg                  # person model, overlay into segmented_images/
  segkit image -i images/000000519208.jpg --background white -o cut.png
  segkit image -i 'images/*.jpg' --model yolov5s_seg_coco --classes person,elephant --json
  segkit image -i images/000000183709.jpg --model-path yolov5s-seg.pt --imgsz 320 --save-masks
  cat images/000000519208.jpg | segkit image -i - -o - --background transparent > cut.png
  segkit image -i images/000000519208.jpg --only-mask -o mask.png     # the alpha alone, 8-bit grey
  (bin/segment_image.py is the same command, with the same options)

Outputs already there are replaced, and the line of each input says "(replaced)". Into a folder
a segment_folder run is writing, it refuses (one line, exit 2) instead of replacing its files.

exit codes: 0 all inputs done, 1 nothing done (or a fatal error), 2 bad arguments,
            3 some inputs failed (each named on stderr, listed in OUT/failures.jsonl),
            130 interrupted (Ctrl+C), 143 terminated (SIGTERM)"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("segment_image.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", action="append", required=True, metavar="IMAGE",
                   help="image file, glob ('photos/*.jpg'), http(s):// URL (fetched with the same "
                        "pixel limit, 20 s timeout) or - (stdin); repeat -i for more")
    cli.add_model_args(p)
    cli.add_filter_args(p)
    cli.add_output_args(p, json_help="write one COCO results JSON (RLE masks, loadable by "
                                     "COCO.loadRes) for all inputs; default name results.json in the output folder")
    p.add_argument("--show", action="store_true",
                   help="show each result in a window (only when a display exists)")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    cli.add_verbose_arg(p)
    for action in p._actions:
        if action.dest == "output":
            action.help += "; - writes the one picture to stdout (PNG unless --ext jpg)"
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    streams = [s for s in args.input if is_stream(s)]  # '-' (stdin) and URLs: read, not looked up
    check_streams(streams)
    items = expand_inputs([s for s in args.input if not is_stream(s)], folders=False)
    stream_items = [(s, stream_name(s)) for s in streams]
    if not items and not stream_items:
        raise UsageError(f"no images match {' '.join(args.input)}")
    to_stdout = args.output == "-"
    if to_stdout:
        _check_stdout(args, len(items) + len(stream_items))
    out = Path(args.output or DEFAULTS["output"])
    # "-o out/x.jpg/": the trailing slash names a folder, whatever its name looks like
    names_folder = (args.output or "").endswith(("/", os.sep))
    single_file = len(items) + len(stream_items) == 1 and out.suffix.lower() in IMAGE_EXTS and not names_folder
    out_dir = Path(".") if to_stdout else out.parent if single_file else out
    sinks, json_path = cli.build_outputs(args, out_dir)
    if to_stdout:
        sinks = [StreamPicture(sys.stdout.buffer, s.render, args.ext) if isinstance(s, Picture) else s
                 for s in sinks]
    if single_file:
        for s in sinks:
            if isinstance(s, Picture):
                s.ext = out.suffix
        items = [(items[0][0], out.stem)] if items else []
        stream_items = [(stream_items[0][0], out.stem)] if stream_items else []
    cli.refuse_to_overwrite_inputs(items, sinks, json_path)

    result_filter = cli.build_filter(args)
    # a segment_folder run's output folder: hold its lock (taken before the model loads, so a
    # refusal comes at once), so that neither run replaces the other's files or results.json
    with ExitStack() as locks:
        folders = {} if to_stdout else {out_dir.resolve(): out_dir}
        if json_path is not None:  # --json /elsewhere/results.json
            folders.setdefault(json_path.parent.resolve(), json_path.parent)
        for folder in folders.values():
            if (folder / STATE_DIR).is_dir():
                locks.enter_context(OutputLock(folder))
        return _segment(args, items, stream_items, sinks, json_path, out_dir, result_filter, to_stdout)


def _check_stdout(args, n_inputs: int) -> None:
    """``-o -``: one picture, and nothing else that would need a folder."""
    if n_inputs != 1:
        raise UsageError(f"-o - writes one image to stdout: give one input, not {n_inputs}")
    if args.no_visual:
        raise UsageError("-o - writes the picture to stdout: --no-visual leaves nothing to write")
    extra = [f"--{k.replace('_', '-')}" for k in ("save_masks", "save_txt", "save_crop", "show")
             if getattr(args, k, False)]
    if args.json and not Path(args.json).is_absolute() and not Path(args.json).parent.parts:
        extra.append("--json without a path")
    if extra:
        raise UsageError(f"-o - writes the picture to stdout: {', '.join(extra)} need a folder; "
                         "use -o FOLDER (or --json DIR/results.json)")
    if sys.stdout.isatty():
        raise UsageError("-o -: stdout is a terminal; redirect it (> out.png) or pipe it on")


def _segment(args, items, stream_items, sinks, json_path, out_dir: Path, result_filter, to_stdout: bool) -> int:
    say = partial(print, file=sys.stderr) if to_stdout else print  # stdout carries the image alone
    t0 = time.perf_counter()
    segmenter = cli.load_model(args)
    load_s = time.perf_counter() - t0

    # this run's inputs leave failures.jsonl (their earlier lines are stale), its failures join it
    failures = None if to_stdout else Failures(out_dir, replace=False, redone=[p for p, _ in items])
    results = CocoResults(json_path) if json_path else None
    json_existed = json_path is not None and json_path.exists()
    # Outputs already there (another model, an earlier run) are replaced: said per input, and counted
    streams = {spec for spec, _ in stream_items}
    existing = {name for p, name in items + stream_items
                if any(t.exists() for s in sinks for t in s.expected(Frame(None, name, None if p in streams else p)))}
    shown: list[Path] = []
    stats = None

    def report(frame, seg, written):
        replaced = frame.name in existing
        if replaced:
            stats.replaced += 1
        if not args.quiet:
            kept = f"{len(seg)} instances" if not seg.is_semantic else \
                f"{seg.foreground().mean() * 100:.1f}% foreground"
            where = ", ".join(str(w) for w in written) or ("stdout" if to_stdout else "(no image)")
            say(f"{frame.path or origin.get(frame.name, frame.name)}: {kept} -> {where}"
                f"{' (replaced)' if replaced else ''}")
        shown.extend(w for w in written if w.suffix.lower() in IMAGE_EXTS)

    from segkit.flow import RunStats

    origin = {name: ("stdin" if spec == "-" else spec) for spec, name in stream_items}
    max_pixels = args.max_pixels or MAX_PIXELS

    def frames(files):
        for spec, name in stream_items:  # read on this thread, before the files
            yield read_stream_frame(spec, name, max_pixels)
        while (frame := files.next()) is not None:
            yield frame

    stats = RunStats()
    named = {Path(s) for s in args.input if not is_stream(s) and not is_glob(s)}  # the user's own paths
    with ImageFiles(items, max_pixels, listed={p for p, _ in items if p not in named}) as files:
        source = Frames(frames(files), total=len(items) + len(stream_items))
        run(source, segmenter, sinks + [s for s in (results, failures) if s is not None],
            result_filter=result_filter, report=report, stats=stats)
    if failures is not None and failures.path:
        print(f"failures: {failures.path}", file=sys.stderr)
    if results is not None and results.path:
        say(f"COCO results: {results.path} ({results.count} detections"
            f"{', replaced the earlier file' if json_existed else ''})")
    if args.show:
        _show(shown)
    print(f"segment_image: {stats.summary()}; model {segmenter.name} loaded in {load_s:.1f} s",
          file=sys.stderr if args.quiet or to_stdout else sys.stdout)
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
