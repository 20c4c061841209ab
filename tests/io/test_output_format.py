"""The overlay's format follows the input: JPEG in -> JPEG (quality 95), else PNG; --ext chooses;
transparent cut-outs and masks are always PNG; what resume expects is what is written."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkit.render import parse_background
from segkit.segmentation import Segmentation
from segkit.io.sinks import Masks, Picture, Renderer
from segkit.io.sources import Frame


def _photo():
    yy, xx = np.mgrid[0:48, 0:64]
    return np.stack([xx * 4, yy * 5, np.full_like(xx, 90)], -1).astype(np.uint8)


def _seg():
    probs = np.zeros((48, 64, 1), np.float32)
    probs[10:30, 20:40] = 0.9
    return Segmentation(48, 64, probs=probs, prob_class_ids=(1,))


@pytest.mark.parametrize("src, ext, background, want, fmt", [
    ("a.jpg", None, None, "a.jpg", "JPEG"),
    ("a.JPEG", None, None, "a.jpg", "JPEG"),
    ("a.png", None, None, "a.png", "PNG"),
    ("a.webp", None, None, "a.png", "PNG"),
    (None, None, None, "a.png", "PNG"),              # video / camera frames
    ("a.jpg", ".png", None, "a.png", "PNG"),         # --ext png
    ("a.png", ".jpg", None, "a.jpg", "JPEG"),        # --ext jpg
    ("a.jpg", None, "white", "a.jpg", "JPEG"),       # opaque cut-out follows the input too
    ("a.jpg", ".jpg", "transparent", "a.png", "PNG"),  # alpha needs PNG whatever was asked
])
def test_visual_format(tmp_path, src, ext, background, want, fmt):
    sinks = [Picture(tmp_path, Renderer(parse_background(background) if background else None), ext),
             Masks(tmp_path)]
    frame = Frame(_photo(), "a", Path(src) if src else None)
    expected = [p for s in sinks for p in s.expected(frame)]
    assert expected[0].name == want
    written = [p for s in sinks for p in s.write(frame, _seg())]
    assert written == expected and all(p.exists() for p in expected)  # resume sees what was written
    with Image.open(written[0]) as im:
        assert im.format == fmt
        assert im.mode == ("RGBA" if background == "transparent" else "RGB")
    assert all(m.suffix == ".png" for m in (tmp_path / "a_masks").iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [want]  # no temp file left


def test_jpeg_overlay_is_quality_95(tmp_path):
    import cv2

    from segkit.render import overlay

    frame = Frame(_photo(), "a", Path("a.jpg"))
    (path,) = Picture(tmp_path, Renderer()).write(frame, _seg())
    vis = overlay(frame.image, _seg(), 0.5)
    ok, q95 = cv2.imencode(".jpg", np.ascontiguousarray(vis[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert path.read_bytes() == q95.tobytes()


def test_semantic_overlay_names_its_class_beside_the_outline():
    from segkit.render import overlay

    img = np.full((120, 160, 3), 90, np.uint8)
    probs = np.zeros((120, 160, 1), np.float32)
    probs[50:110, 60:120] = 0.9
    seg = Segmentation(120, 160, probs=probs, prob_class_ids=(18,))
    plain = overlay(img, seg, labels=False)
    named = overlay(img, seg)
    above = (slice(30, 48), slice(60, 120))  # the label box sits on the mask's top-left corner
    assert (plain[above] == 90).all()
    assert (named[above] != 90).any()
    assert (named[:, :55] == 90).all()  # nothing else touched
