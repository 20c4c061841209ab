"""Full disks: every script on a real file system that fills up (a small tmpfs).

On ENOSPC a script says so in one line naming the file, exits non-zero (3 when other inputs
were done), leaves no partial file at a final path (nor a temp file), and a rerun once there
is space completes the job.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import REPO, shared_path
from fixtures.small_fs import small_disk

MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"
BIG = 256 << 20


def run(script: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.run([sys.executable, str(REPO / "bin" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def error_lines(r: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in r.stderr, r.stderr
    return [ln for ln in r.stderr.splitlines() if ln.startswith("segkit: error:")]


def assert_disk_full_line(r: subprocess.CompletedProcess, disk: Path) -> str:
    lines = error_lines(r)
    full = [ln for ln in lines if "no space left on device" in ln or "disk full" in ln]
    assert len(full) == 1, r.stderr  # one line for the event, not one per remaining input
    assert str(disk) in full[0], full[0]  # it names the file
    return full[0]


def temp_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.name != ".ballast" and (p.name.endswith((".tmp", ".tmp.mp4")) or ".part" in p.name))


def frames_of(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    src = shared_path("coco", "val2017")
    d = tmp_path_factory.mktemp("photos")
    for p in sorted(src.glob("*.jpg"))[:6]:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory) -> Path:
    """What segment_folder writes with room to spare: the outputs a resumed run must match."""
    out = tmp_path_factory.mktemp("ref")
    r = run("segment_folder.py", "-i", photos, "-o", out, "--model-path", MODEL, "--quiet")
    assert r.returncode == 0, r.stderr
    return out


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()
            and not p.name.startswith(".") and p.suffix in (".png", ".jpg")}


def test_segment_folder_disk_full_at_start_then_resumes(photos, reference, tmp_path):
    with small_disk(tmp_path / "disk", 1 << 20) as disk:
        disk.fill()
        out = disk.path / "out"
        r = run("segment_folder.py", "-i", photos, "-o", out, "--model-path", MODEL, "--quiet")
        assert r.returncode == 1, r.stderr
        assert_disk_full_line(r, disk.path)
        assert outputs(out) == {} and temp_files(disk.path) == []
        disk.drain()
        disk.resize(BIG)
        r = run("segment_folder.py", "-i", photos, "-o", out, "--model-path", MODEL, "--quiet")
        assert r.returncode == 0, r.stderr
        assert outputs(out) == outputs(reference)


def test_segment_folder_disk_full_mid_run_stops_exit_3_and_resumes(photos, reference, tmp_path):
    sizes = sorted(len(b) for b in outputs(reference).values())
    room = sizes[0] + sizes[1] + sizes[-1] // 2 + (64 << 10)  # two outputs fit, not all six
    with small_disk(tmp_path / "disk", (room + 4095) // 4096 * 4096) as disk:
        out = disk.path / "out"
        r = run("segment_folder.py", "-i", photos, "-o", out, "--model-path", MODEL, "--quiet")
        assert r.returncode == 3, r.stderr
        line = assert_disk_full_line(r, disk.path)
        assert "out/" in line
        done = outputs(out)
        assert 1 <= len(done) < 6
        ref = outputs(reference)
        assert all(done[k] == ref[k] for k in done)  # what is at a final path is complete
        assert temp_files(disk.path) == []
        assert "run again to resume" in r.stderr
        disk.resize(BIG)
        r = run("segment_folder.py", "-i", photos, "-o", out, "--model-path", MODEL, "--quiet")
        assert r.returncode == 0, r.stderr
        assert f"{len(done)} skipped" in r.stderr
        assert outputs(out) == ref
        assert (out / "failures.jsonl").read_text() == ""


def test_segment_image_disk_full_exit_3_when_another_was_done(photos, reference, tmp_path):
    ref = outputs(reference)
    first = sorted(ref)[0]
    with small_disk(tmp_path / "disk", (len(ref[first]) + (48 << 10) + 4095) // 4096 * 4096) as disk:
        out = disk.path / "out"
        inputs = sorted(photos.glob("*.jpg"))[:3]
        args = [a for p in inputs for a in ("-i", p)]
        r = run("segment_image.py", *args, "-o", out, "--model-path", MODEL, "--quiet")
        assert r.returncode == 3, r.stderr
        assert_disk_full_line(r, disk.path)
        done = outputs(out)
        assert list(done) == [first] and done[first] == ref[first]
        assert temp_files(disk.path) == []
        disk.resize(BIG)
        r = run("segment_image.py", *args, "-o", out, "--model-path", MODEL, "--quiet")
        assert r.returncode == 0, r.stderr
        assert outputs(out) == {k: ref[k] for k in sorted(ref)[:3]}


def test_segment_webcam_output_on_full_disk_never_exits_0_with_an_unplayable_file(tmp_path):
    clip = shared_path("videos", "carphone_pristine.mp4")
    ref = tmp_path / "ref.mp4"
    r = run("segment_webcam.py", "--source", clip, "--output", ref, "--no-show", "--model-path", MODEL)
    assert r.returncode == 0, r.stderr
    assert frames_of(ref) == 120
    with small_disk(tmp_path / "disk", (ref.stat().st_size // 2) // 4096 * 4096) as disk:
        out = disk.path / "w.mp4"
        r = run("segment_webcam.py", "--source", clip, "--output", out, "--no-show", "--model-path", MODEL)
        assert r.returncode != 0, r.stdout + r.stderr
        lines = error_lines(r)
        assert len(lines) == 1 and str(out) in lines[0] and "writing video failed" in lines[0], r.stderr
        assert "no space left" in lines[0] or "disk full" in lines[0] or "cut short" in lines[0]
        assert not out.exists() and temp_files(disk.path) == []
        assert f"output {out}" not in r.stdout
        disk.resize(BIG)
        r = run("segment_webcam.py", "--source", clip, "--output", out, "--no-show", "--model-path", MODEL)
        assert r.returncode == 0, r.stderr
        assert frames_of(out) == 120


def test_video_to_frames_disk_full_reports_no_half_set_and_a_rerun_completes(tmp_path):
    clip = shared_path("videos", "carphone_pristine.mp4")
    with small_disk(tmp_path / "disk", 512 << 10) as disk:
        out = disk.path / "frames"
        r = run("video_to_frames.py", "-i", clip, "-o", out, "--quiet")
        assert r.returncode == 1, r.stderr
        line = assert_disk_full_line(r, disk.path)
        assert "frame_" in line and "no manifest" in line
        assert not (out / "manifest.json").exists()
        for f in out.glob("frame_*.png"):  # the frames that are there are whole
            assert cv2.imread(str(f)) is not None
        assert temp_files(disk.path) == []
        disk.resize(BIG)
        r = run("video_to_frames.py", "-i", clip, "-o", out, "--quiet")  # the same command
        assert r.returncode == 0, r.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert len(manifest["frames"]) == 120
        assert sorted(f["file"] for f in manifest["frames"]) == sorted(p.name for p in out.glob("frame_*"))


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_frames_to_gif_disk_full(ext, tmp_path):
    clip = shared_path("videos", "carphone_pristine.mp4")
    frames = tmp_path / "frames"
    assert run("video_to_frames.py", "-i", clip, "-o", frames, "--max-frames", 30, "--quiet").returncode == 0
    with small_disk(tmp_path / "disk", 64 << 10) as disk:
        disk.fill(leave=8 << 10)
        out = disk.path / f"clip{ext}"
        r = run("frames_to_gif.py", "-i", frames, "-o", out, "--quiet")
        assert r.returncode == 1, r.stderr
        line = assert_disk_full_line(r, disk.path)
        assert str(out) in line
        assert not out.exists() and temp_files(disk.path) == []
        disk.drain()
        disk.resize(BIG)
        r = run("frames_to_gif.py", "-i", frames, "-o", out, "--quiet")
        assert r.returncode == 0, r.stderr
        assert out.stat().st_size > 0
        if ext == ".mp4":
            assert frames_of(out) == 30
