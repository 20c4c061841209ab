import numpy as np
import pytest
from PIL import Image

from segkit.render import parse_background
from segkit.segmentation import Segmentation
from segkit.io.atomic import atomic_write_bytes
from segkit.io.results import coco_image_id
from segkit.io.sinks import Masks, Picture, Renderer
from segkit.io.sources import Frame


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # write() fails mid-way
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left


def test_image_outputs_write_complete_set(tmp_path):
    img = np.full((20, 30, 3), 50, np.uint8)
    masks = np.zeros((1, 20, 30), bool)
    masks[0, 5:10, 5:15] = True
    seg = Segmentation(20, 30, masks=masks, boxes=np.array([[5, 5, 15, 10]], np.float32),
                       class_ids=np.array([18]), scores=np.array([0.9], np.float32))
    sinks = [Picture(tmp_path, Renderer(parse_background("transparent"))), Masks(tmp_path)]
    frame = Frame(img, "sub/pic")
    complete = lambda: all(p.exists() for s in sinks for p in s.expected(frame))  # noqa: E731
    assert not complete()
    written = [p for s in sinks for p in s.write(frame, seg)]
    assert complete()
    assert Image.open(written[0]).mode == "RGBA"
    mask_files = sorted((tmp_path / "sub" / "pic_masks").iterdir())
    assert [m.name for m in mask_files] == ["000_dog.png"]
    assert np.asarray(Image.open(mask_files[0])).sum() == 50 * 255


def test_coco_image_id_from_stem_or_map():
    assert coco_image_id("000000519208") == 519208
    assert coco_image_id("holiday") == "holiday"
    assert coco_image_id("x/000000000001", {"000000000001": 42}) == 42


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat
    atomic_write_bytes(tmp_path / "x.png", b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "x.png").stat().st_mode) == 0o666 & ~mask
