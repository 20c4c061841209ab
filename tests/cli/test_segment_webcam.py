"""bin/segment_webcam.py end to end: file sources, limits, signals, model failure, window, errors."""
from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_path
from fixtures.clips import count_frames, make_clip

SCRIPT = REPO / "bin" / "segment_webcam.py"
CLIP_FRAMES = 30


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", CLIP_FRAMES, fps=20)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """10 s at 20 fps: long enough to interrupt a --realtime run in the middle."""
    return make_clip(tmp_path_factory.mktemp("clips") / "long.mp4", 200, fps=20)


def _env(display: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if display:
        env["DISPLAY"] = display
    return env


def run(*args, display=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO, env=_env(display),
                          capture_output=True, text=True, timeout=timeout)


def _summary(stdout: str) -> dict:
    line = [ln for ln in stdout.splitlines() if "frames done" in ln][-1]
    m = re.search(r"output (\S+) \((\d+) frames\)", line)
    return {"segmented": int(re.search(r"(\d+) frames done", line).group(1)),
            "written": int(m.group(2)) if m else None,
            "dropped": int(re.search(r"(\d+) dropped", line).group(1)) if "dropped" in line else None,
            "stopped": line.rsplit("stopped: ", 1)[-1].split(";")[0] if "stopped: " in line else None}


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def _load_script():
    mod = importlib.import_module("segkit.commands.webcam")
    return mod


# ------------------------------------------------------------------------------ file sources
def test_generated_clip_every_frame_is_segmented_and_written(clip, tmp_path):
    out = tmp_path / "out.mp4"
    r = run("--source", clip, "--output", out)
    assert r.returncode == 0, r.stderr
    s = _summary(r.stdout)
    assert s["segmented"] == s["written"] == count_frames(out) == CLIP_FRAMES
    assert s["stopped"] == "end of stream" and s["dropped"] is None  # files never drop
    assert "headless, no display" in r.stdout
    assert _no_temp_files(tmp_path)


def test_vtest_avi_output_has_one_frame_per_processed_frame(tmp_path):
    video = shared_path("videos", "vtest.avi")
    out = tmp_path / "vtest_seg.avi"
    r = run("--source", video, "--output", out, "--max-frames", 40, "--classes", "person", "--threshold", 0.3)
    assert r.returncode == 0, r.stderr
    s = _summary(r.stdout)
    assert s["segmented"] == s["written"] == count_frames(out) == 40
    cap = cv2.VideoCapture(str(out))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (768, 576)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10)  # plays at the source's speed
    cap.release()


def test_max_frames_is_respected(clip, tmp_path):
    out = tmp_path / "seven.mp4"
    r = run("--source", clip, "--output", out, "--max-frames", 7)
    assert r.returncode == 0, r.stderr
    assert _summary(r.stdout)["stopped"] == "--max-frames 7 reached"
    assert count_frames(out) == 7


def test_quiet_prints_only_the_summary_on_stderr(clip, tmp_path):
    r = run("--source", clip, "--max-frames", 3, "--no-show", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert _summary(r.stderr)["segmented"] == 3


def test_duration_bounds_a_realtime_run(long_clip, tmp_path):
    t0 = time.monotonic()
    r = run("--source", long_clip, "--realtime", "--duration", 1, "--output", tmp_path / "d.mp4")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 8  # the clip lasts 10 s
    s = _summary(r.stdout)
    assert s["stopped"] == "--duration 1 s reached" and s["dropped"] is not None
    assert 0 < count_frames(tmp_path / "d.mp4") <= 25


def test_white_background_replaces_everything_but_the_person(clip, tmp_path):
    out = tmp_path / "white.mp4"
    r = run("--source", clip, "--output", out, "--background", "white", "--mirror")
    assert r.returncode == 0, r.stderr

    def white_fraction(path):
        cap, fr = cv2.VideoCapture(str(path)), []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            fr.append((f > 235).all(-1).mean())
        cap.release()
        return np.array(fr)

    before, after = white_fraction(clip), white_fraction(out)
    assert before.max() < 0.05
    assert len(after) == CLIP_FRAMES and (after > 0.3).all() and (after < 0.97).all()  # the person stays


# ------------------------------------------------------------------------------ every way out
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_still_finalises_a_playable_video(long_clip, tmp_path, sig, code):
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--source", str(long_clip), "--realtime",
                             "--output", str(out)], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the encoder has opened the temp file (first frame done), then interrupt.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".live.")]
            if temps and temps[0].exists() and temps[0].stat().st_size > 0:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        assert not out.exists()  # nothing at the final path while recording
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in stderr
    assert "Traceback" not in stderr
    s = _summary(stdout)
    n = count_frames(out)
    assert n > 0 and n == s["written"]
    assert s["segmented"] < 200
    assert _no_temp_files(tmp_path)


def test_model_exception_mid_stream_finalises_the_file(clip, tmp_path, monkeypatch, capsys):
    """The 5th forward pass raises: exit 1 with one line naming the frame, 4 frames in the video."""
    mod = _load_script()
    from segkit import cli, options

    real_load = options.load_model

    def failing_model(args, progress=True):
        seg = real_load(args, progress)
        real_segment, calls = seg.segment, [0]

        def segment(images, min_score=0.0):
            calls[0] += 1
            if calls[0] == 5:
                raise RuntimeError("tensor arena exhausted")
            return real_segment(images, min_score)

        seg.segment = segment
        return seg

    monkeypatch.setattr(options, "load_model", failing_model)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "partial.mp4"
    code = cli.run_main(mod.main, ["--source", str(clip), "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    errors = [ln for ln in captured.err.splitlines() if "failed on frame" in ln]
    assert len(errors) == 1 and "frame 4" in errors[0] and "tensor arena exhausted" in errors[0]
    assert count_frames(out) == _summary(captured.out)["written"] == 4
    assert _no_temp_files(tmp_path)


# ------------------------------------------------------------------------------ errors
def test_missing_camera_is_a_one_line_error_with_exit_code_1():
    if os.path.exists("/dev/video9"):
        pytest.skip("this machine has a /dev/video9")
    r = run("--source", 9)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("segkit: error: camera 9: cannot open")
    assert "V4L2" in lines[0]


@pytest.mark.parametrize("args, code, text", [
    (["--output", "out.gif"], 1, "cannot write video with extension '.gif'"),
    (["--background", "transparent"], 2, "no alpha channel"),
    (["--max-frames", "0"], 2, "must be > 0"),
    (["--classes", "persn"], 2, "did you mean 'person'"),
])
def test_bad_arguments_fail_before_anything_starts(clip, tmp_path, args, code, text):
    r = run("--source", clip, *args)
    assert r.returncode == code and text in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_video_file_names_it(tmp_path):
    r = run("--source", tmp_path / "nope.mp4")
    assert r.returncode == 1 and f"{tmp_path / 'nope.mp4'}: no such file" in r.stderr


# ------------------------------------------------------------------------------ the window
@pytest.fixture(scope="module")
def display():
    from fixtures.xdisplay import xvfb

    with xvfb(800, 600) as d:
        yield d


def _start_windowed(display, source, out):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--source", str(source), "--realtime",
                             "--output", str(out)], cwd=REPO, env=_env(display),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from fixtures.xdisplay import find_window

    title = f"segkit - {source}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and find_window(display, title) is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)  # let a few frames through
    return proc, title


@pytest.mark.parametrize("how", ["q", "Escape", "close"])
def test_window_shows_the_annotated_stream_and_quits(display, long_clip, tmp_path, how):
    from fixtures.xdisplay import close_window, press_key, screenshot

    out = tmp_path / "win.mp4"
    proc, title = _start_windowed(display, long_clip, out)
    try:
        shot = np.asarray(screenshot(display))
        # Without a window manager the window sits at the top-left corner.
        frame_area = shot[:120, :160].astype(int)
        hud = shot[:14, :150]
        # The HUD: white text on a black band over the video's top-left corner.
        assert (hud.max(-1) < 30).mean() > 0.5 and (hud.min(-1) > 200).any()
        # Below the HUD the video itself is there (not an empty black or grey window).
        assert frame_area[20:].std() > 20
        if how == "close":
            assert close_window(display, title)
        else:
            press_key(display, how, at=(80, 60))
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "window (q or Esc quits)" in stdout
    s = _summary(stdout)
    assert s["stopped"] == ("window closed" if how == "close" else "quit key")
    assert s["segmented"] < 200  # it quit early, not at the end of the 10 s clip
    assert count_frames(out) == s["written"] > 0


def test_camera_run_writes_real_time_video_and_reports_drops(tmp_path, monkeypatch, capsys):
    """A fake 60 fps camera (no real one here): the live path end to end, in process."""
    from fixtures.clips import FakeCamera
    import segkit.io.video_source as video
    from segkit import cli

    mod = _load_script()
    cam = FakeCamera(frames=10_000, fps=60)
    monkeypatch.setattr(video, "open_capture", lambda source: cam)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "cam.mp4"
    code = cli.run_main(mod.main, ["--source", "0", "--duration", "1", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "camera 0 160x120 @ 60 fps (live)" in captured.out
    s = _summary(captured.out)
    assert s["stopped"] == "--duration 1 s reached" and s["dropped"] is not None
    assert cam.released
    # Constant-rate output at the camera's 60 fps covering the ~1 s recorded, drops or not.
    n = count_frames(out)
    assert n == s["written"] and 45 <= n <= 70
    assert s["segmented"] <= n


def test_mirror_flips_frames_left_right(clip, tmp_path):
    plain, mirrored = tmp_path / "plain.avi", tmp_path / "mirrored.avi"
    for out, extra in ((plain, []), (mirrored, ["--mirror"])):
        r = run("--source", clip, "--output", out, "--max-frames", 1, "--background", "#000000", *extra)
        assert r.returncode == 0, r.stderr
    a = cv2.VideoCapture(str(plain)).read()[1].astype(int)
    b = cv2.VideoCapture(str(mirrored)).read()[1].astype(int)
    assert np.abs(b - a[:, ::-1]).mean() < np.abs(b - a).mean() / 3
