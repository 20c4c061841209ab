"""Annotated videos out: :class:`AtomicVideoWriter` encodes on its own thread into a temp file in
the output's folder and renames it into place when closed, which happens on every way out of a
``with`` block (end, exception, Ctrl+C): the file at the final path is always a complete, playable
video. :class:`VideoSink` is the flow's sink over it.

Codec: H.264 (yuv420p, the profile every browser decodes) with the MP4 index at the front
("faststart", so a browser starts playing before the whole file is loaded), encoded by the ffmpeg
binary that the imageio-ffmpeg wheel carries (raw RGB frames through a pipe). Without
imageio-ffmpeg, OpenCV's MPEG-4 Part 2 (mp4v) is the fallback, which browsers do not play: one
note says so. ``.avi`` stays Motion JPEG.
"""
from __future__ import annotations

import errno
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from segkit.errors import SegkitError
from segkit.io.atomic import FILE_MODE, free_space_note, fsync_path, temp_owner_alive, temp_prefix
from segkit.io.sinks import Renderer, Sink
from segkit.io.video_source import _quiet_opencv

#: container -> FourCC the opencv-python wheels can encode (no H.264 encoder ships with them):
#: the fallback when imageio-ffmpeg's ffmpeg is missing, and .avi's codec
WRITER_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
#: containers written as H.264 by ffmpeg when it is there (the MP4 family with the index first)
H264_EXTS = (".mp4", ".m4v", ".mov", ".mkv")
FASTSTART_EXTS = (".mp4", ".m4v", ".mov")
#: x264 settings: "veryfast" keeps a 640x480 frame at a few ms of CPU beside the model; CRF 23 is
#: x264's default quality
H264_PRESET, H264_CRF = "veryfast", 23


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary inside the imageio-ffmpeg wheel (or $IMAGEIO_FFMPEG_EXE), else None."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        return None


_fallback_noted = False


def _note_fallback(path: Path) -> None:
    global _fallback_noted
    if not _fallback_noted:
        _fallback_noted = True
        print(f"segkit: note: {path}: imageio-ffmpeg is not installed, so this video is MPEG-4 Part 2 "
              "(mp4v), which web browsers do not play; pip install imageio-ffmpeg for H.264",
              file=sys.stderr, flush=True)


class H264Pipe:
    """RGB frames -> H.264 in ``path`` through an ffmpeg process (the cv2.VideoWriter calls the
    writer thread makes: ``write``, ``release``). A failure (a full disk) raises, in words."""

    def __init__(self, exe: str, path: Path, size: tuple[int, int], fps: float):
        w, h = size
        self.path = path
        # yuv420p needs even sides: an odd one gets a black line rather than a resample
        pad = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"] if w % 2 or h % 2 else []
        fast = ["-movflags", "+faststart"] if path.suffix.lower() in FASTSTART_EXTS else []
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{fps:.6g}",
               "-i", "-", "-an", *pad, "-c:v", "libx264", "-preset", H264_PRESET, "-crf", str(H264_CRF),
               "-pix_fmt", "yuv420p", *fast, str(path)]
        self._stderr = tempfile.TemporaryFile()
        # its own session: Ctrl+C in a terminal reaches the whole foreground group, and ffmpeg
        # would stop before the frames still queued here (the run finalises the video itself)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, start_new_session=True)

    def write(self, rgb: np.ndarray) -> None:
        try:
            self.proc.stdin.write(np.ascontiguousarray(rgb).data)
        except (BrokenPipeError, ValueError, OSError):
            self.proc.wait()
            raise self._failure() from None

    def release(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self.proc.wait() != 0:
            raise self._failure()

    def _failure(self) -> SegkitError:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        said = " ".join(lines).lower()
        if "no space left" in said:
            from segkit.io.sources import os_problem
            return SegkitError(os_problem(OSError(errno.ENOSPC, "")))
        return SegkitError(f"ffmpeg exited with {self.proc.returncode}"
                           + (f": {lines[-1].strip()}" if lines else ""))


class QueueWorker:
    """Runs ``_handle(item)`` for each queued item on one background thread (the video encoder).

    The queue is bounded, so a producer that outpaces the stage waits instead of building a
    backlog. The first error sticks in ``error`` (the producer checks it and reports it); later
    items are drained unhandled so a blocked ``_put`` can never hang the producer.
    """

    def __init__(self, name: str, queue_size: int):
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _handle(self, item) -> None:
        raise NotImplementedError

    def _put(self, item) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # keep draining so _put() never blocks forever
            try:
                self._handle(item)
            except BaseException as e:
                self.error = e

    def _finish(self) -> None:
        """Handle what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


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
        #: the codec: "avc1" (H.264, through ffmpeg) or the OpenCV FourCC (the mp4v fallback, MJPG)
        self.codec = self.fourcc
        self._ffmpeg = ffmpeg_exe() if ext in H264_EXTS else None
        if self._ffmpeg is not None:
            self.codec = "avc1"
        elif ext in H264_EXTS:
            _note_fallback(self.path)
        self.frames_in = 0       # frames given to write()
        self.frames_written = 0  # frames encoded (repeats included)
        self.write_seconds = 0.0
        self.size: tuple[int, int] | None = None
        #: the final path once close() renamed a verified, playable video there, else None
        self.final: Path | None = None
        self._writer = None  # cv2.VideoWriter or H264Pipe, opened with the first frame
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
        frame = image if self.codec == "avc1" else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        for _ in range(repeats):
            self._writer.write(frame)
        self.frames_written += repeats
        self.write_seconds += time.perf_counter() - t0

    def _open(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        self.size = (w, h)
        if self.codec == "avc1":
            try:
                self._writer = H264Pipe(self._ffmpeg, self.tmp_path, self.size, self.fps)
            except OSError as e:  # the binary cannot start (noexec, removed): say so in words
                raise SegkitError(f"{self.path}: cannot start ffmpeg ({e.strerror or e})") from None
            return
        self._writer = cv2.VideoWriter(str(self.tmp_path), cv2.VideoWriter_fourcc(*self.fourcc),
                                       self.fps, self.size)
        if not self._writer.isOpened():
            raise SegkitError(f"{self.path}: OpenCV cannot encode {self.fourcc} into "
                              f"{self.path.suffix} at {w}x{h}")

    def close(self, discard: bool = False) -> Path | None:
        """Finish encoding, finalise the container, check it plays back whole and rename it
        into place (idempotent); ``discard``: remove it instead.

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
                try:
                    self._writer.release()  # writes the container index: the file becomes playable
                except SegkitError as e:
                    self.error = self.error or e
            if self.error is None and self.frames_written and not discard:
                fsync_path(self.tmp_path)  # a delayed "disk full" surfaces here, not after the rename
                problem = _playback_problem(self.tmp_path, self.frames_written)
                if problem:
                    raise SegkitError(problem + free_space_note(self.path.parent))
                os.replace(self.tmp_path, self.path)
                self.final = self.path
        except OSError as e:
            from segkit.io.sources import os_problem

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


class VideoSink(Sink):
    """The annotated stream into one video file (.mp4/.m4v/.mov/.mkv: H.264, .avi: MJPEG), at ``fps``.

    The file appears, complete and playable, when the sink is closed (on every way out of a run,
    unless ``keep_partial`` is False and the run failed);
    a live source's timestamps keep the video at the speed it was recorded, dropped frames or not.
    ``render``: (frame, seg) -> picture; None writes the frame's own pixels."""

    def __init__(self, path: str | os.PathLike, fps: float, render: Renderer | None = None,
                 keep_partial: bool = True):
        self.writer = AtomicVideoWriter(path, fps)
        self.render, self.keep_partial = render, keep_partial
        self.live = False

    @property
    def path(self) -> Path:
        return self.writer.path

    def open(self, run) -> None:
        self.live = getattr(run.source, "live", False)

    def write(self, frame, seg) -> list[Path]:
        image = self.render(frame, seg) if self.render is not None else frame.image
        self.writer.write(image, frame.timestamp if self.live else None)
        return []  # the file appears when the run closes

    def close(self, ok: bool) -> None:
        # keep_partial: a camera run cut short still leaves the video of what it saw
        self.writer.close(discard=not ok and not self.keep_partial)
