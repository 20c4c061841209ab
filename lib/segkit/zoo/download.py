"""Downloading one URL into the model dir: progress bar, length and sha256 checked, atomic rename."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from segkit.zoo.errors import ChecksumError, DownloadError, ZooError, os_words, reason
from segkit.zoo.store import CHUNK

TIMEOUT_S = 60


def download_file(url: str, dest: Path, *, expected_sha: str | None, sha_origin: str, hint: str,
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
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress_bar(total, label, progress) as bar:
                while True:
                    chunk = resp.read(CHUNK)
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
            raise DownloadError(f"cannot download {url} into {dest.parent}: {os_words(e)}") from None
        raise DownloadError(f"cannot download {url}: {reason(e)}. {hint}") from None
    finally:
        if part is not None and os.path.exists(part):
            os.unlink(part)


@contextlib.contextmanager
def _progress_bar(total: int | None, label: str, enabled: bool):
    from tqdm import tqdm  # imported here: listing models should not pay for it

    bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
               disable=not (enabled and sys.stderr.isatty()), leave=False)
    try:
        yield bar
    finally:
        bar.close()
