"""Videos, cameras and network streams in; annotated videos out.

Reading::

    from segkit.video import open_source
    with open_source("0") as src:            # camera 0 / "clip.mp4" / "rtsp://..." / "http://..."
        for frame in src:                     # segkit.sources.Frame, RGB uint8, .index, .timestamp
            ...
    print(src.dropped)                        # live sources: frames skipped because we were slower

``open_capture(source)`` is the low-level piece (a checked ``cv2.VideoCapture``) for code that
wants to read frames itself, e.g. ``video_to_frames``.

A *live* source (camera, network stream, or a file with ``realtime=True``) is read by a grabber
thread that keeps only the newest frame: when the consumer is slower than the camera, stale
frames are dropped instead of piling up in a queue, so latency stays at about one frame.
A *file* source is read ahead by a thread into a small bounded queue, and every frame is handed out.

Writing: :class:`AtomicVideoWriter` encodes on its own thread into a temp file in the output's
folder and renames it into place when closed, which happens on every way out of a ``with`` block
(end, exception, Ctrl+C): the file at the final path is always a complete, playable video.
"""
from __future__ import annotations

import glob
import os
import queue
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from segkit.errors import InputError, SegkitError
from segkit.sinks import FILE_MODE, temp_owner_alive, temp_prefix
from segkit.sources import Frame
from segkit.workers import QueueWorker

# FFmpeg's own complaints ("moov atom not found", a line per failed write) are reported by us
# in one line instead; a user's own setting wins. Read when OpenCV first opens a video.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
#: container -> FourCC the opencv-python wheels can encode (no H.264 encoder ships with them)
WRITER_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
#: network stream open / read timeouts: a dead URL must fail, not hang
STREAM_TIMEOUT_MS = 10_000
#: consecutive failed reads after which a live source counts as ended (camera unplugged)
LIVE_MAX_FAILED_READS = 50


def parse_source(spec: str | int) -> int | str:
    """'0' / 0 -> camera index 0; 'rtsp://...' -> URL; anything else -> file path (as str)."""
    if isinstance(spec, int):
        return spec
    s = str(spec).strip()
    if re.fullmatch(r"\d+", s):
        return int(s)
    return s


def is_url(source) -> bool:
    return isinstance(source, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source) is not None


@contextmanager
def _quiet_opencv():
    """OpenCV logs a WARN per failed backend; we report failures ourselves, on one line."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_capture(source: str | int) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` for a camera index, a video file or a stream URL.

    Raises InputError with one line saying what was tried: cameras are tried via V4L2 and then
    via any backend (and the message lists the /dev/video* devices present); files are checked
    for existence first; URLs are opened by FFmpeg with a timeout.
    """
    source = parse_source(source)
    with _quiet_opencv():
        if isinstance(source, int):
            tried = []
            for api, api_name in ((getattr(cv2, "CAP_V4L2", None), "V4L2"), (cv2.CAP_ANY, "any backend")):
                if api is None:
                    continue
                cap = cv2.VideoCapture(source, api)
                if cap.isOpened():
                    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's queue short too
                    return cap
                cap.release()
                tried.append(f"index {source} via {api_name}")
            devices = sorted(glob.glob("/dev/video*"))
            present = (f"present: {', '.join(devices)}" if devices else "no /dev/video* devices exist")
            raise InputError(f"camera {source}", f"cannot open (tried {' and '.join(tried)}; {present})")
        if is_url(source):
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
            if not cap.isOpened():
                cap.release()
                raise InputError(source, f"cannot open stream (tried FFmpeg, {STREAM_TIMEOUT_MS // 1000} s "
                                         "timeout; check the URL and that the server is up)")
            return cap
        path = Path(source)
        if not path.exists():
            raise InputError(path, "no such file (for a camera give its index, e.g. --source 0)")
        if path.is_dir():
            raise InputError(path, "is a directory, not a video")
        if path.stat().st_size == 0:
            raise InputError(path, "empty file (0 bytes)")
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise InputError(path, "cannot be decoded as a video (tried FFmpeg)")
        return cap


class VideoSource:
    """Frames from a camera, file or stream; iterate it, close it (or use ``with``).

    ``live``: keep only the newest frame (cameras and streams are live; files are live only with
    ``realtime=True``, which also paces reading to the file's frame rate). ``dropped`` counts the
    frames a live source skipped. Frames are RGB uint8; ``timestamp`` is seconds since the first
    frame (the file's media time for files, the grab time for live sources).
    """

    def __init__(self, source: str | int, realtime: bool = False, prefetch: int = 4,
                 capture: cv2.VideoCapture | None = None):
        self.source = parse_source(source)
        self.name = f"camera {self.source}" if isinstance(self.source, int) else str(self.source)
        self._cap = capture if capture is not None else open_capture(self.source)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        # Cameras and some streams report 0 (or absurd values): assume the usual 30.
        self.fps = float(fps) if 0 < fps < 1000 else 30.0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        # A URL with a known length is a file served over the network, not a live stream.
        self.is_camera = isinstance(self.source, int)
        self.is_stream = is_url(self.source) and self.frame_count is None
        self.live = self.is_camera or self.is_stream or realtime
        self.realtime_file = realtime and not (self.is_camera or self.is_stream)
        self.read = 0        # frames decoded
        self.delivered = 0   # frames handed to the consumer
        self.read_seconds = 0.0  # time spent decoding + converting (on the reader thread)
        self.ended = False   # the source ran out (end of file, stream closed, camera gone)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="segkit-capture", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames read but never handed out (only live sources drop)."""
        return self.read - self.delivered if self.live else 0

    # ---------------------------------------------------------------- reader thread
    def _run(self):
        try:
            failures, t_start = 0, None
            while not self._stop.is_set():
                if self.realtime_file:
                    # Play the file at its own pace, as a camera would deliver it.
                    if t_start is None:
                        t_start = time.monotonic()
                    delay = t_start + self.read / self.fps - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                t0 = time.perf_counter()
                ok, bgr = self._cap.read()
                if not ok or bgr is None:
                    failures += 1
                    # Files end at the first failed read; a camera may hiccup, so give it a few.
                    if not (self.is_camera or self.is_stream) or failures >= LIVE_MAX_FAILED_READS:
                        break
                    continue
                failures = 0
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if self.live and t_start is None:
                    t_start = time.monotonic()
                ts = (self.read / self.fps if not self.live or self.realtime_file
                      else time.monotonic() - t_start)
                frame = Frame(rgb, f"{self.read:06d}", None, self.read, ts)
                self.read += 1
                self.read_seconds += time.perf_counter() - t0
                if self.live:
                    with self._cond:
                        self._latest = frame  # overwrite: the unconsumed one is dropped
                        self._cond.notify_all()
                else:
                    while not self._stop.is_set():
                        try:
                            self._queue.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
        except BaseException as e:  # hand it to the consumer instead of dying silently
            self._error = e
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()
            if not self.live:
                try:
                    self._queue.put_nowait(None)
                except queue.Full:
                    pass  # the consumer checks ``ended`` on its own timeouts

    # ------------------------------------------------------------------- consumer side
    def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame (live: the newest one), or None when the source has ended.

        With ``timeout``, returns None after that long without a frame (check ``ended``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.live:
            with self._cond:
                while self._latest is None and not self.ended:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return None
                    self._cond.wait(0.1 if left is None else min(left, 0.1))
                frame, self._latest = self._latest, None
        else:
            frame = None
            while True:
                try:
                    frame = self._queue.get(timeout=0.1)
                    break
                except queue.Empty:
                    if self.ended and self._queue.empty():
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
        if self._error is not None:
            raise SegkitError(f"{self.name}: reading failed ({self._error})") from self._error
        if frame is not None:
            self.delivered += 1
        return frame

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.next()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        """Stop the reader thread and release the camera/file (safe to call twice)."""
        self._stop.set()
        self._thread.join(timeout=15)
        if not self._thread.is_alive():  # never release a capture another thread is reading
            self._cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_source(source: str | int, realtime: bool = False) -> VideoSource:
    """``VideoSource`` for a camera index, file path or URL (see the module docstring)."""
    return VideoSource(source, realtime=realtime)


def check_video_path(path: str | os.PathLike) -> str:
    """FourCC for writing ``path``; SegkitError naming the file if its extension is not writable."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITER_FOURCC:
        raise SegkitError(f"{p}: cannot write video with extension {ext or '(none)'!r} "
                          f"(use one of {', '.join(WRITER_FOURCC)})")
    if p.is_dir():
        raise SegkitError(f"{p}: is a directory; give a video file name such as out.mp4")
    return WRITER_FOURCC[ext]


class AtomicVideoWriter(QueueWorker):
    """Encode RGB frames into ``path`` on a writer thread; the file appears only when complete.

    Frames go into a temp file beside ``path`` (same extension, so FFmpeg picks the same
    container); ``close()`` drains the queue, finalises the container and renames it into place.
    Use it as a context manager so that happens on every way out. If no frame was written, no
    file is created. The frame size is taken from the first frame; later frames of another size
    (a stream changing resolution) are resized to it.

    ``write(image, timestamp)``: with timestamps (live sources), frames are repeated as needed to
    keep a constant ``fps`` so the video plays at the speed it was recorded, dropped frames or not.
    """

    def __init__(self, path: str | os.PathLike, fps: float, queue_size: int = 16):
        self.path = Path(path)
        self.fourcc = check_video_path(self.path)
        ext = self.path.suffix.lower()
        self.fps = float(fps) if fps and fps > 0 else 30.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # leftovers of runs killed with SIGKILL (nothing could finalise them): removed, or
            # named when their run may still be going (self.leftovers_kept)
            self.leftovers_removed, self.leftovers_kept = clean_stale_parts(self.path.parent)
            # Creating the temp file now checks the folder is writable before any work is done.
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(self.path.stem), suffix=f".part{ext}",
                                       dir=self.path.parent)
        except OSError as e:
            raise SegkitError(f"{self.path}: cannot write here ({e.strerror or e})") from None
        os.close(fd)
        self.tmp_path = Path(tmp)
        os.chmod(self.tmp_path, FILE_MODE)  # mkstemp makes it private (0600)
        self.frames_in = 0       # frames given to write()
        self.frames_written = 0  # frames encoded (repeats included)
        self.write_seconds = 0.0
        self.size: tuple[int, int] | None = None
        #: the final path once close() renamed a verified, playable video there, else None
        self.final: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._t0: float | None = None
        self._scheduled = 0
        self._closed = False
        # OpenCV warns once per frame it fails to write (a full disk); close() reads the file
        # back and says what went wrong in one line, so only errors are logged meanwhile.
        self._log_level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(min(self._log_level, cv2.utils.logging.LOG_LEVEL_ERROR))
        super().__init__("segkit-video-writer", queue_size)

    def write(self, image: np.ndarray, timestamp: float | None = None) -> None:
        """Queue one RGB uint8 frame (blocks when the writer is ``queue_size`` frames behind)."""
        if self.error is not None:
            raise SegkitError(f"{self.path}: writing video failed ({self.error})") from self.error
        if self._closed:
            raise SegkitError(f"{self.path}: writer already closed")
        repeats = 1
        if timestamp is not None:
            if self._t0 is None:
                self._t0 = timestamp
            due = int((timestamp - self._t0) * self.fps + 0.5) + 1  # frames that should exist by now
            repeats = max(1, due - self._scheduled)
        self._scheduled += repeats
        self.frames_in += 1
        self._put((image, repeats))

    def _handle(self, item) -> None:
        image, repeats = item
        t0 = time.perf_counter()
        if self._writer is None:
            self._open(image)
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        for _ in range(repeats):
            self._writer.write(bgr)
        self.frames_written += repeats
        self.write_seconds += time.perf_counter() - t0

    def _open(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        self.size = (w, h)
        self._writer = cv2.VideoWriter(str(self.tmp_path), cv2.VideoWriter_fourcc(*self.fourcc),
                                       self.fps, self.size)
        if not self._writer.isOpened():
            raise SegkitError(f"{self.path}: OpenCV cannot encode {self.fourcc} into "
                              f"{self.path.suffix} at {w}x{h}")

    def close(self) -> Path | None:
        """Finish encoding, finalise the container, check it plays back whole and rename it
        into place (idempotent).

        Returns the final path, or None when no frame was written or the file is not a complete
        video (then ``error`` says why, e.g. the disk filled up: OpenCV's writer does not report
        write errors, so the file is read back). Nothing is left at the final path or beside it.
        """
        if self._closed:
            return self.final
        self._closed = True
        try:
            self._finish()
            if self._writer is not None:
                self._writer.release()  # writes the container index: the file becomes playable
            if self.error is None and self.frames_written:
                _fsync(self.tmp_path)  # a delayed "disk full" surfaces here, not after the rename
                problem = _playback_problem(self.tmp_path, self.frames_written)
                if problem:
                    raise SegkitError(problem + _free_space_note(self.path.parent))
                os.replace(self.tmp_path, self.path)
                self.final = self.path
        except OSError as e:
            from segkit.sources import os_problem

            self.error = SegkitError(os_problem(e))
        except SegkitError as e:
            self.error = e
        finally:
            if self.final is None:
                self.tmp_path.unlink(missing_ok=True)
            cv2.utils.logging.setLogLevel(self._log_level)
        return self.final

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _playback_problem(path: Path, frames: int) -> str | None:
    """Why the video at ``path`` is not a complete, playable file of ``frames`` frames, or None.

    The container's frame count comes from its index (MP4 moov, AVI idx1/header), which is
    written last: a file cut short by a full disk has none or a wrong one."""
    with _quiet_opencv():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            if not cap.isOpened():
                return "the written file does not open as a video (no index: cut short?)"
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if count != frames:
                return f"the written file holds {count} of the {frames} frames encoded"
            ok = cap.grab()
            return None if ok else "the written file has no decodable frame"
        finally:
            cap.release()


def _free_space_note(folder: Path) -> str:
    try:
        free = os.statvfs(folder)
        left = free.f_bavail * free.f_frsize
    except OSError:
        return ""
    return f"; disk full? {left:,} bytes free in {folder}" if left < 64 << 20 else ""


def clean_stale_parts(folder: Path) -> tuple[list[Path], list[Path]]:
    """Hidden ``.NAME.<host>-<pid>.<rand>.part.EXT`` videos of AtomicVideoWriter runs in
    ``folder``: those whose process is gone (killed with SIGKILL) are deleted; those of a run
    that may still be writing (here or on another machine) are returned to be named."""
    removed, kept = [], []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed, kept
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and ".part." in name and Path(name).suffix.lower() in WRITER_FOURCC):
            continue
        path = Path(folder) / name
        if temp_owner_alive(name):
            kept.append(path)
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            kept.append(path)
    return removed, kept
