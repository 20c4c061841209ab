"""COCO results and failures: the two sinks that speak for the whole run.

``CocoResults`` writes one COCO results JSON (loadable by ``COCO.loadRes``). In a resumable
folder run it keeps each image's results under ``<out>/.segkit/results/`` as they come, so a
killed run loses nothing it finished, and merges them into the JSON when the run closes.
``Failures`` writes ``<out>/failures.jsonl``: one {"file", "reason"} per input that failed.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterable, Iterator

from segkit.errors import InputError, OutputError, UsageError, error
from segkit.io.atomic import atomic_file, atomic_write_bytes, write_json
from segkit.io.resume import STATE_DIR
from segkit.io.sinks import Sink
from segkit.io.sources import Frame
from segkit.segmentation import Segmentation


def coco_image_id(name: str, id_map: dict[str, int] | None = None):
    """COCO results need the annotation file's image id: looked up by file name when a map is
    given, else the file stem as an int when it is one (COCO names are zero-padded ids)."""
    stem = Path(name).name
    if id_map is not None and stem in id_map:
        return id_map[stem]
    return int(stem) if stem.isdigit() else stem


def image_id_for(path: Path, id_map: dict[str, int] | None):
    if id_map is not None and path.name in id_map:
        return id_map[path.name]
    return coco_image_id(path.stem)


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


def coco_detections(frame: Frame, seg: Segmentation, image_id) -> list[dict]:
    """``seg``'s COCO results; a tracked run's also carry the frame index (beside track_id), so
    the detections of one track can be put in order without the file names."""
    dets = seg.to_coco_results(image_id)
    if seg.track_ids is not None:
        for d in dets:
            d["frame_index"] = int(frame.index)
    return dets


class ResultsCache:
    """Per-image COCO results under ``<out>/.segkit/results/``, merged into one JSON at the end.

    Results are stored without ``image_id``: ids are given at merge time, so a rerun with
    ``--coco-annotations`` maps even the images done before.
    """

    def __init__(self, out_dir: Path):
        self.root = Path(out_dir) / STATE_DIR / "results"

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def put(self, frame: Frame, seg: Segmentation) -> None:
        dets = coco_detections(frame, seg, 0)
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
        with atomic_file(json_path, "w") as f:
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
        return count


class CocoResults(Sink):
    """One COCO results JSON for the whole run, written when the run closes.

    ``cache`` (folder runs): each image's results are stored as it is done and ``items`` (every
    input, done before or now) are merged in their order; without it they are kept in memory.
    ``count`` is the number of detections written, ``path`` the file once written.
    """

    def __init__(self, json_path: Path, cache: ResultsCache | None = None,
                 items: list[tuple[Path, str]] | None = None, id_map: dict[str, int] | None = None):
        self.json_path, self.cache, self.items, self.id_map = Path(json_path), cache, items, id_map
        self.count = 0
        self.path: Path | None = None
        self._results: list[dict] = []
        self._lock = threading.Lock()
        self._stats = None

    def open(self, run) -> None:
        self._stats = run.stats

    def __getstate__(self):  # Beam pickles sinks to ship them to its workers
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())

    def expected(self, frame: Frame) -> list[Path]:
        return [self.cache.path(frame.name)] if self.cache is not None else []

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        if self.cache is not None:
            self.cache.put(frame, seg)  # the flow writes it last: a results file means the image is done
            return []
        res = coco_detections(frame, seg, coco_image_id(frame.name, self.id_map))
        with self._lock:
            self._results.extend(res)
        return []

    def close(self, ok: bool) -> None:
        # written on every way out (Ctrl+C, SIGTERM, a model error: ``ok`` False) with the images
        # done so far, as failures.jsonl is: what a stopped run finished is not thrown away
        stats = self._stats
        if stats is None or not stats.done + stats.skipped:
            return
        if self.cache is not None:
            self.count = self.cache.merge(self.items or [], self.json_path, self.id_map)
        else:
            self._results.sort(key=lambda r: (str(r["image_id"]), -r["score"]))
            write_json(self.json_path, self._results)
            self.count = len(self._results)
        self.path = self.json_path


def write_failures(out_dir: Path, failures: Iterable[tuple[Path | str, str]]) -> Path:
    """``<out>/failures.jsonl``: one {"file", "reason"} per line for this run, replaced whole."""
    path = Path(out_dir) / "failures.jsonl"
    lines = [json.dumps({"file": str(f), "reason": r}) for f, r in failures]
    atomic_write_bytes(path, ("\n".join(lines) + "\n" if lines else "").encode())
    return path


def _same_file(path: Path | str) -> str:
    """One spelling per file (./a.jpg, a.jpg, /abs/a.jpg), to match earlier failures.jsonl lines."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return str(path)


def read_failures(out_dir: Path) -> Iterator[dict]:
    path = Path(out_dir) / "failures.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


class Failures(Sink):
    """``<out>/failures.jsonl``, written when the run closes, even when it was interrupted.

    ``replace=False`` (segment_image): the earlier lines stay, but those of ``redone`` (this
    run's inputs: done again now, or failed again and listed anew) go; the file is only written
    when that changes it. On a full disk it says so in one line instead of failing the exit code
    with a second error. ``path`` is the file once written, when it lists failures."""

    def __init__(self, out_dir: Path, replace: bool = True, redone: Iterable[Path | str] = ()):
        self.out_dir, self.replace = Path(out_dir), replace
        self.redone = {_same_file(p) for p in redone}
        self.failures: list[tuple[Path | str, str]] = []
        self.path: Path | None = None
        self._lock = threading.Lock()

    def fail(self, frame: Frame, err: Exception) -> None:
        reason = err.problem if isinstance(err, InputError) else str(err)  # OutputError names the output
        with self._lock:
            self.failures.append((frame.path if frame.path is not None else frame.name, reason))

    def close(self, ok: bool) -> None:
        listed = self.failures
        if not self.replace:
            try:
                earlier = [(f["file"], f["reason"]) for f in read_failures(self.out_dir)]
            except (OSError, ValueError, KeyError, TypeError):
                earlier = []  # unreadable: replaced by this run's list
            kept = [(f, r) for f, r in earlier if _same_file(f) not in self.redone]
            if not self.failures and len(kept) == len(earlier):
                return  # nothing to add, nothing stale: leave the file (or its absence) alone
            listed = kept + self.failures
        try:
            path = write_failures(self.out_dir, listed)
            self.path = path if listed or self.replace else None
        except OutputError as e:
            # with nothing to list, or when a full disk was already reported, that line was enough
            if self.failures and not (e.disk_full and any("no space left" in str(r) for _, r in self.failures)):
                error(f"{e} (the failures are listed above)")
