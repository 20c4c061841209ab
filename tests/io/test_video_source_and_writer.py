"""segkit.io.video_source and video_writer: opening sources, file vs live reading, and the atomic threaded video writer."""
from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from fixtures.clips import count_frames, make_clip
from fixtures.http_server import serve_folder
from segkit.errors import InputError, SegkitError
from segkit.io.video_source import VideoSource, is_url, open_capture, open_source, parse_source
from segkit.io.video_writer import AtomicVideoWriter, check_video_path

CLIP_FRAMES, CLIP_FPS = 30, 20.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", CLIP_FRAMES, fps=CLIP_FPS)


def _bgr_frames(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


# ----------------------------------------------------------------------------- opening
def test_parse_source_tells_cameras_files_and_urls_apart():
    assert parse_source("0") == 0 and parse_source(" 12 ") == 12 and parse_source(3) == 3
    assert parse_source("clip.mp4") == "clip.mp4"
    assert is_url("rtsp://cam.local/stream") and is_url("http://127.0.0.1:8000/a.mp4")
    assert not is_url("C:/videos/a.mp4") and not is_url("videos/a.mp4")


def test_missing_camera_is_one_line_listing_what_was_tried():
    if os.path.exists("/dev/video9"):
        pytest.skip("this machine has a /dev/video9")
    with pytest.raises(InputError) as e:
        open_capture(9)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("camera 9: cannot open")
    assert "index 9 via V4L2" in msg and "any backend" in msg
    assert ("no /dev/video* devices exist" in msg) == (not glob.glob("/dev/video*"))


@pytest.mark.parametrize("content, problem", [(None, "no such file"), (b"", "empty file"),
                                              (b"this is not a video\n" * 20, "cannot be decoded")])
def test_bad_video_files_name_the_file_and_the_problem(tmp_path, content, problem):
    p = tmp_path / "bad.mp4"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=problem) as e:
        open_capture(str(p))
    assert str(p) in str(e.value)


def test_dead_stream_url_fails_instead_of_hanging():
    from fixtures.http_server import closed_port_url

    t0 = time.monotonic()
    with pytest.raises(InputError, match="cannot open stream"):
        open_capture(closed_port_url("live.mp4"))
    assert time.monotonic() - t0 < 15


# ----------------------------------------------------------------------------- reading
def test_file_source_hands_out_every_frame_in_order_as_rgb(clip):
    expected = _bgr_frames(clip)
    with open_source(str(clip)) as src:
        assert not src.live and src.fps == CLIP_FPS and src.frame_count == CLIP_FRAMES
        assert (src.width, src.height) == (160, 120)
        frames = list(src)
    assert [f.index for f in frames] == list(range(CLIP_FRAMES)) == list(range(len(expected)))
    assert [f.timestamp for f in frames] == pytest.approx([i / CLIP_FPS for i in range(CLIP_FRAMES)])
    for f, bgr in zip(frames, expected):
        np.testing.assert_array_equal(f.image, bgr[..., ::-1])
    assert src.dropped == 0 and src.ended


def test_slow_consumer_of_file_source_still_gets_every_frame(clip):
    with open_source(str(clip)) as src:
        got = []
        for f in src:
            got.append(f.index)
            time.sleep(0.005)
    assert got == list(range(CLIP_FRAMES))


def test_realtime_source_drops_stale_frames_and_keeps_latency_bounded(clip):
    """A consumer 4x slower than the clip's 20 fps gets the newest frame each time, no backlog."""
    with open_source(str(clip), realtime=True) as src:
        assert src.live
        t0 = time.monotonic()
        got = []
        for f in src:
            # The frame handed out is the one due about now (at most ~2 frames old).
            due_now = min((time.monotonic() - t0) * CLIP_FPS, CLIP_FRAMES - 1)
            assert f.index >= due_now - 3, (f.index, due_now)
            got.append(f.index)
            time.sleep(0.2)
    assert got == sorted(got) and len(got) < CLIP_FRAMES / 2
    assert src.dropped == CLIP_FRAMES - len(got) > 0


def test_http_url_with_a_known_length_is_read_like_a_file(clip):
    with serve_folder(clip.parent) as server:
        with open_source(server.url(clip.name)) as src:
            assert not src.live and src.frame_count == CLIP_FRAMES
            n = sum(1 for _ in src)
    assert n == CLIP_FRAMES


def test_close_stops_the_reader_midway_and_releases_the_capture(clip):
    src = open_source(str(clip), realtime=True)
    assert src.next(timeout=5) is not None
    src.close()
    assert not src._thread.is_alive() and not src._cap.isOpened()
    src.close()  # twice is fine


def test_shared_vtest_avi_opens_with_its_real_properties():
    path = shared_path("videos", "vtest.avi")
    with open_source(str(path)) as src:
        assert (src.width, src.height, src.fps, src.frame_count) == (768, 576, 10.0, 795)
        first = [src.next(timeout=10) for _ in range(3)]
    assert [f.index for f in first] == [0, 1, 2] and first[0].image.shape == (576, 768, 3)


# ----------------------------------------------------------------------------- writing
def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writer_appears_only_when_complete_with_every_frame(tmp_path, clip):
    out = tmp_path / "out.mp4"
    frames = [f.image for f in open_source(str(clip))]
    with AtomicVideoWriter(out, CLIP_FPS) as w:
        for f in frames:
            w.write(f)
        assert not out.exists()  # still a temp file while writing
        assert len(_leftovers(tmp_path)) == 1
    assert count_frames(out) == len(frames) == w.frames_written
    assert _leftovers(tmp_path) == []
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(CLIP_FPS)
    ok, first = cap.read()
    cap.release()
    # Lossy MPEG-4, but the right picture in the right channel order.
    assert np.abs(first[..., ::-1].astype(int) - frames[0]).mean() < 8


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_writer_is_finalised_when_the_block_raises(tmp_path):
    out = tmp_path / "crash.avi"
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(out, 10) as w:
            for i in range(5):
                w.write(np.full((48, 64, 3), i * 40, np.uint8))
            raise RuntimeError("model blew up")
    assert count_frames(out) == 5 and _leftovers(tmp_path) == []


def test_writer_without_frames_leaves_nothing(tmp_path):
    with AtomicVideoWriter(tmp_path / "empty.mp4", 10) as w:
        pass
    assert w.close() is None
    assert list(tmp_path.iterdir()) == []


def test_timestamps_repeat_frames_to_keep_real_time(tmp_path):
    """Live sources drop frames: a constant-rate file repeats the last picture to fill the gap."""
    out = tmp_path / "live.mp4"
    with AtomicVideoWriter(out, 10) as w:
        for t in (0.0, 0.1, 0.5, 0.6, 1.0):
            w.write(np.zeros((32, 32, 3), np.uint8), timestamp=100 + t)
    assert w.frames_in == 5 and w.frames_written == 11  # 1.0 s at 10 fps, both ends included
    assert count_frames(out) == 11


def test_frames_of_another_size_are_resized_to_the_first(tmp_path):
    out = tmp_path / "sizes.mp4"
    with AtomicVideoWriter(out, 10) as w:
        w.write(np.zeros((40, 60, 3), np.uint8))
        w.write(np.zeros((80, 100, 3), np.uint8))
    cap = cv2.VideoCapture(str(out))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (60, 40)
    cap.release()
    assert count_frames(out) == 2


def test_unwritable_extension_and_folder_are_reported(tmp_path):
    with pytest.raises(SegkitError, match=r"out\.gif.*extension '\.gif'"):
        check_video_path(tmp_path / "out.gif")
    with pytest.raises(SegkitError, match="is a directory"):
        (tmp_path / "d.mp4").mkdir()
        check_video_path(tmp_path / "d.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SegkitError, match="cannot write here"):
        AtomicVideoWriter(blocker / "out.mp4", 10)


def test_write_after_close_is_an_error(tmp_path):
    w = AtomicVideoWriter(tmp_path / "a.mp4", 10)
    w.write(np.zeros((16, 16, 3), np.uint8))
    assert w.close() == tmp_path / "a.mp4"
    with pytest.raises(SegkitError, match="closed"):
        w.write(np.zeros((16, 16, 3), np.uint8))


def test_camera_gives_the_newest_frame_and_ends_when_unplugged(monkeypatch):
    """A 100 fps fake camera read by a consumer at ~20 fps: frames drop, none is stale, and the
    source ends after LIVE_MAX_FAILED_READS failed reads instead of waiting forever."""
    from fixtures.clips import FakeCamera
    import segkit.io.video_source as video

    monkeypatch.setattr(video, "LIVE_MAX_FAILED_READS", 5)
    cam = FakeCamera(frames=60, fps=100)
    src = VideoSource(0, capture=cam)
    assert src.is_camera and src.live and src.name == "camera 0" and src.frame_count is None
    got, stamps = [], []
    with src:
        for f in src:
            # The consumer gets the newest frame: at most one newer has been read since.
            assert cam.reads - 1 - f.index <= 1
            assert f.image[0, 0].tolist() == [0, 0, 255]  # BGR blue band arrives as RGB
            got.append(f.index)
            stamps.append(f.timestamp)
            time.sleep(0.05)
    assert src.ended and cam.released and cam.failed_reads >= 5
    assert got == sorted(got) and 3 <= len(got) < 30
    assert src.dropped == 60 - len(got)
    # Timestamps are grab times: they follow the clock (60 frames at 100 fps span ~0.6 s).
    assert stamps == sorted(stamps) and 0.4 < stamps[-1] - stamps[0] < 1.5
