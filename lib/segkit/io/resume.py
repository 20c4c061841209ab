"""Runs into an output folder that can be killed at any moment and resumed.

State lives under ``<out>/.segkit/``:

``lock``                 held (flock) while a run writes into ``<out>``: two runs never race
``results/<name>.json``  per-image COCO results (``--json``, see results.py), written right
                         after the image's other outputs, so a killed run loses nothing it finished
``made/<name>.json``     the settings an input's outputs were made with (model, classes,
                         threshold, background...), written after them and removed before
                         they are rewritten
``settings.json``        the last run's settings, to name what changed

An input is *complete* when every file its sinks would write exists (sinks only ever create
files whole) **and** its ``made/`` record holds the settings of this run, and is skipped unless
``overwrite``: that skip set is the resumable source policy. Outputs made with other settings
(another model, other classes, another threshold...) are redone, whatever order the runs came
in, and the run says so in one line; outputs without a record (an older segkit) are redone too.
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
from segkit.io.sinks import Sink
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
            raise UsageError(f"{self.path.parent.parent}: a segment_folder run is writing into this "
                             "folder; wait for it to end or choose another -o") from None
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
    return differences(old, settings)


def differences(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for each setting that differs."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def settings_digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class Made(Sink):
    """``<out>/.segkit/made/<name>.json``: the settings an input's outputs were made with.

    Goes last among a run's sinks (after the results cache): the record is written only once
    every other output of the input is. :meth:`unmake` (the :meth:`first` sink, before every
    other) removes it before any output is rewritten, so a run killed half-way through an input
    never leaves a record beside outputs made with other settings."""

    def __init__(self, out_dir: Path, settings: dict):
        self.root = Path(out_dir) / STATE_DIR / "made"
        self.settings = settings
        self.digest = settings_digest(settings)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def expected(self, frame: Frame) -> list[Path]:
        return [self.path(frame.name)]

    def record(self, name: str) -> dict | None:
        """What ``name``'s outputs were made with, or None (no record, or unreadable)."""
        try:
            rec = json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and isinstance(rec.get("settings"), dict) else None

    def is_complete(self, frame: Frame) -> bool:
        rec = self.record(frame.name)
        return rec is not None and rec.get("digest") == self.digest

    def write(self, frame: Frame, seg) -> list[Path]:
        write_json(self.path(frame.name), {"digest": self.digest, "settings": self.settings})
        return []

    def unmake(self, frame: Frame) -> None:
        try:
            self.path(frame.name).unlink(missing_ok=True)
        except OSError as e:
            raise output_error(self.path(frame.name), e) from None

    def first(self) -> Sink:
        """The sink that goes before every other: it forgets the record of what is rewritten."""
        return _Unmake(self)


class _Unmake(Sink):
    def __init__(self, made: Made):
        self.made = made

    def write(self, frame: Frame, seg) -> list[Path]:
        self.made.unmake(frame)
        return []


# --------------------------------------------------------------------------- plan
@dataclass
class Plan:
    todo: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: in ``todo``: outputs exist that were made with other settings (or have no record)
    stale: list[tuple[Path, str]] = field(default_factory=list)
    #: what those were made with (one dict per distinct earlier settings; None: no record)
    stale_settings: list[dict | None] = field(default_factory=list)


def files_exist(sinks: Iterable, frame: Frame) -> bool:
    """Every file the sinks would write for ``frame`` exists (sinks only create whole files)."""
    return all(p.exists() for s in sinks if not isinstance(s, Made) for p in s.expected(frame))


def any_file_exists(sinks: Iterable, frame: Frame) -> bool:
    return any(p.exists() for s in sinks if not isinstance(s, Made) for p in s.expected(frame))


def complete(sinks: Iterable, frame: Frame) -> bool:
    """Every output of ``frame`` exists and was made with these settings (a :class:`Made` among
    ``sinks`` checks the settings; without one, existing files are enough)."""
    sinks = list(sinks)
    return files_exist(sinks, frame) and all(s.is_complete(frame) for s in sinks if isinstance(s, Made))


def plan_run(items: list[tuple[Path, str]], sinks: Iterable, overwrite: bool = False) -> Plan:
    """Split ``items`` into those to do and those complete with these settings."""
    sinks = list(sinks)
    made = next((s for s in sinks if isinstance(s, Made)), None)
    plan = Plan()
    for path, name in items:
        frame = Frame(None, name, path)
        exist = files_exist(sinks, frame)
        same = made is None or made.is_complete(frame)
        if not overwrite and exist and same:
            plan.skipped.append((path, name))
            continue
        plan.todo.append((path, name))
        # files of this input that will be replaced, made with other settings
        if not overwrite and not same and (exist or any_file_exists(sinks, frame)):
            plan.stale.append((path, name))
            rec = made.record(name)
            old = rec["settings"] if rec else None
            if old not in plan.stale_settings:
                plan.stale_settings.append(old)
    return plan


@contextmanager
def output_folder(out_dir: Path):
    """Hold ``out_dir``'s lock for a run and clear what killed runs left behind."""
    with OutputLock(out_dir):
        remove_stale_temps(out_dir)
        yield out_dir
