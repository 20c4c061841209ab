"""The one flow every script runs: source -> segmenter -> filter -> sinks.

Decoding (a thread pool reading ahead) and writing (a thread pool behind) overlap with the model,
which runs on the calling thread in batches of ``segmenter.max_batch``. Queues are bounded, so
memory stays flat however many images go through.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

from segkit.errors import InputError, OutputError
from segkit.models.base import Segmenter
from segkit.segmentation import Segmentation
from segkit.sources import Frame

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class FlowStats:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[InputError] = field(default_factory=list)
    #: why the run stopped before its last input (the disk filled up), else ""
    stopped: str = ""
    not_attempted: int = 0

    def summary(self, what: str = "images") -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        text = (f"{self.done} {what} done, {self.skipped} skipped, {self.failed} failed "
                f"in {self.seconds:.1f} s ({rate:.1f}/s)")
        if self.stopped:
            text += f"; stopped: {self.stopped}, {self.not_attempted} not attempted (run again to resume)"
        return text


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 2,
                 lookahead: int = 8) -> Iterator[R]:
    """Ordered ``map(fn, items)`` computed by a thread pool at most ``lookahead`` items ahead."""
    with ThreadPoolExecutor(workers, thread_name_prefix="segkit-read") as pool:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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


@dataclass
class Filter:
    classes: set[int] | None = None
    threshold: float | None = None
    max_instances: int | None = None
    min_area: float | None = None  # fraction of the image: smaller blobs / instances are dropped

    def __call__(self, seg: Segmentation) -> Segmentation:
        return seg.filter(self.classes, self.threshold, self.max_instances, self.min_area)


def run_flow(frames: Iterable[Frame], segmenter: Segmenter,
             write: Callable[[Frame, Segmentation], object], result_filter: Filter | None = None,
             on_error: Callable[[Frame, Exception], None] | None = None,
             progress=None, write_workers: int = 1, max_pending_writes: int = 8) -> FlowStats:
    """Segment every frame and hand (frame, filtered result) to ``write`` on a writer thread.

    A frame whose decoding failed (``frame.error``), or whose writing fails, is counted as
    failed and passed to ``on_error``; the run goes on, except on a full disk: then it stops
    (``stats.stopped`` says why) and the frames not yet segmented are left for a rerun. ``progress`` (a tqdm) is advanced per frame.
    """
    stats = FlowStats()
    t0 = time.perf_counter()
    result_filter = result_filter or Filter()
    min_score = result_filter.threshold or 0.0
    batch: list[Frame] = []
    pending: deque[tuple[Frame, Future]] = deque()

    def fail(frame: Frame, err: Exception):
        if isinstance(err, OutputError) and err.disk_full:
            if stats.stopped:
                return  # a write already in flight when the disk filled: left for the rerun, said once
            # every later output would fail the same way: stop instead of failing them one by one
            stats.stopped = f"{err.problem.removeprefix('cannot write: ')} ({err.path})"
        stats.failed += 1
        stats.failures.append(err if isinstance(err, InputError) else InputError(frame.path or frame.name, str(err)))
        if on_error:
            on_error(frame, err)

    def settle(block_until: int):
        while len(pending) > block_until:
            frame, fut = pending.popleft()
            try:
                fut.result()
                stats.done += 1
            except Exception as e:  # a write failed (disk full, permission): record, go on
                fail(frame, e)
            if progress is not None:
                progress.update(1)

    with ThreadPoolExecutor(write_workers, thread_name_prefix="segkit-write") as writer, \
            responsive_gil():
        def flush():
            if not batch:
                return
            segs = segmenter.segment([f.image for f in batch], min_score=min_score)
            for frame, seg in zip(batch, segs):
                pending.append((frame, writer.submit(write, frame, result_filter(seg))))
            batch.clear()
            settle(max_pending_writes)

        for frame in frames:
            if stats.stopped:
                break  # the caller knows how many were planned: not_attempted = total - done - failed
            if frame.error is not None:
                fail(frame, frame.error)
                if progress is not None:
                    progress.update(1)
                continue
            batch.append(frame)
            if len(batch) >= max(1, segmenter.max_batch):
                flush()
        if not stats.stopped:
            flush()
        batch.clear()
        settle(0)
        if hasattr(frames, "close"):
            frames.close()  # stop the read-ahead threads of a run cut short
    stats.seconds = time.perf_counter() - t0
    return stats
