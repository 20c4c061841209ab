"""segkit.flow: the one run loop: batching, failures that do not stop it, policies, limits and the
Sink protocol's open/write/fail/close order on every way out."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from segkit.errors import InputError, OutputError, SegkitError
from segkit.flow import STREAM, Filter, Limits, Policy, run
from segkit.io.sinks import Call, Sink
from segkit.io.sources import Frame, Frames, prefetch_map
from segkit.models.base import Segmenter
from segkit.segmentation import Segmentation


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


def run_calls(frames, seg, write, result_filter=None, on_error=None, progress=None, policy=Policy(), **kw):
    """flow.run with one function as the sink."""
    return run(Frames(frames), seg, [Call(write)], result_filter=result_filter, policy=policy,
               progress=progress, **({"on_error": on_error} if on_error else {}), **kw)


def test_run_counts_filters_and_records_failures():
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
    stats = run_calls(frames(8, bad={1}), seg, write, Filter(threshold=0.25),
                     on_error=errors.append, progress=bar)
    assert (stats.done, stats.failed) == (6, 2) and bar.n == 8
    assert sorted(errors) == ["f1.jpg: empty file (0 bytes)", "f3: disk full"]  # one line naming each
    assert len(written["f2"]) == 0 and len(written["f7"]) == 1  # score 20/255 < 0.25 < 70/255
    assert "6 images done, 0 skipped, 2 failed" in stats.summary()


@pytest.mark.parametrize("max_batch", [1, 3])
def test_run_batches_by_the_segmenter_max_batch(max_batch):
    seg = FakeSegmenter(max_batch)
    order = []
    stats = run_calls(frames(7), seg, lambda f, s: order.append(f.index), policy=Policy(writers=1))
    assert stats.done == 7 and order == list(range(7))  # one writer: written in input order
    assert max(seg.batch_sizes) == max_batch and sum(seg.batch_sizes) == 7


def test_work_a_source_prepared_reaches_the_model_with_its_frames():
    """Frames carry what the model's ``prepare`` made on the decode threads; the model gets it
    beside each image (and a model that prepares nothing is called as before)."""
    class Preparing(FakeSegmenter):
        def segment(self, images, min_score=0.0, prepared=None):
            self.got = (getattr(self, "got", []) + list(prepared))
            return super().segment(images, min_score)

    seg = Preparing(max_batch=2)
    fs = []
    for f in frames(5):
        f.prepared = None if f.index == 3 else ("ahead", f.index)
        fs.append(f)
    assert run_calls(iter(fs), seg, lambda f, s: None).done == 5
    assert seg.got == [("ahead", 0), ("ahead", 1), ("ahead", 2), None, ("ahead", 4)]
    assert run_calls(frames(3), FakeSegmenter(2), lambda f, s: None).done == 3  # no prepared= given


class Recorder(Sink):
    """Logs the protocol calls it receives."""

    def __init__(self, log, fail_on=None, stop_after=None, error=OSError):
        self.log, self.fail_on, self.stop_after, self.error = log, fail_on, stop_after, error
        self.written = 0

    def open(self, run):
        self.log.append(("open", run.model))

    def write(self, frame, seg):
        if frame.name == self.fail_on:
            raise self.error("cannot write")
        self.written += 1
        self.log.append(("write", frame.name))
        return []

    def fail(self, frame, err):
        self.log.append(("fail", frame.name))

    def close(self, ok):
        self.log.append(("close", ok))

    def poll(self):
        return "quit key" if self.stop_after is not None and self.written >= self.stop_after else None


def test_sinks_are_opened_written_and_closed_in_order():
    log = []
    stats = run(Frames(frames(4, bad={2})), FakeSegmenter(), [Recorder(log)], policy=Policy(writers=1),
                on_error=lambda line: None)
    assert log[0] == ("open", "fake") and log[-1] == ("close", True)
    # writes keep frame order with one writer; a decode failure is reported as it is read
    assert [e for e in log if e[0] == "write"] == [("write", "f0"), ("write", "f1"), ("write", "f3")]
    assert ("fail", "f2") in log
    assert stats.exit_code() == 3 and stats.stop_reason == ""


def test_a_model_error_names_the_frame_and_still_closes_every_sink():
    class Broken(FakeSegmenter):
        def segment(self, images, min_score=0.0):
            if self.batch_sizes:
                raise RuntimeError("boom")
            return super().segment(images, min_score)

    log = []
    with pytest.raises(SegkitError, match=r"model fake failed on frame 1: RuntimeError: boom"):
        run(Frames(frames(3)), Broken(), [Recorder(log)])
    assert ("write", "f0") in log and log[-1] == ("close", False)  # what was segmented was written


def test_limits_and_a_sink_poll_stop_the_run():
    stats = run(Frames(frames(50)), FakeSegmenter(), [Recorder([])], limits=Limits(max_frames=5))
    assert stats.done == 5 and stats.stop_reason == "--max-frames 5 reached"
    rec = Recorder([], stop_after=3)
    stats = run(Frames(frames(50)), FakeSegmenter(), [rec], policy=STREAM)
    assert 3 <= stats.done < 50 and stats.stop_reason == "quit key"


def test_stream_policy_stops_on_a_failed_write_files_policy_goes_on():
    log = []
    with pytest.raises(OSError):
        run(Frames(frames(6)), FakeSegmenter(), [Recorder(log, fail_on="f2")], policy=STREAM)
    assert ("write", "f5") not in log and log[-1] == ("close", False)
    stats = run(Frames(frames(6)), FakeSegmenter(), [Recorder([], fail_on="f2")], on_error=lambda line: None)
    assert (stats.done, stats.failed) == (5, 1)


def test_a_full_disk_stops_the_run_and_leaves_the_rest_for_a_rerun():
    full = lambda msg: OutputError("out/f2.png", "cannot write: no space left on device", 28)  # noqa: E731
    lines = []
    stats = run(Frames(frames(40), total=40), FakeSegmenter(), [Recorder([], fail_on="f2", error=full)],
                policy=Policy(writers=1, max_pending=1), on_error=lines.append)
    assert stats.failed == 1 and stats.done < 39 and stats.not_attempted == 40 - stats.done - 1
    assert "no space left on device (out/f2.png)" in stats.summary()
    assert "not attempted (run again to resume)" in stats.summary() and len(lines) == 1


def test_a_stream_is_segmented_one_frame_at_a_time_whatever_the_model_batches():
    seg = FakeSegmenter(max_batch=3)
    stats = run(Frames(frames(7)), seg, [Recorder([])], policy=STREAM)
    assert stats.done == 7 and seg.batch_sizes == [1] * 7  # waiting for a batch would add latency


def test_a_sink_failing_to_close_does_not_keep_the_others_open():
    class BadClose(Recorder):
        def close(self, ok):
            super().close(ok)
            raise ValueError("cannot finish")

    log = []
    with pytest.raises(ValueError, match="cannot finish"):
        run(Frames(frames(2)), FakeSegmenter(), [Recorder(log), BadClose([])])
    assert log[-1] == ("close", True)  # closed after the other sink raised
