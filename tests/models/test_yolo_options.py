"""The YOLO models' own options: --imgsz (converted once per size, cached), --iou (NMS), and a
network `segkit convert --out DIR` wrote, loaded back with --model-path.

On a miniature YOLOv5-seg checkpoint (tests/fixtures/torch_pickles.py: random weights, NOT a
trained model): what is checked is the plumbing, sizes and caching, not what it finds."""
import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from fixtures.torch_pickles import tiny_yolo_checkpoint, write_pt
from segkit.errors import SegkitError, UsageError
from segkit.models import detect_family, load_segmenter
from segkit.models.yolo_convert import convert_checkpoint


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_yolo_options")
    return write_pt(folder / "tiny.pt", tiny_yolo_checkpoint(seed=0))


def _load(**kw):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        seg = load_segmenter(**kw)
    return seg, err.getvalue()


def test_imgsz_converts_once_per_size_and_reuses_the_cache(tiny_pt):
    s32, said32 = _load(model_path=str(tiny_pt), imgsz=32)
    s64, said64 = _load(model_path=str(tiny_pt), imgsz=64)
    again, said_again = _load(model_path=str(tiny_pt), imgsz=32)
    assert (s32.imgsz, s64.imgsz, again.imgsz) == (32, 64, 32)
    assert "converting tiny.pt for 32x32" in said32 and "converting tiny.pt for 64x64" in said64
    assert said_again == "" and again.raw.path == s32.raw.path  # the cached file, no conversion
    out = s32.segment([np.zeros((40, 30, 3), np.uint8)])[0]
    assert (out.height, out.width) == (40, 30)


def test_iou_reaches_nms_and_is_checked(tiny_pt):
    seg, _ = _load(model_path=str(tiny_pt), imgsz=32, iou=0.7)
    assert seg.iou == 0.7
    assert _load(model_path=str(tiny_pt), imgsz=32)[0].iou == 0.45  # YOLOv5's default
    from segkit.options import Options, load_model

    with pytest.raises(UsageError, match="--iou: 1.5 is outside 0..1"):
        load_model(Options(model_path=str(tiny_pt), iou=1.5))
    with pytest.raises(UsageError, match="--imgsz: 100 is not a multiple of 32"):
        load_model(Options(model_path=str(tiny_pt), imgsz=100))


def test_the_python_api_takes_them_too(tiny_pt):
    import segkit

    with contextlib.redirect_stderr(io.StringIO()):
        model = segkit.load_model(path=tiny_pt, imgsz=32, iou=0.6)
    assert (model.segmenter.imgsz, model.segmenter.iou) == (32, 0.6)
    with pytest.raises(ValueError, match="--imgsz: 33 is not a multiple of 32"):
        segkit.load_model(path=tiny_pt, imgsz=33)


def test_yolo_options_on_another_family_are_refused_before_loading():
    with pytest.raises(UsageError, match=r"--imgsz: only YOLO models take it; model person_selfie_coco is a tflite"):
        load_segmenter(None, None, imgsz=320)


def test_a_network_segkit_convert_wrote_loads_by_path(tiny_pt, tmp_path):
    out = tmp_path / "converted"
    tfl = convert_checkpoint(tiny_pt, out, 64)["fp32"]
    assert detect_family(tfl) == ("yolo_seg", tfl)  # not a one-class person .tflite
    seg, said = _load(model_path=str(tfl))
    assert seg.family == "yolo_seg" and (seg.imgsz, seg.nc) == (64, 2) and said == ""
    assert list(seg.coco_ids) == [17, 18]  # its own class names (cat, dog), as COCO ids
    assert _load(model_path=str(tfl), imgsz=64)[0].imgsz == 64
    with pytest.raises(SegkitError, match="converted for 64x64, not --imgsz 32"):
        load_segmenter(model_path=str(tfl), imgsz=32)
    # a .tflite without that metadata is still read as a person model
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(tfl.read_bytes())
    assert detect_family(lone)[0] == "tflite"


def test_segkit_image_runs_a_converted_file_at_its_size(tiny_pt, tmp_path):
    tfl = convert_checkpoint(tiny_pt, tmp_path / "c", 32)["fp32"]
    r = subprocess.run([sys.executable, str(REPO / "bin" / "segment_image.py"), "-i", str(REPO / "images" / "000000519208.jpg"),
                        "--model-path", str(tfl), "--iou", "0.6", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "1 images done" in r.stdout and (tmp_path / "out" / "000000519208.jpg").is_file()
    r = subprocess.run([sys.executable, str(REPO / "bin" / "segment_image.py"), "-i", "x.jpg", "--imgsz", "300"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip() == \
        "segkit: error: argument --imgsz: 300 is not a multiple of 32 (e.g. 320, 480, 640) (see segment_image.py --help)"
