"""Runs that are stopped (SIGTERM) or share an output folder, and reruns that must not keep stale
lines (issue #24 parts 3 and 4)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(script: str, *args, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bin" / script), *map(str, args),
                           "--model-path", str(MODEL)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def noise(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("script", ["segment_folder.py", "segment_image.py"])
def test_sigterm_finishes_what_is_written_records_failures_and_results_exit_143(script, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    n = 40
    (src / "aaa_broken.png").parent.mkdir(parents=True)
    (src / "aaa_broken.png").write_bytes(b"not a png")  # first in name order: fails before the signal
    for i in range(n):
        noise(src / f"im{i:02d}.png", w=640, h=480, seed=i)  # noise: slow PNGs, the signal lands mid-run
    where = ["-i", str(src)] if script == "segment_folder.py" else ["-i", str(src / "*.png")]
    cmd = [sys.executable, str(REPO / "bin" / script), *where, "-o", str(out), "--json", "--quiet",
           "--model-path", str(MODEL)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("im*.png"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if "SIGTERM" in ln] == ["segkit: terminated (SIGTERM)"], err
    done = sorted(p.stem for p in out.glob("im*.png"))
    assert 3 <= len(done) < n, "the signal should land mid-run"
    for p in out.glob("im*.png"):
        with Image.open(p) as im:
            im.load()  # finished whole, never cut
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    failures = [json.loads(ln) for ln in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["file"]).name for f in failures] == ["aaa_broken.png"]
    results = json.loads((out / "results.json").read_text())  # the results of what was done
    assert isinstance(results, list)
    assert {r["image_id"] for r in results} <= set(done)


def test_segment_image_into_a_folder_a_segment_folder_run_is_writing_is_refused(tmp_path):
    """segment_image --json used to replace the folder run's results.json (561 detections -> 3)."""
    from segkit.io.resume import OutputLock

    photo = noise(tmp_path / "photo.png")
    out = tmp_path / "out"
    with OutputLock(out):  # what a segment_folder run holds while it writes
        (out / "results.json").write_text("[]\n")
        r = run("segment_image.py", "-i", photo, "-o", out, "--json")
        r2 = run("segment_image.py", "-i", photo, "-o", tmp_path / "elsewhere", "--json", out / "results.json")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"segkit: error: {out}: a segment_folder run is writing into this "
                                     "folder; wait for it to end or choose another -o"]
    assert r2.returncode == 2 and "a segment_folder run is writing" in r2.stderr, r2.stderr
    assert (out / "results.json").read_text() == "[]\n" and not (out / "photo.png").exists()
    r = run("segment_image.py", "-i", photo, "-o", out, "--json")  # once it has ended
    assert r.returncode == 0, r.stderr
    assert (out / "photo.png").is_file()


def test_background_that_is_not_an_image_is_a_bad_argument(tmp_path):
    photo = noise(tmp_path / "photo.png")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    r = run("segment_image.py", "-i", photo, "-o", tmp_path / "out", "--background", text)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"segkit: error: --background {text}: ")
    missing = run("segment_image.py", "-i", photo, "-o", tmp_path / "out", "--background", tmp_path / "no.png")
    assert missing.returncode == 2


def test_output_with_a_trailing_slash_is_a_folder_and_holds_failures_jsonl(tmp_path):
    photo = noise(tmp_path / "photo.png")
    out = tmp_path / "out" / "dir.jpg"
    r = run("segment_image.py", "-i", photo, "-o", f"{out}/")
    assert r.returncode == 0, r.stderr
    assert out.is_dir() and (out / "photo.png").is_file()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"x")
    r = run("segment_image.py", "-i", bad, "-o", f"{out}/")
    assert r.returncode == 1
    assert (out / "failures.jsonl").is_file() and not (out.parent / "failures.jsonl").exists()


def test_a_successful_rerun_removes_its_inputs_from_failures_jsonl(tmp_path):
    photo, other = tmp_path / "photo.png", tmp_path / "other.png"
    photo.write_bytes(b"broken for now")
    other.write_bytes(b"broken too")
    out = tmp_path / "out"
    r = run("segment_image.py", "-i", photo, "-i", other, "-o", out)
    assert r.returncode == 1
    assert len((out / "failures.jsonl").read_text().splitlines()) == 2
    noise(photo)  # fixed: the rerun of photo succeeds
    r = run("segment_image.py", "-i", photo, "-o", out)
    assert r.returncode == 0, r.stderr
    left = [json.loads(ln)["file"] for ln in (out / "failures.jsonl").read_text().splitlines()]
    assert left == [str(other)]  # photo's stale line is gone, other (not rerun) stays


def test_a_second_model_on_the_same_photo_says_it_replaced_the_file(tmp_path):
    photo = noise(tmp_path / "photo.png")
    out = tmp_path / "out"
    r = run("segment_image.py", "-i", photo, "-o", out)
    assert r.returncode == 0 and "replaced" not in r.stdout, r.stdout
    r = subprocess.run([sys.executable, str(REPO / "bin" / "segment_image.py"), "-i", str(photo), "-o", str(out),
                        "--model-path", str(MODEL.with_name("selfie_segmentation_landscape.tflite"))],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"photo\.png \(replaced\)$", r.stdout, re.M), r.stdout
    assert "1 earlier output replaced" in r.stdout


def test_folder_summary_counts_inputs_not_the_results_file(tmp_path, monkeypatch, capsys):
    """results.json failing to write (a full disk at the end) is its own line, not a 'failed' input."""
    from segkit import cli
    from segkit.commands import folder
    from segkit.errors import OutputError
    from segkit.io import results

    src = tmp_path / "in"
    for i in range(3):
        noise(src / f"im{i}.png", seed=i)

    def full(*a, **k):
        raise OutputError(tmp_path / "out" / "results.json", "cannot write: no space left on device", 28)

    monkeypatch.setattr(results.ResultsCache, "merge", full)
    rc = cli.run_main(folder.main, ["-i", str(src), "-o", str(tmp_path / "out"), "--json", "--quiet",
                                    "--model-path", str(MODEL)])
    err = capsys.readouterr().err
    assert "3 images done, 0 skipped, 0 failed" in err, err
    assert rc == 3 and "results.json: cannot write: no space left on device" in err


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler yet (Linux: the SigCgt mask in /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
def test_sigterm_while_starting_up_is_one_line_and_143(delay, tmp_path):
    """Before the run loop (imports, model loading) nothing is written: one line, exit 143. From the
    moment Python runs the script's first lines (before that only the interpreter is starting)."""
    photo = noise(tmp_path / "photo.png")
    p = subprocess.Popen([sys.executable, str(REPO / "bin" / "segment_image.py"), "-i", str(photo), "-o",
                          str(tmp_path / "out"), "--model-path", str(MODEL)], env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not catches_sigterm(p.pid) and p.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("it had already finished")
    assert p.returncode == 143 and err.splitlines()[-1:] == ["segkit: terminated (SIGTERM)"], (p.returncode, err)
    assert "Traceback" not in err
