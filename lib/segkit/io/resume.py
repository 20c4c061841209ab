"""Runs into an output folder that can be killed at any moment and resumed.

State lives under ``<out>/.segkit/``:

``lock``                 held (flock) while a run writes into ``<out>``: two runs never race
``results/<name>.json``  per-image COCO results (``--json``, see results.py), written right
                         after the image's other outputs, so a killed run loses nothing it finished
``settings.json``        what the outputs were made with, to warn when a rerun changes it

An input is *complete* when every file its sinks would write exists (sinks only ever create
files whole), and is skipped unless ``overwrite``: that skip set is the resumable source policy.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from segkit.errors import UsageError
from segkit.io.atomic import output_error, temp_owner_alive, write_json
from segkit.io.sources import Frame, real_path

STATE_DIR = ".segkit"


# --------------------------------------------------------------------------- names
def unique_names(items: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Make output names distinct, the same way on every run (resume depends on it).

    ``a/x.jpg`` and ``b/x.jpg`` already differ by their sub-path; ``x.jpg`` beside ``x.png``, or two
    folders/files given separately, would not: those get the extension, then a short hash of
    their absolute path appended.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (_, name) in enumerate(items):
        groups[name.lower()].append(i)  # case-insensitive file systems would collide too
    out = list(items)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        by_ext: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            path, name = items[i]
            by_ext[f"{name}_{path.suffix.lstrip('.')}".lower()].append(i)
        for same in by_ext.values():
            for i in same:
                path, name = items[i]
                name = f"{name}_{path.suffix.lstrip('.')}"
                digest = hashlib.sha1(str(real_path(path)).encode()).hexdigest()[:8]
                out[i] = (path, name if len(same) == 1 else f"{name}_{digest}")
    return out


def check_output_dir(out_dir: Path, specs: Iterable[str], items: list[tuple[Path, str]]
                     ) -> list[tuple[Path, str]]:
    """Refuse an output folder that is an input folder; drop inputs that live under the output
    folder (a recursive run over a tree holding its own outputs would segment them again)."""
    check_output_folder(out_dir)
    out = real_path(out_dir)
    for spec in specs:
        p = Path(spec)
        if p.is_dir() and real_path(p) == out:
            raise UsageError(f"{out_dir}: output folder is the input folder; choose another -o "
                             "(inputs are never written over)")
    return [(p, n) for p, n in items if out not in real_path(p).parents]


def check_output_folder(out_dir: Path) -> None:
    """-o must be a folder or not exist yet: never write into (or over) an existing file."""
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        what = "a file" if out_dir.is_file() else "not a folder"
        raise UsageError(f"{out_dir}: -o names {what}; give a folder (it is created if missing)")


# --------------------------------------------------------------------------- state
class OutputLock:
    """Exclusive lock on ``<out>/.segkit/lock`` for the duration of a run (released by the OS even
    on SIGKILL). Without it two runs into one folder could delete each other's temp files."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / STATE_DIR / "lock"
        self._fd: int | None = None

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise output_error(self.path, e) from None
        try:
            import fcntl
        except ImportError:  # Windows: no flock; run unlocked
            return self
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise UsageError(f"{self.path.parent.parent}: another segment_folder run is writing "
                             "into this folder") from None
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def remove_stale_temps(out_dir: Path) -> int:
    """Delete temp files/folders a killed run left behind (io/atomic.py names them
    ``.<final>.<host>-<pid>.<rand>[.tmp]``). Only those of processes that are gone: a
    segment_image writing into the same folder right now keeps its own."""
    removed = 0
    if not out_dir.is_dir():
        return 0
    for root, dirs, files in os.walk(out_dir):
        for d in list(dirs):
            if d.startswith(".") and "_masks." in d:
                dirs.remove(d)
                if not temp_owner_alive(d):
                    shutil.rmtree(Path(root) / d, ignore_errors=True)
                    removed += 1
        for f in files:
            if f.startswith(".") and f.endswith(".tmp") and not temp_owner_alive(f):
                Path(root, f).unlink(missing_ok=True)
                removed += 1
    return removed


def settings_changed(out_dir: Path, settings: dict) -> list[str]:
    """Record ``settings``; return 'key: old -> new' for what differs from the last run's."""
    path = out_dir / STATE_DIR / "settings.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    write_json(path, settings)
    if not isinstance(old, dict):
        return []
    return [f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(old) | set(settings))
            if old.get(k) != settings.get(k)]


# --------------------------------------------------------------------------- plan
@dataclass
class Plan:
    todo: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def complete(sinks: Iterable, frame: Frame) -> bool:
    """Every file the sinks would write for ``frame`` exists (sinks only create whole files)."""
    return all(p.exists() for s in sinks for p in s.expected(frame))


def plan_run(items: list[tuple[Path, str]], sinks: Iterable, overwrite: bool = False) -> Plan:
    """Split ``items`` into those to do and those whose every output already exists."""
    sinks = list(sinks)
    plan = Plan()
    for path, name in items:
        done = not overwrite and complete(sinks, Frame(None, name, path))
        (plan.skipped if done else plan.todo).append((path, name))
    return plan


@contextmanager
def output_folder(out_dir: Path):
    """Hold ``out_dir``'s lock for a run and clear what killed runs left behind."""
    with OutputLock(out_dir):
        remove_stale_temps(out_dir)
        yield out_dir
