"""Argument groups and the error/exit-code discipline shared by every bin/ script."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from segkit.errors import SegkitError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--model", metavar="NAME",
                   help="model zoo name (see `bin/fetch_model.py --list`); default: the zoo's default "
                        "person model, which ships with segkit and runs offline")
    m.add_argument("--model-path", metavar="PATH",
                   help="checkpoint already on disk: SavedModel folder (TF2 OD API or Model Garden "
                        "export), TF1 frozen_inference_graph.pb, .tflite or .keras; family detected")
    g.add_argument("--no-download", action="store_true",
                   help="never download: fail if the zoo model is not installed yet")
    g.add_argument("--config", metavar="YAML", help="YAML file of option defaults (see configs/default.yaml)")


def add_filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to keep")
    g.add_argument("--classes", metavar="LIST",
                   help="COCO class ids or names, comma-separated: '1,18' or 'person,dog'")
    g.add_argument("--threshold", type=_fraction, metavar="T",
                   help="minimum instance score / person probability, 0..1 (default 0.5)")
    g.add_argument("--max-instances", type=int, metavar="N", help="keep the N best instances per image")
    g.add_argument("--min-area", type=_fraction, metavar="F",
                   help="drop mask blobs (semantic) or instances smaller than this fraction of the "
                        "image, e.g. 0.001: removes specks (default: keep all)")
    g.add_argument("--list-classes", action=_ListClasses, help="print the COCO class ids and names, then exit")


class _ListClasses(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from segkit.labels import COCO_CATEGORIES

        print("\n".join(f"{cid:3d}  {name}" for cid, name in COCO_CATEGORIES.items()))
        parser.exit()


def add_output_args(p: argparse.ArgumentParser, json_help: str) -> None:
    g = p.add_argument_group("outputs")
    g.add_argument("-o", "--output", metavar="PATH",
                   help="output folder (default segmented_images/); for a single input, a file "
                        "name ending in .png/.jpg is also accepted")
    g.add_argument("--background", metavar="BG",
                   help="write a cut-out of the selected classes instead of the overlay: white, "
                        "transparent (PNG alpha), blur[:SIGMA], a colour (name, #rrggbb, r,g,b) or an image file")
    g.add_argument("--save-masks", action="store_true",
                   help="also write one 0/255 PNG per instance into NAME_masks/")
    g.add_argument("--json", nargs="?", const="results.json", metavar="FILE", help=json_help)
    g.add_argument("--no-visual", action="store_true", help="skip the overlay/cut-out image")
    g.add_argument("--alpha", type=_fraction, help="overlay opacity 0..1 (default 0.5)")
    g.add_argument("--max-pixels", type=int, metavar="N",
                   help="refuse images larger than N pixels (decompression-bomb guard, default 100M)")


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1")
    return v


def build_filter(args):
    from segkit.labels import parse_classes
    from segkit.pipeline import Filter

    try:
        classes = parse_classes(args.classes)
    except ValueError as e:
        raise UsageError(f"--classes: {e}") from None
    return Filter(classes, args.threshold, args.max_instances, getattr(args, "min_area", None))


def load_model(args, progress: bool = True):
    from segkit.models import load_segmenter

    return load_segmenter(args.model, args.model_path, download=not args.no_download, progress=progress)


def build_outputs(args, out_dir: Path):
    """(ImageOutputs, results JSON path or None) from the output flags every script shares."""
    from segkit.render import parse_background
    from segkit.sinks import ImageOutputs
    from segkit.sources import IMAGE_EXTS

    background = parse_background(args.background) if args.background else None
    outputs = ImageOutputs(out_dir, background, save_masks=args.save_masks, save_visual=not args.no_visual,
                           alpha=0.5 if args.alpha is None else args.alpha)
    json_path = None
    if args.json:
        j = Path(args.json)
        json_path = out_dir / j if not j.is_absolute() and not j.parent.parts else j
        if json_path.suffix.lower() in IMAGE_EXTS:
            raise UsageError(f"{json_path}: a results file named like an image could overwrite an "
                             "input; give it a .json name")
    return outputs, json_path


def refuse_to_overwrite_inputs(items, outputs, json_path) -> None:
    """Never write over an input, whatever -o says: check every planned output path up front."""
    from segkit.sources import Frame

    inputs = {p.resolve() for p, _ in items}
    for p, name in items:
        for target in outputs.expected(Frame(None, name, p)) + ([json_path] if json_path else []):
            if target.resolve() in inputs:
                raise UsageError(f"{target}: output would overwrite an input file; choose another -o")


def display_available() -> bool:
    """A window can only open on an X11/Wayland display (never try otherwise: Qt/Tk abort)."""
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def error(msg: str) -> None:
    print(f"segkit: error: {msg}", file=sys.stderr)


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's main: expected errors -> one line on stderr + exit code, never a traceback."""
    try:
        return main(argv)
    except UsageError as e:
        error(str(e))
        return EXIT_USAGE
    except SegkitError as e:
        error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        print("segkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `| head` closed our stdout: not an error of ours
        return EXIT_OK
