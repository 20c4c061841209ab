"""Training on several devices or machines with ``tf.distribute`` (``--strategy``).

* ``default``: no strategy (TensorFlow's default one: one device).
* ``mirrored``: ``MirroredStrategy`` over the local GPUs (one CPU replica when there is none).
* ``multiworker``: ``MultiWorkerMirroredStrategy``; every worker runs the same command with its
  own ``TF_CONFIG`` (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
  "index": i}}``). Worker 0 (or a task of type ``chief``) is the chief.

``--batch-size`` is per replica; the pipeline is batched with the global batch size (per replica
x replicas) and split across replicas by ``tf.distribute``. Every worker runs every step, every
checkpoint save and every read of a synced variable (collective ops need all of them), but only
the chief writes where the user asked: the others write into a private temporary folder that is
deleted at the end (the Keras multi-worker tutorial's recipe).

Nothing here imports TensorFlow until a strategy is built, so bad arguments fail fast.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

STRATEGIES = ("default", "mirrored", "multiworker")
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host:port", ...]}, '
                     '"task": {"type": "worker", "index": 0}}')


def read_tf_config(environ=None) -> dict:
    """The cluster description of ``--strategy multiworker``, checked (one-line ValueError)."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        raise ValueError(f"--strategy multiworker needs TF_CONFIG in the environment, e.g. "
                         f"{TF_CONFIG_EXAMPLE}")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG: not valid JSON ({e})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG: no \"cluster\" object (expected {TF_CONFIG_EXAMPLE})")
    for kind, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit()
                           for a in addresses)):
            raise ValueError(f"TF_CONFIG: cluster {kind!r} must be a list of \"host:port\" "
                             f"strings, got {addresses!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError("TF_CONFIG: no \"task\" object with \"type\" and \"index\"")
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG: task type {kind!r} is not in the cluster "
                         f"({', '.join(cluster)})")
    if not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ValueError(f"TF_CONFIG: task index {index!r} out of range for "
                         f"{len(cluster[kind])} {kind} address(es)")
    return config


def is_chief(tf_config: dict | None) -> bool:
    """The chief writes checkpoints and exports: a ``chief`` task, else worker 0."""
    if not tf_config:
        return True
    kind, index = tf_config["task"]["type"], tf_config["task"]["index"]
    return kind == "chief" or (kind == "worker" and index == 0
                               and "chief" not in tf_config["cluster"])


def check_strategy(name: str) -> None:
    """Fail before TensorFlow loads: unknown name, or multiworker without a usable TF_CONFIG."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy {name}: choose from {', '.join(STRATEGIES)}")
    if name == "multiworker":
        read_tf_config()


@dataclass
class Distribution:
    """The strategy a run trains under and this process's part in it."""

    name: str
    strategy: object          # tf.distribute.Strategy
    chief: bool
    task: str                 # "worker 1" (multiworker) or "local"

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def global_batch_size(self, per_replica: int) -> int:
        return per_replica * self.replicas

    def summary(self, per_replica: int) -> dict:
        """What metrics.json records about the distribution."""
        return {"strategy": self.name, "replicas": self.replicas,
                "global_batch_size": self.global_batch_size(per_replica)}


def make_distribution(name: str) -> Distribution:
    """Build the strategy. MultiWorkerMirroredStrategy must come before any other TF op runs
    (it configures collective ops at context start-up) and waits until every worker is up."""
    check_strategy(name)
    import tensorflow as tf

    if name == "default":
        return Distribution(name, tf.distribute.get_strategy(), True, "local")
    if name == "mirrored":
        # No devices given: all local GPUs, or the CPU when there is none.
        return Distribution(name, tf.distribute.MirroredStrategy(), True, "local")
    tf_config = read_tf_config()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _mean_scalars_over_replicas(strategy)
    task = tf_config["task"]
    return Distribution(name, strategy, is_chief(tf_config), f"{task['type']} {task['index']}")


def shard_by_data(dataset):
    """Shard batches between workers by element (AutoShardPolicy.DATA): the pipeline reads
    files by index from a tensor, so there are no input files to split (FILE would fail)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def worker_dirs(dist: Distribution, run_dir: Path, output: Path) -> tuple[Path, Path, Path | None]:
    """(run dir, export dir, scratch folder to delete) for this process.

    The chief uses the folders it was given. Another worker gets a private temporary folder;
    when the given run dir exists (the workers share a file system) it starts as a copy of it,
    so ``--resume`` and the "run already there" check decide the same on every worker.
    """
    if dist.chief:
        return Path(run_dir), Path(output), None
    scratch = Path(tempfile.mkdtemp(prefix=f"segkit-{dist.task.replace(' ', '')}-"))
    run_copy = scratch / "run"
    if Path(run_dir).is_dir():
        shutil.copytree(run_dir, run_copy, ignore=shutil.ignore_patterns("logs"))
    return run_copy, scratch / Path(output).name, scratch


def remove_scratch(scratch: Path | None) -> None:
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def build_from_local_batch(model, dist: Distribution) -> None:
    """Work around Keras 3 ``fit`` under MultiWorkerMirroredStrategy (Keras 3.5 to 3.15 at
    least, keras-team/keras#20585, tensorflow/tensorflow#72388): before the first step,
    ``_maybe_symbolic_build`` all-reduces the first ``(x, y)`` batch to learn its shapes, and
    the collective strategy cannot reduce a tuple ("Attempt to convert a value (PerReplica...").
    Only shapes and dtypes are used, so build from this worker's own part of that batch, as
    Keras does without a strategy; everything else in ``fit`` stays Keras' own code."""
    if dist.name != "multiworker" or not hasattr(model, "_maybe_symbolic_build"):
        return
    import tensorflow as tf

    strategy = dist.strategy

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:  # Keras' own loop: the first batch of the first epoch
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(local, next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


def _mean_scalars_over_replicas(strategy) -> None:
    """Work around Keras 3 (3.15) under MultiWorkerMirroredStrategy: every train/test step
    averages its logs (loss, metrics: scalars per replica) with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on a scalar ("Invalid reduction
    dimension 0 for input with 0 dimensions"). For a scalar the mean over replicas is
    ``axis=None``; any other value is reduced exactly as asked."""
    import tensorflow as tf

    reduce = strategy.reduce

    def reduce_scalar_safe(reduce_op, value, axis=None):
        if axis is not None:  # one replica per worker: a plain tensor, not a PerReplica
            local = strategy.experimental_local_results(value)[0]
            if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                axis = None
        return reduce(reduce_op, value, axis=axis)

    strategy.reduce = reduce_scalar_safe
