"""The model registry: model_zoo/zoo.yaml (and every model folder's own zoo.yaml) -> ModelSpec."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator

import yaml

from segkit import safe_yaml
from segkit.invocation import command
from segkit.zoo.archives import check_archive_options
from segkit.zoo.errors import UnknownModelError, ZooError
from segkit.models import FAMILIES  # the family registry: a zoo entry may name only what can be built

REGISTRY_FILE = "zoo.yaml"
REPO_ROOT = Path(__file__).resolve().parents[3]
# A checkout reads model_zoo/ at its top; an installed wheel carries the registry and the bundled
# models inside the package (setup.py puts them in segkit/model_zoo/).
IN_CHECKOUT = (REPO_ROOT / "model_zoo" / REGISTRY_FILE).is_file()
ZOO_ROOT = REPO_ROOT / "model_zoo" if IN_CHECKOUT else Path(__file__).resolve().parents[1] / "model_zoo"
#: the file in the model dir that pins first downloads' sha256 (never a model's name)
LOCK_FILE = "zoo.lock.yaml"

TASKS = ("semantic", "instance")
NORMALIZATIONS = ("unit", "minus1_1", "imagenet", "uint8")

_KNOWN_KEYS = {"family", "task", "file", "source", "sha256", "bundled", "input_size", "classes",
               "labels", "normalize", "description", "license"}


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
            raise UnknownModelError(f"unknown model '{name}'{hint} (see `{command('fetch')} --list`)") from None

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
    doc = read_yaml(path)
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
    doc = read_yaml(path)
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


#: a registry is a few KB of YAML (model_zoo/zoo.yaml: 12 KB); parsing costs ~10 s per MB
MAX_YAML_BYTES = 1 << 20


def read_yaml(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            raise ZooError(f"{path}: over {MAX_YAML_BYTES >> 20} MiB of YAML; a registry is a few KB")
        return safe_yaml.load(data.decode("utf-8"))  # no aliases: billion laughs
    except FileNotFoundError:
        raise ZooError(f"{path}: registry file not found") from None
    except UnicodeDecodeError as e:
        raise ZooError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except safe_yaml.AliasError as e:
        raise ZooError(f"{path}: {e}") from None
    except RecursionError:
        raise ZooError(f"{path}: YAML nested too deeply") from None
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
    if "archive" in entry and (problem := check_archive_options(entry["archive"])):
        raise bad(problem)
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
