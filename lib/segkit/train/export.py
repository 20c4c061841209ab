"""Export a trained segmentation model into ``model_zoo/NAME/`` in one atomic step.

Writes ``model.keras`` (for further training and the unet adapter), ``saved_model/`` (serving),
float32 ``model.tflite`` (the fast LiteRT path the zoo entry points at), ``zoo.yaml`` (one
registry entry merged into model_zoo/zoo.yaml) and ``metrics.json``. Everything is built in a
temporary sibling folder, checked (the TFLite model must agree with Keras), then renamed into
place, so a crash never leaves a half-written model behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from segkit.zoo.store import replace_dir

#: TFLite vs Keras on the same input: float32 both, only op-order round-off differs.
TFLITE_TOLERANCE = 1e-3


def tflite_predict(tflite_path: str | Path, images: np.ndarray) -> np.ndarray:
    """Run ``model.tflite`` image by image with the LiteRT interpreter (what inference uses)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    if list(inp["shape"][1:]) != list(images.shape[1:]):
        raise ValueError(f"{tflite_path}: input {inp['shape']} does not take {images.shape}")
    interpreter.resize_tensor_input(inp["index"], [1, *images.shape[1:]])
    interpreter.allocate_tensors()
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(results)


def convert_tflite(saved_model_dir: str | Path) -> bytes:
    """Float32 TFLite flatbuffer from a SavedModel (no quantization: same numbers as Keras)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    return converter.convert()


def zoo_entry(name: str, *, description: str, input_size: int, channels: list[str],
              tflite_sha256: str | None = None, tflite_bytes: int | None = None) -> dict:
    """The registry entry for an export.

    ``classes`` follows the registry's convention for semantic models: one sigmoid channel is
    the class itself; softmax channels are background first, then ``classes``. The entry is
    family tflite (the fast LiteRT path, the default) when a TFLite file exists and the classes
    are COCO names the TFLite adapter maps to ids; otherwise family unet (Keras), which also
    understands a model's own class names.
    """
    from segkit.labels import COCO_IDS_BY_NAME

    classes = list(channels)
    background_first = len(classes) > 1 and classes[0] == "background"
    if background_first:
        classes = classes[1:]
    coco_named = all(str(c).lower().replace("_", " ") in COCO_IDS_BY_NAME for c in classes)
    lite = tflite_sha256 is not None and coco_named and (len(channels) == 1 or background_first)
    entry = {"family": "tflite" if lite else "unet", "task": "semantic",
             "description": description,
             "file": f"{name}/model.tflite" if lite else f"{name}/model.keras",
             "bundled": True}
    if lite:
        entry.update(sha256=tflite_sha256, size_bytes=tflite_bytes)
    entry.update({"input_size": [input_size, input_size], "classes": classes, "normalize": "unit"})
    if lite:
        entry["resize"] = "linear"  # as training resized (tf.image.resize: bilinear)
        # the same network for the unet adapter (batching, further training)
        entry.update(keras_file=f"{name}/model.keras", keras_family="unet")
    elif tflite_sha256 is not None:
        entry.update(tflite_file=f"{name}/model.tflite", tflite_sha256=tflite_sha256)
    entry["metrics_file"] = f"{name}/metrics.json"
    return entry


def export_model(model, out_dir: str | Path, *, classes: list[str], metrics: dict,
                 description: str, check_images: np.ndarray | None = None,
                 extra_files: dict[str, str | Path] | None = None, tflite: bool = True) -> dict:
    """Write the export folder atomically; returns the metrics dict as written.

    ``check_images`` (float32 [N,S,S,3] in 0..1, real validation images preferably) are run
    through Keras and TFLite: the export fails if they disagree by more than TFLITE_TOLERANCE.
    """
    import yaml

    out_dir = Path(out_dir)
    name = out_dir.name
    size = int(model.input_shape[1])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        model.save(tmp / "model.keras")
        model.export(str(tmp / "saved_model"), format="tf_saved_model", verbose=False)
        metrics = dict(metrics)
        entry_extra = {}
        if tflite:
            flatbuffer = convert_tflite(tmp / "saved_model")
            (tmp / "model.tflite").write_bytes(flatbuffer)
            if check_images is None:
                check_images = np.random.default_rng(0).random((2, size, size, 3), np.float32)
            keras_out = np.asarray(model.predict(check_images, verbose=0))
            diff = float(np.abs(tflite_predict(tmp / "model.tflite", check_images)
                                - keras_out).max())
            if not diff <= TFLITE_TOLERANCE:
                raise ValueError(f"{out_dir}: TFLite export disagrees with Keras "
                                   f"(max abs diff {diff:.3g} > {TFLITE_TOLERANCE})")
            metrics["tflite_max_abs_diff"] = diff
            entry_extra = {"tflite_sha256": hashlib.sha256(flatbuffer).hexdigest(),
                           "tflite_bytes": len(flatbuffer)}
        for dest, src in (extra_files or {}).items():
            if Path(src).is_file():
                shutil.copyfile(src, tmp / dest)
        # metrics.json lists every output channel, background included (what the adapter reads).
        metrics.update({"classes": list(classes), "input_size": [size, size],
                        "normalize": "unit"})
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_jsonable) + "\n")
        entry = zoo_entry(name, description=description, input_size=size, channels=classes,
                          **entry_extra)
        if metrics.get("encoder") == "selfie" and entry["family"] == "tflite":
            entry["output_pool"] = 2  # its last layer is a stride-2 transposed conv (tflite.py)
        if metrics.get("encoder") == "selfie":
            entry["license"] = "Apache-2.0"  # a derivative of MediaPipe's Apache-2.0 selfie weights
        header = ("# Written by the training export (lib/segkit/train/export.py); merged into "
                  "model_zoo/zoo.yaml by the registry.\n")
        (tmp / "zoo.yaml").write_text(header + yaml.safe_dump({"models": {name: entry}},
                                                               sort_keys=False))
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metrics


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
