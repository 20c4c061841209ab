"""scripts/train_person_model.sh (the README's recipe of the bundled model) must not destroy the
committed model: by default it writes a new folder; --replace-bundled swaps the finished model in
at the end, in one rename, keeping NOTICE.md (issue #24 part 6).

The training itself takes ~55 min, so the script runs here against a stand-in interpreter that
records each step and writes the files a step would (soup: model.tflite, zoo.yaml, metrics.json);
what is tested is the script's own handling of folders, not training."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

STAND_IN = r'''#!/usr/bin/env bash
# a python that records each step and writes what soup_models.py would
log="$STAND_IN_LOG"
case "$1" in
  -) exec "$REAL_PYTHON" "$@" ;;
  bin/train_person_unet.py)
    # the bundled folder as every training step sees it
    echo "train: $(ls model_zoo/person_selfie_coco | tr '\n' ' ')" >> "$log"
    [ -n "${FAIL_AT:-}" ] && [[ " $* " == *"$FAIL_AT"* ]] && exit 1
    exit 0 ;;
  bin/soup_models.py)
    shift
    while [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done
    mkdir -p "$out"
    echo "soup $(basename "$out")" > "$out/model.tflite"
    printf 'models:\n  %s:\n    family: tflite\n' "$(basename "$out")" > "$out/zoo.yaml"
    echo '{"soup": ["a", "b"]}' > "$out/metrics.json"
    echo "soup: $out" >> "$log" ;;
  scripts/split_coco.py) exit 0 ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
'''


@pytest.fixture
def checkout(tmp_path):
    """A checkout holding the script and a copy of the bundled model, and the stand-in python."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "train_person_model.sh", root / "scripts")
    shutil.copytree(REPO / "model_zoo" / "person_selfie_coco", root / "model_zoo" / "person_selfie_coco")
    py = tmp_path / "python"
    py.write_text(STAND_IN)
    py.chmod(0o755)
    return root, py


def run(checkout, *args, **env):
    root, py = checkout
    log = root.parent / "steps.log"
    r = subprocess.run(["bash", str(root / "scripts" / "train_person_model.sh"), *args], capture_output=True,
                       text=True, timeout=60, cwd=root.parent,
                       env={**os.environ, "PYTHON": str(py), "REAL_PYTHON": sys.executable,
                            "STAND_IN_LOG": str(log), "DATA": str(root.parent / "data"), **env})
    return r, log.read_text().splitlines() if log.exists() else []


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_by_default_a_new_model_folder_and_the_bundled_one_untouched(checkout):
    root, _ = checkout
    bundled = root / "model_zoo" / "person_selfie_coco"
    before = snapshot(bundled)
    r, steps = run(checkout)
    assert r.returncode == 0, r.stderr
    assert snapshot(bundled) == before  # NOTICE.md, model, gate: all still there, unchanged
    new = root / "runs" / "person_selfie_coco" / "person_selfie_coco"
    assert (new / "model.tflite").read_text() == "soup person_selfie_coco\n"
    assert (new / "gate.tflite").is_file() and "gate_file: gate.tflite" in (new / "zoo.yaml").read_text()
    assert f"{new.relative_to(root)}" in r.stdout and "--replace-bundled" in r.stdout
    trains = [s for s in steps if s.startswith("train:")]
    assert len(trains) == 9 and all("gate.tflite" in s and "NOTICE.md" in s for s in trains)


def test_replace_bundled_swaps_at_the_end_and_keeps_the_notice(checkout):
    root, _ = checkout
    bundled = root / "model_zoo" / "person_selfie_coco"
    notice = (bundled / "NOTICE.md").read_bytes()
    r, steps = run(checkout, "--replace-bundled")
    assert r.returncode == 0, r.stderr
    trains = [s for s in steps if s.startswith("train:")]
    assert all("gate.tflite" in s and "NOTICE.md" in s for s in trains)  # whole while training
    assert (bundled / "model.tflite").read_text() == "soup person_selfie_coco\n"  # the new model
    assert (bundled / "NOTICE.md").read_bytes() == notice
    assert "gate_file: gate.tflite" in (bundled / "zoo.yaml").read_text()
    assert sorted(p.name for p in (root / "model_zoo").iterdir()) == ["person_selfie_coco"]  # no leftovers
    assert not list(root.glob(".person_selfie_coco*"))  # the staged folder (then the old model) is gone


def test_a_failed_run_with_replace_bundled_leaves_the_bundled_model_as_it_was(checkout):
    root, _ = checkout
    bundled = root / "model_zoo" / "person_selfie_coco"
    before = snapshot(bundled)
    r, _ = run(checkout, "--replace-bundled", FAIL_AT="gate_s2")
    assert r.returncode != 0
    assert snapshot(bundled) == before


def test_the_bundled_folder_as_out_or_an_unknown_flag_is_refused(checkout):
    r, steps = run(checkout, OUT="model_zoo/person_selfie_coco")
    assert r.returncode == 2 and "--replace-bundled" in r.stderr and not steps
    r, steps = run(checkout, "--replace")
    assert r.returncode == 2 and "unknown argument --replace" in r.stderr and not steps
