#!/usr/bin/env python3
"""Live segmentation of a camera, a video file or a network stream, shown in a window and/or
written to a video.

Capture (a thread), the model (the main thread), drawing (a thread) and video encoding (a
thread) overlap. Live sources
never build a backlog: when the model is slower than the camera, stale frames are dropped and the
newest one is segmented. The camera is released and --output is finalised on every way out
(q/Esc, closing the window, Ctrl+C, SIGTERM, the stream ending, an error).
"""
from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from segkit import cli
from segkit.config import apply_config
from segkit.errors import SegkitError, UsageError
from segkit.render import cutout, foreground_alpha, overlay, parse_background

EPILOG = """examples:
  segment_webcam.py                                   # camera 0, person model, window (q or Esc quits)
  segment_webcam.py --background blur --mirror        # video-call style blurred background
  segment_webcam.py --background office.jpg --output call.mp4
  segment_webcam.py --source clip.mp4 --output clip_seg.mp4        # every frame of a file
  segment_webcam.py --source rtsp://192.168.1.20/stream --duration 60 --output cam.mp4

exit codes: 0 done (q, window closed, end of stream, --max-frames/--duration reached),
            1 error (camera cannot be opened, model failed; --output is still finalised),
            2 bad arguments, 130 Ctrl+C, 143 SIGTERM (--output finalised in both cases)"""

EXIT_TERMINATED = 143
PROGRESS_EVERY_S = 5.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segment_webcam.py", description=__doc__, epilog=EPILOG,
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
    g.add_argument("--alpha", type=cli._fraction, help="overlay opacity 0..1 (default 0.5)")
    # dest differs from 'output' on purpose: configs/default.yaml's output is the image folder.
    g.add_argument("-o", "--output", dest="video_output", metavar="VIDEO",
                   help="write the annotated stream to this video (.mp4/.mov/.mkv: MPEG-4, .avi: MJPEG); "
                        "written to a temp file and renamed into place when the run ends")
    g.add_argument("--no-show", action="store_true", help="never open a window, even with a display")
    g = p.add_argument_group("run length")
    g.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop after N segmented frames")
    g.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    return p


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return v


# --------------------------------------------------------------------------- signals
class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so every `with` unwinds."""


@contextmanager
def sigterm_raises():
    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_deferred():
    """While finalising, a second Ctrl+C / SIGTERM must not cut the video file in half."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- the loop
@dataclass
class RunStats:
    frames: int = 0
    model_s: float = 0.0
    draw_s: float = 0.0
    show_s: float = 0.0
    seconds: float = 0.0
    stop_reason: str = ""
    recent: deque = field(default_factory=lambda: deque(maxlen=30))  # frame end times, for the HUD

    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def recent_fps(self) -> float:
        if len(self.recent) < 2:
            return 0.0
        return (len(self.recent) - 1) / max(self.recent[-1] - self.recent[0], 1e-9)

    def ms(self, total: float) -> float:
        return total / self.frames * 1000 if self.frames else 0.0


def make_renderer(background, alpha: float):
    """(RGB frame, Segmentation) -> annotated RGB frame: overlay, or the background replaced."""
    if background is None:
        return lambda image, seg: overlay(image, seg, alpha)
    return lambda image, seg: cutout(image, foreground_alpha(seg), background)


def draw_hud(image: np.ndarray, stats: RunStats, model_ms: float, dropped: int | None) -> np.ndarray:
    text = f"{stats.recent_fps():5.1f} fps  model {model_ms:5.1f} ms"
    if dropped is not None:
        text += f"  dropped {dropped}"
    out = image.copy()
    scale = max(0.45, image.shape[0] / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
    cv2.putText(out, text, (5, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class Drawer:
    """Draws results and hands them to the video writer on its own thread, off the model's.

    ``latest`` holds the newest drawn frame for the window (shown by the main thread, as Tk
    requires). The queue is short: if drawing falls behind, the model waits, and a live source
    drops frames upstream instead of a backlog growing here.
    """

    def __init__(self, render, writer=None, keep_latest: bool = False, queue_size: int = 2):
        self.render, self.writer, self.keep_latest = render, writer, keep_latest
        self.latest: np.ndarray | None = None
        self.drawn = 0
        self.draw_s = 0.0
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="segkit-draw", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray, seg, timestamp: float | None) -> None:
        self._raise_error()
        self._queue.put((image, seg, timestamp))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # keep draining so submit() never blocks forever
            image, seg, timestamp = item
            try:
                t0 = time.perf_counter()
                vis = self.render(image, seg)
                self.draw_s += time.perf_counter() - t0
                if self.writer is not None:
                    self.writer.write(vis, timestamp)
                if self.keep_latest:
                    self.latest = vis
                self.drawn += 1
            except BaseException as e:
                self.error = e

    def _raise_error(self) -> None:
        if self.error is not None:
            raise SegkitError(f"drawing failed: {type(self.error).__name__}: {self.error}") from self.error

    def close(self) -> None:
        """Draw and write what is queued, then stop (every segmented frame reaches the video)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def run_stream(source, segmenter, result_filter, render, writer=None, window=None,
               max_frames: int | None = None, duration: float | None = None, mirror: bool = False,
               progress=None, stats: RunStats | None = None) -> RunStats:
    """Segment frames from ``source`` until it ends, a limit is hit or the window is closed.

    Threads: the source's capture thread, the model here, a Drawer (draw + queue for the
    writer), the writer's encoder. Raises what the model raises (as SegkitError naming the
    frame); every frame segmented before is still drawn and written; the caller's ``with``
    blocks release the source and finalise the writer.
    """
    stats = stats if stats is not None else RunStats()  # the caller's copy survives an exception
    min_score = result_filter.threshold or 0.0
    drawer = Drawer(render, writer, keep_latest=window is not None)
    t_start = time.perf_counter()
    last_report = t_start
    model_ms_recent = 0.0
    shown = None
    try:
        while True:
            now = time.perf_counter()
            stats.seconds = now - t_start
            if max_frames is not None and stats.frames >= max_frames:
                stats.stop_reason = f"--max-frames {max_frames} reached"
                break
            if duration is not None and stats.seconds >= duration:
                stats.stop_reason = f"--duration {duration:g} s reached"
                break
            if window is not None:
                vis = drawer.latest
                if vis is not None and vis is not shown:
                    t3 = time.perf_counter()
                    window.show(draw_hud(vis, stats, model_ms_recent, source.dropped if source.live else None))
                    stats.show_s += time.perf_counter() - t3
                    shown = vis
                if _window_says_stop(window, stats):
                    break
            # Short timeouts keep the window responsive and the duration honest on a slow camera.
            frame = source.next(timeout=0.05)
            if frame is None:
                if source.ended:
                    stats.stop_reason = "end of stream"
                    break
                continue
            image = cv2.flip(frame.image, 1) if mirror else frame.image

            t0 = time.perf_counter()
            try:
                seg = segmenter.segment_one(image, min_score=min_score)
            except Exception as e:
                raise SegkitError(f"model {segmenter.name or segmenter.family} failed on frame "
                                  f"{frame.index} of {source.name}: {type(e).__name__}: {e}") from e
            t1 = time.perf_counter()
            drawer.submit(image, result_filter(seg), frame.timestamp if source.live else None)
            stats.model_s += t1 - t0
            model_ms_recent = (t1 - t0) * 1000 if not stats.frames else 0.9 * model_ms_recent + 0.1 * (t1 - t0) * 1000
            stats.frames += 1
            stats.recent.append(time.perf_counter())
            if progress is not None and time.perf_counter() - last_report >= PROGRESS_EVERY_S:
                last_report = time.perf_counter()
                progress(stats, source)
    finally:
        with signals_deferred():  # the queued frames must reach the video even on Ctrl+C
            drawer.close()
        stats.seconds = time.perf_counter() - t_start
        stats.draw_s = drawer.draw_s
    drawer._raise_error()
    return stats


def _window_says_stop(window, stats: RunStats) -> bool:
    ev = window.poll()
    if ev == "quit":
        stats.stop_reason = "quit key"
        return True
    if ev == "closed":
        stats.stop_reason = "window closed"
        return True
    return False


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    apply_config(parser, argv)
    args = parser.parse_args(argv)
    background = parse_background(args.background) if args.background else None
    if background is not None and background.has_alpha:
        raise UsageError("--background transparent: videos have no alpha channel; use a colour, blur or an image")
    result_filter = cli.build_filter(args)
    render = make_renderer(background, args.alpha if args.alpha is not None else 0.5)
    say = (lambda *a: None) if args.quiet else print

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
        cli.error(f"{writer.path}: writing video failed ({writer.error})")
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
        final = writer.path if writer.path.exists() and writer.frames_written else None
        parts.append(f"output {final} ({writer.frames_written} frames)" if final else "no output written (no frames)")
    if stats.stop_reason:
        parts.append(f"stopped: {stats.stop_reason}")
    print(f"segment_webcam: {'; '.join(parts)}; model {model_name}", file=file, flush=True)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
