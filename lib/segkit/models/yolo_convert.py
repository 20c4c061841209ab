"""YOLOv5-seg / YOLOv7-seg checkpoints -> cached TFLite, run with LiteRT (no PyTorch anywhere).

First use of a checkpoint at an input size converts it (restricted unpickler -> Keras rebuild ->
TFLite; needs TensorFlow, takes seconds to a minute) into ``cache_dir``; later uses load the cached
``.tflite`` with LiteRT without importing TensorFlow. Cache files are named by the checkpoint's
sha256, the input size, the format and the converter version, and written atomically, so a
changed checkpoint or converter never reuses a stale file and a killed conversion leaves nothing
half-written:

    <cache_dir>/<stem>.<sha16>.<imgsz>.<fmt>.v<N>.tflite   the network
    <cache_dir>/<stem>.<sha16>.<imgsz>.<fmt>.v<N>.json     nc, nm, class names, strides ...
    <cache_dir>/.<file name>.sha256.json                    the checkpoint's sha256 by size+mtime

``RawYolo.run`` gives the network's raw outputs exactly as the PyTorch model in eval mode:
``pred`` [B, N, 5+nc+nm] (xywh in input pixels, objectness, class scores: sigmoid on the first
5+nc channels only, then nm raw mask coefficients) and ``protos`` [B, imgsz/4, imgsz/4, nm]
(NHWC). Decoding (score = obj x cls, NMS, masks) is the ``yolo_seg`` adapter's job.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.models.yolo_checkpoint import CheckpointError, load_checkpoint
from segkit.zoo.store import sha256_file, write_atomic

#: bump when the conversion changes what the files hold: older caches are then ignored
CONVERTER_VERSION = 1
#: fp32: faithful (within 1e-5 of PyTorch). fp16: fp16 weights, outputs off by up to ~5e-3.
#: int8: dynamic-range quantisation (int8 weights, activations quantised on the fly by XNNPACK):
#: ~1.9x faster on CPU but scores off by up to ~0.2; measure its AP before choosing it.
FORMATS = ("fp32", "fp16", "int8")
DEFAULT_IMGSZ = 640


class RawYolo:
    """A converted YOLO-seg network in LiteRT. ``run(batch)`` -> (pred, protos)."""

    def __init__(self, tflite_path: Path, meta: dict, num_threads: int | None = None):
        from segkit.models.tflite import _interpreter_class, _quiet_native_stderr

        self.path = Path(tflite_path)
        self.nc, self.nm = int(meta["nc"]), int(meta["nm"])
        self.imgsz = int(meta["imgsz"])
        self.names = list(meta["names"])
        self.format = meta.get("format", "fp32")
        self.strides = list(meta.get("strides", []))
        self.source_sha256 = meta.get("source_sha256")
        self.max_batch = 1
        try:
            with _quiet_native_stderr():
                self._it = _interpreter_class()(model_path=str(self.path), num_threads=num_threads)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise SegkitError(f"{self.path}: cannot load TFLite model ({str(e).splitlines()[0]}); "
                              "delete it to convert again") from None
        inp = self._it.get_input_details()[0]
        self._in = inp["index"]
        if tuple(inp["shape"]) != (1, self.imgsz, self.imgsz, 3):
            raise SegkitError(f"{self.path}: input {tuple(inp['shape'])} is not [1,{self.imgsz},{self.imgsz},3]")
        self._pred = self._protos = None
        for out in self._it.get_output_details():  # TFLite may reorder outputs: tell them by rank
            if len(out["shape"]) == 3:
                self._pred = out["index"]
            elif len(out["shape"]) == 4:
                self._protos = out["index"]
        if self._pred is None or self._protos is None:
            raise SegkitError(f"{self.path}: expected a [1,N,C] and a [1,H,W,nm] output")

    @property
    def num_outputs(self) -> int:
        return 5 + self.nc + self.nm

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """batch float32 [B, imgsz, imgsz, 3] RGB in 0..1 -> (pred [B,N,5+nc+nm], protos [B,h,w,nm])."""
        batch = np.asarray(batch, np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (self.imgsz, self.imgsz, 3):
            raise ValueError(f"expected [B,{self.imgsz},{self.imgsz},3], got {batch.shape}")
        preds, protos = [], []
        for image in batch:  # the export takes one image at a time (max_batch = 1)
            self._it.set_tensor(self._in, image[None])
            self._it.invoke()
            preds.append(self._it.get_tensor(self._pred)[0].copy())
            protos.append(self._it.get_tensor(self._protos)[0].copy())
        return np.stack(preds), np.stack(protos)

    def __repr__(self) -> str:
        return f"RawYolo({self.path.name}, imgsz={self.imgsz}, nc={self.nc}, nm={self.nm})"


# --------------------------------------------------------------------------- cache

def checkpoint_sha256(pt_path: Path, cache_dir: Path | None = None, remember: bool = False) -> str:
    """sha256 of the checkpoint, remembered in cache_dir by size + mtime (hashing 77 MB costs
    ~0.2 s on every start otherwise). ``remember`` writes the memo: only once the checkpoint
    has been accepted (converted), so nothing is written beside a refused one."""
    pt_path = Path(pt_path)
    st = pt_path.stat()
    memo = Path(cache_dir) / f".{pt_path.name}.sha256.json" if cache_dir is not None else None
    if memo is not None:
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(memo.read_text())
            if known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
                return str(known["sha256"])
    digest = sha256_file(pt_path)
    if memo is not None and remember:
        with contextlib.suppress(OSError):
            write_atomic(memo, json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                           "sha256": digest}).encode())
    return digest


def cache_paths(pt_path: Path, cache_dir: Path, imgsz: int, fmt: str = "fp32",
                sha256: str | None = None) -> tuple[Path, Path]:
    """(tflite path, metadata path) the conversion of ``pt_path`` at ``imgsz`` is cached under."""
    pt_path, cache_dir = Path(pt_path), Path(cache_dir)
    sha = sha256 or checkpoint_sha256(pt_path, cache_dir)
    stem = f"{pt_path.stem}.{sha[:16]}.{int(imgsz)}.{fmt}.v{CONVERTER_VERSION}"
    return cache_dir / f"{stem}.tflite", cache_dir / f"{stem}.json"


def _check_imgsz(imgsz, where) -> int:
    if isinstance(imgsz, bool) or not isinstance(imgsz, (int, np.integer)) or imgsz <= 0 or imgsz % 32:
        raise SegkitError(f"{where}: input size {imgsz!r} must be a positive multiple of 32 (e.g. 320, 480, 640)")
    return int(imgsz)


def estimated_seconds(pt_path: Path, imgsz: int) -> int:
    """Rough conversion time on 2 busy cores (measured at 640: yolov5s-seg 28-31 s, yolov7-seg
    76-96 s; yolov7-seg at 320: 44-52 s)."""
    mb = Path(pt_path).stat().st_size / 1e6
    return int(round(15 + 0.8 * mb * (imgsz / 640) ** 0.5))


# --------------------------------------------------------------------------- conversion

def convert_checkpoint(pt_path: Path | str, out_dir: Path | str, imgsz: int = DEFAULT_IMGSZ,
                       formats: tuple[str, ...] = ("fp32",), savedmodel: bool = False,
                       checkpoint=None) -> dict[str, Path]:
    """Convert ``pt_path`` for ``imgsz`` into ``out_dir``: one cached .tflite (+ .json) per format,
    and with ``savedmodel`` a TF SavedModel folder. Returns {format: tflite path, 'savedmodel': ...}.

    Raises SegkitError subclasses (one line naming the file) for unreadable, hostile or
    unsupported checkpoints. Imports TensorFlow (conversion only). ``checkpoint``: ``pt_path``
    already read by load_checkpoint (it is not read again).
    """
    pt_path, out_dir = Path(pt_path), Path(out_dir)
    imgsz = _check_imgsz(imgsz, pt_path)
    for fmt in formats:
        if fmt not in FORMATS:
            raise SegkitError(f"unknown TFLite format {fmt!r} (one of {', '.join(FORMATS)})")
    ck = checkpoint if checkpoint is not None else load_checkpoint(pt_path)
    from segkit.models.yolo_keras import build_keras_model, check_architecture

    check_architecture(ck)  # refuse unknown modules before TensorFlow loads
    _ = ck.names  # and nc / class names over the caps, before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    sha = checkpoint_sha256(pt_path, out_dir)
    head = ck.model.children["model"].children[str(len(ck.model.children["model"].children) - 1)]
    meta = {"nc": int(head.nc), "nm": int(head.nm), "imgsz": imgsz, "names": ck.names,
            "strides": [float(s) for s in np.asarray(head.stride).reshape(-1)],
            "source": pt_path.name, "source_sha256": sha, "converter_version": CONVERTER_VERSION,
            "outputs": "pred [1,N,5+nc+nm] xywh(px) obj cls(sigmoid) coeffs(raw); protos [1,h,w,nm]"}
    if len(meta["names"]) != meta["nc"]:
        raise CheckpointError(pt_path, f"{len(meta['names'])} class names for nc={meta['nc']}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    model = build_keras_model(ck, imgsz)

    spec = tf.TensorSpec([1, imgsz, imgsz, 3], tf.float32, name="images")
    # do_not_convert: a plain call, nothing for autograph to rewrite (it would warn it cannot)
    fn = tf.function(tf.autograph.experimental.do_not_convert(lambda x: tuple(model(x, training=False))),
                     input_signature=[spec])
    # weights become constants (not resource variables read at every invoke)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with _quiet_fd2():  # grappler and the MLIR converter print pages of notes straight to fd 2
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    written: dict[str, Path] = {}
    for fmt in formats:
        with _quiet_fd2(), _absl_quiet():
            converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
            if fmt in ("fp16", "int8"):
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if fmt == "fp16":
                converter.target_spec.supported_types = [tf.float16]
            flat = converter.convert()
        tfl, js = cache_paths(pt_path, out_dir, imgsz, fmt, sha)
        write_atomic(js, json.dumps({**meta, "format": fmt}, indent=1).encode())
        write_atomic(tfl, flat)  # last: a .tflite present means its .json is too
        written[fmt] = tfl
    checkpoint_sha256(pt_path, out_dir, remember=True)  # accepted: its sha256 may be remembered
    if savedmodel:
        written["savedmodel"] = _export_savedmodel(tf, model, out_dir, pt_path, sha, imgsz)
    return written


def _export_savedmodel(tf, model, out_dir: Path, pt_path: Path, sha: str, imgsz: int) -> Path:
    """serving_default: images float32 [1,imgsz,imgsz,3] -> {pred, protos} (opt-in: +~25 s, +32 MB
    for yolov5s-seg; the LiteRT path never needs it)."""
    import shutil

    final = out_dir / f"{pt_path.stem}.{sha[:16]}.{imgsz}.v{CONVERTER_VERSION}.saved_model"
    stage = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        module = tf.Module()
        module.model = model  # tracks the weights the function captures
        spec = tf.TensorSpec([1, imgsz, imgsz, 3], tf.float32, name="images")
        module.serve = tf.function(tf.autograph.experimental.do_not_convert(
            lambda images: dict(zip(("pred", "protos"), model(images, training=False)))), input_signature=[spec])
        tf.saved_model.save(module, str(stage / "sm"), signatures={"serving_default": module.serve})
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage / "sm", final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final


@contextlib.contextmanager
def _quiet_fd2():
    from segkit.models.tflite import _quiet_native_stderr

    with _quiet_native_stderr():
        yield


@contextlib.contextmanager
def _absl_quiet():
    """from_concrete_functions warns through absl logging that a frozen function has no
    trackable object (that is the point of freezing)."""
    import logging

    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_raw_model(pt_path: Path | str, cache_dir: Path | str, imgsz: int = DEFAULT_IMGSZ,
                   progress: bool = True, fmt: str = "fp32", num_threads: int | None = None) -> RawYolo:
    """The converted network for ``pt_path`` at ``imgsz``: from the cache, or converted now
    (one progress line on stderr) and cached."""
    pt_path, cache_dir = Path(pt_path), Path(cache_dir)
    imgsz = _check_imgsz(imgsz, pt_path)
    if fmt not in FORMATS:
        raise SegkitError(f"unknown TFLite format {fmt!r} (one of {', '.join(FORMATS)})")
    if not pt_path.is_file():
        raise CheckpointError(pt_path, "no such file")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tfl, js = cache_paths(pt_path, cache_dir, imgsz, fmt)
    if not (tfl.is_file() and js.is_file()):
        # read and check it first: a refused checkpoint is one error line, no "converting" line
        ck = load_checkpoint(pt_path)
        from segkit.models.yolo_keras import check_architecture

        check_architecture(ck)
        _ = ck.names  # nc and the class names are capped there
        if progress:
            print(f"segkit: converting {pt_path.name} for {imgsz}x{imgsz} (first use, "
                  f"~{estimated_seconds(pt_path, imgsz)} s)...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        convert_checkpoint(pt_path, cache_dir, imgsz, formats=(fmt,), checkpoint=ck)
        if progress:
            print(f"segkit: converted in {time.perf_counter() - t0:.0f} s, cached as {tfl}",
                  file=sys.stderr, flush=True)
    try:
        meta = json.loads(js.read_text())
    except (OSError, ValueError) as e:
        raise SegkitError(f"{js}: unreadable conversion metadata ({e}); delete it to convert again") from None
    return RawYolo(tfl, meta, num_threads=num_threads)


def raw_model_for(spec, imgsz: int | None = None, progress: bool = True, fmt: str = "fp32",
                  num_threads: int | None = None, download: bool = True) -> RawYolo:
    """The zoo entry's checkpoint (fetched if needed) converted for ``imgsz`` (default: the entry's
    input_size), cached in the entry's install folder."""
    from segkit import zoo

    pt = zoo.resolve(spec, download=download, progress=progress)
    if imgsz is None:
        imgsz = spec.input_size[0] if spec.input_size else DEFAULT_IMGSZ
    return load_raw_model(pt, zoo.install_dir(spec) if not spec.bundled else pt.parent, imgsz,
                          progress=progress, fmt=fmt, num_threads=num_threads)
