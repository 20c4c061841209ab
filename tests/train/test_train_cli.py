"""bin/train_person_unet.py end to end on tiny real data: train, resume, export, errors."""
from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

from conftest import REPO, shared_path

SCRIPT = REPO / "bin" / "train_person_unet.py"


def _cli():
    module = importlib.import_module("segkit.commands.train")
    return module


def _tiny_args(out, run, *extra):
    return ["--coco-root", str(shared_path("coco")), "--folder", str(shared_path("person")),
            "--encoder", "shallow", "--image-size", "64", "--batch-size", "4",
            "--max-images", "8", "--val-split", "0.02", "--no-augment", "--lr", "0.01",
            "--quiet", "--output", str(out), "--run-dir", str(run), *extra]


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """One epoch, then --resume to two: the 'killed and continued' run (simulated)."""
    import keras

    tmp = tmp_path_factory.mktemp("train")
    out, run = tmp / "model_zoo" / "tiny_person", tmp / "run"
    cli = _cli()
    assert cli.main(_tiny_args(out, run, "--epochs", "1")) == 0
    state = json.loads((run / "state.json").read_text())
    after_first = keras.saving.load_model(run / "checkpoints" / state["checkpoint"])
    first = {"iterations": int(after_first.optimizer.iterations.numpy()), "state": state}
    # Without --resume an existing run is never overwritten.
    assert cli.main(_tiny_args(out, run, "--epochs", "2")) == 1
    assert cli.main(_tiny_args(out, run, "--epochs", "2", "--resume")) == 0
    return out, run, first


def test_resume_continues_epochs_and_optimizer_state(resumed_run):
    import keras

    out, run, first = resumed_run
    steps = 2  # 8 images / batch 4
    assert first["iterations"] == steps and first["state"]["epoch"] == 1
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    # A fresh optimizer would count from 0 again: 2 here, not 4.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.keras",
                                                                       "epoch002.keras"]
    resumed = keras.saving.load_model(run / "checkpoints" / state["checkpoint"])
    assert int(resumed.optimizer.iterations.numpy()) == state["optimizer_iterations"] == 2 * steps
    assert state["counters"]["early"]["wait"] is not None
    assert state["history"][1]["loss"] < state["history"][0]["loss"]  # it learns
    assert (run / "training_curves.png").stat().st_size > 1000
    assert list((run / "logs").rglob("events.out.tfevents*"))


def test_resume_after_sigkill(tmp_path):
    """Kill a real training process after its first checkpoint; --resume carries on from it."""
    import keras

    out, run = tmp_path / "killed", tmp_path / "run"
    args = _tiny_args(out, run, "--image-size", "32", "--no-tflite")
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), *args, "--epochs", "50"], stdout=subprocess.DEVNULL,
                                stderr=err_file)
    try:
        deadline = time.monotonic() + 90
        while not (run / "state.json").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "training exited before its first checkpoint"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # TensorFlow's native log lines (XLA compiled the first step by now) stay hidden in training too
    assert not re.search(r"^[IWEF]\d{4} |^WARNING: All log messages|XLA", err.read_text(), re.M), err.read_text()
    done = json.loads((run / "state.json").read_text())["epoch"]
    assert 1 <= done < 50 and not out.exists()
    assert _cli().main([*args, "--epochs", str(done + 1), "--resume"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == list(range(1, done + 2))
    model = keras.saving.load_model(run / "checkpoints" / state["checkpoint"])
    assert int(model.optimizer.iterations.numpy()) == 2 * (done + 1)
    assert (out / "model.keras").exists()


def test_export_folder_zoo_entry_and_metrics(resumed_run):
    out, _, _ = resumed_run
    for name in ("model.keras", "model.tflite", "saved_model/saved_model.pb", "zoo.yaml",
                 "metrics.json", "training_curves.png"):
        assert (out / name).exists(), name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
    entry = yaml.safe_load((out / "zoo.yaml").read_text())["models"]
    assert list(entry) == ["tiny_person"]
    e = entry["tiny_person"]
    assert (e["family"], e["task"], e["classes"], e["normalize"]) == ("tflite", "semantic",
                                                                     ["person"], "unit")
    assert e["input_size"] == [64, 64] and e["file"] == "tiny_person/model.tflite"
    assert e["keras_file"] == "tiny_person/model.keras"
    import hashlib
    assert hashlib.sha256((out / "model.tflite").read_bytes()).hexdigest() == e["sha256"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 2 and m["encoder"] == "shallow" and m["image_size"] == 64
    assert sum(m["data"]["train"].values()) == 8 and m["params"] > 1000
    assert 0 <= m["best_iou"] <= 1 and m["training_seconds"] > 0 and m["tflite_max_abs_diff"] < 1e-3


def test_tflite_and_keras_exports_agree_on_real_images(resumed_run):
    import keras

    from segkit.train.export import tflite_predict

    out, _, _ = resumed_run
    images = sorted(shared_path("coco", "val2017").glob("*.jpg"))[:3]
    x = np.stack([cv2.resize(cv2.imread(str(p))[..., ::-1], (64, 64)) for p in images])
    x = x.astype(np.float32) / 255
    keras_out = np.asarray(keras.saving.load_model(out / "model.keras")(x))
    lite_out = tflite_predict(out / "model.tflite", x)
    assert lite_out.shape == keras_out.shape == (3, 64, 64, 1)
    assert np.abs(lite_out - keras_out).max() < 1e-4


def test_tflite_and_keras_adapters_of_one_export_give_the_same_masks(resumed_run):
    """The zoo entry's ``resize: linear`` makes LiteRT see what Keras (and training) sees."""
    from segkit.models import load_segmenter
    from segkit.models.unet import UnetSegmenter
    from segkit.io.sources import read_image

    out, _, _ = resumed_run
    lite = load_segmenter(model_path=str(out))
    assert lite.family == "tflite" and lite.resize == "linear"
    keras_seg = UnetSegmenter(out / "model.keras")
    image = read_image(sorted(shared_path("coco", "val2017").glob("*.jpg"))[0])
    a, b = lite.segment_one(image), keras_seg.segment_one(image)
    assert a.probs.shape == b.probs.shape == (*image.shape[:2], 1)
    assert np.abs(a.probs - b.probs).max() < 1e-3


def test_zoo_entry_follows_the_registry_class_convention():
    from segkit.train.export import zoo_entry

    def entry(channels, sha="ab"):
        return zoo_entry("m", description="d", input_size=64, channels=channels,
                         tflite_sha256=sha, tflite_bytes=1)

    person = entry(["person"])
    assert (person["family"], person["file"], person["classes"]) == ("tflite", "m/model.tflite",
                                                                      ["person"])
    animals = entry(["background", "cat", "dog"])  # softmax, background first
    assert animals["family"] == "tflite" and animals["classes"] == ["cat", "dog"]
    own = entry(["background", "pet", "border"])  # not COCO names: the Keras adapter names them
    assert (own["family"], own["file"], own["classes"]) == ("unet", "m/model.keras",
                                                            ["pet", "border"])
    assert own["tflite_file"] == "m/model.tflite"
    assert entry(["person"], sha=None)["family"] == "unet"


def test_nan_loss_stops_with_message_and_exit_code_3(tmp_path, capsys):
    code = _cli().main(_tiny_args(tmp_path / "nan_model", tmp_path / "run", "--epochs", "2",
                                  "--lr", "nan", "--image-size", "32"))
    err = capsys.readouterr().err
    assert code == 3
    assert "loss became NaN/inf at epoch 1" in err and "lower --lr" in err
    assert not (tmp_path / "nan_model").exists()


def test_multiclass_folder_masks_train_softmax_with_per_class_iou(tmp_path):
    root = tmp_path / "trimaps"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for n in range(6):
        mask = np.zeros((48, 48), np.uint8)
        y, x = rng.integers(4, 20, 2)
        mask[y:y + 20, x:x + 20] = 2
        mask[y + 3:y + 17, x + 3:x + 17] = 1
        cv2.imwrite(str(root / "images" / f"{n}.jpg"), (mask[..., None] * [100, 60, 20]).astype(np.uint8))
        cv2.imwrite(str(root / "masks" / f"{n}.png"), mask)
    out = tmp_path / "zoo" / "trimap"
    code = _cli().main(["--folder", str(root), "--num-classes", "3", "--class-names",
                        "background,pet,border", "--encoder", "shallow", "--image-size", "32",
                        "--epochs", "1", "--batch-size", "4", "--val-split", "0.34",
                        "--no-tflite", "--quiet", "--output", str(out),
                        "--run-dir", str(tmp_path / "run")])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"val_iou_background", "val_iou_pet", "val_iou_border"} <= set(m["final"])
    assert m["classes"] == ["background", "pet", "border"]
    e = yaml.safe_load((out / "zoo.yaml").read_text())["models"]["trimap"]
    assert e["family"] == "unet" and e["file"] == "trimap/model.keras"
    assert e["classes"] == ["pet", "border"]
    from segkit.models.unet import UnetSegmenter

    seg = UnetSegmenter(out / "model.keras", classes=e["classes"])  # background implied first
    r = seg.segment_one(np.zeros((20, 30, 3), np.uint8))
    assert r.probs.shape == (20, 30, 2) and seg.label_names[1] == "pet"


def _run(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_help_and_bad_coco_root_are_one_line(tmp_path):
    helped = _run("--help")
    assert helped.returncode == 0 and "--coco-root" in helped.stdout and "--resume" in helped.stdout
    bad = _run("--coco-root", str(tmp_path / "nope"), "--output", str(tmp_path / "m"))
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"segkit: error: {tmp_path / 'nope'}: COCO root folder not found"
    (tmp_path / "empty").mkdir()
    bad = _run("--coco-root", str(tmp_path / "empty"), "--output", str(tmp_path / "m"))
    assert bad.stderr.strip().count("\n") == 0
    assert "no annotations/instances_train2017.json" in bad.stderr
    assert not (tmp_path / "m").exists()
    (tmp_path / "f" / "images").mkdir(parents=True)
    (tmp_path / "f" / "masks").mkdir()
    bad = _run("--folder", str(tmp_path / "f"), "--encoder-weights", "imagenet", "--output",
               str(tmp_path / "m"), env={"KERAS_HOME": str(tmp_path / "keras")})
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("segkit: error: ImageNet weights for mobilenetv2 not found at "
                                 f"{tmp_path / 'keras' / 'models'}")


def test_selfie_encoder_fine_tunes_the_pretrained_network_and_reimports(tmp_path):
    """--encoder selfie starts from MediaPipe's weights (its first validation is already far
    above a from-scratch net's), exports TFLite, and that file imports back for more training."""
    from segkit.train.tflite_import import keras_model_from_tflite

    out = tmp_path / "zoo" / "tuned"
    args = ["--coco-root", str(shared_path("coco")), "--val-coco-root", str(shared_path("coco")),
            "--encoder", "selfie", "--image-size", "128", "--batch-size", "4", "--max-images", "4",
            "--epochs", "1", "--lr", "1e-5", "--no-augment", "--quiet", "--output", str(out)]
    assert _cli().main([*args, "--run-dir", str(tmp_path / "run")]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (m["encoder"], m["encoder_weights"], m["params"]) == ("selfie", "mediapipe", 106401)
    assert m["best_iou"] > 0.3  # pretrained person features, barely moved at lr 1e-5 (0.41)
    assert _cli().main([*args, "--run-dir", str(tmp_path / "scratch"), "--encoder-weights", "none",
                        "--output", str(tmp_path / "zoo" / "scratch"), "--no-tflite"]) == 0
    scratch = json.loads((tmp_path / "zoo" / "scratch" / "metrics.json").read_text())
    assert scratch["encoder_weights"] == "none" and scratch["best_iou"] < m["best_iou"]
    reimported = keras_model_from_tflite(out / "model.tflite")
    x = np.random.default_rng(0).random((1, 128, 128, 3)).astype(np.float32)
    import keras
    np.testing.assert_allclose(reimported.predict(x, verbose=0),
                               keras.saving.load_model(out / "model.keras").predict(x, verbose=0),
                               atol=1e-4)
