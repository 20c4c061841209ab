"""Downloading one URL into the model dir: progress bar, length and sha256 checked, atomic rename.

A transfer must keep up an average of ``download_min_rate`` bytes/s over every
``download_window`` seconds (segkit/defaults.yaml), headers included: a server that sends a byte
every 20 s (each read well inside the per-read timeout) is cut off with one line instead of
keeping the fetch alive for ever. A watchdog thread measures the rate and shuts the socket down,
which also ends a read that is blocked waiting.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import http.client
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from segkit.config import DEFAULTS
from segkit.zoo.errors import ChecksumError, DownloadError, ZooError, os_words, reason
from segkit.zoo.store import CHUNK, part_prefix

TIMEOUT_S = 60
#: bytes/s a download must average over every RATE_WINDOW_S seconds (0: no minimum)
MIN_RATE = int(DEFAULTS["download_min_rate"])
RATE_WINDOW_S = float(DEFAULTS["download_window"])


class TooSlow(DownloadError):
    """The server stayed under MIN_RATE for a whole RATE_WINDOW_S."""


class _RateGuard:
    """Watches one transfer: ``add(n)`` as bytes arrive; if fewer than min_rate x window bytes
    arrived in the last ``window`` seconds, the socket is shut down and ``tripped`` says why."""

    def __init__(self, min_rate: float, window: float):
        self.min_rate, self.window = min_rate, window
        self.received = 0
        self.tripped: str | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._start = time.monotonic()
        self._thread = None
        if min_rate > 0 and window > 0:
            self._thread = threading.Thread(target=self._watch, name="segkit-download-rate", daemon=True)
            self._thread.start()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.tripped:
                _shutdown(sock)

    def add(self, n: int) -> None:
        self.received += n

    def check(self) -> None:
        if self.tripped:
            raise TooSlow(self.tripped)

    def close(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        samples = [(self._start, 0)]  # (time, bytes received by then), the last window's worth
        step = min(1.0, self.window / 10)
        while not self._done.wait(step):
            now = time.monotonic()
            samples.append((now, self.received))
            while len(samples) > 1 and samples[1][0] <= now - self.window:
                samples.pop(0)
            since, before = samples[0]
            if now - since >= self.window and self.received - before < self.min_rate * self.window:
                self.tripped = (f"under {self.min_rate:g} bytes/s for {self.window:g} s "
                                f"({self.received - before} bytes in the last {now - since:.0f} s); the "
                                "server is stalled or too slow (download_min_rate in segkit/defaults.yaml)")
                with self._lock:
                    if self._sock is not None:
                        _shutdown(self._sock)
                return


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _guarded_opener(guard: _RateGuard) -> urllib.request.OpenerDirector:
    """urllib's opener, with connections that hand their socket to ``guard`` once connected."""
    class Conn(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            guard.attach(self.sock)

    class SConn(http.client.HTTPSConnection):
        def connect(self):
            super().connect()
            guard.attach(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Conn, req)

    class SHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(functools.partial(SConn, context=self._context), req)

    return urllib.request.build_opener(Handler(), SHandler())


@contextlib.contextmanager
def open_url(request: urllib.request.Request):
    """(response, guard): ``urlopen`` under the rate guard. Read with ``response.read1`` and
    ``guard.add``; a stalled server raises TooSlow (from ``guard.check`` or the read it ends)."""
    guard = _RateGuard(MIN_RATE, RATE_WINDOW_S)
    try:
        try:
            resp = _guarded_opener(guard).open(request, timeout=TIMEOUT_S)
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            guard.check()
            raise
        with resp:
            yield resp, guard
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        guard.check()  # the watchdog's shutdown is what ended the read: say so
        raise
    finally:
        guard.close()


def read_guarded(resp, guard: _RateGuard, n: int = CHUNK) -> bytes:
    """Up to n bytes, as soon as any arrive (read1: read() would wait for all n)."""
    chunk = resp.read1(n)
    guard.add(len(chunk))
    guard.check()
    return chunk


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
        # the pid in the name: the next run removes it at once if this process dies
        fd, part = tempfile.mkstemp(dir=dest.parent, prefix=part_prefix(dest.name), suffix=".part")
        request = urllib.request.Request(url, headers={"User-Agent": "segkit-fetch"})
        with os.fdopen(fd, "wb") as out, open_url(request) as (resp, guard):
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress_bar(total, label, progress) as bar:
                while True:
                    chunk = read_guarded(resp, guard)
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
        if isinstance(e, TooSlow):
            raise DownloadError(f"cannot download {url}: {e}. {hint}") from None
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
