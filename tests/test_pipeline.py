"""segkit.pipeline: ordered bounded read-ahead, batching, failures that do not stop the flow."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from segkit.errors import InputError
from segkit.models.base import Segmenter
from segkit.pipeline import Filter, prefetch_map, run_flow
from segkit.segmentation import Segmentation
from segkit.io.sources import Frame


class FakeSegmenter(Segmenter):
    """One full-image 'person' instance whose score is the image's mean / 255."""

    def __init__(self, max_batch=1):
        super().__init__("fake")
        self.max_batch = max_batch
        self.batch_sizes = []

    def segment(self, images, min_score=0.0):
        self.batch_sizes.append(len(images))
        out = []
        for im in images:
            h, w = im.shape[:2]
            out.append(Segmentation(h, w, masks=np.ones((1, h, w), bool),
                                    boxes=np.array([[0, 0, w, h]], np.float32),
                                    class_ids=np.array([1], np.int32),
                                    scores=np.array([im.mean() / 255], np.float32)))
        return out


def frames(n, bad=()):
    for i in range(n):
        if i in bad:
            yield Frame(None, f"f{i}", None, i, error=InputError(f"f{i}.jpg", "empty file (0 bytes)"))
        else:
            yield Frame(np.full((4, 6, 3), i * 10, np.uint8), f"f{i}", None, i)


def test_prefetch_map_keeps_order_and_bounds_read_ahead():
    alive, peak, lock = [0], [0], threading.Lock()

    def work(i):
        with lock:
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
        time.sleep(0.001 * (i % 3))  # finish out of order
        return i

    got = []
    for r in prefetch_map(work, range(50), workers=3, lookahead=5):
        got.append(r)
        with lock:
            alive[0] -= 1
    assert got == list(range(50))
    assert peak[0] <= 5 + 1  # never more than the look-ahead (+ the one being consumed)


def test_run_flow_counts_filters_and_records_failures():
    seg = FakeSegmenter()
    written, errors = {}, []

    def write(frame, s):
        if frame.name == "f3":
            raise OSError("disk full")
        written[frame.name] = s

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    stats = run_flow(frames(8, bad={1}), seg, write, Filter(threshold=0.25),
                     on_error=lambda f, e: errors.append((f.name, str(e))), progress=bar)
    assert (stats.done, stats.failed) == (6, 2) and bar.n == 8
    assert sorted(n for n, _ in errors) == ["f1", "f3"]
    assert "disk full" in dict(errors)["f3"]
    assert len(written["f2"]) == 0 and len(written["f7"]) == 1  # score 20/255 < 0.25 < 70/255
    assert "6 images done, 0 skipped, 2 failed" in stats.summary()


@pytest.mark.parametrize("max_batch", [1, 3])
def test_run_flow_batches_by_the_segmenter_max_batch(max_batch):
    seg = FakeSegmenter(max_batch)
    order = []
    stats = run_flow(frames(7), seg, lambda f, s: order.append(f.index), write_workers=1)
    assert stats.done == 7 and order == list(range(7))  # one writer: written in input order
    assert max(seg.batch_sizes) == max_batch and sum(seg.batch_sizes) == 7
