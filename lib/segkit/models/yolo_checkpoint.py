"""Read a PyTorch ``.pt`` checkpoint (YOLOv5/YOLOv7 segmentation) without PyTorch.

A ``.pt`` file is a zip: ``<top>/data.pkl`` (a pickle) plus one raw little-endian file per
storage under ``<top>/data/<key>``. A pickle can name any Python global and call it, so a plain
``pickle.load`` (or ``torch.load`` without ``weights_only``) runs whatever the file says. Here
``find_class`` answers only for the globals a YOLO checkpoint needs:

* tensors: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and the typed storages,
  rebuilt as numpy arrays (dtype from the storage type; offset, size and stride honoured);
* containers: ``collections.OrderedDict``, ``set``, and a ``getattr`` that only reads a method
  name off a record class (Segment keeps ``Detect.forward`` as an attribute);
* ``torch.nn.modules.*`` layers and the YOLO classes (``models.yolo``, ``models.common``,
  ``models.experimental``) as :class:`Record` objects: their pickled state, nothing executed.

Anything else (``os.system``, ``builtins.eval`` ...) is refused with one line naming the file and
the global. Never imports torch.
"""
from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import ModelError


class CheckpointError(ModelError):
    """A checkpoint that cannot be read safely or is not a YOLO segmentation checkpoint."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
    "BFloat16Storage": None,  # numpy has no bfloat16: refused when used, not when named
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}

#: module prefixes whose classes load as plain records (their state, no code)
_RECORD_MODULES = ("torch.nn.modules.", "models.yolo", "models.common", "models.experimental")
_TORCH_NN_ALLOWED = {
    "torch.nn.modules.conv": {"Conv2d", "ConvTranspose2d"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d"},
    "torch.nn.modules.activation": {"SiLU", "ReLU", "LeakyReLU", "Sigmoid", "Hardswish"},
    "torch.nn.modules.container": {"Sequential", "ModuleList"},
    "torch.nn.modules.pooling": {"MaxPool2d"},
    "torch.nn.modules.upsampling": {"Upsample"},
    "torch.nn.modules.linear": {"Identity"},
}
_YOLO_MODULES = {"models.yolo", "models.common", "models.experimental"}


class Record:
    """A pickled object of an allowed class: ``module``/``name`` say which, ``__dict__`` holds
    the state it was pickled with. No method of the original class ever runs."""

    module = ""
    name = ""

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.module}.{self.name} has non-dict state")
        self.__dict__.update(state)

    # nn.Module keeps children, parameters and buffers in these three ordered dicts
    @property
    def children(self) -> dict:
        return self.__dict__.get("_modules") or {}

    def param(self, key: str) -> np.ndarray | None:
        params = self.__dict__.get("_parameters") or {}
        buffers = self.__dict__.get("_buffers") or {}
        value = params.get(key, buffers.get(key))
        return value

    def __repr__(self) -> str:
        return f"<{self.module}.{self.name} record>"


class MethodRef:
    """What ``getattr(<record class>, 'forward')`` unpickles to: just the names."""

    def __init__(self, owner: str, attr: str):
        self.owner, self.attr = owner, attr

    def __repr__(self) -> str:
        return f"<{self.owner}.{self.attr}>"


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


_record_classes: dict[tuple[str, str], type] = {}


def _record_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _record_classes:
        _record_classes[key] = type(name, (Record,), {"module": module, "name": name})
    return _record_classes[key]


def _safe_getattr(obj, attr):
    if isinstance(obj, type) and issubclass(obj, Record) and isinstance(attr, str):
        return MethodRef(f"{obj.module}.{obj.name}", attr)
    raise pickle.UnpicklingError(f"getattr on {type(obj).__name__} is not allowed")


def _safe_set(items=()):
    return set(items)


def _ordered_dict(*args):
    from collections import OrderedDict
    return OrderedDict(*args)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, load_storage):
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return _ordered_dict
        if module in ("__builtin__", "builtins") and name == "getattr":
            return _safe_getattr
        if module in ("__builtin__", "builtins") and name == "set":
            return _safe_set
        if name in _TORCH_NN_ALLOWED.get(module, ()):
            return _record_class(module, name)
        if module in _YOLO_MODULES and name.isidentifier() and not name.startswith("_"):
            return _record_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global '{full}' (not a tensor, container "
                                     "or YOLO/torch.nn module class)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        return self._load_storage(storage_type, str(key), int(numel))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("tensor without a storage")
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(storage_offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"bad tensor geometry size={size} stride={stride} offset={offset}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise pickle.UnpicklingError(f"tensor reaches element {last} of a storage of {storage.size}")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * storage.itemsize for s in stride))
    return np.array(view)  # own copy: contiguous, writable, independent of the storage


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class Checkpoint:
    """The unpickled top-level object (a dict for YOLO: 'model', 'epoch', ...) and helpers."""

    def __init__(self, path: Path, obj: Any):
        self.path, self.obj = path, obj

    @property
    def model(self) -> Record:
        obj = self.obj
        model = obj.get("ema") or obj.get("model") if isinstance(obj, dict) else obj
        if not isinstance(model, Record):
            raise CheckpointError(self.path, "holds no model object ('model' or 'ema')")
        return model

    @property
    def yaml(self) -> dict:
        cfg = getattr(self.model, "yaml", None)
        if not isinstance(cfg, dict):
            raise CheckpointError(self.path, "model carries no 'yaml' architecture description")
        return cfg

    @property
    def names(self) -> list[str]:
        names = getattr(self.model, "names", None)
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, (list, tuple)):
            return [str(n) for n in names]
        return [str(i) for i in range(int(self.yaml.get("nc", 0)))]


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Unpickle ``path`` with the restricted unpickler; raise CheckpointError (one line) on
    anything unreadable or unexpected."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except IsADirectoryError:
        raise CheckpointError(path, "is a folder, not a .pt checkpoint") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(path, f"not a readable PyTorch zip checkpoint ({_one_line(e)}); "
                              "truncated or corrupt? fetch it again") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(path, "not a PyTorch zip checkpoint (no single <name>/data.pkl); "
                                  "legacy non-zip .pt files are not supported")
        top = pkls[0].rsplit("/", 1)[0]
        try:
            byteorder = zf.read(f"{top}/byteorder").decode().strip()
        except KeyError:
            byteorder = "little"  # files written before the byteorder record are little-endian
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise CheckpointError(path, f"truncated or corrupt ({_one_line(e)})") from None
        order = {"little": "<", "big": ">"}.get(byteorder)
        if order is None:
            raise CheckpointError(path, f"unknown byteorder {byteorder!r}")
        cache: dict[str, np.ndarray] = {}

        def load_storage(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            if key not in cache:
                if storage_type.dtype is None:
                    raise pickle.UnpicklingError(f"{storage_type.name} tensors are not supported")
                dtype = np.dtype(storage_type.dtype).newbyteorder(order)
                raw = zf.read(f"{top}/data/{key}")  # KeyError: missing member, handled below
                if len(raw) < numel * dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, "
                                                 f"expected {numel * dtype.itemsize}")
                cache[key] = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="))
            return cache[key]

        try:
            data = zf.read(pkls[0])
            obj = _Unpickler(data, load_storage).load()
        except pickle.UnpicklingError as e:
            raise CheckpointError(path, _one_line(e)) from None
        except KeyError as e:
            raise CheckpointError(path, f"missing zip member {_one_line(e)} (truncated or corrupt)") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise CheckpointError(path, f"truncated or corrupt ({_one_line(e)})") from None
        except (AttributeError, TypeError, ValueError, IndexError, MemoryError, RecursionError) as e:
            raise CheckpointError(path, f"malformed pickle ({type(e).__name__}: {_one_line(e)})") from None
    return Checkpoint(path, obj)


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:300]
