"""Inputs that are not files: ``-`` (the image piped into stdin) and ``http(s)://`` URLs.

Both are read whole into memory and decoded by the same decoder as files, with the same pixel
limit (``--max-pixels``). A stream has no size on disk to check first, so it is also capped in
bytes: an encoded image never needs more bytes than its raw RGB pixels at the pixel limit (plus
headroom for headers), and reading stops there instead of filling memory. A URL is fetched with
a timeout; any failure is one line naming the URL.
"""
from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import PurePosixPath
from typing import BinaryIO

from segkit.errors import InputError, UsageError
from segkit.io.sources import MAX_PIXELS, Frame, decode_image_bytes

STDIN = "-"
#: seconds to connect and between received chunks of a URL
URL_TIMEOUT = 20.0
_HEADROOM = 1 << 20


def is_url(spec: str) -> bool:
    return spec[:8].lower().startswith(("http://", "https://"))


def is_stream(spec: str) -> bool:
    """An input that is read as a stream, not looked up as a file: ``-`` or a URL."""
    return spec == STDIN or is_url(spec)


def max_bytes(max_pixels: int = MAX_PIXELS) -> int:
    return int(max_pixels) * 3 + _HEADROOM


def stream_name(spec: str) -> str:
    """Output stem for a stream: 'stdin', or the URL path's last part ('a' for .../a.jpg)."""
    if spec == STDIN:
        return "stdin"
    stem = PurePosixPath(urllib.parse.urlsplit(spec).path).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".") or "download"


def check_streams(specs: list[str]) -> None:
    """Refuse what could only hang or mislead: stdin read twice, or a terminal as stdin."""
    if specs.count(STDIN) > 1:
        raise UsageError("-i - (stdin) can be given once")
    if STDIN in specs and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("-i -: stdin is a terminal; pipe an image in (cat photo.jpg | segkit image -i - ...)")


def read_stream(spec: str, max_pixels: int = MAX_PIXELS, timeout: float = URL_TIMEOUT) -> bytes:
    """The bytes of ``-`` or a URL, or InputError saying in words why they cannot be had."""
    limit = max_bytes(max_pixels)
    if spec == STDIN:
        return _read_capped(sys.stdin.buffer, limit, "stdin")
    return fetch_url(spec, limit, timeout)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: never to ftp:// or a local file."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not is_url(newurl):
            raise urllib.error.URLError(f"redirected to {newurl.split(':')[0]}:, not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, limit: int, timeout: float = URL_TIMEOUT) -> bytes:
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers={"User-Agent": "segkit"})
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise InputError(url, f"{int(length):,} bytes, over the limit of {limit:,} for an image "
                                      "at --max-pixels (decompression-bomb guard)")
            data = _read_capped(response, limit, url)
            if length is not None and length.isdigit() and len(data) < int(length):
                raise InputError(url, f"download cut short ({len(data):,} of {int(length):,} bytes)")
            return data
    except InputError:
        raise
    except urllib.error.HTTPError as e:
        raise InputError(url, f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise InputError(url, f"no answer within {timeout:g} s") from None
        raise InputError(url, f"cannot fetch ({getattr(reason, 'strerror', None) or reason})") from None
    except TimeoutError:
        raise InputError(url, f"no answer within {timeout:g} s") from None
    except (OSError, ValueError) as e:  # connection reset, IncompleteRead, a malformed URL
        raise InputError(url, f"cannot fetch ({type(e).__name__}: {e})") from None


def _read_capped(stream: BinaryIO, limit: int, where: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(where, f"over {limit:,} bytes, the limit for an image at --max-pixels "
                                "(decompression-bomb guard)")
    if not data:
        raise InputError(where, "empty (0 bytes)")
    return data


def read_stream_frame(spec: str, name: str, max_pixels: int = MAX_PIXELS, index: int = 0,
                      timeout: float = URL_TIMEOUT) -> Frame:
    """One stream input as a Frame (``error`` set instead of raising, as io.sources.read_frame)."""
    where = "stdin" if spec == STDIN else spec
    try:
        return Frame(decode_image_bytes(read_stream(spec, max_pixels, timeout), where, max_pixels), name, None, index)
    except InputError as e:
        return Frame(None, name, None, index, error=e)
    except MemoryError:
        return Frame(None, name, None, index, error=InputError(where, "out of memory decoding it"))
