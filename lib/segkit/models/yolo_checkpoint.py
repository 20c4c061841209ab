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

Crafted files that would exhaust memory or CPU are refused in one line too, before they grow:
zip members are sized from the central directory and read with a bounded reader (a member that
inflates past what it declares, or past :data:`MAX_INFLATE_RATIO` x its packed size, is refused);
a tensor may not hold more elements than its storage (a 60000x60000 weight on a one-element
storage with stride 0); a shared reference to a list, tuple, dict or record that expands to more
than :data:`MAX_SHARED_EXPANSION` objects ("billion laughs": tiny as a pickle, exponential when
walked or hashed) is refused while unpickling, and the whole result may expand to at most
:data:`MAX_OBJECTS` objects, :data:`MAX_DEPTH` levels deep; ``nc`` and the class names are capped
at :data:`MAX_CLASSES`.
"""
from __future__ import annotations

import functools
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

# Caps against crafted files: the real checkpoints are far below each (yolov7-seg: data.pkl
# 143 KB, 77 MB of storages, stored uncompressed; ~20,000 objects, 22 levels deep, no shared
# containers; 80 classes).
#: the pickle itself (every object it builds costs at least one byte of it)
MAX_PICKLE_BYTES = 8 << 20
#: all members together, as declared in the zip's central directory
MAX_CHECKPOINT_BYTES = 2 << 30
#: a member may unpack to at most this many times its packed size (torch stores members
#: uncompressed; zip -9 of fp16 weights gains ~10 %); the first MiB is free
MAX_INFLATE_RATIO = 20
MAX_MEMBERS = 100_000
#: objects the whole unpickled tree may expand to (shared references counted each time)
MAX_OBJECTS = 1_000_000
MAX_DEPTH = 100
#: a shared reference (pickle memo GET) to a container bigger than this is refused
MAX_SHARED_EXPANSION = 10_000
MAX_CLASSES = 10_000
MAX_NAME_CHARS = 256


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
    """A typed storage class named by the pickle; read-only, so a BUILD opcode cannot give it
    another dtype (object arrays, or an itemsize of gigabytes)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", _STORAGE_DTYPES[name])

    def __setattr__(self, key, value):
        raise pickle.UnpicklingError(f"{self.name} cannot be changed")


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


class _Unpickler(pickle._Unpickler):  # the pure-Python one: its memo GETs can be checked
    def __init__(self, data: bytes, load_storage, tensor_bytes: int):
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage
        self._rebuild_tensor = functools.partial(_rebuild_tensor_v2, budget=_TensorBudget(tensor_bytes))
        self._shared_budget = 20 * MAX_SHARED_EXPANSION  # all shared-reference checks together

    def _check_shared(self):
        """A memo GET just pushed an object a second time: a container reached twice expands
        (when walked, printed or hashed as a dict key) to its size times the references, so
        nested shared containers grow exponentially. Checkpoints share only strings and classes."""
        obj = self.stack[-1]
        if isinstance(obj, (list, tuple, dict, set, frozenset, Record)):
            budget = min(MAX_SHARED_EXPANSION, self._shared_budget)
            size = _expanded_size(obj, budget)
            self._shared_budget -= min(size, budget)
            if size > budget:
                raise pickle.UnpicklingError(
                    f"a shared {type(obj).__name__} that expands to over {budget:,} objects "
                    "(nested shared references: a 'billion laughs' bomb)")

    def load_get(self):
        super().load_get()
        self._check_shared()

    def load_binget(self):
        super().load_binget()
        self._check_shared()

    def load_long_binget(self):
        super().load_long_binget()
        self._check_shared()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.GET[0]] = load_get
    dispatch[pickle.BINGET[0]] = load_binget
    dispatch[pickle.LONG_BINGET[0]] = load_long_binget

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
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
            raise pickle.UnpicklingError(f"unexpected persistent id ({_short(pid)})")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(key, str) or len(key) > 64 or isinstance(numel, bool) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"unexpected storage key {_short(key)} or size {_short(numel)}")
        return self._load_storage(storage_type, key, numel)


def _expanded_size(obj, cap: int) -> int:
    """Objects in ``obj`` counted as a tree (a shared child once per reference), stopping once
    past ``cap``: what walking, printing or hashing it costs. Iterative: no recursion limit."""
    count, todo = 0, [obj]
    while todo:
        o = todo.pop()
        count += 1
        if count > cap:
            return count
        if isinstance(o, Record):
            todo.append(o.__dict__)
        elif isinstance(o, dict):
            todo.extend(o.keys())
            todo.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            todo.extend(o)
    return count


def _check_tree(obj) -> None:
    """The unpickled result may expand to at most MAX_OBJECTS objects, MAX_DEPTH levels deep
    (walked level by level, each shared object once per reference)."""
    level, depth, count = [obj], 0, 1
    while level:
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(f"objects nested over {MAX_DEPTH} levels deep")
        below: list = []
        for o in level:
            if isinstance(o, Record):
                o = o.__dict__
            if isinstance(o, dict):
                n = 2 * len(o)
            elif isinstance(o, (list, tuple, set, frozenset)):
                n = len(o)
            else:
                continue
            if count + len(below) + n > MAX_OBJECTS:
                raise pickle.UnpicklingError(f"objects that expand to over {MAX_OBJECTS:,} when walked (a "
                                             "checkpoint holds ~20,000: nested shared references, a "
                                             "'billion laughs' bomb, or padding)")
            if isinstance(o, dict):
                below.extend(o.keys())
                below.extend(o.values())
            else:
                below.extend(o)
        count += len(below)
        level, depth = below, depth + 1


class _TensorBudget:
    """Bytes all tensors of one load may copy out of the storages together: twice what the zip
    declares (real tensors each view their own storage; repeating a view of a big one would not)."""

    def __init__(self, nbytes: int):
        self.left = nbytes


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None, *, budget: _TensorBudget | None = None):
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("tensor without a storage")
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
            and len(size) <= 16 and len(stride) <= 16):
        raise pickle.UnpicklingError("bad tensor geometry (size and stride must be short tuples)")
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(storage_offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"bad tensor geometry size={size} stride={stride} offset={offset}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise pickle.UnpicklingError(f"tensor reaches element {last} of a storage of {storage.size}")
    numel = 1
    for n in size:
        numel *= n
    if budget is not None:
        # copies out of overlapping views (stride 0: yolov7 keeps a small expanded anchor grid)
        # can be any size: a 60000x60000 weight on a one-element storage is 14 GB
        budget.left -= numel * storage.itemsize
        if budget.left < 0:
            raise pickle.UnpicklingError(
                f"tensor of shape {size} (stride {stride}) on a storage of {storage.size:,} elements "
                f"would take {numel * storage.itemsize:,} bytes: more than twice the checkpoint's stored data")
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
            if len(names) > MAX_CLASSES:
                raise CheckpointError(self.path, f"{len(names):,} class names (at most {MAX_CLASSES:,})")
            if not all(isinstance(k, int) for k in names):
                raise CheckpointError(self.path, "class names dict with keys that are not class numbers")
            return [_class_name(self.path, names[k]) for k in sorted(names)]
        if isinstance(names, (list, tuple)):
            if len(names) > MAX_CLASSES:
                raise CheckpointError(self.path, f"{len(names):,} class names (at most {MAX_CLASSES:,})")
            return [_class_name(self.path, n) for n in names]
        nc = self.yaml.get("nc", 0)
        if isinstance(nc, bool) or not isinstance(nc, int) or not 0 <= nc <= MAX_CLASSES:
            raise CheckpointError(self.path, f"nc={_short(nc)} classes (expected a whole number up to "
                                  f"{MAX_CLASSES:,})")
        return [str(i) for i in range(nc)]


def _class_name(path, name) -> str:
    if isinstance(name, bool) or not isinstance(name, (str, int, float)):
        raise CheckpointError(path, f"class name that is a {type(name).__name__}, not text")
    text = str(name)
    if len(text) > MAX_NAME_CHARS:
        raise CheckpointError(path, f"class name of {len(text):,} characters (at most {MAX_NAME_CHARS})")
    return text


def _short(value) -> str:
    """repr of a value from the file, cut short (cheap even for a huge int or a nested list)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value.bit_length() < 200 else "a huge number"
    if isinstance(value, str):
        return repr(value) if len(value) <= 30 else repr(value[:30])[:-1] + "...'"
    if isinstance(value, float) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


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
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise CheckpointError(path, f"a zip of {len(infos):,} members (a checkpoint has one per "
                                  f"tensor storage; at most {MAX_MEMBERS:,})")
        # sizes as the central directory declares them, checked before anything is inflated
        declared = sum(i.file_size for i in infos)
        if declared > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(path, f"zip members declare {declared:,} bytes unpacked (at most "
                                  f"{MAX_CHECKPOINT_BYTES:,}): a zip bomb or not a checkpoint")
        for info in infos:
            if info.file_size > MAX_INFLATE_RATIO * info.compress_size + (1 << 20):
                raise CheckpointError(path, f"zip member {info.filename} inflates {info.compress_size:,} "
                                      f"bytes to {info.file_size:,} (a zip bomb; checkpoints are stored "
                                      "uncompressed)")
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(path, "not a PyTorch zip checkpoint (no single <name>/data.pkl); "
                                  "legacy non-zip .pt files are not supported")
        top = pkls[0].rsplit("/", 1)[0]
        try:
            byteorder = _read_member(zf, f"{top}/byteorder", 16).decode(errors="replace").strip()
        except KeyError:
            byteorder = "little"  # files written before the byteorder record are little-endian
        except pickle.UnpicklingError as e:
            raise CheckpointError(path, _one_line(e)) from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise CheckpointError(path, f"truncated or corrupt ({_one_line(e)})") from None
        order = {"little": "<", "big": ">"}.get(byteorder)
        if order is None:
            raise CheckpointError(path, f"unknown byteorder {byteorder[:16]!r}")
        cache: dict[str, np.ndarray] = {}

        def load_storage(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            if key not in cache:
                if storage_type.dtype is None:
                    raise pickle.UnpicklingError(f"{storage_type.name} tensors are not supported")
                dtype = np.dtype(storage_type.dtype).newbyteorder(order)
                name = f"{top}/data/{key}"
                size = zf.getinfo(name).file_size  # KeyError: missing member, handled below
                if numel < 0 or size < numel * dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {key} holds {size:,} bytes, "
                                                 f"expected {numel * dtype.itemsize:,}")
                raw = _read_member(zf, name, numel * dtype.itemsize)
                if len(raw) < numel * dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {key} holds {len(raw):,} bytes, "
                                                 f"expected {numel * dtype.itemsize:,}")
                cache[key] = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="), copy=False)
            return cache[key]

        try:
            data = _read_member(zf, pkls[0], MAX_PICKLE_BYTES)
            obj = _Unpickler(data, load_storage, 2 * declared + (16 << 20)).load()
            _check_tree(obj)
        except pickle.UnpicklingError as e:
            raise CheckpointError(path, _one_line(e)) from None
        except KeyError as e:
            raise CheckpointError(path, f"missing zip member {_one_line(e)} (truncated or corrupt)") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise CheckpointError(path, f"truncated or corrupt ({_one_line(e)})") from None
        except (AttributeError, TypeError, ValueError, IndexError, OverflowError, MemoryError, RecursionError) as e:
            raise CheckpointError(path, f"malformed pickle ({type(e).__name__}: {_one_line(e)})") from None
    return Checkpoint(path, obj)


def _read_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """Member ``name``, at most ``limit`` bytes, inflated a chunk at a time: the central
    directory's size may lie, and zipfile's read() inflates everything it has in one go."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise pickle.UnpicklingError(f"zip member {name} declares {info.file_size:,} bytes "
                                     f"(at most {limit:,})")
    chunks, got = [], 0
    with zf.open(info) as f:
        while got <= limit:
            chunk = f.read(min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    if got > limit:
        raise pickle.UnpicklingError(f"zip member {name} inflates past {limit:,} bytes")
    return b"".join(chunks)


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:300]
