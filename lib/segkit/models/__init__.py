"""One loader for every checkpoint family: a zoo name or a path on disk -> a Segmenter.

A family is a name in the registry below (``@register_family``) mapped to a builder. Each
builder imports its family's module only when called, so the TFLite path never imports
TensorFlow, and importing this package loads no framework, no OpenCV and no NumPy.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from segkit.errors import SegkitError

if TYPE_CHECKING:
    from segkit.models.base import Segmenter

# family name -> builder(path, name, spec, progress) -> Segmenter, in registration order
_BUILDERS: dict[str, Callable[..., Segmenter]] = {}


def register_family(family: str):
    """Decorator: ``build_segmenter(family, ...)`` calls the decorated builder."""
    def register(builder: Callable[..., Segmenter]) -> Callable[..., Segmenter]:
        _BUILDERS[family] = builder
        return builder
    return register


def detect_family(path: Path) -> tuple[str, Path]:
    """Family of a checkpoint on disk, and the exact file/folder the adapter opens.

    Folders are recognised by their layout (OD API exports keep ``saved_model/`` beside
    ``pipeline.config``; TF1 exports hold ``frozen_inference_graph.pb``); a bare SavedModel is
    told apart by its serving signature (``input_tensor`` = OD API, ``inputs`` = Model Garden).
    """
    p = Path(path)
    if not p.exists():
        raise SegkitError(f"{p}: no such file or folder")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".tflite":
            # a YOLO network `segkit convert` wrote keeps its class names etc. in the .json beside it
            return ("yolo_seg" if yolo_convert_meta(p) is not None else "tflite"), p
        if suffix in (".keras", ".h5"):
            return "unet", p
        if suffix == ".pt":  # a YOLOv5/v7-seg checkpoint, converted (no PyTorch) on first use
            return "yolo_seg", p
        if suffix == ".pb" and p.name != "saved_model.pb":
            return "od_api_tf1", p
        if p.name == "saved_model.pb":
            return detect_family(p.parent)
        raise SegkitError(f"{p}: not a known checkpoint (.tflite, .keras, .pt, frozen .pb or SavedModel folder)")
    for candidate in ("frozen_inference_graph.pb",):
        if (p / candidate).is_file():
            return "od_api_tf1", p / candidate
    # A folder this project exported holds model.tflite, model.keras AND saved_model/: prefer
    # the fast LiteRT file, then Keras, before reading it as an OD API export.
    if (p / "model.tflite").is_file():
        return "tflite", p / "model.tflite"
    if (p / "model.keras").is_file():
        return "unet", p / "model.keras"
    if (p / "saved_model" / "saved_model.pb").is_file():
        return detect_family(p / "saved_model")
    if (p / "saved_model.pb").is_file():
        return _savedmodel_family(p), p
    raise SegkitError(f"{p}: folder holds no known checkpoint (saved_model.pb, frozen_inference_graph.pb, "
                      "model.tflite, model.keras)")


def yolo_convert_meta(tflite: Path) -> dict | None:
    """The metadata `segkit convert` writes beside a converted YOLO network (same stem, .json),
    or None when the .tflite is not one of those."""
    import json

    meta = Path(tflite).with_suffix(".json")
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"nc", "nm", "imgsz", "names"} <= set(data) else None


def _savedmodel_family(path: Path) -> str:
    """Read the serving signature's input name from saved_model.pb without loading variables."""
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: the proto ships with TF

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    for mg in sm.meta_graphs:
        sig = mg.signature_def.get("serving_default")
        if sig is None:
            continue
        names = set(sig.inputs)
        if "input_tensor" in names:
            return "od_api_tf2"
        if "inputs" in names:
            return "garden"
    raise SegkitError(f"{path}: SavedModel has no serving_default signature taking 'input_tensor' "
                      "(TF2 OD API) or 'inputs' (Model Garden)")


@register_family("od_api_tf2")
def _od_api_tf2(path: Path, name: str, spec, progress: bool) -> Segmenter:
    from segkit.models.od_api import OdApiSavedModel
    return OdApiSavedModel(path, name)


@register_family("od_api_tf1")
def _od_api_tf1(path: Path, name: str, spec, progress: bool) -> Segmenter:
    from segkit.models.od_api import OdApiFrozenGraph
    return OdApiFrozenGraph(path, name)


@register_family("garden")
def _garden(path: Path, name: str, spec, progress: bool) -> Segmenter:
    from segkit.models.garden import GardenSegmenter
    return GardenSegmenter(path, name)


@register_family("unet")
def _unet(path: Path, name: str, spec, progress: bool) -> Segmenter:
    from segkit.models.unet import UnetSegmenter
    return UnetSegmenter(path, name)


@register_family("tflite")
def _tflite(path: Path, name: str, spec, progress: bool) -> Segmenter:
    from segkit.labels import model_classes
    from segkit.models.tflite import TFLiteSegmenter
    # Channel order matters: the registry's order, COCO ids or the model's own names.
    classes, own = model_classes(spec.classes) if spec is not None and spec.classes else ([1], None)
    gate = None
    if spec is not None and spec.extra.get("gate_file"):
        # a second network whose mask must touch each blob (tflite.keep_confirmed)
        gate = TFLiteSegmenter(Path(path).parent / spec.extra["gate_file"], f"{name} gate",
                               classes=classes, resize=spec.extra.get("gate_resize", "linear"),
                               output_pool=int(spec.extra.get("output_pool", 1)))
    blob_filter = None
    if gate is not None and spec.extra.get("blob_filter_file"):
        from segkit.models.blob_filter import BlobFilter
        blob_filter = BlobFilter.load(Path(path).parent / spec.extra["blob_filter_file"])
    return TFLiteSegmenter(path, name, classes=classes, label_names=own, gate=gate, blob_filter=blob_filter,
                           gate_confirm=spec.extra.get("gate_confirm") if spec is not None else None,
                           normalize=(spec.normalize if spec is not None and spec.normalize else "unit"),
                           resize=spec.extra.get("resize", "area") if spec is not None else "area",
                           output_pool=int(spec.extra.get("output_pool", 1)) if spec is not None else 1)


@register_family("yolo_seg")
def _yolo_seg(path: Path, name: str, spec, progress: bool, imgsz: int | None = None,
              iou: float | None = None) -> Segmenter:
    import os

    from segkit.models import yolo_convert
    from segkit.models.yolo_seg import DEFAULT_IMGSZ, NMS_IOU, YoloSegSegmenter

    path = Path(path)
    given = imgsz
    if imgsz is None:
        imgsz = int(spec.input_size[0]) if spec is not None and spec.input_size else DEFAULT_IMGSZ
    # LiteRT runs on one thread unless told: the convolutions of a 640 YOLO (~0.3 s of CPU) split
    # well across cores, the person models (~2 ms) do not need it
    threads = min(os.cpu_count() or 1, 4)
    fmt = str(spec.extra.get("format", "fp32")) if spec is not None else "fp32"  # fp32 | fp16 | int8
    iou = NMS_IOU if iou is None else iou
    if path.suffix.lower() == ".tflite":  # converted ahead of time (`segkit convert --out DIR`)
        meta = yolo_convert_meta(path)
        if given is not None and int(meta["imgsz"]) != given:
            raise SegkitError(f"{path}: converted for {meta['imgsz']}x{meta['imgsz']}, not --imgsz {given}; "
                              f"convert the .pt again with --imgsz {given} (or give the .pt itself)")
        return YoloSegSegmenter(yolo_convert.RawYolo(path, meta, num_threads=threads),
                                name or str(meta.get("source") or path.stem), iou=iou)
    if spec is not None and spec.family == "yolo_seg":
        raw = yolo_convert.raw_model_for(spec, imgsz=imgsz, progress=progress, num_threads=threads, fmt=fmt)
    else:  # a .pt on disk: the conversion is cached beside it, or in the model dir if read-only
        from segkit import zoo

        cache = path.parent if os.access(path.parent, os.W_OK) else zoo.model_dir() / "converted"
        raw = yolo_convert.load_raw_model(path, cache, imgsz=imgsz, progress=progress, num_threads=threads)
    return YoloSegSegmenter(raw, name or path.stem, iou=iou)


FAMILIES = tuple(_BUILDERS)  # the registered names, in registration order


#: the families that take the YOLO options (--imgsz, --iou)
YOLO_OPTION_FAMILIES = ("yolo_seg",)


def build_segmenter(family: str, path: Path, name: str = "", spec=None, progress: bool = True,
                    **yolo_options) -> Segmenter:
    """A ready Segmenter of ``family`` for the checkpoint at ``path`` (``spec``: its zoo entry).
    ``yolo_options`` (imgsz, iou; None = the model's own) only for YOLO families."""
    builder = _BUILDERS.get(family)
    if builder is None:
        raise SegkitError(f"unknown model family {family!r} (one of {', '.join(FAMILIES)})")
    return builder(path, name, spec, progress, **_yolo_options(family, name or Path(path).name, yolo_options))


def _yolo_options(family: str, name: str, options: dict) -> dict:
    """The YOLO options given (not None); refused for a family that has no such knob (a silent
    no-op would let a user believe --imgsz 320 made a person model faster)."""
    given = {k: v for k, v in options.items() if v is not None}
    if given and family not in YOLO_OPTION_FAMILIES:
        from segkit.errors import UsageError

        flags = ", ".join(f"--{k}" for k in given)
        raise UsageError(f"{flags}: only YOLO models take {'it' if len(given) == 1 else 'them'}; "
                         f"model {name} is a {family} model")
    return given


def load_segmenter(model: str | None = None, model_path: str | None = None,
                   download: bool = True, progress: bool = True, *, imgsz: int | None = None,
                   iou: float | None = None) -> Segmenter:
    """``--model NAME`` (zoo) or ``--model-path PATH`` (family detected) -> ready Segmenter.
    ``imgsz`` / ``iou``: a YOLO model's input size (converted once per size, cached) and NMS IoU."""
    from segkit import zoo

    if model_path:
        family, path = detect_family(Path(model_path))
        # A model folder this project exported carries its own zoo entry (classes, normalisation).
        spec = zoo.entry_beside(path)
        return build_segmenter(family, path, name=spec.name if spec else Path(model_path).name, spec=spec,
                               progress=progress, imgsz=imgsz, iou=iou)

    registry = zoo.load_registry()
    spec = registry.get(model or registry.default)
    _yolo_options(spec.family, spec.name, {"imgsz": imgsz, "iou": iou})  # before any download
    path = zoo.resolve(spec, download=download, progress=progress)
    return build_segmenter(spec.family, path, name=spec.name, spec=spec, progress=progress, imgsz=imgsz, iou=iou)
