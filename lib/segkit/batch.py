"""Folder runs that can be killed at any moment and resumed: what to skip, what failed, and the
COCO results of the whole folder.

State lives under ``<out>/.segkit/``:

``lock``                 held (flock) while a run writes into ``<out>``: two runs never race
``results/<name>.json``  per-image COCO results (``--json``), written atomically right after the
                         image's outputs, so a killed run loses nothing it finished
``settings.json``        what the outputs were made with, to warn when a rerun changes it

An image is *complete* when every output it should have exists (outputs are only ever created
whole, see sinks.py) and, with ``--json``, its results file too. Complete images are skipped
unless ``overwrite``; everything else is (re)done.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from segkit.errors import UsageError
from segkit.segmentation import Segmentation
from segkit.sinks import (FILE_MODE, ImageOutputs, atomic_write_bytes, coco_image_id, output_error,
                          temp_owner_alive, temp_prefix, write_json)
from segkit.sources import Frame, real_path

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
    """Delete temp files/folders a killed run left behind (sinks.py names them
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


# --------------------------------------------------------------------------- results
class ResultsCache:
    """Per-image COCO results under ``<out>/.segkit/results/``, merged into one JSON at the end.

    Results are stored without ``image_id``: ids are given at merge time, so a rerun with
    ``--coco-annotations`` maps even the images done before.
    """

    def __init__(self, out_dir: Path):
        self.root = out_dir / STATE_DIR / "results"

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def put(self, frame: Frame, seg: Segmentation) -> None:
        dets = seg.to_coco_results(0)
        for d in dets:
            del d["image_id"]
        record = {"file": str(frame.path), "height": seg.height, "width": seg.width, "results": dets}
        write_json(self.path(frame.name), record)

    def get(self, name: str) -> dict:
        return json.loads(self.path(name).read_text())

    def merge(self, items: list[tuple[Path, str]], json_path: Path,
              id_map: dict[str, int] | None = None) -> int:
        """Stream every cached image of ``items`` into one COCO results list at ``json_path``
        (atomically; memory holds one image's results at a time). Returns the detection count."""
        count = 0
        tmp = None
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(json_path.name), suffix=".tmp", dir=json_path.parent)
            with os.fdopen(fd, "w") as f:
                f.write("[")
                for path, name in items:
                    if not self.has(name):
                        continue  # failed image: named in failures.jsonl
                    image_id = image_id_for(path, id_map)
                    for det in self.get(name)["results"]:
                        f.write(",\n" if count else "\n")
                        f.write(json.dumps({"image_id": image_id, **det}, separators=(",", ":")))
                        count += 1
                f.write("\n]\n")
            os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600; results.json is an output like the images
            os.replace(tmp, json_path)
        except OSError as e:
            raise output_error(json_path, e) from None
        finally:
            if tmp is not None and os.path.lexists(tmp):
                Path(tmp).unlink(missing_ok=True)
        return count


def load_image_ids(annotation_file: str | os.PathLike) -> dict[str, int]:
    """file_name -> image id of a COCO annotation file (only its ``images`` list is used)."""
    p = Path(annotation_file)
    try:
        data = json.loads(p.read_text())
        return {Path(im["file_name"]).name: int(im["id"]) for im in data["images"]}
    except FileNotFoundError:
        raise UsageError(f"{p}: no such annotation file") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{p}: not a COCO annotation file ({type(e).__name__}: {e})") from None


def image_id_for(path: Path, id_map: dict[str, int] | None):
    if id_map is not None and path.name in id_map:
        return id_map[path.name]
    return coco_image_id(path.stem)


# --------------------------------------------------------------------------- plan + failures
@dataclass
class Plan:
    todo: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def plan_run(items: list[tuple[Path, str]], outputs: ImageOutputs, cache: ResultsCache | None,
             overwrite: bool = False) -> Plan:
    plan = Plan()
    for path, name in items:
        done = (not overwrite and outputs.complete(Frame(None, name, path))
                and (cache is None or cache.has(name)))
        (plan.skipped if done else plan.todo).append((path, name))
    return plan


def write_failures(out_dir: Path, failures: Iterable[tuple[Path | str, str]]) -> Path:
    """``<out>/failures.jsonl``: one {"file", "reason"} per line for this run, replaced whole."""
    path = out_dir / "failures.jsonl"
    lines = [json.dumps({"file": str(f), "reason": r}) for f, r in failures]
    atomic_write_bytes(path, ("\n".join(lines) + "\n" if lines else "").encode())
    return path


def read_failures(out_dir: Path) -> Iterator[dict]:
    path = out_dir / "failures.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)
