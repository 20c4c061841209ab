"""Argument groups and the error/exit-code discipline shared by every bin/ script."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Callable

from segkit.invocation import command
from segkit.config import DEFAULTS, threshold_help
from segkit.errors import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED,  # noqa: F401
                           EXIT_USAGE, SegkitError, UsageError, error)
# What the options mean lives below the CLI (the server uses it too); commands reach it as cli.X.
from segkit.options import (build_filter, build_outputs, classes_of_model,  # noqa: F401
                            display_available, load_model, parse_class_filter, refuse_to_overwrite_inputs)
from segkit import options as _options


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``segkit: error: ...``, exit 2), not the usage
    block: the one-line discipline of every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"segkit: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _quiet_interrupt_hook(exc_type, exc, tb, _previous=sys.excepthook):
    """Ctrl+C before run_main is reached (during the imports of start-up): one line, no
    traceback; Python then exits by SIGINT, as a shell expects of an interrupted command."""
    if issubclass(exc_type, KeyboardInterrupt):
        print("segkit: interrupted", file=sys.stderr)
        return
    _previous(exc_type, exc, tb)


sys.excepthook = _quiet_interrupt_hook  # scripts import this module first, before the heavy imports


INVOKED_AS: str | None = None  # "segkit image" when run as a segkit subcommand


def prog(script: str) -> str:
    """The name --help and usage errors show: the subcommand, or the bin/ script's name."""
    return INVOKED_AS or script


def add_verbose_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="also show TensorFlow / absl / oneDNN / CUDA log lines (hidden by default)")


def quiet_frameworks(verbose: bool = False) -> None:
    """Hide framework log lines (cuInit, oneDNN, CPU features, absl) unless --verbose.

    Must run before TensorFlow is imported: its C++ logging reads the variables once. Values
    the user already set win (setdefault).
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # 3: the cuInit line is logged as an ERROR
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "2")
    import logging
    import warnings

    for name in ("tensorflow", "absl", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|tf_keras|absl|google\.protobuf)(\.|$)")


#: a log line TensorFlow's native code (absl / glog / TSL) writes straight to file descriptor 2:
#: "I0000 00:00:1796675009.630748    1288 device_compiler.h:196] Compiled cluster using XLA!"
#: (the environment variables of quiet_frameworks do not reach absl's own LOG, which XLA and the
#: TFLite converter use), and absl's notice before its first such line
_NATIVE_LOG = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^ \]]+:\d+\] |"
                         rb"WARNING: All log messages before absl::InitializeLog\(\) is called|"
                         rb"INFO: Created TensorFlow Lite XNNPACK delegate)")


@contextlib.contextmanager
def native_logs_hidden(verbose: bool = False):
    """Hide TensorFlow's native log lines (XLA compilation, the TFLite converter) while a long
    TensorFlow job runs, e.g. training: file descriptor 2 goes through a pipe whose lines are
    passed on to the real stderr, except those log lines. Python's own stderr, tracebacks and
    warnings included, is passed on unchanged. No-op with --verbose or without an fd 2."""
    if verbose:
        yield
        return
    fd = 2  # what native code writes to, whatever sys.stderr is
    try:
        os.fstat(fd)
    except OSError:
        yield
        return
    import threading

    sys.stderr.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)

    def forward():
        rest = b""
        while chunk := os.read(read_end, 65536):
            lines = re.split(rb"(?<=[\n\r])", rest + chunk)
            rest = lines.pop()  # an unfinished line waits for its end
            for line in lines:
                if not _NATIVE_LOG.match(line):
                    os.write(saved, line)
        if rest and not _NATIVE_LOG.match(rest):
            os.write(saved, rest)

    thread = threading.Thread(target=forward, name="segkit-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)  # closes the pipe's last write end: the thread sees its end
        thread.join(timeout=5)
        os.close(read_end)
        os.close(saved)


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--model", metavar="NAME",
                   help=f"model zoo name (see `{command('fetch')} --list`); default: the zoo's default "
                        "person model, which ships with segkit and runs offline")
    m.add_argument("--model-path", metavar="PATH",
                   help="checkpoint already on disk: a YOLOv5/v7-seg .pt (converted on first use, "
                        "cached beside it) or the .tflite `convert` wrote, a SavedModel folder (TF2 OD "
                        "API or Model Garden export), TF1 frozen_inference_graph.pb, .tflite or "
                        ".keras; family detected")
    g.add_argument("--imgsz", type=_input_size, metavar="N",
                   help="YOLO models: network input side, a multiple of 32 (320 is ~4x faster than "
                        "640 and loses small objects); converted once per size and cached "
                        "(default: the model's own, 640 for a .pt)")
    g.add_argument("--iou", type=_fraction, metavar="T",
                   help="YOLO models: NMS IoU above which the lower-scored of two same-class boxes "
                        "is dropped (default 0.45, YOLOv5's)")
    g.add_argument("--no-download", action="store_true",
                   help="never download: fail if the zoo model is not installed yet")
    g.add_argument("--config", metavar="YAML", help="YAML file of option defaults over the packaged "
                                                       "segkit/defaults.yaml (same keys)")


def add_filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to keep")
    g.add_argument("--classes", metavar="LIST",
                   help="COCO class ids or names, comma-separated: '1,18' or 'person,dog'")
    g.add_argument("--threshold", type=_fraction, metavar="T",
                   help=f"minimum instance score / person probability, 0..1 ({threshold_help()})")
    g.add_argument("--max-instances", type=_count, metavar="N",
                   help=f"keep the N best instances per image (default {DEFAULTS['max_instances']})")
    g.add_argument("--min-area", type=_fraction, metavar="F",
                   help="drop mask blobs (semantic) or instances smaller than this fraction of the "
                        "image, e.g. 0.001: removes specks (default: keep all)")
    g.add_argument("--list-classes", action=_ListClasses,
                   help="print the COCO ids and names of the classes the chosen model (--model / "
                        "--model-path, else the default model) can produce, then exit")
    _remember_argv(p)


def _remember_argv(p: argparse.ArgumentParser) -> None:
    """Keep the command line on the parser: --list-classes needs --model even when it comes after."""
    parse = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        p._segkit_argv = sys.argv[1:] if args is None else list(args)
        return parse(args, namespace)

    p.parse_known_args = parse_known_args


class _ListClasses(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--model")
        pre.add_argument("--model-path")
        known, _ = pre.parse_known_args(getattr(parser, "_segkit_argv", []))
        model = known.model or (None if known.model_path else getattr(namespace, "model", None))
        model_path = known.model_path or (None if known.model else getattr(namespace, "model_path", None))
        try:
            name, classes = classes_of_model(model, model_path)
        except SegkitError as e:
            parser.exit(EXIT_USAGE if isinstance(e, UsageError) else e.exit_code, f"segkit: error: {e}\n")
        if classes is None:
            from segkit.labels import COCO_CATEGORIES
            print(f"# {name}: classes not known before loading it; the COCO ids are:", file=sys.stderr)
            classes = COCO_CATEGORIES
        else:
            print(f"# {name}: {len(classes)} class{'es' if len(classes) != 1 else ''}", file=sys.stderr)
        print("\n".join(f"{cid:3d}  {n}" for cid, n in classes.items()))
        parser.exit()


def add_track_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--track", action="store_true",
                   help="follow objects across frames (ByteTrack-style): each keeps one id, colour and "
                        "'#id' label in every output; settings under track: in segkit/defaults.yaml")


def add_output_args(p: argparse.ArgumentParser, json_help: str) -> None:
    g = p.add_argument_group("outputs")
    g.add_argument("-o", "--output", metavar="PATH",
                   help=f"output folder (default {DEFAULTS['output']}/); for a single input, a file "
                        "name ending in .png/.jpg is also accepted")
    g.add_argument("--background", metavar="BG",
                   help="write a cut-out of the selected classes instead of the overlay: white, "
                        "transparent (PNG alpha), blur[:SIGMA], a colour (name, #rrggbb, r,g,b) or an image file")
    g.add_argument("--only-mask", action="store_true",
                   help="write the mask alone instead of the picture: one 8-bit grey PNG, 255 = kept "
                        "(the cut-out's alpha, soft edges included; rembg -om)")
    g.add_argument("--save-masks", action="store_true",
                   help="also write one 0/255 PNG per instance into NAME_masks/")
    add_refine_edges_arg(g)
    g.add_argument("--save-txt", action="store_true",
                   help="also write NAME.txt: one YOLO polygon line per instance, 'class x1 y1 x2 y2 ...' "
                        "normalised to 0..1 (Ultralytics save_txt; class = 0..79 COCO index)")
    g.add_argument("--save-conf", action="store_true", help="with --save-txt: end each line with the score")
    g.add_argument("--save-crop", action="store_true",
                   help="also write NAME_crops/NNN_<class>.jpg: each instance cut out along its box (Ultralytics save_crop)")
    g.add_argument("--json", nargs="?", const="results.json", metavar="FILE", help=json_help)
    g.add_argument("--no-visual", action="store_true", help="skip the overlay/cut-out image")
    g.add_argument("--alpha", type=_fraction, help=f"overlay opacity 0..1 (default {DEFAULTS['alpha']})")
    g.add_argument("--ext", choices=("jpg", "png"),
                   help="overlay/cut-out format (default: as the input, JPEG at quality 95 for JPEG "
                        "photos, else PNG; PNG to stdout; transparent cut-outs and masks are always PNG)")
    g.add_argument("--max-pixels", type=_count, metavar="N",
                   help=f"refuse images larger than N pixels (decompression-bomb guard, default "
                        f"{DEFAULTS['max_pixels'] / 1e6:g}M)")


def add_refine_edges_arg(g) -> None:
    g.add_argument("--refine-edges", action="store_true",
                   help="snap mask edges to the photo's own edges (a guided filter, about 5 ms of CPU "
                        "per 854x480 frame): cut-outs, overlays and --save-masks follow them")


def _checked(check):
    """argparse type from an options check: the same words as the API's and the server's errors."""
    def parse(text: str):
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = check.__name__
    return parse


_fraction, _count = _checked(_options.fraction), _checked(_options.count)
_input_size = _checked(_options.input_size)


def _positive(kind: type, what: str):
    """argparse type: a number of ``kind`` above 0 (--max-frames, --duration)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{text} must be > 0")
        return v
    return parse


positive_int, positive_float = _positive(int, "an integer"), _positive(float, "a number")


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's main: expected errors -> one line on stderr + exit code, never a traceback.

    SIGTERM (systemd, Docker, Kubernetes) is Ctrl+C's twin: the run finishes or rolls back the
    files being written, writes failures.jsonl and its results, prints one line, exits 143."""
    from segkit.flow import EXIT_TERMINATED, Terminated, sigterm_raises

    try:
        with sigterm_raises():
            return main(argv)
    except Terminated:
        print("segkit: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
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
    except OSError as e:  # a file problem nobody wrapped (disk full at start-up...): still one line
        from segkit.io.sources import os_problem

        where = e.filename if e.filename is not None else "segkit"
        error(f"{where}: {os_problem(e)}")
        return EXIT_FAILED


def add_track_output_args(p: argparse.ArgumentParser) -> None:
    """--save-mots and --per-track: the outputs made of track ids (they need --track)."""
    g = p.add_argument_group("tracked outputs (with --track)")
    g.add_argument("--save-mots", metavar="FILE",
                   help="write the tracks as a MOTS text file: 'frame track_id class_id height width rle' "
                        "per object and frame (frame 1-based; class 1 car, 2 person as in MOTS, else "
                        "100 + the COCO id; overlaps go to the higher score), what TrackEval reads")
    g.add_argument("--per-track", metavar="DIR",
                   help="write one cut-out video per track, DIR/<class>_<id>.mp4, everything but the "
                        "object replaced by --background (default black); short tracks get none")
    g.add_argument("--min-track-frames", type=_count, metavar="N",
                   help=f"--per-track: no clip for a track seen in fewer than N frames (default "
                        f"{DEFAULTS['min_track_frames']})")
