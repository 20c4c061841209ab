"""The restricted unpickler that reads YOLO ``.pt`` checkpoints without torch.

Synthetic checkpoints are written by tests/fixtures/torch_pickles.py in torch.save's zip layout;
the real YOLOv5/YOLOv7 checkpoints are read in test_yolo_convert.py.
"""
from collections import OrderedDict

import numpy as np
import pytest

from fixtures.torch_pickles import Call, Obj, Tensor, glob, write_pt
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
