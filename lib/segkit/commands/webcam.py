#!/usr/bin/env python3
"""Live segmentation of a camera, a video file or a network stream, shown in a window and/or
written to a video.

Capture (a thread), the model (the main thread), drawing (a thread) and video encoding (a
thread) overlap (segkit.live). Live sources never build a backlog: when the model is slower than the camera, stale frames are dropped and the
newest one is segmented. The camera is released and --output is finalised on every way out
(q/Esc, closing the window, Ctrl+C, SIGTERM, the stream ending, an error).
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack

from segkit import cli
from segkit.config import DEFAULTS, parse_args
from segkit.errors import SegkitError, UsageError
from segkit.live import (EXIT_TERMINATED, RunStats, Terminated, make_renderer, run_stream, signals_deferred,
                         sigterm_raises)
from segkit.render import parse_background

EPILOG = """examples:
  segment_webcam.py                                   # camera 0, person model, window (q or Esc quits)
  segment_webcam.py --background blur --mirror        # video-call style blurred background
  segment_webcam.py --background office.jpg --output call.mp4
  segment_webcam.py --source clip.mp4 --output clip_seg.mp4        # every frame of a file
  segment_webcam.py --source rtsp://192.168.1.20/stream --duration 60 --output cam.mp4

exit codes: 0 done (q, window closed, end of stream, --max-frames/--duration reached),
            1 error (camera cannot be opened, model failed; --output is still finalised),
            2 bad arguments, 130 Ctrl+C, 143 SIGTERM (--output finalised in both cases)"""



def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("segment_webcam.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("source")
    g.add_argument("--source", default="0", metavar="SRC",
                   help="camera index (default 0), video file, or stream URL (rtsp://, http://, ... "
                        "whatever OpenCV's FFmpeg opens)")
    g.add_argument("--realtime", action="store_true",
                   help="play a file at its own frame rate and drop frames the model cannot keep up "
                        "with, as for a camera (default for files: process every frame)")
    g.add_argument("--mirror", action="store_true", help="flip frames left-right (selfie view)")
    cli.add_model_args(p)
    cli.add_filter_args(p)
    g = p.add_argument_group("outputs")
    g.add_argument("--background", metavar="BG",
                   help="replace everything but the selected classes: white, blur[:SIGMA], a colour "
                        "(name, #rrggbb, r,g,b) or an image file (default: coloured overlay)")
    g.add_argument("--alpha", type=cli._fraction, help=f"overlay opacity 0..1 (default {DEFAULTS['alpha']})")
    # dest differs from 'output' on purpose: defaults.yaml's output is the image folder.
    g.add_argument("-o", "--output", dest="video_output", metavar="VIDEO",
                   help="write the annotated stream to this video (.mp4/.mov/.mkv: MPEG-4, .avi: MJPEG); "
                        "written to a temp file and renamed into place when the run ends")
    g.add_argument("--no-show", action="store_true", help="never open a window, even with a display")
    g = p.add_argument_group("run length")
    g.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop after N segmented frames")
    g.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    cli.add_verbose_arg(p)
    return p


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


_positive_int, _positive_float = _positive(int, "an integer"), _positive(float, "a number")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    background = parse_background(args.background) if args.background else None
    if background is not None and background.has_alpha:
        raise UsageError("--background transparent: videos have no alpha channel; use a colour, blur or an image")
    result_filter = cli.build_filter(args)
    render = make_renderer(background, args.alpha if args.alpha is not None else DEFAULTS["alpha"])
    say = (lambda *a, **k: None) if args.quiet else print  # say(..., flush=True) too

    from segkit.video import AtomicVideoWriter, VideoSource, check_video_path, open_capture

    if args.video_output:
        check_video_path(args.video_output)  # before the model loads and the camera opens
    show = not args.no_show and cli.display_available()
    # Open the camera before loading the model: a missing camera fails in a fraction of a second.
    capture = open_capture(args.source)
    try:
        t0 = time.perf_counter()
        segmenter = cli.load_model(args)
        load_s = time.perf_counter() - t0
    except BaseException:
        capture.release()
        raise

    stats, source, writer, status = RunStats(), None, None, cli.EXIT_OK
    error: str | None = None
    stack = ExitStack()  # source, writer, window: released in reverse order on any way out
    stack.callback(capture.release)
    stack.callback(segmenter.close)
    try:
        try:
            with sigterm_raises():
                source = stack.enter_context(VideoSource(args.source, realtime=args.realtime, capture=capture))
                if args.video_output:
                    writer = stack.enter_context(AtomicVideoWriter(args.video_output, source.fps))
                    for p in writer.leftovers_removed:
                        say(f"segment_webcam: removed {p}, left by a run that was killed")
                    for p in writer.leftovers_kept:
                        print(f"segment_webcam: note: {p} belongs to a run that may still be writing "
                              "(here or on another machine); delete it if none is", file=sys.stderr)
                window = _open_window(stack, source, say) if show else None
                say(f"segment_webcam: {source.name} {source.width}x{source.height} @ {source.fps:g} fps "
                    f"({'live' if source.live else 'every frame'}) -> {_destination(window, writer, args)}; "
                    f"model {segmenter.name} loaded in {load_s:.1f} s", flush=True)
                run_stream(source, segmenter, result_filter, render, writer, window,
                           args.max_frames, args.duration, args.mirror,
                           progress=None if (window is not None or args.quiet) else _progress, stats=stats)
        finally:
            with signals_deferred():  # a second Ctrl+C must not cut the video file in half
                stack.close()
    except KeyboardInterrupt:
        status, error = cli.EXIT_INTERRUPTED, "interrupted (Ctrl+C)"
    except Terminated:
        status, error = EXIT_TERMINATED, "terminated (SIGTERM)"
    except SegkitError as e:
        if source is None:
            raise  # nothing was started: run_main prints the one-line error
        status, error = e.exit_code, str(e)
    if error:
        print(f"segment_webcam: {error}", file=sys.stderr)
    _summary(stats, source, writer, segmenter.name, file=sys.stderr if args.quiet else sys.stdout)
    if writer is not None and writer.error is not None:
        # never exit 0 with a file that does not play: nothing is left at the final path
        cli.error(f"{writer.path}: writing video failed, nothing written ({writer.error})")
        status = status or cli.EXIT_FAILED
    return status


def _open_window(stack: ExitStack, source, say):
    from segkit.window import Window, WindowError

    try:
        return stack.enter_context(Window(f"segkit - {source.name}"))
    except WindowError as e:
        say(f"segment_webcam: {e}: running headless")
        return None


def _destination(window, writer, args) -> str:
    if window is not None:
        return "window (q or Esc quits)" + (f" + {writer.path}" if writer else "")
    why = "--no-show" if args.no_show else ("no display (DISPLAY is not set)" if not cli.display_available()
                                            else "window failed")
    return f"headless, {why}" + (f", writing {writer.path}" if writer else "; nothing is saved without --output")


def _progress(stats: RunStats, source) -> None:
    dropped = f", {source.dropped} dropped" if source.live else ""
    print(f"segment_webcam: {stats.frames} frames, {stats.recent_fps():.1f} fps{dropped}", flush=True)


def _summary(stats, source, writer, model_name: str, file) -> None:
    if source is None:
        return
    frames, seconds = stats.frames, stats.seconds
    parts = [f"{frames} frames segmented in {seconds:.1f} s ({frames / seconds if seconds else 0:.1f} fps)"]
    if source.live:
        parts.append(f"{source.dropped} dropped (live source)")
    if stats.frames:
        cap_ms = source.read_seconds / source.read * 1000 if source.read else 0.0
        wr_ms = writer.write_seconds / writer.frames_in * 1000 if writer and writer.frames_in else 0.0
        stages = f"per frame: capture {cap_ms:.1f} ms, model {stats.ms(stats.model_s):.1f} ms, draw {stats.ms(stats.draw_s):.1f} ms"
        if writer:
            stages += f", write {wr_ms:.1f} ms"
        if stats.show_s:
            stages += f", window {stats.ms(stats.show_s):.1f} ms"
        parts.append(stages)
    if writer is not None:
        final = writer.final
        parts.append(f"output {final} ({writer.frames_written} frames)" if final else
                     "no output written" + ("" if writer.error is not None else " (no frames)"))
    if stats.stop_reason:
        parts.append(f"stopped: {stats.stop_reason}")
    print(f"segment_webcam: {'; '.join(parts)}; model {model_name}", file=file, flush=True)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
