"""The one run loop every entry point uses: source -> segmenter -> filter -> (tracker) -> sinks.

    stats = run(source, segmenter, sinks, result_filter=Filter(...), policy=FILES)

What differs between sources is a *policy*, not another loop:

- the source decides ordered vs newest-frame and realtime pacing: ``io.sources.ImageFiles``
  hands out every file in order (decoded by a read-ahead thread pool); a live
  ``io.video_source.VideoSource`` hands out the newest frame and drops stale ones, a file played
  ``realtime`` is paced to its frame rate;
- the resumable skip set is planned before the run (``io.resume.plan_run``): the source only
  holds what is left to do, ``stats.skipped`` counts the rest;
- ``Policy`` says how results reach the sinks: several writer threads for independent files, or
  one in frame order for a video; whether a failed write fails that frame or the run; how far
  writing may fall behind the model.

The model runs on the calling thread in batches of ``segmenter.max_batch``; decoding and writing
overlap with it on other threads, through bounded queues, so memory stays flat however many frames
go through. Work a model can do on one image alone (``Segmenter.prepare``: the small TFLite
networks) is done by a folder's decode threads and travels with the frame (``Frame.prepared``).
Every frame segmented before an error or Ctrl+C still reaches the sinks, and every sink is closed
on every way out.

A ``tracker`` (segkit.track.Tracker, ``--track``) is a stateful stage after the filter: it runs on
the model thread, so it sees the frames in source order even when several writers write them.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from segkit.errors import (EXIT_FAILED, EXIT_OK, EXIT_SOME_FAILED, InputError, OutputError, SegkitError,
                           error)
from segkit.io.sources import Frame
from segkit.segmentation import Segmentation

EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports


# --------------------------------------------------------------------------- what a run is given
@dataclass
class Filter:
    """What to keep of a result: classes, a score/probability threshold, a cap on instances, and
    blobs/instances smaller than ``min_area`` (a fraction of the image)."""

    classes: set[int] | None = None
    threshold: float | None = None
    max_instances: int | None = None
    min_area: float | None = None
    #: --refine-edges: snap what is kept to the photo's own edges (segkit.edges.refine)
    refine_edges: bool = False
    #: threshold None: take the packaged default of the model's kind (config.default_threshold)
    #: rather than keep every score (what an evaluation wants)
    kind_default: bool = False

    def for_model(self, segmenter) -> "Filter":
        """This filter with the threshold the model's kind takes by default, if none was given."""
        if self.threshold is not None or not self.kind_default:
            return self
        from segkit.config import default_threshold

        return replace(self, threshold=default_threshold(bool(getattr(segmenter, "semantic", False))),
                       kind_default=False)

    @property
    def min_score(self) -> float:
        """Passed to the model, so it can drop low scores before decoding their masks."""
        return self.threshold or 0.0

    def __call__(self, seg: Segmentation) -> Segmentation:
        return seg.filter(self.classes, self.threshold, self.max_instances, self.min_area)


@dataclass(frozen=True)
class Policy:
    """How results reach the sinks.

    ``writers``: threads writing results; 1 keeps frame order (a video needs it), more write the
    independent files of several images at once. ``max_pending``: results waiting for a writer
    before the model waits. ``fatal_writes``: a failed write stops the run (one video is one
    output) instead of failing only that frame (a folder's images are independent). ``batch``:
    hand the model up to ``segmenter.max_batch`` frames at once (throughput); off for a live
    stream, where waiting for a batch would add latency."""

    writers: int = 1
    max_pending: int = 8
    fatal_writes: bool = False
    batch: bool = True

    @staticmethod
    def files(workers: int = 2) -> "Policy":
        return Policy(writers=max(1, workers), max_pending=4 * max(1, workers))


#: a camera, stream or video: one writer in frame order, a short queue (no backlog), writes fatal,
#: one frame at a time
STREAM = Policy(writers=1, max_pending=2, fatal_writes=True, batch=False)


@dataclass
class Limits:
    max_frames: int | None = None
    duration: float | None = None

    def reached(self, stats: "RunStats") -> str:
        if self.max_frames is not None and stats.segmented >= self.max_frames:
            return f"--max-frames {self.max_frames} reached"
        if self.duration is not None and stats.seconds >= self.duration:
            return f"--duration {self.duration:g} s reached"
        return ""


@dataclass
class RunStats:
    """What a run did: the one stats type, and the one summary line, of every command."""

    done: int = 0        # segmented and written
    segmented: int = 0   # through the model (written or on the way)
    skipped: int = 0     # complete from an earlier run (resumable runs)
    failed: int = 0
    seconds: float = 0.0
    failures: list[InputError] = field(default_factory=list)
    stop_reason: str = ""   # why the run stopped before its source ended, else ""
    not_attempted: int | None = None  # left for a rerun when the disk filled up
    replaced: int = 0    # inputs whose earlier outputs (other settings, another run) were replaced
    output_errors: int = 0  # run-wide outputs (results.json) that could not be written: not inputs
    model_s: float = 0.0
    write_s: float = 0.0
    show_s: float = 0.0
    track_s: float = 0.0  # the tracker stage (--track)
    model_ms_recent: float = 0.0  # moving average, for a live display
    recent: deque = field(default_factory=lambda: deque(maxlen=30))  # frame end times

    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def recent_fps(self) -> float:
        if len(self.recent) < 2:
            return 0.0
        return (len(self.recent) - 1) / max(self.recent[-1] - self.recent[0], 1e-9)

    def ms(self, total: float) -> float:
        return total / self.done * 1000 if self.done else 0.0

    def summary(self, unit: str = "images", extra: Sequence[str] = ()) -> str:
        parts = [f"{self.done} {unit} done, {self.skipped} skipped, {self.failed} failed "
                 f"in {self.seconds:.1f} s ({self.rate():.1f}/s)", *extra]
        if self.replaced:
            parts.append(f"{self.replaced} earlier output{'s' if self.replaced != 1 else ''} replaced")
        if self.stop_reason:
            stop = f"stopped: {self.stop_reason}"
            if self.not_attempted is not None:
                stop += f", {self.not_attempted} not attempted (run again to resume)"
            parts.append(stop)
        return "; ".join(parts)

    def exit_code(self) -> int:
        """0 all done, 3 some failed, 1 none could be done: the codes scripts rely on."""
        if self.failed or self.output_errors:
            return EXIT_SOME_FAILED if self.done + self.skipped else EXIT_FAILED
        return EXIT_OK


@dataclass
class RunInfo:
    """What a sink may read when the run opens it: the source (name, fps, live, dropped), the
    model's name and the run's live stats."""

    source: object
    model: str
    stats: RunStats


# --------------------------------------------------------------------------- the two steps
def segment(segmenter, frames: Sequence[Frame], result_filter: Filter, where: str = "",
            refine: bool = True) -> list[Segmentation]:
    """The model on a batch of frames, filtered (and with ``result_filter.refine_edges``, refined
    unless ``refine`` is False: a tracked run refines what the tracker keeps, after it). A model
    error names the frame it failed on."""
    result_filter = result_filter.for_model(segmenter)
    try:
        prepared = [f.prepared for f in frames]
        kw = {"prepared": prepared} if any(p is not None for p in prepared) else {}
        segs = segmenter.segment([f.image for f in frames], min_score=result_filter.min_score, **kw)
    except SegkitError:
        raise
    except Exception as e:
        first = frames[0]
        what = str(first.path) if first.path is not None else f"frame {first.index}{where}"
        raise SegkitError(f"model {segmenter.name or segmenter.family} failed on {what}: "
                          f"{type(e).__name__}: {e}") from e
    segs = [result_filter(s) for s in segs]
    return refine_edges(result_filter, frames, segs) if refine else segs


def refine_edges(result_filter: Filter, frames: Sequence[Frame], segs: list[Segmentation],
                 only: Sequence[bool] | None = None) -> list[Segmentation]:
    """--refine-edges on what is kept (after the filter, and the tracker if any); ``only``: which
    of them (all when None)."""
    if not result_filter.refine_edges:
        return segs
    from segkit.edges import refine

    only = [True] * len(segs) if only is None else only
    return [refine(f.image, s) if do else s for f, s, do in zip(frames, segs, only)]


def write(sinks: Sequence, frame: Frame, seg: Segmentation) -> list[Path]:
    """One result into every sink, in order (a results cache goes last: its file means done)."""
    written: list[Path] = []
    for s in sinks:
        written += s.write(frame, seg) or []
    return written


# --------------------------------------------------------------------------- the loop
def run(source, segmenter, sinks: Sequence, *, result_filter: Filter | None = None,
        policy: Policy = Policy(), limits: Limits | None = None, progress=None,
        report: Callable[[Frame, Segmentation, list[Path]], None] | None = None,
        on_error: Callable[[str], None] = error, stats: RunStats | None = None, tracker=None) -> RunStats:
    """Segment every frame ``source`` hands out and write the results into ``sinks``.

    ``source``: ``next(timeout)`` -> Frame or None, ``ended``, ``name``, ``unit`` (an
    io.sources.ImageFiles, io.video_source.VideoSource or io.sources.Frames). A frame that could
    not be read (``frame.error``) or written is counted as failed, handed to every sink's
    ``fail`` and reported through ``on_error`` in one line; the run goes on, except on a full disk
    (every later output would fail the same way: the run stops, the rest is left for a rerun) and
    for ``policy.fatal_writes``. ``progress`` (a tqdm, or anything with ``update(n)``) advances
    per frame; ``report(frame, seg, files)`` is called after each frame's writes.
    ``tracker`` (``update(seg, frame.index) -> seg``): gives each result its ``track_ids``, in
    frame order, before any sink sees it; the model is then asked for the low-score detections
    the tracker's second stage needs as well (``tracker.detection_filter``).
    Raises what the model raises (naming the frame), after the sinks got every earlier frame.
    """
    stats = stats if stats is not None else RunStats()  # the caller's copy survives an exception
    result_filter = (result_filter or Filter()).for_model(segmenter)  # the tracker sees the resolved threshold
    model_filter = tracker.detection_filter(result_filter) if tracker is not None else result_filter
    limits = limits or Limits()
    stream = getattr(source, "unit", "images") == "frames"  # a video, camera or stream
    where = f" of {source.name}" if stream else ""
    info = RunInfo(source, getattr(segmenter, "name", ""), stats)  # no segmenter: nothing left to do
    pending: deque[tuple[Frame, Future]] = deque()
    lock = threading.Lock()
    fatal: list[BaseException] = []
    disk_full: list[OutputError] = []

    def fail(frame: Frame, err: Exception):
        with lock:
            if isinstance(err, OutputError) and err.disk_full:
                if disk_full:
                    return  # a write already in flight when the disk filled: left for the rerun
                disk_full.append(err)
                stats.stop_reason = f"{err.problem.removeprefix('cannot write: ')} ({err.path})"
            stats.failed += 1
            stats.failures.append(err if isinstance(err, InputError)
                                  else InputError(frame.path or frame.name, str(err)))
        for s in sinks:
            s.fail(frame, err)
        on_error(str(err) if isinstance(err, InputError) else f"{frame.path or frame.name}: {err}")

    def write_task(frame: Frame, seg: Segmentation):
        t0 = time.perf_counter()
        files = write(sinks, frame, seg)
        with lock:
            stats.write_s += time.perf_counter() - t0
        if report is not None:
            report(frame, seg, files)

    def settle(keep: int):
        while len(pending) > keep:
            frame, fut = pending.popleft()
            try:
                fut.result()
                stats.done += 1
            except Exception as e:
                if policy.fatal_writes:
                    fatal.append(e)
                    stats.stop_reason = stats.stop_reason or "writing failed"
                else:  # a write failed (disk full, permission): record, go on
                    fail(frame, e)
            if progress is not None:
                progress.update(1)

    opened = []
    t_start = time.perf_counter()
    ok = False
    with ThreadPoolExecutor(policy.writers, thread_name_prefix="segkit-write") as writers:
        try:
            for s in sinks:
                s.open(info)
                opened.append(s)

            def flush(batch: list[Frame]):
                if not batch:
                    return
                t0 = time.perf_counter()
                segs = segment(segmenter, batch, model_filter, where, refine=tracker is None)
                if tracker is not None:
                    # a probability map is refined before the tracker splits it into blobs (the
                    # whole map is the filter's context); instances after it: the tracker's
                    # low-score detections only follow occluded objects, refine what it hands on
                    semantic = [s.is_semantic for s in segs]
                    segs = refine_edges(result_filter, batch, segs, semantic)
                t1 = time.perf_counter()
                stats.model_s += t1 - t0
                if tracker is not None:  # here, not in the writers: frames in order, one thread
                    segs = [tracker.update(s, f.index) for f, s in zip(batch, segs)]
                    t2 = time.perf_counter()
                    stats.track_s += t2 - t1
                    segs = refine_edges(result_filter, batch, segs, [not s for s in semantic])
                    stats.model_s += time.perf_counter() - t2
                ms = (t1 - t0) * 1000 / len(batch)
                stats.model_ms_recent = ms if not stats.recent else 0.9 * stats.model_ms_recent + 0.1 * ms
                for frame, seg in zip(batch, segs):
                    pending.append((frame, writers.submit(write_task, frame, seg)))
                    stats.recent.append(t1)
                    stats.segmented += 1
                batch.clear()
                settle(policy.max_pending)

            batch: list[Frame] = []
            with responsive_gil():
                while not fatal:
                    stats.seconds = time.perf_counter() - t_start
                    reason = limits.reached(stats) or _poll(opened)
                    if reason:
                        stats.stop_reason = reason
                        break
                    if disk_full:
                        break  # every later output would fail the same way
                    # a short timeout keeps a window responsive and --duration honest on a slow camera
                    frame = source.next(timeout=0.05)
                    if frame is None:
                        if source.ended:
                            stats.stop_reason = "end of stream" if stream else ""
                            break
                        continue
                    if frame.error is not None:
                        fail(frame, frame.error)
                        if progress is not None:
                            progress.update(1)
                        continue
                    batch.append(frame)
                    if len(batch) >= (max(1, segmenter.max_batch) if policy.batch else 1):
                        flush(batch)
                if not disk_full and not fatal:
                    flush(batch)
            ok = not fatal
        finally:
            with signals_deferred():  # a second Ctrl+C must not cut the outputs in half
                settle(0)  # every segmented frame reaches the sinks, even on Ctrl+C or a model error
                if disk_full and hasattr(source, "total"):
                    stats.not_attempted = source.total - stats.done - stats.failed
                for s in reversed(opened):  # every sink is closed, whatever another one raised
                    try:
                        s.close(ok)
                    except OutputError as e:  # e.g. results.json on a full disk: the images are done
                        stats.output_errors += 1  # not an input: the summary counts inputs
                        on_error(str(e))
                    except Exception as e:
                        fatal.append(e)
                stats.seconds = time.perf_counter() - t_start
    if fatal:
        raise fatal[0]
    return stats


def _poll(sinks) -> str:
    for s in sinks:
        reason = s.poll()
        if reason:
            return reason
    return ""


class EverySeconds:
    """``progress`` for a run without a bar (a headless camera): a line every ``seconds``."""

    def __init__(self, line: Callable[[], str], seconds: float = 5.0):
        self.line, self.seconds = line, seconds
        self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        now = time.perf_counter()
        if now - self._last >= self.seconds:
            self._last = now
            print(self.line(), flush=True)


# --------------------------------------------------------------------------- threads and signals
#: How long a thread may hold the GIL while another waits for it (CPython's default is 5 ms).
#: The model's native forward pass releases the GIL; when it returns, the model thread waits
#: for the decode/encode threads to hand the GIL back. At 5 ms a wait costs about as much as a
#: whole forward pass of the person model: measured here, a LiteRT loop beside one busy Python
#: thread ran 121 forward passes/s at 5 ms and 288/s at 0.5 ms.
GIL_SWITCH_INTERVAL_S = 0.0005


@contextlib.contextmanager
def responsive_gil(interval: float = GIL_SWITCH_INTERVAL_S):
    """Shorten the GIL switch interval for the duration of a run (restored afterwards)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, interval))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so every `with` unwinds."""


@contextlib.contextmanager
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


@contextlib.contextmanager
def signals_deferred():
    """While finalising, a second Ctrl+C / SIGTERM must not cut an output in half."""
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
