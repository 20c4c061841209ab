"""bin/soup_models.py: the average of fine-tuning runs, scored and exported; wrong mixes refused."""
from __future__ import annotations

import importlib
import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import REPO, shared_path


def _load(name):
    """The script's module in segkit.commands (bin/NAME.py is a shim calling its main())."""
    return importlib.import_module({"train_person_unet": "segkit.commands.train",
                                    "soup_models": "segkit.commands.soup"}[name])


def _train(tmp, name, *extra):
    args = ["--coco-root", str(shared_path("coco")), "--val-coco-root", str(shared_path("coco")),
            "--image-size", "32", "--batch-size", "4", "--max-images", "4", "--epochs", "1",
            "--no-augment", "--no-tflite", "--quiet", "--run-dir", str(tmp / name),
            "--output", str(tmp / "exports" / name), *extra]
    assert _load("train_person_unet").main(args) == 0
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("soup")
    found = {"a": _train(tmp, "a", "--encoder", "selfie", "--lr", "1e-3"),
             "b": _train(tmp, "b", "--encoder", "selfie", "--lr", "3e-3", "--seed", "1"),
             "tmp": tmp}
    # Runs the soup must refuse, told apart by what their state.json says they are.
    for name, change in (("shallow", {"encoder": "shallow"}), ("scratch", {"encoder_weights": None})):
        shutil.copytree(found["a"], tmp / name)
        state = json.loads((tmp / name / "state.json").read_text())
        state["config"].update(change)
        (tmp / name / "state.json").write_text(json.dumps(state))
        found[name] = tmp / name
    return found


def test_soup_is_the_mean_of_the_best_checkpoints_scored_and_exported(runs):
    import keras

    from segkit.train import losses  # noqa: F401  (registers the checkpoints' loss classes)
    from segkit.train.export import tflite_predict

    out = runs["tmp"] / "zoo" / "soup"
    code = _load("soup_models").main([str(runs["a"]), str(runs["b"]), "--image-size", "64",
                                      "--val-coco-root", str(shared_path("coco")),
                                      "--output", str(out)])
    assert code == 0
    a, b = (keras.saving.load_model(runs[k] / "checkpoints" / "best.keras") for k in "ab")
    soup = keras.saving.load_model(out / "model.keras")
    assert soup.input_shape == (None, 64, 64, 3)  # fully convolutional: any size
    assert not np.allclose(a.weights[0].numpy(), b.weights[0].numpy())
    for wa, wb, ws in zip(a.weights, b.weights, soup.weights):
        np.testing.assert_allclose(ws.numpy(), (wa.numpy() + wb.numpy()) / 2, rtol=1e-6, atol=1e-7)
    m = json.loads((out / "metrics.json").read_text())
    assert [r["run_dir"] for r in m["soup"]["runs"]] == [str(runs["a"]), str(runs["b"])]
    assert m["encoder"] == "selfie" and m["image_size"] == 64 and 0 < m["best_iou"] <= 1
    entry = yaml.safe_load((out / "zoo.yaml").read_text())["models"]["soup"]
    assert entry["family"] == "tflite" and entry["classes"] == ["person"]
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    assert np.abs(tflite_predict(out / "model.tflite", x) - soup.predict(x, verbose=0)).max() < 1e-4


@pytest.mark.parametrize("other, message", [
    ("shallow", "encoder 'shallow' differs from 'selfie'"),
    ("scratch", "do not share a starting point"),
    ("missing", "not a training run folder"),
])
def test_runs_of_other_networks_or_starts_are_refused_in_one_line(runs, capsys, other, message):
    out = runs["tmp"] / "zoo" / f"bad_{other}"
    path = runs.get(other, runs["tmp"] / other)
    assert _load("soup_models").main([str(runs["a"]), str(path), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("segkit: error: ") and err.count("\n") == 1 and message in err
    assert not out.exists()
