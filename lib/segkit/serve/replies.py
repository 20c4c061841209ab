"""A response is a sink that writes into memory: the same renderers and serializers as the files
a folder run writes, with the bytes kept for the HTTP reply instead of renamed into place.

    reply = make_reply("cutout", background=parse_background("white"))
    reply.write(frame, seg)       # on an encode thread
    reply.body, reply.media_type  # -> the response
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segkit.io.atomic import encode_image
from segkit.io.results import coco_image_id
from segkit.io.sinks import Renderer, Sink
from segkit.io.sources import Frame
from segkit.render import Background
from segkit.segmentation import Segmentation

#: what ``format`` may ask for: the overlay, a cut-out, the mask, COCO results, YOLO polygons
FORMATS = ("overlay", "cutout", "mask", "coco", "yolo")

_MEDIA = {".jpg": "image/jpeg", ".png": "image/png"}


class Reply(Sink):
    """A sink whose one write leaves ``body`` (bytes) and ``media_type`` behind."""

    body: bytes = b""
    media_type: str = "application/octet-stream"
    ext: str = ""  # what a download of it is named with


class PictureReply(Reply):
    """The overlay, or the cut-out on ``background``: JPEG for a JPEG upload (quality 95) and PNG
    otherwise, as the files of ``segment_image`` (``ext`` chooses; a transparent cut-out is PNG)."""

    def __init__(self, render: Renderer, ext: str | None = None, source_format: str | None = None):
        self.render = render
        background = render.background
        if background is not None and background.has_alpha:
            self.ext = ".png"
        elif ext:
            self.ext = ext if ext.startswith(".") else f".{ext}"
            self.ext = ".jpg" if self.ext == ".jpeg" else self.ext
        else:
            self.ext = ".jpg" if source_format == "JPEG" else ".png"
        self.media_type = _MEDIA[self.ext]

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        self.body = encode_image(self.render(frame, seg), self.ext)
        return []


class MaskReply(Reply):
    """The foreground as one 0/255 PNG at the photo's size (every kept instance or class)."""

    ext, media_type = ".png", "image/png"

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        self.body = encode_image(seg.foreground().astype(np.uint8) * 255, ".png")
        return []


class CocoReply(Reply):
    """COCO results with RLE masks, as ``--json`` writes them (``COCO.loadRes`` reads them)."""

    ext, media_type = ".json", "application/json"

    def __init__(self, image_id=None):
        self.image_id = image_id

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        image_id = self.image_id if self.image_id is not None else coco_image_id(frame.name)
        self.body = json.dumps(seg.to_coco(image_id), separators=(",", ":")).encode()
        return []


class YoloReply(Reply):
    """YOLO polygons, one line per instance, as ``--save-txt`` (``with_conf``: ``--save-conf``)."""

    ext, media_type = ".txt", "text/plain; charset=utf-8"

    def __init__(self, with_conf: bool = False):
        self.with_conf = with_conf

    def write(self, frame: Frame, seg: Segmentation) -> list[Path]:
        self.body = seg.to_yolo_txt(with_conf=self.with_conf).encode()
        return []


def make_reply(fmt: str, *, background: Background | None = None, alpha: float | None = None,
               ext: str | None = None, source_format: str | None = None, image_id=None,
               with_conf: bool = False) -> Reply:
    """The sink for one request's ``format``; a cut-out without a background is transparent."""
    if fmt == "overlay":
        return PictureReply(Renderer(None, alpha), ext, source_format)
    if fmt == "cutout":
        return PictureReply(Renderer(background or Background("transparent"), alpha), ext, source_format)
    if fmt == "mask":
        return MaskReply()
    if fmt == "coco":
        return CocoReply(image_id)
    if fmt == "yolo":
        return YoloReply(with_conf)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
