"""--strategy default|mirrored|multiworker (lib/segkit/train/distribute.py).

The multi-worker test starts two real worker processes of bin/train_person_unet.py on this machine
(TF_CONFIG on two loopback ports) and trains a tiny U-Net for 2 epochs on generated images.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO
from segkit.train import distribute

SCRIPT = REPO / "bin" / "train_person_unet.py"


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    """8 images/ + masks/ pairs (a bright square on a dark background), 40x40."""
    root = tmp_path_factory.mktemp("squares")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for n in range(8):
        mask = np.zeros((40, 40), np.uint8)
        y, x = rng.integers(2, 20, 2)
        mask[y:y + 16, x:x + 16] = 255
        image = np.dstack([mask // 2 + 40, mask // 3 + 30, np.full_like(mask, 60)])
        cv2.imwrite(str(root / "images" / f"{n}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{n}.png"), mask)
    return root


def _args(data: Path, out: Path, run: Path, *extra: str) -> list[str]:
    return ["--folder", str(data), "--encoder", "shallow", "--image-size", "32", "--epochs", "2",
            "--batch-size", "2", "--val-split", "0.25", "--no-augment", "--quiet",
            "--output", str(out), "--run-dir", str(run), *extra]


def _free_ports(n: int) -> list[int]:
    """Ports the OS hands out now (held open together so they differ; closed before use)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    return env


@pytest.mark.slow
def test_two_local_workers_train_together_and_only_the_chief_writes(squares, tmp_path):
    """Two processes, MultiWorkerMirroredStrategy over gRPC on 127.0.0.1: both finish, 2 replicas,
    global batch 4, and the outputs exist only where worker 0 (the chief) was told to write."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    scratch = tmp_path / "tmp"  # TMPDIR of the workers: the non-chief's private folder goes here
    scratch.mkdir()
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        args = _args(squares, tmp_path / f"out{index}" / "squares", tmp_path / f"run{index}",
                     "--strategy", "multiworker")
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=_env(TF_CONFIG=json.dumps(tf_config), TMPDIR=str(scratch))))
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:  # a worker left waiting for its peer must not outlive the test
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    assert "trained shallow 32px for 2 epochs" in results[0][0]
    assert "non-chief worker" in results[1][0]

    chief = tmp_path / "out0" / "squares"
    for name in ("model.keras", "model.tflite", "zoo.yaml", "metrics.json"):
        assert (chief / name).is_file(), name
    assert not (tmp_path / "out1").exists() and not (tmp_path / "run1").exists()
    assert list(scratch.iterdir()) == []  # the non-chief deleted its private copy
    metrics = json.loads((chief / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["replicas"], metrics["global_batch_size"]) == \
        ("multiworker", 2, 4)
    assert math.isfinite(metrics["final"]["loss"]) and math.isfinite(metrics["final"]["val_loss"])
    state = json.loads((tmp_path / "run0" / "state.json").read_text())
    # 6 training images in global batches of 4: 2 steps per epoch, the same on every replica.
    assert state["epoch"] == 2 and state["optimizer_iterations"] == 4


def test_mirrored_trains_on_the_local_devices(squares, tmp_path):
    import importlib

    cli = importlib.import_module("segkit.commands.train")
    out = tmp_path / "zoo" / "mirrored"
    assert cli.main(_args(squares, out, tmp_path / "run", "--strategy", "mirrored",
                          "--no-tflite")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    import tensorflow as tf

    replicas = max(1, len(tf.config.list_logical_devices("GPU")))  # CPU only: one replica
    assert (metrics["strategy"], metrics["replicas"]) == ("mirrored", replicas)
    assert metrics["global_batch_size"] == 2 * replicas and math.isfinite(metrics["final"]["loss"])


def test_multiworker_without_tf_config_is_a_one_line_error(squares, tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), *_args(squares, tmp_path / "m",
                                                               tmp_path / "run",
                                                               "--strategy", "multiworker")],
                         capture_output=True, text=True, timeout=60, env=_env())
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1
    assert run.stderr.startswith("segkit: error: --strategy multiworker needs TF_CONFIG")
    assert not (tmp_path / "m").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("raw, message", [
    ("{not json", "TF_CONFIG: not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG: no "cluster" object'),
    ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster 'worker' must be a list"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster 'worker' must be a list"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'TF_CONFIG: no "task" object'),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}',
     "TF_CONFIG: task type 'ps' is not in the cluster"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG: task index 1 out of range for 1 worker address(es)"),
])
def test_malformed_tf_config_is_named(raw, message):
    with pytest.raises(ValueError) as err:
        distribute.read_tf_config({"TF_CONFIG": raw})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_chief_is_worker_zero_unless_there_is_a_chief_task():
    def config(kind, index, chief=False):
        cluster = {"worker": ["a:1", "b:2"], **({"chief": ["c:3"]} if chief else {})}
        return {"cluster": cluster, "task": {"type": kind, "index": index}}

    assert distribute.is_chief(config("worker", 0)) and not distribute.is_chief(config("worker", 1))
    assert distribute.is_chief(config("chief", 0, chief=True))
    assert not distribute.is_chief(config("worker", 0, chief=True))
    assert distribute.is_chief(None)  # no cluster: the only process writes
    with pytest.raises(ValueError, match="--strategy nccl: choose from default, mirrored"):
        distribute.check_strategy("nccl")


def test_non_chief_works_in_a_private_copy_that_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "logs").mkdir()
    (run / "state.json").write_text("{}")
    chief = distribute.Distribution("multiworker", None, True, "worker 0")
    assert distribute.worker_dirs(chief, run, tmp_path / "out") == (run, tmp_path / "out", None)
    other = distribute.Distribution("multiworker", None, False, "worker 1")
    run_copy, out, scratch = distribute.worker_dirs(other, run, tmp_path / "zoo" / "m")
    assert scratch.parent == tmp_path / "tmp" and run_copy.parent == scratch == out.parent
    assert out.name == "m" and not out.exists()
    assert (run_copy / "state.json").read_text() == "{}"  # --resume decides as on the chief
    assert not (run_copy / "logs").exists()
    distribute.remove_scratch(scratch)
    assert not scratch.exists() and (run / "state.json").exists()  # the given run is untouched


LOSS_SCALE_CHECK = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from segkit.train import losses

    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 3), np.float32)
    y = (rng.random((4, 8, 8, 1)) > 0.5).astype(np.uint8)

    def first_loss(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((8, 8, 3)),
                                      keras.layers.Conv2D(1, 3, padding="same",
                                                          activation="sigmoid")])
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses.make_loss("ce"))
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
        return model.fit(data, epochs=1, verbose=0).history["loss"][0]

    print(first_loss(tf.distribute.get_strategy()),
          first_loss(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])))
""")


def test_project_losses_are_averaged_over_replicas():
    """Pixel cross-entropy of one batch of 4: the same with 1 replica and with 2 (2x2 images)."""
    run = subprocess.run([sys.executable, "-c", LOSS_SCALE_CHECK], capture_output=True,
                         text=True, timeout=60, env=_env())
    assert run.returncode == 0, run.stderr[-2000:]
    single, mirrored = map(float, run.stdout.split())
    assert mirrored == pytest.approx(single, rel=1e-4)
