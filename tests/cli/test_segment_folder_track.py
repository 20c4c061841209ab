"""segment_folder.py --track: one video's frames, ids in every output, and resume = same ids."""
from __future__ import annotations

import json
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

from conftest import REPO
from fixtures.clips import SAMPLE
from fixtures.commands import folder_run

FRAMES = 24


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """FRAMES frames: the sample photo of people at the left for frames 0-9, another copy moving
    in from frame 3 on at the right. A tracker that started afresh after frame 9 would number
    the right one differently from a run that saw the left one."""
    folder = tmp_path_factory.mktemp("video_frames")
    patch = cv2.resize(cv2.imread(str(SAMPLE)), (120, 150), interpolation=cv2.INTER_AREA)
    for i in range(FRAMES):
        im = np.zeros((150, 320, 3), np.uint8)
        if i < 10:
            im[:, i:120 + i] = patch
        if i >= 3:
            im[:, 177 + i:297 + i] = patch
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), im)
    return folder


def ids(out: Path) -> dict[str, list[tuple[int, int]]]:
    """{frame: [(track id, class), ...]} from the --save-txt files."""
    got = {}
    for p in sorted(out.glob("*.txt")):
        got[p.stem] = sorted((int(ln.split()[-1]), int(ln.split()[0])) for ln in p.read_text().splitlines())
    return got


@pytest.fixture(scope="module")
def uninterrupted(frames, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "out"
    r = subprocess.run([sys.executable, str(REPO / "bin" / "segment_folder.py"), "-i", str(frames), "-o", str(out),
                        "--track", "--save-txt", "--json", "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_every_output_carries_the_ids(uninterrupted):
    got = ids(uninterrupted)
    assert len(got) == FRAMES and any(got.values())
    assert max(t for lines in got.values() for t, _ in lines) > 1  # more than one track: ids matter
    assert all(t >= 1 for lines in got.values() for t, _ in lines)
    results = json.loads((uninterrupted / "results.json").read_text())
    assert results and all({"track_id", "frame_index"} <= set(d) for d in results)
    by_frame = {}
    for d in results:
        by_frame.setdefault(d["frame_index"], []).append(d["track_id"])
    assert {f"{k:04d}": sorted(v) for k, v in by_frame.items()} == \
        {k: sorted(t for t, _ in v) for k, v in got.items() if v}


def test_a_resumed_run_gives_the_ids_of_an_uninterrupted_one(frames, uninterrupted, tmp_path, capsys):
    """Frames finished out of order before a kill: 5 and 19 lost their last output, 14 everything
    (its saved detections too). The rerun segments those three only and replays the rest."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(uninterrupted, out)
    for name in ("0005", "0019"):
        (out / f"{name}.txt").unlink()
    for p in [out / "0014.jpg", out / "0014.txt", out / ".segkit" / "tracker" / "0014.npz",
              out / ".segkit" / "made" / "0014.json"]:
        p.unlink()
    code, stdout, err = folder_run(capsys, "-i", frames, "-o", out, "--track", "--save-txt", "--json")
    assert code == 0, err
    assert f"3 images done, {FRAMES - 3} skipped, 0 failed" in stdout
    assert ids(out) == ids(uninterrupted)


def test_kill_9_mid_run_then_rerun_gives_the_same_ids(frames, uninterrupted, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "bin" / "segment_folder.py"), "-i", str(frames), "-o", str(out),
           "--track", "--save-txt", "--json", "--quiet", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*.txt"))) < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = len(list(out.glob("*.txt")))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    skipped = int(re.search(r"(\d+) skipped", r.stderr).group(1))
    assert 1 <= skipped <= done_before  # a frame caught between its outputs is redone
    assert ids(out) == ids(uninterrupted)
    assert json.loads((out / "results.json").read_text()) == json.loads((uninterrupted / "results.json").read_text())


@pytest.mark.parametrize("args,text", [(["-i", "a", "-i", "b"], "one frame folder"),
                                       (["-i", "x/*.jpg"], "not a glob"),
                                       (["-i", "{frames}", "--runner", "beam"], "--runner local")])
def test_track_wants_one_ordered_video(frames, capsys, args, text):
    code, _, err = folder_run(capsys, *[a.format(frames=frames) for a in args], "--track")
    assert code == 2 and text in err and err.count("\n") == 1
