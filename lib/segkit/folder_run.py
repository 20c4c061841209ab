"""segment_folder's run, for both runners (local threads, or Beam in beam_runner.py): the
output folder is locked and cleaned, complete images are skipped (the resumable policy), failures
are recorded and the results of the whole folder merged, whatever the runner."""
from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

from segkit import options
from segkit.config import DEFAULTS
from segkit.errors import SegkitError, UsageError
from segkit.flow import Policy, RunStats, run
from segkit.io.results import CocoResults, Failures, ResultsCache, load_image_ids
from segkit.io.resume import (Made, check_output_dir, differences, output_folder, plan_run, settings_changed,
                              unique_names)
from segkit.io.sources import MAX_PIXELS, Frames, ImageFiles, expand_inputs, is_glob
from segkit.track.resume import ResumingTracker, SavedDetections


def settings(args, model_name: str, classes: set[int] | None = None) -> dict:
    """What shapes the content of the outputs: an output made with other values is redone.
    (Which outputs are asked for needs no entry: a missing one makes its input redone anyway.)
    ``classes``: the parsed ids, so 'person' and '1' are the same setting."""
    overlay = not args.no_visual and not args.background
    return {"model": model_name, "classes": sorted(classes) if classes else None,
            "threshold": args.threshold, "max_instances": args.max_instances,
            "min_area": getattr(args, "min_area", None), "background": args.background,
            "alpha": args.alpha if overlay else None, "save_conf": getattr(args, "save_conf", False),
            "track": getattr(args, "track", False),
            **({"only_mask": True} if getattr(args, "only_mask", False) else {}),  # same file name as the picture
            **({"refine_edges": True} if getattr(args, "refine_edges", False) else {}),
            **{k: getattr(args, k) for k in ("imgsz", "iou") if getattr(args, k, None) is not None}}


def check_inputs(specs: list[str], remote=lambda spec: False) -> None:
    for spec in specs:
        if not remote(spec) and not Path(spec).is_dir() and not is_glob(spec):
            raise UsageError(f"{spec}: not a folder or glob (use segment_image.py for single images)")


def track_inputs(args) -> tuple[list[tuple[Path, str]], dict[Path, int]]:
    """--track: the frames of one folder (natural name order) or printf pattern, and their
    frame indices."""
    from segkit.io.frame_folder import list_frames

    if len(args.input) != 1 or args.recursive:
        raise UsageError("--track follows objects through one video: give one frame folder or "
                         "printf pattern (frames/%05d.jpg) with -i, without --recursive")
    if is_glob(args.input[0]):
        raise UsageError(f"{args.input[0]}: --track takes a frame folder or a printf pattern "
                         "(frames/%05d.jpg), not a glob: the frame order must be unambiguous")
    frames = list_frames(args.input[0])
    return [(p, n) for p, n, _ in frames], {p: i for p, _, i in frames}


def no_images(args) -> UsageError:
    return UsageError(f"no images in {' '.join(args.input)}"
                      + ("" if args.recursive else " (sub-folders need --recursive)"))


def warn_changed(plan, now: dict, out_dir: Path) -> None:
    """One line when outputs made with other settings are about to be redone."""
    if not plan.stale:
        return
    changes = []
    for old in plan.stale_settings:
        diff = "no record of their settings: a run stopped half-way, or an older segkit" if old is None else "; ".join(differences(old, now))
        if diff not in changes:
            changes.append(diff)
    n = len(plan.stale)
    print(f"segkit: note: {n} input{'s' if n != 1 else ''} in {out_dir} had outputs made with other "
          f"settings ({' | '.join(changes)}): redoing {'them' if n != 1 else 'it'}, their files are replaced",
          file=sys.stderr)


def segment_folder(args) -> tuple[RunStats, str]:
    """The local runner: returns the run's stats and the model's name ("" when nothing was left
    to do). Prints failures, the results file and the progress bar as it goes."""
    from tqdm import tqdm

    tracker = options.build_tracker(args)
    index_of: dict[Path, int] = {}
    if tracker is not None:  # one video's frames, in order
        items, index_of = track_inputs(args)
    else:
        check_inputs(args.input)
        items = expand_inputs(args.input, recursive=args.recursive)
    if args.pattern:
        items = [(p, n) for p, n in items if any(fnmatch.fnmatch(p.name, g) for g in args.pattern)]
    out_dir = Path(args.output or DEFAULTS["output"])
    items = unique_names(check_output_dir(out_dir, args.input, items))
    if not items:
        raise no_images(args)
    sinks, json_path = options.build_outputs(args, out_dir)
    # --save-mots / --per-track: kept per frame under out/.segkit, merged in frame order at the end
    track_outputs = options.build_track_outputs(_in_output(args, out_dir), items=items, state_dir=out_dir,
                                                fps=_frames_fps(args))
    sinks += track_outputs
    options.refuse_to_overwrite_inputs(items, sinks, json_path)
    id_map = load_image_ids(args.coco_annotations) if args.coco_annotations else None
    result_filter = options.build_filter(args)

    now = settings(args, options.model_identity(args), result_filter.classes)

    with output_folder(out_dir):
        results = CocoResults(json_path, ResultsCache(out_dir), items, id_map) if json_path else None
        if results is not None:  # after the images: its per-image file holds their results
            sinks.append(results)
        made = Made(out_dir, now)  # last: its record says the input is complete, with these settings
        sinks = [made.first(), *sinks, made]
        if tracker is not None:  # a frame is complete with its detections saved (track/resume.py)
            sinks.insert(1, SavedDetections(out_dir))
        plan = plan_run(items, sinks, overwrite=args.overwrite)
        if tracker is not None:
            tracker = ResumingTracker(tracker, out_dir, [(n, index_of[p]) for p, n in items],
                                      {n for _, n in plan.skipped})
        settings_changed(out_dir, now)
        failures = Failures(out_dir)
        stats, model = RunStats(skipped=len(plan.skipped), replaced=len(plan.stale)), ""
        if plan.todo:
            warn_changed(plan, now, out_dir)
            segmenter = options.load_model(args, progress=not args.quiet)
            model = segmenter.name
            with tqdm(total=len(plan.todo), unit="img", disable=args.quiet, file=sys.stderr,
                      desc="segment_folder", dynamic_ncols=True) as bar, \
                    ImageFiles(plan.todo, args.max_pixels or MAX_PIXELS, workers=args.workers, listed=True,
                               lookahead=max(4 * args.workers, 2 * segmenter.max_batch),
                               prepare=segmenter.prepare,
                               indices=[index_of[p] for p, _ in plan.todo] if tracker else None) as source:
                stats = run(source, segmenter, sinks + [failures], result_filter=result_filter,
                            policy=Policy.files(args.workers), progress=bar, stats=stats, tracker=tracker,
                            on_error=lambda line: tqdm.write(f"segkit: error: {line}", file=sys.stderr))
        else:  # nothing left to segment: earlier runs' results are still merged, failures reset
            stats = run(Frames([]), None, sinks + [failures], stats=stats)
    if failures.failures and failures.path:
        print(f"failures: {failures.path}", file=sys.stderr)
    if results is not None and results.path and not args.quiet:
        print(f"COCO results: {results.path} ({results.count} detections)")
    if not args.quiet:
        for line in _track_output_lines(track_outputs):
            print(line)
    return stats, model


def _in_output(args, out_dir: Path):
    """--save-mots NAME (no folder in it) goes into the output folder, as --json NAME does."""
    mots = getattr(args, "save_mots", None)
    if mots and not Path(mots).is_absolute() and not Path(mots).parent.parts:
        from argparse import Namespace
        return Namespace(**{**vars(args), "save_mots": str(out_dir / mots)})
    return args


def _frames_fps(args) -> float | None:
    """The frame rate video_to_frames recorded for the input folder (manifest.json), if any."""
    from segkit.io.frames import read_manifest

    folder = Path(args.input[0]) if len(args.input) == 1 else None
    if folder is None or not folder.is_dir():
        return None
    try:
        manifest = read_manifest(folder)
    except SegkitError:
        return None
    return manifest.fps if manifest is not None else None


def _track_output_lines(track_outputs) -> list[str]:
    from segkit.io.mots import MotsFile

    lines = []
    for sink in track_outputs:
        if isinstance(sink, MotsFile):
            if sink.path:
                lines.append(f"MOTS: {sink.path} ({sink.lines} objects)")
        elif sink.written:
            lines.append(f"per-track clips: {len(sink.written)} in {sink.out_dir}")
    return lines

