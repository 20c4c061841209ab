"""Where frames come from: image files, folders, globs (videos and cameras: video_source.py).

Images are opened with Pillow because it tells truncated files apart (OpenCV silently returns a
half-grey picture), applies EXIF orientation, handles 16-bit/grayscale/RGBA/palette modes and
guards against decompression bombs before decoding. Complete plain JPEGs and PNGs, the common
case, then have their pixels decoded by OpenCV, which releases the GIL (see _decode_with_opencv).
"""
from __future__ import annotations

import errno
import glob
import io
import os
import stat
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from segkit.config import DEFAULTS
from segkit.errors import InputError

T = TypeVar("T")
R = TypeVar("R")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: default pixel limit (a 10k x 10k photo); raise with --max-pixels
MAX_PIXELS = DEFAULTS["max_pixels"]


@dataclass
class Frame:
    """One image moving through the flow: RGB uint8 pixels plus where it came from."""

    image: np.ndarray | None
    name: str                 # output stem, relative to the source root ("sub/dir/photo")
    path: Path | None = None  # input file (None for video/camera frames)
    index: int = 0
    timestamp: float | None = None  # seconds, for video frames
    error: InputError | None = None  # set instead of image when decoding failed
    prepared: object = None  # the model's Segmenter.prepare(image), done on a decode thread


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, listed: bool = False) -> np.ndarray:
    """Decode an image file to RGB uint8 [H,W,3], oriented as a viewer shows it.

    Raises InputError("<path>: <problem>") for anything that is not a usable image, including
    files that cannot be opened (permission denied, dangling symlink, symlink loop, a folder,
    a FIFO or device, a file removed since the folder was listed). ``listed``: the path came from
    a folder listing or a glob, so a missing file may have been removed since (said so).
    """
    p = Path(path)
    return decode_image_bytes(read_input_bytes(p, listed), p, max_pixels)


def read_input_bytes(p: Path, listed: bool = False) -> bytes:
    """The bytes of one input file, or InputError saying in words why it cannot be read."""
    try:
        st = os.stat(p)  # follows symlinks: a dangling one or a loop fails here
        if stat.S_ISDIR(st.st_mode):
            raise InputError(p, "is a directory, not an image (segment_folder.py handles folders)")
        if not stat.S_ISREG(st.st_mode):
            # never open a FIFO or a device: reading one can block forever or never end
            raise InputError(p, f"not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size == 0:
            raise InputError(p, "empty file (0 bytes)")
        with open(p, "rb") as f:
            return f.read()
    except InputError:
        raise
    except OSError as e:
        raise InputError(p, os_problem(e, p, listed)) from None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "special file"


def os_problem(e: OSError, p: Path | None = None, listed: bool = False) -> str:
    """An OSError in words, for one line after the file name (no '[Errno 13]'). ``listed``: ``p``
    came from a folder listing or a glob, so a missing file may have been removed since."""
    if p is not None and e.errno == errno.ENOENT:
        if os.path.islink(p):
            return f"dangling symlink (-> {os.readlink(p)}, which does not exist)"
        return "no such file" + (" (it may have been removed after the folder was listed)" if listed else "")
    words = {errno.ELOOP: "symlink loop (too many levels of symbolic links)",
             errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
             errno.EISDIR: "is a directory", errno.ENOSPC: "no space left on device",
             errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
             errno.EIO: "input/output error", errno.ENOTDIR: "a part of the path is not a folder"}
    return words.get(e.errno) or (e.strerror or str(e)).lower()


def real_path(p: str | os.PathLike) -> Path:
    """Absolute path with symlinks resolved where they can be; never raises on a symlink loop
    (``Path.resolve`` does on Python 3.11)."""
    return Path(os.path.realpath(p))


def decode_image_bytes(data: bytes, path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 [H,W,3]; ``path`` only names the input in errors.

    The one decoder of every runner (local files, and bytes Beam read from a bucket).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InputError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # we apply our own pixel limit below
            img = Image.open(io.BytesIO(data))
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(path, f"image is {w}x{h} = {w * h:,} pixels, over the limit of "
                                       f"{max_pixels:,} (decompression-bomb guard; raise --max-pixels)")
            fast = _decode_with_opencv(img, data)
            if fast is not None:
                return fast
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb8(img)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(path, "not an image (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        if "truncated" in str(e).lower():
            raise InputError(path, "truncated image data (file is incomplete)") from None
        raise InputError(path, f"corrupt image data ({e})") from None
    except Image.DecompressionBombError as e:
        raise InputError(path, f"decompression bomb refused ({e})") from None


def _decode_with_opencv(img, data: bytes) -> np.ndarray | None:
    """The pixels of a complete 8-bit RGB/grey JPEG or PNG shown as stored, or None (Pillow then
    decodes it and names any problem).

    Pillow has parsed the header already; OpenCV decodes straight into an array with the GIL
    released. Pillow's decode-then-convert holds the GIL while it copies the pixels out
    (``Image.tobytes``): a fifth of all GIL time of a folder run, stalling the model thread.
    """
    import cv2

    if img.format not in ("JPEG", "PNG") or img.mode not in ("RGB", "L") or \
            "transparency" in img.info or img.getexif().get(0x0112, 1) not in (0, 1):
        return None  # CMYK, palettes, alpha, 16-bit, EXIF rotation: Pillow's path
    tail = data.rstrip(b"\x00")[-8:]  # truncated files decode grey in OpenCV: leave them to Pillow
    if not (tail.endswith(b"\xff\xd9") if img.format == "JPEG" else tail[:4] == b"IEND"):
        return None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8),
                       cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.shape[:2] != (img.height, img.width):
        return None
    return arr


def _to_rgb8(img) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.uint32)
        # 16-bit data: keep the top 8 bits; 32-bit "I" images are usually 16-bit data too.
        a = (a >> 8) if a.max(initial=0) > 255 else a
        a = np.clip(a, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6) * 255
        return np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGBA" if "transparency" in img.info or mode in ("P", "LA", "PA") else mode)
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def expand_inputs(specs: Iterable[str], recursive: bool = False,
                  exts: tuple[str, ...] = IMAGE_EXTS, folders: bool = True) -> list[tuple[Path, str]]:
    """Inputs -> sorted (path, output name) pairs.

    A file is taken as given (even with another extension: reading it says what is wrong);
    a folder gives its images (``recursive``: also in sub-folders, names keep the sub-path so
    ``a/x.jpg`` and ``b/x.jpg`` never collide); a glob gives what it matches. A path that
    does not exist is kept so the caller can report it and go on with the others; so is a
    folder when ``folders`` is False (segment_image reports it instead of walking it).
    """
    out: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(p: Path, name: str):
        rp = real_path(p)
        if rp not in seen:
            seen.add(rp)
            out.append((p, name))

    for spec in specs:
        p = Path(spec)
        if p.is_dir() and folders:
            pattern = "**/*" if recursive else "*"
            for f in sorted(p.glob(pattern)):
                # Not only is_file(): a dangling symlink, a loop, an unreadable file or a folder
                # named x.jpg is kept so reading reports it (a silent skip is a lost input).
                if f.suffix.lower() in exts and not f.name.startswith(".") and _listed_input(f, recursive):
                    add(f, str(f.relative_to(p).with_suffix("")))
        elif is_glob(spec):
            matches = sorted(glob.glob(spec, recursive=recursive or "**" in spec))
            root = Path(os.path.commonpath(matches)) if len(matches) > 1 else None
            for m in matches:
                f = Path(m)
                if f.suffix.lower() in exts and _listed_input(f, recursive or "**" in spec):
                    name = str(f.relative_to(root).with_suffix("")) if root and root.is_dir() else f.stem
                    add(f, name)
        else:
            add(p, p.stem)
    return out


def _listed_input(f: Path, recursive: bool) -> bool:
    """Whether a listed name with an image extension is an input: anything but, in a recursive
    walk, a folder with contents (the walk takes those one by one)."""
    try:
        if not recursive or not f.is_dir():
            return True
        return not any(True for _ in f.iterdir())
    except OSError:
        return True


def read_frame(item: tuple[Path, str], max_pixels: int = MAX_PIXELS, index: int = 0,
               listed: bool = False) -> Frame:
    """Decode one (path, output name) input. A bad file gives a Frame with ``error`` set instead
    of raising, so a run records it and goes on with the others. ``listed``: as read_image."""
    path, name = item
    try:
        return Frame(read_image(path, max_pixels, listed), name, path, index)
    except InputError as e:
        return Frame(None, name, path, index, error=e)
    except (OSError, MemoryError) as e:  # whatever reading throws is this input's failure, not the run's
        problem = os_problem(e, Path(path), listed) if isinstance(e, OSError) else "out of memory decoding it"
        return Frame(None, name, path, index, error=InputError(path, problem))


def _read_and_prepare(read: Callable[[tuple[Path, str]], Frame], prepare, item) -> Frame:
    frame = read(item)
    if frame.error is None:
        try:
            frame.prepared = prepare(frame.image)
        except Exception:  # only work done ahead: segment redoes it and reports a real failure
            frame.prepared = None
    return frame


# --------------------------------------------------------------------------- sources for flow.run
def prefetch_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 2,
                 lookahead: int = 8) -> Iterator[R]:
    """Ordered ``map(fn, items)`` computed by a thread pool at most ``lookahead`` items ahead."""
    with ThreadPoolExecutor(workers, thread_name_prefix="segkit-read") as pool:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Frames:
    """Any iterable of Frames as a flow source: every one, in order (the ordered policy)."""

    unit = "images"
    live = False
    dropped = 0

    def __init__(self, frames: Iterable[Frame], name: str = "images", total: int | None = None):
        self._it = iter(frames)
        self.name = name
        self.ended = False
        if total is not None:
            self.total = total

    def next(self, timeout: float | None = None) -> Frame | None:
        try:
            return next(self._it)
        except StopIteration:
            self.ended = True
            return None

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()  # stops a read-ahead pool of a run cut short

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageFiles(Frames):
    """(path, output name) pairs decoded by ``workers`` threads reading up to ``lookahead`` files
    ahead of the model. A file that cannot be read comes out as a Frame with ``error`` set.
    ``prepare``: the model's Segmenter.prepare, run on the same threads after decoding.
    ``listed``: whether the items came from a folder listing or a glob (True for all, or the set
    of those that did): a missing one is then said to be perhaps removed since the listing."""

    def __init__(self, items: list[tuple[Path, str]], max_pixels: int = MAX_PIXELS, workers: int = 2,
                 lookahead: int | None = None, prepare: Callable[[np.ndarray], object] | None = None,
                 indices: list[int] | None = None, listed: bool | set[Path] = False):
        if isinstance(listed, bool):
            read = partial(read_frame, max_pixels=max_pixels, listed=listed)
        else:
            def read(item, _read=partial(read_frame, max_pixels=max_pixels)):
                return _read(item, listed=item[0] in listed)
        if prepare is not None:
            read = partial(_read_and_prepare, read, prepare)
        if indices is not None:  # frames of a video (--track): each keeps its place in the sequence
            read, items = partial(_read_indexed, read), list(zip(items, indices))
        super().__init__(prefetch_map(read, items, max(1, workers), lookahead or 4 * max(1, workers)),
                         total=len(items))


def _read_indexed(read: Callable[[tuple[Path, str]], Frame], item_index) -> Frame:
    item, index = item_index
    frame = read(item)
    frame.index = index
    return frame
