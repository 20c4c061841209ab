"""segment_webcam's run: a camera, stream, video or frame folder through the one flow into a window and/or a
video file, with every way out (q, Ctrl+C, SIGTERM, the stream ending, an error) releasing the
camera and finalising the video.

Capture (the source's thread), the model (this thread), drawing and video encoding (writer
threads) overlap; the policy keeps one writer in frame order and a queue of two, so nothing builds
a backlog: when the model is slower than a camera, the source drops stale frames instead.
"""
from __future__ import annotations

import sys
import time
from contextlib import ExitStack

from segkit import options
from segkit.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, SegkitError, UsageError
from segkit.errors import error as report_error
from segkit.flow import (EXIT_TERMINATED, STREAM, EverySeconds, Limits, RunStats, Terminated, run,
                         signals_deferred, sigterm_raises)
from segkit.io.sinks import Renderer
from segkit.render import parse_background


def segment_stream(args) -> int:
    """Run segment_webcam's options; returns the exit status (the summary line is printed)."""
    background = parse_background(args.background) if args.background else None
    if background is not None and background.has_alpha:
        raise UsageError("--background transparent: videos have no alpha channel; use a colour, blur or an image")
    result_filter = options.build_filter(args)
    tracker = options.build_tracker(args)
    track_outputs = options.build_track_outputs(args)  # --save-mots, --per-track: need --track
    render = Renderer(background, args.alpha)
    say = (lambda *a, **k: None) if args.quiet else print

    from segkit.io.frame_folder import FrameFolder, is_frame_source
    from segkit.io.video_source import VideoSource, open_capture
    from segkit.io.video_writer import VideoSink, check_video_path

    if args.video_output:
        check_video_path(args.video_output)  # before the model loads and the camera opens
    show = not args.no_show and options.display_available()
    frames = is_frame_source(args.source)
    if frames and args.realtime:
        raise UsageError("--realtime: for video files; a frame folder is read frame by frame")
    # Open the camera (list the frames) before loading the model: a missing camera or an empty
    # folder fails in a fraction of a second.
    capture = FrameFolder(args.source, mirror=args.mirror) if frames else open_capture(args.source)
    try:
        t0 = time.perf_counter()
        segmenter = options.load_model(args)
        load_s = time.perf_counter() - t0
    except BaseException:
        capture.close() if frames else capture.release()
        raise

    stats, source, video, status, error = RunStats(), None, None, EXIT_OK, ""
    stack = ExitStack()  # camera, model, source, video, window: released in reverse on any way out
    stack.callback(capture.close if frames else capture.release)
    stack.callback(segmenter.close)
    try:
        try:
            with sigterm_raises():
                source = stack.enter_context(capture if frames else VideoSource(
                    args.source, realtime=args.realtime, capture=capture, mirror=args.mirror))
                sinks = []
                if args.video_output:
                    video = VideoSink(args.video_output, source.fps, render)
                    stack.callback(video.close, False)  # finalised even if the run never starts
                    _name_leftovers(video.writer, say)
                    sinks.append(video)
                window = _open_window(stack, source, say) if show else None
                if window is not None:
                    from segkit.io.window import WindowSink
                    sinks.append(WindowSink(window, render))
                sinks += track_outputs
                say(f"segment_webcam: {source.name} {source.width}x{source.height} @ {source.fps:g} fps "
                    f"({'live' if source.live else 'every frame'}) -> {_destination(window, video, args)}; "
                    f"model {segmenter.name} loaded in {load_s:.1f} s", flush=True)
                progress = None if (window is not None or args.quiet) else EverySeconds(
                    lambda: f"segment_webcam: {stats.done} frames, {stats.recent_fps():.1f} fps"
                            + (f", {source.dropped} dropped" if source.live else ""))
                run(source, segmenter, sinks, result_filter=result_filter, policy=STREAM,
                    limits=Limits(args.max_frames, args.duration), progress=progress, stats=stats,
                    tracker=tracker)
        finally:
            with signals_deferred():  # a second Ctrl+C must not cut the video file in half
                stack.close()
    except KeyboardInterrupt:
        status, error = EXIT_INTERRUPTED, "interrupted (Ctrl+C)"
    except Terminated:
        status, error = EXIT_TERMINATED, "terminated (SIGTERM)"
    except SegkitError as e:
        if source is None:
            raise  # nothing was started: run_main prints the one-line error
        status, error = e.exit_code, str(e)
    if error:
        print(f"segment_webcam: {error}", file=sys.stderr)
    elif stats.failed:  # frames of a folder that could not be read (each reported in one line)
        status = stats.exit_code()
    if source is not None:
        print(f"segment_webcam: {stats.summary('frames', _details(stats, source, video, tracker) + _written(track_outputs))}"
              f"; model {segmenter.name}", file=sys.stderr if args.quiet else sys.stdout, flush=True)
    if video is not None and video.writer.error is not None:
        # never exit 0 with a file that does not play: nothing is left at the final path
        report_error(f"{video.path}: writing video failed, nothing written ({video.writer.error})")
        status = status or EXIT_FAILED
    return status


def _written(track_outputs) -> list[str]:
    """The summary's words for --save-mots and --per-track."""
    from segkit.io.mots import MotsFile

    parts = []
    for sink in track_outputs:
        if isinstance(sink, MotsFile):
            parts.append(f"MOTS {sink.path} ({sink.lines} objects)" if sink.path else "no MOTS file written")
        else:
            parts.append(f"{len(sink.written)} per-track clip{'s' if len(sink.written) != 1 else ''} in {sink.out_dir}")
    return parts


def _name_leftovers(writer, say) -> None:
    for p in writer.leftovers_removed:
        say(f"segment_webcam: removed {p}, left by a run that was killed")
    for p in writer.leftovers_kept:
        print(f"segment_webcam: note: {p} belongs to a run that may still be writing "
              "(here or on another machine); delete it if none is", file=sys.stderr)


def _open_window(stack: ExitStack, source, say):
    from segkit.io.window import Window, WindowError

    try:
        return stack.enter_context(Window(f"segkit - {source.name}"))
    except WindowError as e:
        say(f"segment_webcam: {e}: running headless")
        return None


def _destination(window, video, args) -> str:
    if window is not None:
        return "window (q or Esc quits)" + (f" + {video.path}" if video else "")
    why = "--no-show" if args.no_show else ("no display (DISPLAY is not set)" if not options.display_available()
                                            else "window failed")
    saved = getattr(args, "save_mots", None) or getattr(args, "per_track", None)
    return f"headless, {why}" + (f", writing {video.path}" if video else "" if saved else "; nothing is saved without --output")


def _details(stats: RunStats, source, video, tracker=None) -> list[str]:
    """The summary's parts beyond the counts: drops, tracks, time per stage, the output."""
    parts = [f"{source.dropped} dropped (live source)"] if source.live else []
    if tracker is not None:
        n = tracker.next_id - 1
        parts.append(f"{n} track{'s' if n != 1 else ''}")
    if stats.done:
        cap_ms = source.read_seconds / source.read * 1000 if source.read else 0.0
        stages = (f"per frame: capture {cap_ms:.1f} ms, model {stats.ms(stats.model_s):.1f} ms, "
                  + (f"track {stats.ms(stats.track_s):.2f} ms, " if tracker is not None else "")
                  + f"draw + write {stats.ms(stats.write_s):.1f} ms")
        if video is not None and video.writer.frames_in:
            stages += f", encode {video.writer.write_seconds / video.writer.frames_in * 1000:.1f} ms"
        if stats.show_s:
            stages += f", window {stats.ms(stats.show_s):.1f} ms"
        parts.append(stages)
    if video is not None:
        w = video.writer
        parts.append(f"output {w.final} ({w.frames_written} frames)" if w.final else
                     "no output written" + ("" if w.error is not None else " (no frames)"))
    return parts
