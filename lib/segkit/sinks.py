"""Where results go. Every file is written atomically (temp file in the same folder + rename),
so a run killed at any moment leaves either the complete old state or the complete new file."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segkit.config import DEFAULTS
from segkit.errors import OutputError, SegkitError
from segkit.render import Background, cutout, foreground_alpha, overlay
from segkit.segmentation import Segmentation
from segkit.sources import Frame


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
    from segkit.sources import os_problem

    problem = os_problem(e)
    return OutputError(path, f"cannot write: {problem}", e.errno)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename: ``path`` is whole or untouched.

    Any OSError (disk full, permission, read-only) becomes an OutputError naming ``path``; the
    temp file is removed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    except OSError as e:
        raise output_error(path, e) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            Path(tmp).unlink(missing_ok=True)


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


def coco_image_id(name: str, id_map: dict[str, int] | None = None):
    """COCO results need the annotation file's image id: looked up by file name when a map is
    given, else the file stem as an int when it is one (COCO names are zero-padded ids)."""
    stem = Path(name).name
    if id_map is not None and stem in id_map:
        return id_map[stem]
    return int(stem) if stem.isdigit() else stem


@dataclass
class ImageOutputs:
    """Per-image files of segment_image / segment_folder, named after the input.

    ``<out>/<name>.jpg|.png``      overlay (or the cut-out when a background is chosen)
    ``<out>/<name>_masks/NN_<class>.png``  one 0/255 PNG per instance (--save-masks)
    ``<out>/<name>.txt``           YOLO polygons, Ultralytics ``save_txt`` format (--save-txt)

    The overlay's format follows the input (JPEG in, JPEG out at quality 95: a tenth of the PNG's
    size and encoding time; anything else PNG) unless ``ext`` chooses one; a transparent
    cut-out is always PNG (JPEG has no alpha).
    """

    out_dir: Path
    background: Background | None = None
    save_masks: bool = False
    save_visual: bool = True
    alpha: float = DEFAULTS["alpha"]
    ext: str | None = None  # None: follow the input
    save_txt: bool = False
    save_conf: bool = False  # scores at the end of each .txt line (Ultralytics save_conf)

    def visual_path(self, frame: Frame) -> Path:
        if self.background is not None and self.background.has_alpha:
            ext = ".png"
        elif self.ext:
            ext = self.ext if self.ext.startswith(".") else f".{self.ext}"
        else:
            src = frame.path.suffix.lower() if frame.path is not None else ""
            ext = ".jpg" if src in (".jpg", ".jpeg") else ".png"
        return self.out_dir / f"{frame.name}{ext}"

    def masks_dir(self, frame: Frame) -> Path:
        return self.out_dir / f"{frame.name}_masks"

    def txt_path(self, frame: Frame) -> Path:
        return self.out_dir / f"{frame.name}.txt"

    def expected(self, frame: Frame) -> list[Path]:
        paths = [self.visual_path(frame)] if self.save_visual else []
        if self.save_masks:
            paths.append(self.masks_dir(frame))
        if self.save_txt:
            paths.append(self.txt_path(frame))
        return paths

    def complete(self, frame: Frame) -> bool:
        """Every output exists; they are only ever created whole, so existing means complete."""
        return all(p.exists() for p in self.expected(frame))

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        written = []
        if self.save_visual:
            if self.background is not None:
                vis = cutout(frame.image, foreground_alpha(seg), self.background)
            else:
                vis = overlay(frame.image, seg, self.alpha)
            path = self.visual_path(frame)
            write_image(path, vis)
            written.append(path)
        if self.save_masks:
            written.append(self._write_masks(frame, seg.as_instances()))
        if self.save_txt:
            # written even when empty (Ultralytics writes none then): a resumed run needs it
            # to exist to count the image done
            path = self.txt_path(frame)
            atomic_write_bytes(path, seg.to_yolo_txt(with_conf=self.save_conf).encode())
            written.append(path)
        return written

    def _write_masks(self, frame: Frame, inst: Segmentation) -> Path:
        # Build the folder aside and rename it into place: a folder either is complete or absent.
        final = self.masks_dir(frame)
        tmp = None
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
            os.chmod(tmp, DIR_MODE)  # mkdtemp makes 0700 folders
            for i, ((_, data), cname) in enumerate(zip(inst.masks_png(), inst.class_names)):
                (tmp / f"{i:03d}_{cname.replace(' ', '_')}.png").write_bytes(data)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as e:
            raise output_error(final, e) from None
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final
