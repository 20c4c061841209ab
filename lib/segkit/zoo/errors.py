"""The zoo's errors, and the one-line wording of the OS and network failures they report."""
from __future__ import annotations

import urllib.error

from segkit.errors import SegkitError


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


def reason(err: BaseException) -> str:
    """One line saying why a transfer failed (no '<urlopen error ...>' wrapping)."""
    if isinstance(err, urllib.error.HTTPError):
        text = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        text = str(err.reason)
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def os_words(e: OSError) -> str:
    from segkit.io.sources import os_problem  # sources imports numpy only: still no TF, no cv2

    return os_problem(e)
