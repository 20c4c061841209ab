"""Every command block of README.md, run as written in a fresh clone without an activated venv.

The blocks are read from README.md at test time (fenced ```bash/sh blocks and indented
blocks), so commands added later are covered too. Each command runs with `bash` in the clone,
with no VIRTUAL_ENV, no PYTHONPATH and no venv on PATH.

Only two things differ from a user's machine, both stated below: the set-up command (SETUP) is
replaced by an equivalent that does not download TensorFlow again, and a few placeholders
(video.mp4, photo.jpg, ANN.json ...) name the tiny real inputs of SUBSTITUTIONS. Commands that
need a camera-less stand-in get one; commands that cannot run here are in SKIP, with reasons.
"""
from __future__ import annotations

import os
import re
import shlex
import site
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHARED, shared_path

VIDEO = "../shared/data/videos/carphone_pristine.mp4"   # 176x144, 96 frames: the clone sees ../shared
ANN = "../shared/data/coco/annotations/instances_val2017.json"

# (pattern, reason): commands that cannot run in a test, each with why and what covers it instead
SKIP = [
    (r"-m pytest", "the test suite itself (this test is part of it); .ci/run runs it"),
    (r"train_person_unet\.py", "trains for minutes; tests/train/test_train_cli.py trains on tiny data"),
    (r"--model my_person_model", "needs the model the (skipped) training command above writes"),
    (r"scripts/train_person_model\.sh", "the bundled model's recipe: ~55 min of training"),
    (r"DataflowRunner|FlinkRunner|SparkRunner", "needs a cloud project or a cluster"),
    (r"conda env create", "needs conda"),
    (r"bin/serve\.py", "a server runs until stopped; tests/serve/ start it on a free port of 127.0.0.1"),
    (r"^curl ", "needs that server running; tests/serve/test_http_api.py sends the same requests"),
]
# the README's set-up command: replaced by the same editable install into a fresh .venv that
# sees the running interpreter's packages (installing TensorFlow anew takes minutes; CI's
# .ci/run runs the real command)
SETUP = r"python3 -m venv \.venv && \.venv/bin/pip install -e"
# placeholders of the README -> tiny real inputs
SUBSTITUTIONS = [
    (r"(?<![\w/.])video\.mp4", VIDEO),
    (r"(?<![\w/.])photo\.jpg", "images/000000519208.jpg"),
    (r"(?<![\w/.])ANN\.json", ANN),
    (r"-i photos/", "-i images/"),
    (r"--max-frames 30", "--max-frames 6"),
    # no camera here: the live command reads a few frames of the clip instead of camera 0
    (r"^(.*bin/segment_webcam\.py(?!.*--source).*)$", rf"\1 --source {VIDEO} --max-frames 5"),
    # DAVIS: the first frames only (the full sequences take minutes on 2 cores)
    (r"^(.*bin/segment_webcam\.py --source \.\./shared/data/davis2016.*)$", r"\1 --max-frames 4"),
    (r"^(.*bin/evaluate\.py --davis .*)$", r"\1 --limit 4"),
    # the pipeline script's documented knob: fewer frames
    (r"^scripts/video_pipeline\.sh", "MAX_FRAMES=6 scripts/video_pipeline.sh"),
]


def readme_commands(text: str) -> list[str]:
    """Shell commands of the README's code blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, flags=re.M | re.S)
    # indented blocks: 4+ spaces after a blank line, outside fenced blocks and lists
    unfenced = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    blocks += [re.sub(r"^    ", "", m, flags=re.M)
               for m in re.findall(r"(?:(?<=\n\n)|^)((?: {4}.*\n?)+)", unfenced)]
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _skip_reason(cmd: str) -> str | None:
    return next((reason for pattern, reason in SKIP if re.search(pattern, cmd)), None)


def _substitute(cmd: str) -> str:
    for pattern, repl in SUBSTITUTIONS:
        cmd = re.sub(pattern, repl, cmd)
    return cmd


def test_readme_parser_finds_every_block():
    text = (REPO / "README.md").read_text()
    cmds = readme_commands(text)
    # the three first-screen commands, the live command and an indented Beam block are found
    assert any(re.search(SETUP, c) for c in cmds)
    assert ".venv/bin/python bin/segment_image.py -i images/000000519208.jpg" in "\n".join(cmds)
    assert ".venv/bin/python -m pytest" in cmds
    assert any("segment_webcam.py" in c for c in cmds)
    assert any(c.startswith("bin/segment_folder.py --runner beam") for c in cmds)
    assert not any(c.endswith("\\") for c in cmds)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of this checkout (committed state) beside a ../shared link, with its .venv."""
    root = tmp_path_factory.mktemp("readme")
    shared_path("coco")  # skips (or fails under SEGKIT_REQUIRE_SHARED=1) without the real data
    (root / "shared").symlink_to(SHARED)
    clone = root / "segkit"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    return clone


def _setup_venv(clone: Path) -> None:
    """README's set-up, minus the download: .venv sees this interpreter's packages (a .pth line),
    segkit is installed editable from the clone (`pip install --no-deps -e .`), and .venv/bin/pip
    is this interpreter's pip acting on .venv."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True)
    purelib = subprocess.run([str(clone / ".venv/bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_segkit_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = clone / ".venv/bin/pip"
    pip.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pip --python "
                   f"{shlex.quote(str(clone / '.venv/bin/python'))} \"$@\"\n")
    pip.chmod(0o755)
    r = subprocess.run([str(pip), "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(clone)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def _shared_downloads(root: Path) -> Path:
    """Zoo models this checkout already downloaded, offered to the clone through the documented
    $SEGKIT_MODEL_DIR (links), so a README command is not slowed by a second download; a model
    not downloaded here is fetched as a user's first run would."""
    models = root / "models"
    models.mkdir(exist_ok=True)
    downloads = REPO / "model_zoo" / "downloads"
    for d in downloads.glob("*/.complete") if downloads.is_dir() else []:
        (models / d.parent.name).symlink_to(d.parent)
    if (downloads / "zoo.lock.yaml").is_file():
        (models / "zoo.lock.yaml").write_bytes((downloads / "zoo.lock.yaml").read_bytes())
    return models


def _user_env() -> dict:
    """A shell as a user has it: no activated venv, no PYTHONPATH, no venv bin on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != venv_bin and "/.venv/" not in p + "/")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def test_every_readme_command_runs_as_written(clone):
    text = (clone / "README.md").read_text()
    env = {**_user_env(), "SEGKIT_MODEL_DIR": str(_shared_downloads(clone.parent))}
    ran, skipped, failed = [], [], []
    for cmd in readme_commands(text):
        reason = _skip_reason(cmd)
        if reason:
            skipped.append(f"{cmd[:70]}: {reason}")
            continue
        if re.search(SETUP, cmd):
            _setup_venv(clone)
            ran.append(cmd)
            continue
        run = _substitute(cmd)
        if "--runner beam" in run and subprocess.run([str(clone / ".venv/bin/python"), "-c", "import apache_beam"],
                                                    capture_output=True).returncode:
            skipped.append(f"{cmd[:70]}: the [beam] extra is not installed")
            continue
        r = subprocess.run(["bash", "-o", "pipefail", "-c", run], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=300)
        ran.append(run)
        if r.returncode != 0 or "Traceback" in r.stderr:
            failed.append(f"$ {run}\n  exit {r.returncode}: {(r.stderr or r.stdout).strip()[-800:]}")
    print(f"README: {len(ran)} commands ran, {len(skipped)} skipped:\n  " + "\n  ".join(skipped))
    assert not failed, "README commands failed in a fresh clone:\n" + "\n".join(failed)
    # most of the README really runs: skips (each with its reason above) stay a minority
    assert len(ran) >= 12 and len(skipped) <= len(ran) // 2
    # what the first-screen run command promises
    assert (clone / "segmented_images" / "000000519208.jpg").is_file()
    assert (clone / "out" / "collage.gif").is_file() and (clone / "steps" / "collage.gif").is_file()
    assert list((clone / "dist").glob("segkit-*.whl"))
