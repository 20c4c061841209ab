"""Dynamic batching: requests that arrive together share one pass of the model.

Each loaded model gets one :class:`Batcher`: a bounded queue and the one thread that calls the
model (a segmenter is used by one thread at a time, as in a folder run). The thread takes the
first waiting request, then waits at most ``max_wait`` seconds for more, up to the model's
``max_batch``, and runs them through ``flow.segment``, the run loop's own model step. Each request
keeps its own filter (classes, threshold...): the batch is segmented at the lowest threshold
asked for and each result is filtered as its request asked.

A full queue refuses at once (:class:`QueueFull`, a 503 for the client) instead of growing.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from segkit import flow
from segkit.flow import Filter
from segkit.io.sources import Frame

#: the longest a request waits for others to share its batch (the issue's bound: <= 10 ms)
MAX_WAIT_S = 0.005


class QueueFull(Exception):
    """More requests wait for this model than its queue holds."""


@dataclass
class _Job:
    frame: Frame
    result_filter: Filter
    future: Future = field(default_factory=Future)


class Batcher:
    """One model, one thread, one bounded queue: ``submit(frame, filter)`` -> Future[Segmentation]."""

    def __init__(self, segmenter, max_queue: int = 64, max_wait: float = MAX_WAIT_S,
                 max_batch: int | None = None):
        if not 0 <= max_wait <= 0.010:
            raise ValueError(f"max_wait {max_wait} s: batching may hold a request at most 10 ms")
        self.segmenter = segmenter
        self.max_wait = max_wait
        self.max_batch = max(1, max_batch or getattr(segmenter, "max_batch", 1) or 1)
        self._queue: queue.Queue[_Job | None] = queue.Queue(max(1, max_queue))
        self._closed = False
        self.batches = 0  # passes of the model
        self.images = 0   # images through it (images / batches: the mean batch size)
        self.model_s = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"segkit-model-{segmenter.name or 'model'}",
                                        daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, frame: Frame, result_filter: Filter) -> Future:
        if self._closed:
            raise RuntimeError("the model is closed (the server is stopping)")
        job = _Job(frame, result_filter)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests already wait for model "
                            f"{self.segmenter.name}") from None
        return job.future

    def close(self) -> None:
        """Finish what is queued, then stop the thread (the model itself is the caller's)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)  # blocks while full: the jobs ahead of it are still served
            self._thread.join()

    # ------------------------------------------------------------------ the model thread
    def _loop(self) -> None:
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    left = deadline - time.monotonic()
                    nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run([j for j in batch if j.future.set_running_or_notify_cancel()])

    def _run(self, jobs: list[_Job]) -> None:
        if not jobs:
            return  # every client of this batch went away
        lowest = min(j.result_filter.threshold or 0.0 for j in jobs)
        t0 = time.perf_counter()
        try:
            segs = flow.segment(self.segmenter, [j.frame for j in jobs], Filter(threshold=lowest or None))
        except BaseException as e:  # the model failed on this batch: its requests fail, the server stays
            for j in jobs:
                j.future.set_exception(e)
            return
        finally:
            self.model_s += time.perf_counter() - t0
        self.batches += 1
        self.images += len(jobs)
        for j, seg in zip(jobs, segs):
            try:
                j.future.set_result(j.result_filter(seg))
            except Exception as e:
                j.future.set_exception(e)
