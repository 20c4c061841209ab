"""Video -> numbered frame images plus a manifest that keeps their timing.

The manifest (``<folder>/manifest.json``) is what lets later steps rebuild timing: a GIF or MP4
made from the frames plays at ``fps``, and every frame knows the source frame number and time it
came from. JSON (not CSV) because it carries the run's metadata (source, source fps, selection)
beside the per-frame rows; ``jq -r '.frames[] | [.index,.source_frame,.timestamp,.file] | @csv'``
turns it into CSV.

Timestamps are ``source_frame / source_fps``: OpenCV reports one constant frame rate, and its
per-frame position (CAP_PROP_POS_MSEC) is unreliable across backends, so the frame number is
the ground truth we keep.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from segkit.errors import InputError, OutputError, UsageError
from segkit.io.atomic import atomic_write_bytes, write_image

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
FRAME_PREFIX = "frame_"
_FRAME_FILE = re.compile(rf"^{FRAME_PREFIX}\d+\.(png|jpg)$")


# ------------------------------------------------------------------------- arguments
def parse_time(text: str) -> float:
    """'12.5' seconds, 'MM:SS(.f)' or 'HH:MM:SS(.f)' -> seconds (>= 0)."""
    s = str(text).strip()
    parts = s.split(":")
    try:
        if len(parts) > 3 or any(p == "" for p in parts):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"{text!r} is not a time (seconds like 12.5, or MM:SS / HH:MM:SS)") from None
    if any(v < 0 or not math.isfinite(v) for v in values) or any(v >= 60 for v in values[1:]):
        raise UsageError(f"{text!r} is not a valid time")
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


@dataclass
class Selection:
    """Which source frames to keep. ``end`` is exclusive: [start, end)."""

    every: int | None = None    # keep every Nth frame (counted from the first kept one)
    fps: float | None = None    # or: resample to this rate
    start: float = 0.0
    end: float | None = None
    max_frames: int | None = None

    def __post_init__(self):
        if self.every is not None and self.fps is not None:
            raise UsageError("--every and --fps exclude each other")
        if self.every is not None and self.every < 1:
            raise UsageError(f"--every {self.every}: must be >= 1")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise UsageError(f"--fps {self.fps}: must be > 0")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"--max-frames {self.max_frames}: must be >= 1")
        if self.end is not None and self.end <= self.start:
            raise UsageError(f"--end {self.end:g} s is not after --start {self.start:g} s")

    def output_fps(self, source_fps: float | None) -> float | None:
        """Playback rate that keeps real time for the kept frames."""
        if self.fps is not None:
            return min(self.fps, source_fps) if source_fps else self.fps
        if source_fps is None:
            return None
        return source_fps / (self.every or 1)


# -------------------------------------------------------------------------- manifest
@dataclass
class FrameRecord:
    index: int          # position in the output sequence (0, 1, 2 ...)
    source_frame: int   # frame number in the video (0-based)
    timestamp: float | None  # seconds from the start of the video
    file: str           # file name inside the frames folder


@dataclass
class Manifest:
    fps: float | None               # playback rate of the kept frames (real time)
    source: str = ""
    source_fps: float | None = None
    source_frames: int | None = None  # as the container reports it
    #: frames decoded before the video ended: differs from source_frames when the file is
    #: truncated or corrupt (None when the selection stopped before the end)
    source_frames_read: int | None = None
    width: int = 0
    height: int = 0
    selection: dict = field(default_factory=dict)
    frames: list[FrameRecord] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    def to_json(self) -> dict:
        d = asdict(self)
        d["frames"] = [asdict(f) for f in self.frames]
        return d


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST_NAME
    atomic_write_bytes(path, (json.dumps(manifest.to_json(), indent=1) + "\n").encode())
    return path


def read_manifest(folder: str | os.PathLike) -> Manifest | None:
    """The folder's manifest, or None when it has none. A broken one is an error, not ignored."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        frames = [FrameRecord(int(f["index"]), int(f["source_frame"]),
                              None if f.get("timestamp") is None else float(f["timestamp"]),
                              str(f["file"])) for f in d["frames"]]
        fps = d.get("fps")
        return Manifest(fps=None if fps is None else float(fps), source=d.get("source", ""),
                        source_fps=d.get("source_fps"), source_frames=d.get("source_frames"),
                        source_frames_read=d.get("source_frames_read"),
                        width=int(d.get("width", 0)), height=int(d.get("height", 0)),
                        selection=d.get("selection", {}), frames=frames,
                        version=int(d.get("version", MANIFEST_VERSION)))
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"not a valid frames manifest ({type(e).__name__}: {e})") from None


# ------------------------------------------------------------------------ extraction
@dataclass
class VideoInfo:
    fps: float | None
    frame_count: int | None
    width: int
    height: int
    #: set by iter_selected once it reached the end of the video: how many frames decoded
    frames_read: int | None = None


def open_video(path: str | os.PathLike) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video file, or raise InputError('<path>: <problem>') for anything unusable."""
    from segkit.io.video_source import open_capture

    p = Path(path)
    if not p.exists():  # before open_capture, which would take a bare number for a camera
        raise InputError(p, "no such file")
    # FFmpeg prints its own multi-line complaints ("moov atom not found") on stderr; the
    # problem is reported in one line instead. A user's own setting of this variable wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        cap = open_capture(str(p.absolute()))
    except InputError as e:
        raise InputError(p, e.problem) from None
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    info = VideoInfo(fps=fps if fps and math.isfinite(fps) and 0 < fps < 1000 else None,
                     frame_count=int(count) if count and count > 0 and math.isfinite(count) else None,
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return cap, info


def iter_selected(cap: cv2.VideoCapture, info: VideoInfo, sel: Selection,
                  ) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """(source frame number, timestamp, RGB frame) of every kept frame, in order.

    Frames are decoded sequentially (grab without colour conversion for skipped ones): seeking
    with CAP_PROP_POS_FRAMES lands on the wrong frame for many codecs.
    """
    fps = info.fps
    if fps is None and (sel.fps is not None or sel.start > 0 or sel.end is not None):
        raise UsageError("the video does not report its frame rate: --fps/--start/--end need it; use --every")
    kept = 0
    next_time = sel.start  # for --fps: time of the next frame we want
    first_kept: int | None = None
    n = -1
    while True:
        if not cap.grab():
            info.frames_read = n + 1  # the end of the file (or the point where decoding broke)
            return
        n += 1
        t = n / fps if fps else None
        if t is not None:
            # half a frame of tolerance: frame times are rounded in containers
            if t < sel.start - 0.5 / fps:
                continue
            if sel.end is not None and t >= sel.end - 0.5 / fps:
                return
        if sel.fps is not None:
            if t < next_time - 0.5 / fps:
                continue
            # next wanted time after this frame, on the regular grid start + k/F
            k = math.floor((t - sel.start) * sel.fps + 0.5 * sel.fps / fps) + 1
            next_time = sel.start + k / sel.fps
        elif sel.every:
            if first_kept is None:
                first_kept = n
            if (n - first_kept) % sel.every:
                continue
        ok, bgr = cap.retrieve()
        if not ok or bgr is None:
            info.frames_read = n  # a frame that cannot be decoded ends the readable part
            return
        yield n, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        kept += 1
        if sel.max_frames is not None and kept >= sel.max_frames:
            return


def expected_count(info: VideoInfo, sel: Selection) -> int | None:
    """Rough number of frames the selection keeps (for a progress bar total)."""
    if info.frame_count is None:
        return sel.max_frames
    n = info.frame_count
    if info.fps:
        first = int(sel.start * info.fps)
        last = n if sel.end is None else min(n, int(math.ceil(sel.end * info.fps)))
        n = max(0, last - first)
    if sel.fps is not None and info.fps:
        n = math.ceil(n * min(1.0, sel.fps / info.fps))
    elif sel.every:
        n = math.ceil(n / sel.every)
    return n if sel.max_frames is None else min(n, sel.max_frames)


def _has_a_frame(video) -> bool:
    cap = cv2.VideoCapture(str(video))
    try:
        return cap.isOpened() and cap.grab()
    finally:
        cap.release()


def frame_file_name(index: int, digits: int, ext: str) -> str:
    return f"{FRAME_PREFIX}{index:0{digits}d}.{ext}"


def existing_frames(folder: Path) -> list[Path]:
    """Frame files a previous extraction left in ``folder`` (only our own naming pattern)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _FRAME_FILE.match(p.name))


def extract_frames(video: str | os.PathLike, out_dir: str | os.PathLike, sel: Selection,
                   ext: str = "png", overwrite: bool = False,
                   on_frame: Callable[[FrameRecord], None] | None = None,
                   set_total: Callable[[int | None], None] | None = None) -> Manifest:
    """Write the selected frames as ``frame_NNNNNN.<ext>`` and ``manifest.json`` into out_dir.

    Names are zero-padded to at least 6 digits (more when the video could yield more), so they
    sort in playing order. Each frame file and the manifest are written atomically; the manifest
    comes last, so a folder with a manifest is complete, and one with frames but no manifest is
    an unfinished run that a rerun completes. With ``overwrite`` (or when finishing such a run),
    frame files this run did not write are removed afterwards (only our own pattern), so the
    manifest always lists exactly the frames in the folder.
    """
    ext = ext.lower().lstrip(".")
    if ext == "jpeg":
        ext = "jpg"
    if ext not in ("png", "jpg"):
        raise UsageError(f"--ext {ext}: choose png or jpg")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    old = existing_frames(out)
    # Frames without a manifest are an unfinished run (killed, disk full): a rerun finishes it.
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise UsageError(f"{out}: already holds frames of an earlier run; use --overwrite or another -o")
    cap, info = open_video(video)
    records: list[FrameRecord] = []
    try:
        total = expected_count(info, sel)
        if set_total:
            set_total(total)
        digits = max(6, len(str(info.frame_count or 0)))
        size: tuple[int, int] | None = None
        for src_no, t, rgb in iter_selected(cap, info, sel):
            name = frame_file_name(len(records), digits, ext)
            write_image(out / name, rgb)
            size = (rgb.shape[1], rgb.shape[0])
            rec = FrameRecord(len(records), src_no, None if t is None else round(t, 6), name)
            records.append(rec)
            if on_frame:
                on_frame(rec)
    except OutputError as e:
        raise OutputError(e.path, f"{e.problem} after {len(records)} frames; no manifest was written, "
                                  "so the folder does not count as done: free space and run the same "
                                  "command again", e.errno) from None
    finally:
        cap.release()
    if not records:
        if not _has_a_frame(video):
            raise InputError(video, "no decodable frames in this video")
        length = f" (the video is {info.frame_count / info.fps:.2f} s long)" if info.frame_count and info.fps else ""
        raise InputError(video, f"no frames between --start and --end{length}")
    manifest = Manifest(fps=sel.output_fps(info.fps), source=str(video), source_fps=info.fps,
                        source_frames=info.frame_count, source_frames_read=info.frames_read,
                        width=size[0], height=size[1],
                        selection={k: v for k, v in asdict(sel).items()}, frames=records)
    write_manifest(out, manifest)
    written = {r.file for r in records}
    for p in old:
        if p.name not in written:
            p.unlink(missing_ok=True)
    return manifest


def truncation_note(manifest: Manifest) -> str | None:
    """'read N of M frames the container promises' when the video ended early, else None."""
    read, promised = manifest.source_frames_read, manifest.source_frames
    if read is None or promised is None or read == promised:
        return None
    return (f"{manifest.source}: read {read} of the {promised} frames the container promises "
            "(truncated or corrupt video)")
