"""Videos, cameras and network streams in.

    from segkit.io.video_source import VideoSource
    with VideoSource("0") as src:            # camera 0 / "clip.mp4" / "rtsp://..." / "http://..."
        for frame in src:                     # segkit.io.sources.Frame, RGB uint8, .index, .timestamp
            ...
    print(src.dropped)                        # live sources: frames skipped because we were slower

``open_capture(source)`` is the low-level piece (a checked ``cv2.VideoCapture``) for code that
wants to read frames itself, e.g. ``video_to_frames``.

A *live* source (camera, network stream, or a file with ``realtime=True``) is read by a grabber
thread that keeps only the newest frame: when the consumer is slower than the camera, stale
frames are dropped instead of piling up in a queue, so latency stays at about one frame (the
newest-frame policy). A *file* source is read ahead by a thread into a small bounded queue, and
every frame is handed out (the ordered policy).
"""
from __future__ import annotations

import glob
import os
import queue
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2

from segkit.errors import InputError, SegkitError
from segkit.io.sources import Frame

# FFmpeg's own complaints ("moov atom not found", a line per failed write) are reported by us
# in one line instead; a user's own setting wins. Read when OpenCV first opens a video.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
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

    unit = "frames"

    def __init__(self, source: str | int, realtime: bool = False, prefetch: int = 4,
                 capture: cv2.VideoCapture | None = None, mirror: bool = False):
        self.source = parse_source(source)
        self.mirror = mirror
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
                rgb = cv2.cvtColor(cv2.flip(bgr, 1) if self.mirror else bgr, cv2.COLOR_BGR2RGB)
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
