"""The `segkit` command and the bin/ shims: one main() per subcommand, the project's venv found
without activation, framework log lines only with --verbose."""
from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from segkit.commands import COMMANDS


def _run(*args, **kw):
    env = {**os.environ, **kw.pop("env", {})}
    return subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=300, env=env, **kw)


def test_every_subcommand_is_a_bin_script_calling_the_same_main():
    for name, (module, script, _) in COMMANDS.items():
        assert callable(importlib.import_module(f"segkit.commands.{module}").main)
        shim = (REPO / "bin" / script).read_text()
        assert f'launch("{name}")' in shim and os.access(REPO / "bin" / script, os.X_OK), script


def test_usage_help_and_unknown_command():
    r = _run(sys.executable, "-m", "segkit")
    assert r.returncode == 2 and all(name in r.stdout for name in COMMANDS)
    r = _run(sys.executable, "-m", "segkit", "image", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: segkit image") and "--verbose" in r.stdout
    r = _run(sys.executable, "-m", "segkit", "imgae")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("segkit: error: unknown command 'imgae'")


def test_bin_script_runs_in_the_project_venv_when_the_interpreter_lacks_segkits_packages(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "bin", checkout / "bin")
    shutil.copytree(REPO / "lib", checkout / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "model_zoo", checkout / "model_zoo",
                    ignore=shutil.ignore_patterns("downloads", "saved_model", "*.keras"))
    if not (Path(sys.prefix) / "pyvenv.cfg").is_file():
        pytest.skip("needs the tests to run in a venv (its folder stands in for the project's .venv)")
    (checkout / ".venv").symlink_to(sys.prefix)  # the project's .venv: this interpreter's venv
    # python -S: no site-packages, so no numpy/cv2: the shim must hand over to .venv/bin/python
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-S", str(checkout / "bin" / "fetch_model.py"), "--list"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"person_selfie_coco \*\s+tflite\s+semantic\s+bundled", r.stdout)
    # without a .venv: one line saying what to do, not a traceback
    (checkout / ".venv").unlink()
    r = subprocess.run([sys.executable, "-S", str(checkout / "bin" / "fetch_model.py"), "--list"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("segkit: error:") and "no module" in r.stderr and ".venv" in r.stderr


def test_framework_log_lines_only_with_verbose(tmp_path):
    """A Keras model imports TensorFlow, whose C++ logging prints oneDNN / CPU-feature / cuInit
    lines at import: hidden by default, shown with --verbose."""
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.unet_models import export_tiny_unet

    model = export_tiny_unet(tmp_path / "tiny") / "model.keras"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "GLOG", "GRPC"))}
    base = [sys.executable, str(REPO / "bin" / "segment_image.py"), "-i", str(REPO / "images" / "000000519208.jpg"),
            "--model-path", str(model)]
    procs = {flag: subprocess.Popen(base + ["-o", str(tmp_path / flag)] + ([f"--{flag}"] if flag == "verbose" else []),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for flag in ("quiet_default", "verbose")}
    out = {flag: p.communicate(timeout=300) + (p.returncode,) for flag, p in procs.items()}
    tf_line = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] |[IWE]\d{4} |WARNING: All log messages)", re.M)
    stdout, stderr, rc = out["quiet_default"]
    assert rc == 0, stderr
    assert not tf_line.search(stderr + stdout), stderr
    stdout, stderr, rc = out["verbose"]
    assert rc == 0 and tf_line.search(stderr), stderr  # the lines exist, so their absence above means something


def test_ctrl_c_while_python_shuts_down_after_the_work_is_done_prints_no_traceback(repo):
    """A run that has finished keeps its exit code when Ctrl+C lands during interpreter
    shutdown (CI saw "Exception ignored ... KeyboardInterrupt" after a 2-image folder run)."""
    code = """
import atexit, os, signal, sys, time
sys.argv = ["segkit", "--version"]
atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))  # Ctrl+C at exit
from segkit.commands import console
console()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo,
                       env={**os.environ, "PYTHONPATH": str(repo / "lib")})
    assert r.returncode == 0 and "segkit" in r.stdout, r
    assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr, r.stderr
