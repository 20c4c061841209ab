"""The restricted unpickler that reads YOLO ``.pt`` checkpoints without torch.

Synthetic checkpoints are written by tests/fixtures/torch_pickles.py in torch.save's zip layout;
the real YOLOv5/YOLOv7 checkpoints are read in test_yolo_convert.py.
"""
from collections import OrderedDict

import numpy as np
import pytest

from conftest import REPO
from fixtures.limits import python, run_limited
from fixtures.torch_pickles import (TINY_YAML, Call, Obj, Tensor, glob, late_fill_pickle, laughs, tiny_yolo_checkpoint,
                                    tuple_laughs, write_pt, write_raw_pt, zip_bomb_checkpoint)
from segkit.errors import SegkitError
from segkit.models.yolo_checkpoint import CheckpointError, Record, load_checkpoint


def _conv(weight: Tensor) -> object:
    return Obj("models.common", "Conv", {
        "training": False, "i": 0, "f": -1,
        "_parameters": OrderedDict(), "_buffers": OrderedDict(),
        "_non_persistent_buffers_set": Call("__builtin__", "set", []),
        "_modules": OrderedDict(conv=Obj("torch.nn.modules.conv", "Conv2d", {
            "_parameters": OrderedDict(weight=weight, bias=None), "stride": (2, 2)})),
    })


def test_tensors_come_back_with_dtype_offset_size_and_stride(tmp_path):
    half = np.arange(24, dtype=np.float16) / 4
    longs = np.array([7, -3, 2**40], np.int64)
    obj = {"epoch": -1, "names": ["person", "dog"],
           "model": _conv(Tensor(half, 2, (3, 4), (1, 3), parameter=True)),  # a transposed view
           "counts": Tensor(longs, 1, (2,), (1,)),
           "scalar": Tensor(np.array([1.5, 2.5], np.float32), 1, (), ())}
    ck = load_checkpoint(write_pt(tmp_path / "m.pt", obj))
    w = ck.obj["model"].children["conv"].param("weight")
    assert w.dtype == np.float16 and w.shape == (3, 4)
    assert w[0].tolist() == [0.5, 1.25, 2.0, 2.75]  # elements 2, 5, 8, 11 of the storage
    np.testing.assert_array_equal(ck.obj["counts"], [-3, 2**40])
    assert ck.obj["counts"].dtype == np.int64
    assert ck.obj["scalar"].shape == () and float(ck.obj["scalar"]) == 2.5
    model = ck.obj["model"]
    assert isinstance(model, Record) and (model.module, model.name) == ("models.common", "Conv")
    assert model.i == 0 and model._non_persistent_buffers_set == set()
    assert model.children["conv"].stride == (2, 2)


def test_method_reference_and_other_top_folder_names(tmp_path):
    forward = Call("__builtin__", "getattr", glob("models.yolo", "Detect"), "forward")
    obj = {"model": Obj("models.yolo", "Segment", {"detect": forward, "_modules": OrderedDict()})}
    ck = load_checkpoint(write_pt(tmp_path / "m.pt", obj, top="yolov5s-seg"))
    assert repr(ck.obj["model"].detect) == "<models.yolo.Detect.forward>"


@pytest.mark.parametrize("module, name, args", [
    ("os", "system", ("touch PWNED",)),
    ("builtins", "eval", ("__import__('os').system('touch PWNED')",)),
    ("subprocess", "call", (["touch", "PWNED"],)),
    ("torch", "load", ("x",)),
    ("models.common", "_private", ()),
])
def test_hostile_globals_are_refused_by_name(tmp_path, monkeypatch, module, name, args):
    monkeypatch.chdir(tmp_path)
    path = write_pt(tmp_path / "evil.pt", {"model": Call(module, name, *args)})
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and f"'{module}.{name}'" in msg
    assert isinstance(e.value, SegkitError) and not (tmp_path / "PWNED").exists()


def test_getattr_is_refused_on_anything_but_a_record_class(tmp_path):
    # getattr(OrderedDict(), 'popitem') would be a step towards calling arbitrary methods
    sneaky = Call("__builtin__", "getattr", Call("collections", "OrderedDict"), "popitem")
    with pytest.raises(CheckpointError, match="getattr on OrderedDict is not allowed"):
        load_checkpoint(write_pt(tmp_path / "m.pt", {"model": sneaky}))


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    path = write_pt(tmp_path / "m.pt", {"t": Tensor(np.zeros(4, np.float32), 2, (3,), (1,))})
    with pytest.raises(CheckpointError, match="reaches element 4 of a storage of 4"):
        load_checkpoint(path)


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_zip_is_one_line(tmp_path, cut):
    full = write_pt(tmp_path / "m.pt", {"model": _conv(Tensor(np.ones(64, np.float16), 0, (64,), (1,)))})
    data = full.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    assert str(e.value).startswith(f"{bad}: ") and "\n" not in str(e.value)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch zip checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="holds no model"):
        load_checkpoint(write_pt(tmp_path / "empty.pt", {"epoch": 1})).model


# --------------------------------------------------------------------------- crafted files (issue #24)
# Each is a small file that grew until the kernel killed the process, or ran for minutes. They
# are read in a subprocess under a 2.5 GiB address-space limit, TensorFlow unimportable: the
# refusal must be one line, exit 1, before anything big is built, and nothing written beside.

# every file in argv[1:] in turn, as segment_image's --model-path does (load_raw_model): one
# line per file, its first word the exit code segkit would give
_LOAD_EACH = ("import sys\n"
              "from pathlib import Path\n"
              "from segkit.errors import SegkitError\n"
              "from segkit.models.yolo_convert import load_raw_model\n"
              "for pt in sys.argv[1:]:\n"
              "    try:\n"
              "        load_raw_model(pt, Path(pt).parent)\n"
              "        print('0 loaded', flush=True)\n"
              "    except SegkitError as e:\n"
              "        print(f'{e.exit_code} segkit: error: {e}', flush=True)\n")


def _with(**state):
    ck = tiny_yolo_checkpoint()
    model = ck["model"]._pk_state
    for key, value in state.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
    return ck


def _rows_bomb(path):
    return write_pt(path, _with(yaml={**TINY_YAML, "backbone": TINY_YAML["backbone"] + [laughs(40)]}))


def _names_bomb(path):
    return write_pt(path, _with(names=[laughs(40), "dog"]))


def _anchors_bomb(path):
    return write_pt(path, _with(yaml={**TINY_YAML, "anchors": laughs(40)}))


def _late_fill_bomb(path):
    # the shared records are still empty when referenced (NEWOBJ first, BUILD later): only the
    # walk of the finished tree sees the 2**40 expansion
    return write_raw_pt(path, late_fill_pickle(40))


def _hash_bomb(path):
    # a shared tuple as an OrderedDict key: hashing it walks 2**60 leaves (CPU, not memory)
    return write_pt(path, _with(extra=Call("collections", "OrderedDict", [(tuple_laughs(60), 1)])))


def _nc_bomb(path):
    return write_pt(path, _with(yaml={**TINY_YAML, "nc": 10**12}, names=None))


def _stride0_bomb(path):
    ck = _with()
    conv = ck["model"]._pk_state["_modules"]["model"]._pk_state["_modules"]["0"]._pk_state["_modules"]["conv"]
    conv._pk_state["_parameters"]["weight"] = Tensor(np.zeros(1, np.float32), 0, (60000, 60000), (0, 0), True)
    return write_pt(path, ck)


BOMBS = {
    "rows": (_rows_bomb, "a shared list that expands to over 10,000 objects"),
    "names": (_names_bomb, "a shared list that expands to over 10,000 objects"),
    "anchors": (_anchors_bomb, "a shared list that expands to over 10,000 objects"),
    "late_fill": (_late_fill_bomb, "objects that expand to over 1,000,000 when walked"),
    "hash": (_hash_bomb, "a shared tuple that expands to over 10,000 objects"),
    "nc": (_nc_bomb, "nc=1000000000000 classes (expected a whole number up to 10,000)"),
    "stride0": (_stride0_bomb, "tensor of shape (60000, 60000) (stride (0, 0)) on a storage of 1 elements"),
    "zip_data0": (lambda p: zip_bomb_checkpoint(p, "data/0"), "zip members declare 6,442,"),
    "zip_pkl": (lambda p: zip_bomb_checkpoint(p, "data.pkl"), "zip members declare 6,442,"),
    # the central directory lies (16 bytes): only the bounded reader keeps memory flat
    "zip_lie_data0": (lambda p: zip_bomb_checkpoint(p, "data/0", declared=16), "storage 0 holds 16 bytes"),
    "zip_lie_pkl": (lambda p: zip_bomb_checkpoint(p, "data.pkl", declared=64),
                    "truncated or corrupt (Bad CRC-32 for file 'archive/data.pkl')"),
    # under the 2 GiB total, but inflated 1000x: no checkpoint is stored that way
    "zip_ratio": (lambda p: zip_bomb_checkpoint(p, "data/0", inflated_mib=1500),
                  "zip member archive/data/0 inflates 1,"),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict:
    """{case: (checkpoint, the line its load printed, files left in its folder)}: all bombs read
    one after the other by one memory-limited subprocess (one start instead of twelve)."""
    paths = {}
    for case, (build, _) in BOMBS.items():
        folder = tmp_path_factory.mktemp(case)
        paths[case] = build(folder / f"{case}.pt")
        assert paths[case].stat().st_size < 8 << 20
    r = run_limited(python("-c", _LOAD_EACH, *map(str, paths.values())), timeout=120)
    assert r.rc == 0 and len(r.lines) == len(paths), r.output[-3000:]
    return {case: (pt, line, sorted(p.name for p in pt.parent.iterdir()))
            for (case, pt), line in zip(paths.items(), r.lines)}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_crafted_checkpoint_is_refused_in_one_line_with_memory_bounded(case, refusals):
    pt, line, left = refusals[case]
    assert line.startswith(f"1 segkit: error: {pt}: ") and BOMBS[case][1] in line
    # nothing beside the refused checkpoint (the sha256 memo used to be written before the refusal)
    assert left == [pt.name]


def test_segment_image_refuses_a_bomb_in_one_line_exit_1(tmp_path):
    import cv2

    pt = _rows_bomb(tmp_path / "laughs.pt")
    cv2.imwrite(str(tmp_path / "img.png"), np.full((32, 32, 3), 100, np.uint8))
    r = run_limited(python(str(REPO / "bin" / "segment_image.py"), "-i", "img.png", "--model-path", pt.name,
                           "-o", "out"), cwd=tmp_path, timeout=90)
    assert r.rc == 1, r.output[-2000:]
    assert r.lines == [f"segkit: error: {pt.name}: a shared list that expands to over 10,000 objects "
                       "(nested shared references: a 'billion laughs' bomb)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "laughs.pt"]


@pytest.mark.parametrize("case", ["rows"])  # in process: only what is cheap even if not refused
def test_bombs_are_refused_in_process_too(case, tmp_path):
    build, expected = BOMBS[case]
    with pytest.raises(CheckpointError) as e:
        ck = load_checkpoint(build(tmp_path / "m.pt"))
        ck.names  # nc and names are checked where they are read
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_real_shapes_pass_the_caps(tmp_path):
    # what the caps must let through: a stride-0 expanded view (yolov7 keeps its anchor grid so),
    # a tuple shared by two modules (a default argument), 80 names in a dict
    ck = tiny_yolo_checkpoint()
    kernel = (3, 3)
    ck["model"]._pk_state.update(names={i: f"class{i}" for i in range(80)}, a=kernel, b=kernel,
                                 grid=Tensor(np.arange(6, dtype=np.float32), 0, (1, 3, 84, 44, 2), (6, 2, 0, 0, 1)))
    loaded = load_checkpoint(write_pt(tmp_path / "m.pt", ck))
    assert loaded.names[79] == "class79"
    grid = loaded.model.grid
    assert grid.shape == (1, 3, 84, 44, 2) and grid[0, 2, 83, 43].tolist() == [4.0, 5.0]
