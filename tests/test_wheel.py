"""The wheel: built in place with the declared setuptools, it carries the `segkit` command, the
registry and the bundled person models; installed, the zoo finds them inside the package.

Installed here without dependencies (--target) and run with this interpreter's packages; the full
clean-venv check (dependencies installed from scratch, no network) is scripts/check_wheel.sh in CI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

# what a source build needs (the rest of the checkout must not matter)
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "lib", "model_zoo",
           "requirements.txt", "requirements-dev.txt", "requirements-beam.txt"]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("wheel_src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "downloads", "saved_model", "model.keras"))
        elif path.exists():
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                        str(src), "-w", str(dist)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = dist.glob("segkit-*.whl")
    return whl


def test_wheel_carries_command_models_and_registry(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "segkit = segkit.commands:console" in entry
    for f in ["segkit/model_zoo/zoo.yaml", "segkit/model_zoo/person_selfie_coco/model.tflite",
              "segkit/model_zoo/person_selfie_coco/zoo.yaml", "segkit/model_zoo/person_selfie_coco/NOTICE.md",
              "segkit/model_zoo/selfie_segmentation/selfie_segmentation.tflite",
              "segkit/defaults.yaml", "segkit/commands/image.py", "segkit/zoo/registry.py",
              "segkit/serve/static/index.html", "segkit/serve/static/app.js", "segkit/serve/static/style.css"]:
        assert f in names, f
    assert not any("downloads" in n or n.endswith(".keras") for n in names)


def test_installed_segkit_segments_with_its_bundled_model(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(REPO / "images" / "000000519208.jpg", run / "photo.jpg")
    env = {**os.environ, "PYTHONPATH": str(target), "SEGKIT_MODEL_DIR": str(tmp_path / "no_downloads")}
    r = subprocess.run([sys.executable, "-m", "segkit", "image", "-i", "photo.jpg"], cwd=run, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "model person_selfie_coco" in r.stdout
    assert (run / "segmented_images" / "photo.jpg").stat().st_size > 10_000
    # installed, there is no bin/: messages name the `segkit` subcommand instead
    r = subprocess.run([sys.executable, "-m", "segkit", "image", "-i", "photo.jpg", "--model", "yolov7_seg_coco",
                        "--no-download"], cwd=run, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "fetch it with `segkit fetch yolov7_seg_coco`" in r.stderr, r.stderr
    assert "bin/fetch_model.py" not in r.stderr
    probe = ("import segkit, segkit.zoo as z; print(segkit.__file__); print(z.ZOO_ROOT); "
             "r = z.load_registry(); print(z.resolve(r.get(r.default), download=False))")
    r = subprocess.run([sys.executable, "-c", probe], cwd=run, env=env, capture_output=True, text=True)
    pkg, root, model = r.stdout.split("\n")[:3]
    assert Path(pkg).is_relative_to(target) and Path(root) == target / "segkit" / "model_zoo"
    assert Path(model) == target / "segkit" / "model_zoo" / "person_selfie_coco" / "model.tflite"
    assert not (tmp_path / "no_downloads").exists()
