"""What every bin/ script does: run `segkit COMMAND` from this checkout, venv activated or not.

The scripts run with whatever `python3` is first on PATH (their shebang) or the interpreter named
on the command line. Without segkit's packages there, the project's own .venv (README "set up")
runs the script instead, so `bin/segment_image.py ...` works without activating anything.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path


def _terminated_while_starting(signum, frame):  # nothing written yet: one line, exit 143
    print("segkit: terminated (SIGTERM)", file=sys.stderr, flush=True)
    os._exit(143)


signal.signal(signal.SIGTERM, _terminated_while_starting)  # until segkit.commands takes over

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lib"))  # this checkout's segkit, installed or not


def _project_python() -> Path | None:
    venv = ROOT / ".venv"
    py = venv / "bin" / "python"
    if not py.exists():
        py = venv / "Scripts" / "python.exe"  # Windows venv layout
    if not py.exists() or Path(sys.prefix).resolve() == venv.resolve():
        return None
    return py


def launch(command: str) -> None:
    # segkit's packages, looked up without importing them (cheap): missing -> the project's venv
    missing = [m for m in ("numpy", "cv2", "PIL", "yaml", "tqdm", "pycocotools")
               if importlib.util.find_spec(m) is None]
    if missing:
        py = _project_python()
        if py is not None and not os.environ.get("SEGKIT_NO_REEXEC"):
            os.environ["SEGKIT_NO_REEXEC"] = "1"  # never loop
            os.execv(str(py), [str(py), sys.argv[0], *sys.argv[1:]])
        print(f"segkit: error: {sys.executable}: no module {missing[0]!r}; set the project up first "
              f"(python3 -m venv .venv && .venv/bin/pip install -e .) or run with .venv/bin/python",
              file=sys.stderr)
        sys.exit(1)
    from segkit.commands import exit_after, run

    exit_after(run(command))
