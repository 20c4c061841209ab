"""A stage of work on its own thread, fed through a bounded queue (drawing, video encoding)."""
from __future__ import annotations

import queue
import threading


class QueueWorker:
    """Runs ``_handle(item)`` for each queued item on one background thread.

    The queue is bounded, so a producer that outpaces the stage waits instead of building a
    backlog. The first error sticks in ``error`` (the producer checks it and reports it); later
    items are drained unhandled so a blocked ``_put`` can never hang the producer.
    """

    def __init__(self, name: str, queue_size: int):
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _handle(self, item) -> None:
        raise NotImplementedError

    def _put(self, item) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # keep draining so _put() never blocks forever
            try:
                self._handle(item)
            except BaseException as e:
                self.error = e

    def _finish(self) -> None:
        """Handle what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
