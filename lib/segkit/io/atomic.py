"""Writing files so that a run killed at any moment leaves either the complete old state or the
complete new file: a temp file in the same folder, then a rename. Temp names carry the writing
process's host and pid, so a cleanup only ever removes those of processes that are gone."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from segkit.errors import OutputError, SegkitError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: what a newly created file / folder gets under the user's umask; mkstemp/mkdtemp make
#: 0600 / 0700 ones, chmod-ed to these so every output of a run has the same permissions
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()

# Temp files carry the writing process's host and pid (".<final>.<host>-<pid>.<random>[.tmp]"),
# so a cleanup only removes those of processes that are gone, never a concurrent run's.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
# greedy ".*": the last tag in the name wins (a final name may itself look like one)
_TAG = re.compile(r"^.*\.([0-9a-f]{6})-(\d+)\.[A-Za-z0-9_]{6,}(?:\.tmp|\.part\.\w+|\.tmp\.\w+)?$")


def temp_prefix(final_name: str) -> str:
    """mkstemp/mkdtemp prefix for a temp file or folder that will become ``final_name``."""
    return f".{final_name}.{_HOST}-{os.getpid()}."


def temp_owner_alive(name: str) -> bool:
    """Whether the process that made temp file ``name`` may still be writing it.

    Untagged (older) names and tags of dead processes on this host: False. Another host's
    process cannot be checked from here: True (left alone)."""
    m = _TAG.search(name)
    if m is None:
        return False
    host, pid = m.group(1), int(m.group(2))
    if host != _HOST:
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def output_error(path: str | os.PathLike, e: OSError) -> OutputError:
    """An OSError while writing ``path`` as one line naming the final file (not the temp file)."""
    from segkit.io.sources import os_problem

    problem = os_problem(e)
    return OutputError(path, f"cannot write: {problem}", e.errno)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """A file opened for writing that replaces ``path`` when the block ends without an error:
    ``path`` is then whole, and otherwise untouched (the temp file is removed).

    Any OSError (disk full, permission, read-only) becomes an OutputError naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    except OSError as e:
        raise output_error(path, e) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename: ``path`` is whole or untouched."""
    with atomic_file(path) as f:
        f.write(data)


def encode_image(image: np.ndarray, ext: str = ".png", quality: int = 95) -> bytes:
    """RGB / RGBA / gray uint8 -> encoded bytes (OpenCV wants BGR order)."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    if ext.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        # PNG encoding is the largest cost of a folder run: light compression with the SUB
        # filter and RLE strategy is ~2.5x faster than the defaults for about the same size.
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
                  cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise SegkitError(f"could not encode image as {ext}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    path = Path(path)
    atomic_write_bytes(path, encode_image(image, path.suffix or ".png"))


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode())


@contextmanager
def atomic_dir(final: Path):
    """Build a folder aside and rename it into place on success: the folder is complete or absent.

    Yields the temp folder to fill; an OSError becomes an OutputError naming ``final``."""
    final = Path(final)
    tmp = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
        os.chmod(tmp, DIR_MODE)  # mkdtemp makes 0700 folders
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        raise output_error(final, e) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def fsync_path(path: Path) -> None:
    """Flush a written file to disk: a delayed "disk full" surfaces here, before the rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_space_note(folder: Path) -> str:
    """"; disk full? N bytes free in F" when under 64 MiB are left (OpenCV's writers say nothing)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return ""
    left = st.f_bavail * st.f_frsize
    return f"; disk full? {left:,} bytes free in {folder}" if left < 64 << 20 else ""
