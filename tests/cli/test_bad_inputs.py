"""Hostile inputs and shared output folders, on real COCO photos and videos.

Every bad input gets one line naming it, is recorded in failures.jsonl and does not stop the
good ones; bad arguments are one line with exit 2; Ctrl+C at start-up prints no traceback;
concurrent runs into one folder keep each other's temp files; every output gets the same
permissions under the user's umask.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, shared_path

MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"


def run(script: str, *args, prefix: tuple = (), umask: int | None = None, timeout: int = 300,
        **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}

    def pre():
        if umask is not None:
            os.umask(umask)
    return subprocess.run([*prefix, sys.executable, str(REPO / "bin" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=pre, **kw)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("segkit: error:")]


def good_photos(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sorted(shared_path("coco", "val2017").glob("*.jpg"))[:n]:
        out.append(Path(shutil.copy(p, folder / p.name)))
    return out


def bad_inputs(folder: Path) -> dict[str, str]:
    """name -> the words its error line must hold."""
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    (folder / "dir.jpg").mkdir()
    os.mkfifo(folder / "fifo.jpg")
    return {"dangling.jpg": "dangling symlink", "loop_a.jpg": "symlink loop", "loop_b.jpg": "symlink loop",
            "dir.jpg": "is a directory", "fifo.jpg": "not a regular file (a FIFO)"}


def check_one_line_each(stderr: str, expected: dict[str, str]) -> None:
    lines = error_lines(stderr)
    for name, words in expected.items():
        mine = [ln for ln in lines if f"/{name}:" in ln]
        assert len(mine) == 1, (name, stderr)
        assert words in mine[0], (name, mine[0])


def without_read_override() -> dict:
    """Root reads everything: a file it 'cannot read' needs a process that really cannot. Root
    without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys permission bits like anyone else."""
    if os.geteuid() != 0:
        return {}
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop the read override")
    return {"prefix": ("setpriv", "--bounding-set=-dac_override,-dac_read_search")}


# --------------------------------------------------------------------------- bad inputs

def test_segment_folder_bad_inputs_one_line_each_recorded_good_ones_done(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    good = good_photos(src)
    expected = bad_inputs(src)
    r = run("segment_folder.py", "-i", src, "-o", out, "--model-path", MODEL, "--quiet")
    assert r.returncode == 3, r.stderr
    check_one_line_each(r.stderr, expected)
    recorded = {Path(f["file"]).name: f["reason"] for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    assert set(recorded) == set(expected)
    assert all(expected[k] in recorded[k] for k in expected)
    assert all((out / f"{p.stem}.png").is_file() or (out / f"{p.stem}.jpg").is_file() for p in good)


def test_segment_image_bad_inputs_one_line_each_recorded_good_ones_done(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    good = good_photos(src, 2)
    expected = bad_inputs(src)
    args = [a for p in [*good, *(src / n for n in expected)] for a in ("-i", p)]
    r = run("segment_image.py", *args, "-o", out, "--model-path", MODEL, "--quiet")
    assert r.returncode == 3, r.stderr
    check_one_line_each(r.stderr, expected)
    recorded = [json.loads(ln) for ln in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(Path(f["file"]).name for f in recorded) == sorted(expected)
    assert len([p for p in out.iterdir() if not p.name.startswith(".") and p.suffix != ".jsonl"]) == 2


@pytest.mark.parametrize("script", ["segment_folder.py", "segment_image.py"])
def test_permission_denied_is_one_line_and_recorded(script, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    good = good_photos(src, 2)
    secret = good[0]
    secret.chmod(0)
    inputs = ["-i", src] if script == "segment_folder.py" else [a for p in good for a in ("-i", p)]
    r = run(script, *inputs, "-o", out, "--model-path", MODEL, "--quiet", **without_read_override())
    assert r.returncode == 3, r.stderr
    check_one_line_each(r.stderr, {secret.name: "permission denied"})
    recorded = [json.loads(ln) for ln in (out / "failures.jsonl").read_text().splitlines()]
    assert [(Path(f["file"]).name, f["reason"]) for f in recorded] == [(secret.name, "permission denied")]
    assert any(p.stem == good[1].stem for p in out.iterdir())


def test_file_vanishing_between_listing_and_reading_is_a_recorded_failure(tmp_path, monkeypatch, capsys):
    import importlib

    from segkit import cli
    from segkit.io import sources

    script = importlib.import_module("segkit.commands.folder")  # bin/segment_folder.py's main()
    run = importlib.import_module("segkit.folder_run")  # ... and the library call it makes
    src, out = tmp_path / "in", tmp_path / "out"
    good = good_photos(src, 3)
    victim = good[1]
    real_expand = sources.expand_inputs

    def list_then_delete(*a, **k):
        items = real_expand(*a, **k)
        victim.unlink()  # another program removes it after the folder was listed
        return items
    monkeypatch.setattr(run, "expand_inputs", list_then_delete)
    rc = cli.run_main(script.main, ["-i", str(src), "-o", str(out), "--model-path", str(MODEL), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3
    check_one_line_each(err, {victim.name: "no such file"})
    recorded = [json.loads(ln) for ln in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["file"]).name for f in recorded] == [victim.name]


# --------------------------------------------------------------------------- arguments, start-up

@pytest.mark.parametrize("script", ["segment_folder.py", "segment_image.py"])
def test_output_naming_an_existing_file_is_one_line_exit_2(script, tmp_path):
    src = tmp_path / "in"
    photos = good_photos(src, 2)
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    inputs = ["-i", src] if script == "segment_folder.py" else [a for p in photos for a in ("-i", p)]
    r = run(script, *inputs, "-o", target, "--model-path", MODEL)
    assert r.returncode == 2, r.stderr
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and str(target) in lines[0] and len(r.stderr.splitlines()) == 1
    assert target.read_text() == "mine"


@pytest.mark.parametrize("script,args", [("segment_image.py", ["-i", "x.jpg", "--threshold", "1.5"]),
                                         ("segment_folder.py", ["-i", "d", "--threshold", "1.5"]),
                                         ("segment_webcam.py", ["--alpha", "2"]),
                                         ("video_to_frames.py", ["-i", "v.mp4", "-o", "f", "--every", "x"])])
def test_bad_argument_is_one_line_not_the_usage_block(script, args):
    r = run(script, *args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("segkit: error: "), r.stderr
    assert "usage:" not in r.stderr and ("1.5" in r.stderr or "2" in r.stderr or "'x'" in r.stderr)


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5, 2.5])
def test_ctrl_c_during_start_up_prints_no_traceback(delay, tmp_path):
    src = tmp_path / "in"
    good_photos(src, 2)
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    p = subprocess.Popen([sys.executable, str(REPO / "bin" / "segment_folder.py"), "-i", str(src), "-o",
                          str(tmp_path / "out"), "--model-path", str(MODEL), "--quiet"],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err
    # interrupted (130, or killed by SIGINT before run_main), or it had already finished (0)
    assert p.returncode in (0, 130, -signal.SIGINT), (p.returncode, err)


# --------------------------------------------------------------------------- videos

def test_video_to_frames_on_a_truncated_video_says_read_vs_promised_exit_3(tmp_path):
    video = shared_path("videos", "vtest.avi")
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[:len(data) // 8])
    out = tmp_path / "frames"
    r = run("video_to_frames.py", "-i", cut, "-o", out, "--ext", "jpg", "--quiet")
    assert r.returncode == 3, r.stderr
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and "of the 795 frames the container promises" in lines[0]
    read = int(lines[0].split("read ")[1].split(" ")[0])
    assert 0 < read < 795
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["frames"]) == read == manifest["source_frames_read"]
    assert sorted(p.name for p in out.glob("frame_*")) == sorted(f["file"] for f in manifest["frames"])


def test_video_to_frames_on_a_corrupt_header_is_one_line(tmp_path):
    video = shared_path("videos", "bikes.mp4")
    bad = tmp_path / "bad.mp4"
    data = bytearray(video.read_bytes())
    data[:4096] = bytes(4096)
    bad.write_bytes(bytes(data))
    r = run("video_to_frames.py", "-i", bad, "-o", tmp_path / "f", "--quiet")
    assert r.returncode == 1
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and str(bad) in lines[0] and len(r.stderr.splitlines()) == 1, r.stderr


def test_webcam_killed_with_sigkill_leaves_a_part_file_that_the_next_run_removes(tmp_path):
    clip = shared_path("videos", "vtest.avi")
    out = tmp_path / "out" / "w.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    p = subprocess.Popen([sys.executable, str(REPO / "bin" / "segment_webcam.py"), "--source", str(clip),
                          "--output", str(out), "--no-show", "--quiet", "--model-path", str(MODEL)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            parts = list(out.parent.glob(".*part*")) if out.parent.exists() else []
            if parts and parts[0].stat().st_size > 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the webcam run never started writing")
    finally:
        p.kill()
        p.wait()
    leftovers = list(out.parent.glob(".*part*"))
    assert len(leftovers) == 1 and not out.exists()
    r = run("segment_webcam.py", "--source", shared_path("videos", "carphone_pristine.mp4"), "--output", out,
            "--no-show", "--max-frames", 5, "--model-path", MODEL)
    assert r.returncode == 0, r.stderr
    assert f"removed {leftovers[0]}" in r.stdout
    assert list(out.parent.glob(".*part*")) == [] and out.is_file()


def test_webcam_quiet_runs(tmp_path):
    r = run("segment_webcam.py", "--source", shared_path("videos", "carphone_pristine.mp4"), "--quiet",
            "--no-show", "--max-frames", 3, "--output", tmp_path / "q.mp4", "--model-path", MODEL)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


# --------------------------------------------------------------------------- shared output folders

def test_folder_run_keeps_temp_files_of_live_runs_and_removes_those_of_dead_ones(tmp_path):
    from segkit.io import atomic as sinks

    src, out = tmp_path / "in", tmp_path / "out"
    good_photos(src, 1)
    out.mkdir()
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        host = sinks.temp_prefix("x").split(".")[2].split("-")[0]
        live_tmp = out / f".other.png.{host}-{live.pid}.abcd1234.tmp"
        dead_tmp = out / f".other.png.{host}-{dead.pid}.abcd1234.tmp"
        live_masks = out / f".other_masks.{host}-{live.pid}.abcd1234"
        for f in (live_tmp, dead_tmp):
            f.write_bytes(b"half")
        live_masks.mkdir()
        r = run("segment_folder.py", "-i", src, "-o", out, "--model-path", MODEL, "--quiet")
        assert r.returncode == 0, r.stderr
        assert live_tmp.exists() and live_masks.exists()  # another process is still writing them
        assert not dead_tmp.exists()  # its process is gone: a leftover
    finally:
        live.kill()
        live.wait()


def test_concurrent_segment_image_and_segment_folder_into_one_folder_lose_nothing(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    photos = good_photos(src, 8)
    singles = good_photos(tmp_path / "single", 8)
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    folder = subprocess.Popen([sys.executable, str(REPO / "bin" / "segment_folder.py"), "-i", str(src), "-o",
                               str(out), "--model-path", str(MODEL), "--quiet", "--save-masks"],
                              stderr=subprocess.PIPE, text=True, env=env)
    image = run("segment_image.py", *[a for p in singles for a in ("-i", p)], "-o", out, "--model-path", MODEL,
                "--quiet", "--save-masks")
    _, err = folder.communicate(timeout=300)
    assert folder.returncode == 0, err
    assert image.returncode == 0, image.stderr
    names = {p.stem for p in photos}  # both runs write the same names: each must be complete
    assert all((out / f"{n}_masks").is_dir() and any(out.glob(f"{n}.*")) for n in names)
    assert [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".segkit"] == []


def test_outputs_masks_and_results_get_one_permission_scheme_under_the_umask(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    good_photos(src, 2)
    r = run("segment_folder.py", "-i", src, "-o", out, "--model-path", MODEL, "--quiet", "--save-masks",
            "--json", umask=0o027)
    assert r.returncode == 0, r.stderr
    files = [p for p in out.rglob("*") if p.is_file() and ".segkit" not in p.parts]
    dirs = [p for p in out.rglob("*") if p.is_dir() and ".segkit" not in p.parts]
    assert any(p.name == "results.json" for p in files) and any(p.name.endswith("_masks") for p in dirs)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o640)}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in dirs} == {oct(0o750)}
