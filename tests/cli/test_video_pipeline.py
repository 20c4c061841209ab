"""scripts/video_pipeline.sh end to end on a real video, and the one-line errors of
video_to_frames.py / frames_to_gif.py, all run as a user runs them (subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path
from segkit.io.sinks import write_image
from segkit.io.sources import read_image

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHON": sys.executable}


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def script(name: str, *args, cwd=None):
    return run(sys.executable, REPO / "bin" / name, *args, cwd=cwd)


def assert_one_line_error(p: subprocess.CompletedProcess, path, problem: str):
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"segkit: error: {path}: {problem}"), p.stderr


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    video = shared_path("videos", "carphone_pristine.mp4")
    out = tmp_path_factory.mktemp("pipeline") / "out dir"  # a space: the script must quote
    p = run("bash", REPO / "scripts" / "video_pipeline.sh", video, out)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def test_pipeline_frames_and_manifest(pipeline):
    m = json.loads((pipeline / "frames" / "manifest.json").read_text())
    assert len(m["frames"]) == 30  # --every 4, at most 30 of carphone's 120
    assert [f["source_frame"] for f in m["frames"]] == list(range(0, 120, 4))
    assert m["fps"] == pytest.approx(29.97 / 4, rel=1e-3)
    assert m["frames"][15]["timestamp"] == pytest.approx(60 / 29.97, abs=1e-4)


def test_pipeline_cutouts_are_white_where_the_mask_says_background(pipeline):
    seg = pipeline / "segmented"
    person = []
    for k in (0, 14, 29):
        cut = read_image(seg / f"frame_{k:06d}.png")
        masks = list((seg / f"frame_{k:06d}_masks").glob("*.png"))
        assert len(masks) == 1  # the person model: one mask per frame with a person
        fg = read_image(masks[0])[..., 0] > 127
        assert cut.shape == (144, 176, 3) and fg.shape == (144, 176)
        # alpha ramps around the threshold (segkit.edges): below it, at most half the photo
        # shows at the edge; a few pixels out, nothing but the white background
        assert (cut[~fg] >= 127).all()
        near = cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert (cut[~near] == 255).all()
        person.append(fg.mean())
    assert all(0.15 < f < 0.9 for f in person), person  # the man in the car is found


def test_pipeline_gif_and_mp4(pipeline):
    with Image.open(pipeline / "collage.gif") as im:
        assert im.size == (3 * 176, 144) and im.n_frames == 30
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
        assert sum(durations) == pytest.approx(30 / (29.97 / 4) * 1000, abs=10)  # real time: 4 s
        im.seek(14)
        rgb = np.asarray(im.convert("RGB"))
    fg = read_image(next((pipeline / "segmented" / "frame_000014_masks").glob("*.png")))[..., 0] > 127
    # the mask panel shows the mask, the cut-out panel is white outside it (palette may round)
    assert ((rgb[:, 176:352, 0] > 127) == fg).mean() > 0.99
    # (the soft edge: at most half the photo just outside the mask; white a few pixels out)
    near = cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert rgb[:, 352:][~near].min() >= 240 and rgb[:, 352:][~fg].min() >= 120
    cap = cv2.VideoCapture(str(pipeline / "collage.mp4"))
    try:
        assert cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 528
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    assert n == 30
    assert os.path.getsize(pipeline / "collage.gif") < 2_000_000


@pytest.mark.parametrize("content, problem", [(b"", "empty file (0 bytes)"),
                                              (b"not a video, just text\n", "cannot be decoded as a video")])
def test_video_to_frames_bad_video(tmp_path, content, problem):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    p = script("video_to_frames.py", "-i", bad, "-o", tmp_path / "frames")
    assert_one_line_error(p, bad, problem)
    assert not (tmp_path / "frames").exists()


def test_frames_to_gif_empty_folder_and_mixed_sizes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(script("frames_to_gif.py", "-i", empty, "-o", tmp_path / "a.gif"), empty, "no frames")
    mixed = tmp_path / "mixed"
    write_image(mixed / "f1.png", np.zeros((20, 30, 3), np.uint8))
    write_image(mixed / "f2.png", np.zeros((22, 30, 3), np.uint8))
    p = script("frames_to_gif.py", "-i", mixed, "-o", tmp_path / "a.mp4")
    assert_one_line_error(p, mixed / "f2.png", "frame is 30x22 but")
    assert not list(tmp_path.glob("*.gif")) + list(tmp_path.glob("*.mp4")) + list(tmp_path.glob(".*"))


def test_frames_to_gif_usage_errors(tmp_path):
    write_image(tmp_path / "f" / "f1.png", np.zeros((20, 30, 3), np.uint8))
    p = script("frames_to_gif.py", "-i", tmp_path / "f", "-o", tmp_path / "a.avi")
    assert p.returncode == 2 and "output must end in .gif or .mp4" in p.stderr
    p = script("frames_to_gif.py", "-i", tmp_path / "f", "-o", tmp_path / "a.gif", "--collage", "original,mask")
    assert p.returncode == 2 and "need --segmented DIR" in p.stderr


def test_script_usage(tmp_path):
    p = run("bash", REPO / "scripts" / "video_pipeline.sh", "only-one-arg")
    assert p.returncode == 2 and "usage:" in p.stderr
    # a bad video stops the script at the first step, with that step's one-line error
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    p = run("bash", REPO / "scripts" / "video_pipeline.sh", bad, tmp_path / "out")
    assert p.returncode == 1 and p.stderr.strip() == f"segkit: error: {bad}: empty file (0 bytes)"


def test_pipeline_per_track_clips(tmp_path):
    """PER_TRACK=1: the objects are tracked and each long enough track gets its cut-out clip."""
    video = shared_path("videos", "carphone_pristine.mp4")
    out = tmp_path / "out"
    p = subprocess.run(["bash", str(REPO / "scripts" / "video_pipeline.sh"), str(video), str(out)],
                       env={**ENV, "PER_TRACK": "1", "MAX_FRAMES": "12", "BACKGROUND": "black"},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    clips = sorted((out / "tracks").glob("*.mp4"))
    assert [c.name for c in clips] == ["person_1.mp4"]  # the man in the car, one track
    cap = cv2.VideoCapture(str(clips[0]))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    assert 10 <= n <= 12 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(29.97 / 4, rel=1e-2)
    assert (out / "collage.gif").is_file()
