"""Frame folders as animation frames, optionally side-by-side collages (written by animation.py).

Layouts are panel names joined by commas, laid out left to right at the frames' own size:

``original``  the frame from the frames folder (``-i``)
``mask``      the person/instance mask, white on black. Taken from ``<seg>/<name>_masks/*.png``
              (the union of the 0/255 instance masks ``--save-masks`` writes: exactly what the
              model kept); when that folder is absent, from the alpha channel of a transparent
              cut-out ``<seg>/<name>.png`` thresholded at 128 (half opaque: segkit's soft alpha is
              0 below the model threshold and >= 0.5 above it, so this is the same mask).
``cutout``    ``<seg>/<name>.png`` as segment_folder.py wrote it; a transparent cut-out is shown
              on white (GIF and MP4 frames are opaque).

Frames come in the order of the folder's manifest.json when it has one (video_to_frames.py
writes it), else in natural name order; the manifest's fps is the default playback rate.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from segkit.errors import InputError, UsageError
from segkit.io.frames import MANIFEST_NAME, read_manifest
from segkit.io.sources import IMAGE_EXTS, read_image

PANELS = ("original", "mask", "cutout")
DEFAULT_FPS = 10.0


# ------------------------------------------------------------------------- arguments
def parse_layout(spec: str) -> list[str]:
    panels = [p.strip().lower() for p in spec.split(",") if p.strip()]
    bad = [p for p in panels if p not in PANELS]
    if not panels or bad:
        raise UsageError(f"--collage {spec!r}: panels are {', '.join(PANELS)} (comma-separated)")
    return panels


def parse_resize(spec: str) -> Callable[[int, int], tuple[int, int]]:
    """'320x240' (either side may be left out: '320x' keeps the aspect), '0.5' or '50%' (scale),
    '480' (longest side) -> function (w, h) -> new (w, h)."""
    s = spec.strip().lower()
    m = re.fullmatch(r"(\d*)x(\d*)", s)
    try:
        if m and (m.group(1) or m.group(2)):
            tw, th = (int(g) if g else None for g in m.groups())
            if (tw is not None and tw < 1) or (th is not None and th < 1):
                raise ValueError

            def fit(w, h):
                if tw and th:
                    return tw, th
                return (tw, max(1, round(h * tw / w))) if tw else (max(1, round(w * th / h)), th)
            return fit
        if s.endswith("%") or "." in s:
            scale = float(s[:-1]) / 100 if s.endswith("%") else float(s)
            if not 0 < scale <= 16:
                raise ValueError
            return lambda w, h: (max(1, round(w * scale)), max(1, round(h * scale)))
        side = int(s)
        if side < 1:
            raise ValueError
        return lambda w, h: (max(1, round(w * side / max(w, h))), max(1, round(h * side / max(w, h))))
    except ValueError:
        raise UsageError(f"--resize {spec!r}: use WxH (320x240, 320x, x240), a scale (0.5, 50%) "
                         "or the longest side in pixels (480)") from None


def parse_bytes(spec: str) -> int:
    """'800000', '500k', '2M' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*", spec.lower())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--max-size {spec!r}: use bytes, or a number with k/M (500k, 2M)")
    return int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[m.group(2)])


# -------------------------------------------------------------------------- reading
@dataclass
class FrameSequence:
    folder: Path
    items: list[tuple[str, Path]]  # (name without extension, file) in playing order
    fps: float | None              # from the manifest, if any


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_frames(folder: str | os.PathLike) -> FrameSequence:
    """The frames of a folder: the manifest's list when there is one, else its images by name."""
    d = Path(folder)
    if not d.exists():
        raise InputError(d, "no such folder")
    if not d.is_dir():
        raise InputError(d, "not a folder of frames")
    manifest = read_manifest(d)
    if manifest is not None:
        items = []
        for rec in manifest.frames:
            p = d / rec.file
            if not p.is_file():
                raise InputError(p, f"listed in {MANIFEST_NAME} but missing")
            items.append((Path(rec.file).stem, p))
        fps = manifest.fps
    else:
        files = [p for p in d.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
        items = [(p.stem, p) for p in sorted(files, key=lambda p: _natural_key(p.name))]
        fps = None
    if not items:
        raise InputError(d, "no frames in this folder (no images and no manifest.json)")
    return FrameSequence(d, items, fps)


def read_frame(path: Path) -> np.ndarray:
    """RGB uint8, or RGBA when the file has transparency (cut-outs keep their alpha)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img.load()
                return np.asarray(img.convert("RGBA"), np.uint8)
    except Exception:
        pass  # read_image below names the problem
    return read_image(path)


def on_white(image: np.ndarray) -> np.ndarray:
    """Flatten RGBA onto white; RGB passes through."""
    if image.shape[2] == 3:
        return image
    a = image[..., 3:4].astype(np.float32) / 255
    return (image[..., :3] * a + 255 * (1 - a) + 0.5).astype(np.uint8)


def read_mask(seg_dir: Path, name: str) -> np.ndarray:
    """bool [H,W] mask of frame ``name`` (see the module doc for where it comes from)."""
    masks_dir = seg_dir / f"{name}_masks"
    seg_file = seg_dir / f"{name}.png"
    if masks_dir.is_dir():
        files = sorted(masks_dir.glob("*.png"))
        if not files:  # nothing kept in this frame: an empty mask, at the cut-out's size
            ref = _first_existing(seg_dir, name)
            h, w = read_frame(ref).shape[:2]
            return np.zeros((h, w), bool)
        union = None
        for f in files:
            m = read_image(f)[..., 0] >= 128
            if union is not None and m.shape != union.shape:
                raise InputError(f, f"mask is {m.shape[1]}x{m.shape[0]}, other masks of this frame "
                                    f"are {union.shape[1]}x{union.shape[0]}")
            union = m if union is None else union | m
        return union
    if seg_file.is_file():
        img = read_frame(seg_file)
        if img.shape[2] == 4:
            return img[..., 3] >= 128
        raise InputError(seg_file, f"no alpha channel and no {masks_dir.name}/ folder to take the mask "
                                   "from (segment with --save-masks or --background transparent)")
    raise InputError(masks_dir, "missing: no mask folder and no transparent cut-out for this frame")


def _first_existing(seg_dir: Path, name: str) -> Path:
    for ext in (".png", ".jpg"):
        if (seg_dir / f"{name}{ext}").is_file():
            return seg_dir / f"{name}{ext}"
    raise InputError(seg_dir / f"{name}.png", "missing (needed for the size of an empty mask)")


def _segmented(seg_dir: Path, name: str) -> np.ndarray:
    for ext in (".png", ".jpg"):
        p = seg_dir / f"{name}{ext}"
        if p.is_file():
            return on_white(read_frame(p))
    raise InputError(seg_dir / f"{name}.png", "missing: no segmented frame of this name "
                                              "(did segment_folder.py run on these frames?)")


def collage_frames(seq: FrameSequence, layout: list[str], seg_dir: Path | None = None,
                   resize: Callable[[int, int], tuple[int, int]] | None = None,
                   step: int = 1) -> Iterator[np.ndarray]:
    """RGB frames of the animation: the panels of ``layout`` side by side, every ``step``-th frame.

    Every panel must have the first frame's size: a frame of another size is an error naming it.
    """
    if seg_dir is None and any(p != "original" for p in layout):
        raise UsageError(f"--collage {','.join(layout)}: mask/cutout panels need --segmented DIR")
    if seg_dir is not None and not Path(seg_dir).is_dir():
        raise InputError(seg_dir, "no such folder of segmented frames")
    size: tuple[int, int] | None = None
    first = ""
    for name, path in seq.items[::step]:
        panels = []
        for kind in layout:
            if kind == "original":
                img, src = on_white(read_frame(path)), path
            elif kind == "cutout":
                img, src = _segmented(seg_dir, name), seg_dir / f"{name}.png"
            else:
                m = read_mask(seg_dir, name)
                img, src = np.repeat((m.astype(np.uint8) * 255)[..., None], 3, axis=2), seg_dir / f"{name}_masks"
            hw = img.shape[:2]
            if size is None:
                size, first = hw, str(src)
            elif hw != size:
                raise InputError(src, f"frame is {hw[1]}x{hw[0]} but {first} is {size[1]}x{size[0]}; "
                                      "all frames must have one size")
            panels.append(_resized(img, resize))
        yield np.ascontiguousarray(np.hstack(panels))


def _resized(img: np.ndarray, resize: Callable[[int, int], tuple[int, int]] | None) -> np.ndarray:
    # --resize sizes each panel (a video frame), not the strip: '--resize 480' on a 3-panel
    # collage gives three 480-px panels, as one frame alone would be, not a 480-wide sliver.
    if resize is None:
        return img
    w, h = resize(img.shape[1], img.shape[0])
    if (w, h) == (img.shape[1], img.shape[0]):
        return img
    interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)
