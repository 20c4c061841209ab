"""Named options -> what a run is made of: a model, a ``Filter`` and sinks.

The one place below both the command line and the HTTP server: ``cli.py`` maps argparse flags
onto these names, ``segkit.serve`` maps request parameters onto the same names, and both call
the functions here. ``opts`` is anything with the options as attributes (an argparse
``Namespace`` or an :class:`Options`); an option that is absent counts as not given. Nothing
here imports argparse.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

from segkit.config import DEFAULTS
from segkit.errors import OptionError, SegkitError, UsageError


@dataclass
class Options:
    """Every option a segmenting run takes, by its flag's name ('--max-instances' ->
    max_instances). None means "not given": the packaged default applies where there is one."""

    model: str | None = None
    model_path: str | None = None
    no_download: bool = False
    classes: str | None = None
    threshold: float | None = None
    max_instances: int | None = None
    min_area: float | None = None
    background: str | None = None
    only_mask: bool = False
    alpha: float | None = None
    ext: str | None = None
    save_masks: bool = False
    refine_edges: bool = False
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    json: str | None = None
    no_visual: bool = False
    max_pixels: int | None = None
    output: str | None = None
    imgsz: int | None = None
    iou: float | None = None

    @classmethod
    def with_defaults(cls, **given) -> "Options":
        """Options with the packaged defaults (segkit/defaults.yaml) under what is given."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise UsageError(f"unknown option{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
        base = {k: v for k, v in DEFAULTS.items() if k in names}
        base.update({k: v for k, v in given.items() if v is not None})
        return cls(**base)


def fraction(value) -> float:
    """A number in 0..1 (threshold, alpha, min_area); ValueError says what is wrong."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{value} is outside 0..1")
    return v


def count(value) -> int:
    """A whole number >= 1 (max_instances, max_pixels); ValueError says what is wrong."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None
    if v < 1:
        raise ValueError(f"{value} must be 1 or more")
    return v


def input_size(value) -> int:
    """A YOLO input side: a whole multiple of 32 (the network's largest stride); ValueError says
    what is wrong."""
    v = count(value)
    if v % 32:
        raise ValueError(f"{value} is not a multiple of 32 (e.g. 320, 480, 640)")
    return v


#: option -> its check; the CLI's argparse types, the API and the server all use these
CHECKS = {"threshold": fraction, "alpha": fraction, "min_area": fraction, "iou": fraction,
          "max_instances": count, "max_pixels": count, "imgsz": input_size}


def validate(opts) -> None:
    """Refuse option values that would run and silently give nothing (exit 2 on the CLI, a 4xx
    on the server, ValueError in the API): the same checks and messages everywhere."""
    for name, check in CHECKS.items():
        v = getattr(opts, name, None)
        if v is not None:
            try:
                check(v)
            except ValueError as e:
                raise OptionError(f"--{name.replace('_', '-')}: {e}") from None
    classes = getattr(opts, "classes", None)
    if classes is not None and not str(classes).strip(" ,"):
        raise OptionError("--classes: empty; give class names or ids ('person,dog' or '1,18'), or leave it out for all")


def classes_of_model(model: str | None, model_path: str | None) -> tuple[str, dict[int, str] | None]:
    """(name, {COCO id: name}) of the classes a model can produce, from its zoo entry or its file
    type alone: no download, no TensorFlow. None when only loading the model would tell."""
    from segkit import zoo
    from segkit.labels import COCO_CATEGORIES
    from segkit.labels import model_classes as channel_classes

    if model_path:
        p = Path(model_path)
        spec = zoo.entry_beside(p) if p.exists() else None
        if spec is None:
            if p.suffix.lower() == ".tflite":
                return p.name, {1: COCO_CATEGORIES[1]}  # what the loader assumes of a bare .tflite
            if p.suffix.lower() in (".keras", ".h5"):
                return p.name, None  # its names are in the file's own metadata
            return p.name, dict(COCO_CATEGORIES)  # .pt, OD API and Model Garden: COCO instance models
    else:
        registry = zoo.load_registry()
        spec = registry.get(model or registry.default)
    if spec.classes:
        # COCO names keep their COCO ids; a model trained with its own names brings its own table
        ids, own = channel_classes(spec.classes)
        table = own or COCO_CATEGORIES
        return spec.name, {cid: table[cid] for cid in ids}
    if spec.task == "instance" or spec.labels == "coco":
        return spec.name, dict(COCO_CATEGORIES)
    return spec.name, None


def build_filter(opts) -> "Filter":
    """The Filter (classes, threshold, max_instances, min_area) the options ask for."""
    from segkit.flow import Filter

    validate(opts)
    return Filter(parse_class_filter(opts), getattr(opts, "threshold", None), getattr(opts, "max_instances", None),
                  getattr(opts, "min_area", None), bool(getattr(opts, "refine_edges", False)), kind_default=True)


def build_tracker(opts):
    """A segkit.track.Tracker when the options ask for ``track``, else None. Its high score is
    the run's threshold: what is kept without tracking is what may start a track."""
    if not getattr(opts, "track", False):
        return None
    from segkit.track import Tracker

    try:
        return Tracker(high_score=getattr(opts, "threshold", None))
    except (TypeError, ValueError) as e:  # a --config file's track: mapping
        raise UsageError(f"track: {e}") from None


def parse_class_filter(opts, with_model: bool = True) -> set[int] | None:
    """--classes as class ids, read against the chosen model's classes (its registry entry or the
    entry beside it: no download, no TensorFlow, looked up once). A model trained with its own
    names (pet, border) is read with those; a class the model can never produce is refused in one
    line (an empty result would look like "nothing found" rather than "wrong model").
    ``with_model=False``: no model is involved (evaluate --results), COCO names."""
    from segkit.labels import COCO_CATEGORIES, class_name, parse_classes

    if not getattr(opts, "classes", None):
        return None
    name, known = (classes_of_model(getattr(opts, "model", None), getattr(opts, "model_path", None))
                   if with_model else (None, None))
    own = known if known and any(COCO_CATEGORIES.get(c) != n for c, n in known.items()) else None
    try:
        classes = parse_classes(opts.classes, own)
    except ValueError as e:
        raise OptionError(f"--classes: {e}") from None
    missing = sorted(classes - set(known)) if classes and known is not None else []
    if missing:
        have = ", ".join(known.values()) if len(known) <= 5 else f"{len(known)} COCO classes"
        raise OptionError(f"--classes {', '.join(class_name(c) for c in missing)}: model {name} cannot "
                         f"produce {'it' if len(missing) == 1 else 'them'} (it has: {have}); pick a "
                         "model that has it, e.g. --model yolov5s_seg_coco (80 COCO classes)")
    return classes


def model_identity(opts) -> str:
    """The chosen model without loading it: its zoo name, or the checkpoint's absolute path."""
    from segkit import zoo

    if getattr(opts, "model_path", None):
        return str(Path(opts.model_path).expanduser().resolve())
    if getattr(opts, "model", None):
        return opts.model
    return zoo.load_registry().default


def load_model(opts, progress: bool = True):
    from segkit.models import load_segmenter

    validate(opts)
    return load_segmenter(opts.model, opts.model_path, download=not opts.no_download, progress=progress,
                          imgsz=getattr(opts, "imgsz", None), iou=getattr(opts, "iou", None))


#: per-image file sinks beyond the picture: flag -> sink(opts, out_dir). A new output format is
#: one sink class in its own file, its flag in add_output_args and its line here.
def _file_sinks():
    from segkit.io.crops import Crops
    from segkit.io.sinks import Masks, YoloTxt

    return {"save_masks": lambda opts, out: Masks(out),
            "save_txt": lambda opts, out: YoloTxt(out, with_conf=opts.save_conf),
            "save_crop": lambda opts, out: Crops(out)}


def build_outputs(opts, out_dir: Path):
    """(per-image file sinks, results JSON path or None) from the output flags every script shares."""
    from segkit.io.sinks import Picture, Renderer
    from segkit.io.sources import IMAGE_EXTS
    from segkit.render import parse_background

    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: -o names an existing file, not a folder; give a folder "
                         "(created if missing) or, for one input, an image file name")
    if getattr(opts, "save_conf", False) and not getattr(opts, "save_txt", False):
        raise UsageError("--save-conf adds scores to the --save-txt files: give --save-txt too")
    only_mask = getattr(opts, "only_mask", False)
    if only_mask and (opts.background or opts.no_visual):
        raise UsageError(f"--only-mask writes the mask instead of the picture: drop "
                         f"{'--background' if opts.background else '--no-visual'}")
    background = parse_background(opts.background) if opts.background else None
    render = Renderer(background, opts.alpha, mask_only=only_mask)
    sinks = [] if opts.no_visual else [Picture(out_dir, render, getattr(opts, "ext", None))]
    sinks += [make(opts, out_dir) for flag, make in _file_sinks().items() if getattr(opts, flag, False)]
    json_path = None
    if opts.json:
        j = Path(opts.json)
        json_path = out_dir / j if not j.is_absolute() and not j.parent.parts else j
        if json_path.suffix.lower() in IMAGE_EXTS:
            raise UsageError(f"{json_path}: a results file named like an image could overwrite an "
                             "input; give it a .json name")
    return sinks, json_path


def refuse_to_overwrite_inputs(items, sinks, json_path) -> None:
    """Never write over an input, whatever -o says: check every planned output path up front."""
    from segkit.io.sources import Frame, real_path

    inputs = {real_path(p) for p, _ in items if os.path.lexists(p)}  # a missing one is reported later
    for p, name in items:
        planned = [t for s in sinks for t in s.expected(Frame(None, name, p))]
        for target in planned + ([json_path] if json_path else []):
            if real_path(target) in inputs:
                hint = " (or --ext png)" if target.suffix.lower() in (".jpg", ".jpeg") else ""
                raise UsageError(f"{target}: output would overwrite an input file; choose another -o{hint}")


def display_available() -> bool:
    """A window can only open on an X11/Wayland display (never try otherwise: Qt/Tk abort)."""
    import sys

    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def build_track_outputs(opts, items=None, state_dir=None, fps: float | None = None) -> list:
    """The sinks that read track ids: ``save_mots`` (MOTS text file) and ``per_track`` (a clip per
    track, on ``background``, default black). Both need ``track``: without it, a UsageError in
    one line. ``items`` + ``state_dir``: a resumable folder run (kept per frame, merged at the end)."""
    wanted = [f"--{n.replace('_', '-')}" for n in ("save_mots", "per_track") if getattr(opts, n, None)]
    if not wanted:
        return []
    if not getattr(opts, "track", False):
        raise UsageError(f"{' and '.join(wanted)} need{'s' if len(wanted) == 1 else ''} track ids: add --track")
    sinks = []
    if getattr(opts, "save_mots", None):
        from segkit.io.mots import MotsFile

        sinks.append(MotsFile(opts.save_mots, cache=state_dir, items=items))
    if getattr(opts, "per_track", None):
        from segkit.io.per_track import PerTrackClips

        sinks.append(PerTrackClips(opts.per_track, getattr(opts, "background", None), fps=fps, items=items,
                                   state_dir=state_dir, min_frames=getattr(opts, "min_track_frames", None),
                                   max_pixels=getattr(opts, "max_pixels", None)))
    return sinks
