"""Videos a browser plays: H.264 ('avc1') in MP4 with the index (moov) before the media (mdat),
played by a real Chromium; MPEG-4 Part 2 (mp4v) only as the fallback, with one note."""
from __future__ import annotations

import functools
import http.server
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from segkit.io import video_writer
from segkit.io.video_writer import AtomicVideoWriter

FPS, FRAMES = 10, 25  # 2.5 s


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload start, box end) of the ISO BMFF boxes between start and end."""
    i, end = start, len(data) if end is None else end
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[i + 8:i + 16])[0], 16
        elif size == 0:
            size = end - i
        yield kind.decode("latin-1"), i + header, i + size
        i += size


def sample_entries(data: bytes) -> list[str]:
    """The codec of every track: moov/trak/mdia/minf/stbl/stsd's sample entry types."""
    def child(kind, start, end):
        return [(s, e) for k, s, e in mp4_boxes(data, start, end) if k == kind]
    out = []
    for ms, me in child("moov", 0, len(data)):
        for ts, te in child("trak", ms, me):
            for path in [("mdia", "minf", "stbl", "stsd")]:
                spans = [(ts, te)]
                for kind in path:
                    spans = [c for s, e in spans for c in child(kind, s, e)]
                for s, e in spans:  # stsd: version/flags + entry count, then the entries
                    out += [k for k, _, _ in mp4_boxes(data, s + 8, e)]
    return out


def moving_frames(n=FRAMES, h=120, w=161):  # an odd width: yuv420p needs padding
    yy, xx = np.mgrid[0:h, 0:w]
    return [np.dstack([(xx * 2 + i * 9) % 256, (yy * 2) % 256, np.full_like(xx, 128)]).astype(np.uint8)
            for i in range(n)]


@pytest.fixture(scope="module")
def h264_video(tmp_path_factory) -> Path:
    if video_writer.ffmpeg_exe() is None:
        pytest.skip("imageio-ffmpeg is not installed")
    out = tmp_path_factory.mktemp("video") / "clip.mp4"
    with AtomicVideoWriter(out, FPS) as w:
        for f in moving_frames():
            w.write(f)
    assert w.codec == "avc1" and w.final == out, w.error
    return out


def test_mp4_is_h264_with_the_index_first(h264_video):
    data = h264_video.read_bytes()
    top = [k for k, _, _ in mp4_boxes(data)]
    assert "moov" in top and "mdat" in top
    assert top.index("moov") < top.index("mdat")  # faststart: playable while it downloads
    assert sample_entries(data) == ["avc1"]


def test_h264_frames_read_back_whole(h264_video):
    import cv2
    cap = cv2.VideoCapture(str(h264_video))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    ok, first = cap.read()
    n = 1
    while cap.grab():
        n += 1
    cap.release()
    assert ok and n == FRAMES
    # the right picture in the right channel order (lossy; the odd width padded by one column)
    assert first.shape[:2] == (120, 162)
    assert np.abs(first[:, :161, ::-1].astype(int) - moving_frames(1)[0]).mean() < 6


def test_without_imageio_ffmpeg_the_fallback_is_mp4v_with_one_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(video_writer, "ffmpeg_exe", lambda: None)
    monkeypatch.setattr(video_writer, "_fallback_noted", False)
    for name in ("a.mp4", "b.mp4"):
        with AtomicVideoWriter(tmp_path / name, FPS) as w:
            for f in moving_frames(3, 32, 32):
                w.write(f)
        assert w.codec == "mp4v" and w.final is not None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "mp4v" in err[0] and "imageio-ffmpeg" in err[0]
    assert sample_entries((tmp_path / "a.mp4").read_bytes()) == ["mp4v"]


def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    return (chromium, driver) if chromium and driver else None


def _browser_state(video: Path) -> list:
    """[readyState, duration, error] of a <video> element playing ``video`` in headless Chromium,
    served over HTTP (as the server and a web page would)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _chromium()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = Options()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        browser.get(base)  # a page of the same origin: about:blank may not load media
        browser.execute_script("const v = document.createElement('video'); v.id = 'v'; v.muted = true;"
                               "v.preload = 'auto'; v.src = arguments[0]; document.body.appendChild(v);",
                               base + video.name)
        state = None
        for _ in range(150):
            state = browser.execute_script("const v = document.getElementById('v');"
                                           "return [v.readyState, v.duration, v.error && v.error.message];")
            if state[0] >= 2 or state[2]:
                break
            time.sleep(0.1)
        return state
    finally:
        browser.quit()
        server.shutdown()


@pytest.mark.skipif(_chromium() is None, reason="needs chromium, chromedriver and selenium (.ci/run installs them)")
def test_chromium_plays_the_h264_mp4_and_not_the_mp4v_fallback(h264_video, tmp_path, monkeypatch):
    ready, duration, err = _browser_state(h264_video)
    assert err is None and ready >= 2  # HAVE_CURRENT_DATA: a frame is decoded
    assert duration == pytest.approx(FRAMES / FPS, abs=0.05)
    # the control: the same frames as mp4v are refused, so the check above can fail
    monkeypatch.setattr(video_writer, "ffmpeg_exe", lambda: None)
    monkeypatch.setattr(video_writer, "_fallback_noted", True)
    with AtomicVideoWriter(tmp_path / "old.mp4", FPS) as w:
        for f in moving_frames():
            w.write(f)
    ready, _, err = _browser_state(tmp_path / "old.mp4")
    assert ready < 2 and err


def test_frames_to_gif_mp4s_are_h264_with_the_index_first(tmp_path):
    """frames_to_gif's MP4 (and the per-track clips, segment_webcam --output: the same writer)."""
    from segkit.io.animation import write_animation
    if video_writer.ffmpeg_exe() is None:
        pytest.skip("imageio-ffmpeg is not installed")
    result = write_animation(moving_frames(6, 48, 64), tmp_path / "anim.mp4", 12)
    data = result.path.read_bytes()
    top = [k for k, _, _ in mp4_boxes(data)]
    assert sample_entries(data) == ["avc1"] and top.index("moov") < top.index("mdat")
