"""The live loop of segment_webcam.py: capture, model, drawing and encoding overlapped, and the
signal handling that lets every way out (q, Ctrl+C, SIGTERM, an error) finalise the output.

Capture runs in segkit.video's thread, the model on the calling thread, drawing and encoding in
the Drawer's thread; queues hold at most a couple of frames, so nothing builds a backlog.
"""
from __future__ import annotations

import signal
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from segkit.errors import SegkitError
from segkit.render import cutout, foreground_alpha, overlay
from segkit.workers import QueueWorker

EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports
PROGRESS_EVERY_S = 5.0


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


class Drawer(QueueWorker):
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
        super().__init__("segkit-draw", queue_size)

    def submit(self, image: np.ndarray, seg, timestamp: float | None) -> None:
        self._raise_error()
        self._put((image, seg, timestamp))

    def _handle(self, item) -> None:
        image, seg, timestamp = item
        t0 = time.perf_counter()
        vis = self.render(image, seg)
        self.draw_s += time.perf_counter() - t0
        if self.writer is not None:
            self.writer.write(vis, timestamp)
        if self.keep_latest:
            self.latest = vis
        self.drawn += 1

    def _raise_error(self) -> None:
        if self.error is not None:
            raise SegkitError(f"drawing failed: {type(self.error).__name__}: {self.error}") from self.error

    def close(self) -> None:
        """Draw and write what is queued, then stop (every segmented frame reaches the video)."""
        self._finish()


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
