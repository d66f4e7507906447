"""Data-parallel training: strategy, batch, files, data.

`train.py --distribution` picks one of `DISTRIBUTIONS`:

- `"none"`: one device, on every backend (no strategy).
- `"data_parallel"` (JAX backend only): `keras.distribution.DataParallel`
  over every local device, one replica per device; Keras shards each global
  batch along its first axis and XLA all-reduces the gradients.
- `"mirrored"`: `tf.distribute.MirroredStrategy` over every local GPU (or the
  devices given), one replica per device, gradients all-reduced each step.
- `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy` over the
  hosts listed in the standard `TF_CONFIG` environment variable, e.g. on the
  first of two hosts

  ```
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}'
  ```

  and `"index": 1` on the second. Every worker runs the same command; worker
  0 (or the task of type `"chief"`, if the cluster has one) is the chief.

Nothing in the update rule changes. The batch size C of the paper is the
global batch, the number of examples per optimizer step: the input pipeline
batches with C, the strategy splits each batch into C / replicas examples per
replica, and the all-reduced gradient is the mean over all C examples, so the
effective temperature is computed with the global C. The random factor
alpha_k of `rlr_keras.RandomLRSGD` is a pure function of (seed,
`optimizer.iterations`), and the iteration counter is a mirrored variable, so
every replica on every worker applies the same alpha_k and the mirrored
weights never diverge.

Files: only the chief writes the run folder; every other worker writes its
files (TensorBoard, BackupAndRestore, ...) to a temporary folder of its own,
as the Keras multi-worker guide prescribes, resumes from the chief's backup,
and removes its folder when the run succeeds. See `write_dir`, `backup_dir`
and `remove_write_dir`.

`"mirrored"` and `"multi_worker"` are `tf.distribute` strategies and need the
TensorFlow backend; `"data_parallel"` needs JAX (`check_backend`). Only they
import TensorFlow (or JAX), so that the rest runs on any backend. Under
`"data_parallel"` a global batch must split evenly among the devices; the
pipeline pads an epoch's last, smaller batch with examples of weight 0
(`rlr_keras.data.ArrayBatches(pad_to_multiple=...)`) and the loss is the
weighted mean, so every step is the one-device step on the same examples.

Keras does not compile distributed steps with XLA: `jit_compile="auto"`
resolves to False under a tf.distribute strategy and True fails
(`check_jit_compile`).
"""

import json
import os
import shutil

from rlr_keras.experiment import _rundir

DISTRIBUTIONS = ("none", "mirrored", "multi_worker", "data_parallel")
# The backend each distribution needs ("none" runs on all of them).
_BACKENDS = {"mirrored": "tensorflow", "multi_worker": "tensorflow",
             "data_parallel": "jax"}
# The distributions that are tf.distribute strategies.
TF_STRATEGIES = tuple(name for name, backend in _BACKENDS.items()
                      if backend == "tensorflow")

_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)
_WORKER_DIR_PREFIX = "workertemp_"


def parse_tf_config(environ=None):
    """Returns the `TF_CONFIG` of `environ` as a dict, checked.

    Args:
        environ: mapping or None: the environment to read. Defaults to
            `os.environ`.

    Returns:
        The parsed dict, with `cluster` (task type -> list of "host:port")
        and `task` (`type`, `index`).

    Raises:
        ValueError: if `TF_CONFIG` is missing, not JSON, has no worker list,
            or its task is not one of the cluster's tasks.

    Not `tf.distribute.cluster_resolver.TFConfigClusterResolver`: it reads
    only `os.environ`, needs TensorFlow, and accepts what this refuses (no
    task, an index outside the cluster: checked, `{"worker": ["a:1"]}` with
    index 5 passes), so it cannot give these errors; the strategy still
    reads TF_CONFIG through it once this check has passed.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "")
    if not text.strip():
        raise ValueError(
            "distribution='multi_worker' needs the TF_CONFIG environment "
            f"variable on every worker, e.g. {_TF_CONFIG_EXAMPLE}, got none")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG must be JSON like {_TF_CONFIG_EXAMPLE}, got {text!r} "
            f"({error})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if (not isinstance(cluster, dict)
            or not isinstance(cluster.get("worker", []), list)
            or not (cluster.get("worker") or cluster.get("chief"))
            or not all(isinstance(a, str) and ":" in a
                       for tasks in cluster.values() if isinstance(tasks, list)
                       for a in tasks)):
        raise ValueError(
            "TF_CONFIG['cluster'] must map 'worker' (and optionally 'chief') "
            f"to lists of 'host:port' addresses, got {text!r}")
    task = config.get("task")
    if not isinstance(task, dict):
        raise ValueError(
            "TF_CONFIG['task'] must be {'type': ..., 'index': ...}, "
            f"got {text!r}")
    task_type, index = task.get("type"), task.get("index")
    tasks = cluster.get(task_type)
    if (not isinstance(tasks, list) or isinstance(index, bool)
            or not isinstance(index, int) or not 0 <= index < len(tasks)):
        raise ValueError(
            f"TF_CONFIG['task'] must name a task of the cluster "
            f"(type in {sorted(cluster)}, index in [0, len - 1]), got "
            f"type={task_type!r}, index={index!r}")
    return config


def _tf():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf


def check_backend(name, backend):
    """Raises ValueError if distribution `name` cannot run on `backend`.

    Args:
        name: str, one of `DISTRIBUTIONS`.
        backend: str, the Keras backend (`keras.backend.backend()`).
    """
    if name not in DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {DISTRIBUTIONS}, got {name!r}")
    needed = _BACKENDS.get(name)
    if needed is not None and backend != needed:
        raise ValueError(
            f"distribution={name!r} needs the {needed} Keras backend "
            f"(KERAS_BACKEND={needed}), got backend {backend!r}; "
            "mirrored and multi_worker are tf.distribute strategies "
            "(TensorFlow), data_parallel is keras.distribution.DataParallel "
            "(JAX)")


def make_data_parallel(devices=None):
    """Returns `keras.distribution.DataParallel` over `devices` (JAX only).

    Args:
        devices: list of device names or None: every local device (e.g. the
            GPUs, or the host devices that `XLA_FLAGS=
            --xla_force_host_platform_device_count=N` makes). Defaults to
            `None`.

    Raises:
        ValueError: on a backend other than JAX.
    """
    import keras  # pylint: disable=g-import-not-at-top

    check_backend("data_parallel", keras.backend.backend())
    if devices is None:
        devices = keras.distribution.list_devices()
    return keras.distribution.DataParallel(devices=devices)


def num_replicas(strategy):
    """Returns the replicas of a tf.distribute strategy or a DataParallel."""
    if strategy is None:
        return 1
    if _is_tf_strategy(strategy):
        return strategy.num_replicas_in_sync
    return int(strategy.device_mesh.devices.size)  # keras.distribution.


def _is_tf_strategy(strategy):
    return hasattr(strategy, "extended")  # What tf.distribute strategies have.


def make_strategy(name, *, devices=None, collective_timeout_s=None):
    """Returns the `tf.distribute.Strategy` called `name`.

    Create it at the start of the program, before any other TensorFlow
    operation: `MultiWorkerMirroredStrategy` configures the collective runtime,
    which TensorFlow allows only before it initializes. Then create the model,
    optimizer, metrics and callbacks inside `strategy.scope()`.

    `"multi_worker"` also works around two bugs of Keras 3's `fit` with
    several workers (keras-team/keras#20585) that have nothing to do with
    the math; see `_patch_keras_for_multi_worker`.

    Args:
        name: str, one of `DISTRIBUTIONS`.
        devices: list of str or None (`"mirrored"` only): the devices of the
            replicas, e.g. `["/gpu:0", "/gpu:1"]`. Defaults to `None`: every
            local GPU, or the CPU if there is none.
        collective_timeout_s: float > 0 or None (`"multi_worker"` only): a
            collective operation that waits longer than this fails the step,
            so a dead peer ends the job instead of stalling it. Defaults to
            `None` (TensorFlow's default: no timeout; TensorFlow's own peer
            health checks still end a job whose worker died).

    Returns:
        The strategy. `"none"` gives `tf.distribute.get_strategy()`, the
        default strategy, whose scope changes nothing.

    Raises:
        ValueError: for an unknown `name` (`"data_parallel"` is not a
            tf.distribute strategy: see `make_data_parallel`), arguments
            that do not apply to it, or (for `"multi_worker"`) a missing or
            invalid `TF_CONFIG`.
    """
    tf = _tf()
    if name not in DISTRIBUTIONS or name == "data_parallel":
        raise ValueError(
            "distribution must be one of ('none', 'mirrored', "
            f"'multi_worker'), got {name!r}")
    if devices is not None and name != "mirrored":
        raise ValueError(
            f"devices applies only to distribution='mirrored', got "
            f"devices={devices!r} with distribution={name!r}")
    if collective_timeout_s is not None and (
            name != "multi_worker" or isinstance(collective_timeout_s, bool)
            or not isinstance(collective_timeout_s, (int, float))
            or not collective_timeout_s > 0):
        raise ValueError(
            "collective_timeout_s must be a number > 0 with "
            f"distribution='multi_worker', got {collective_timeout_s!r} with "
            f"distribution={name!r}")
    if name == "none":
        return tf.distribute.get_strategy()
    # One strategy per process and configuration: two MirroredStrategy
    # objects in one process hand out the same collective keys, and the
    # second one's all-reduce then fails with "Shape mismatch in the
    # collective instance" (e.g. a sweep running several runs in-process).
    key = (name, tuple(devices) if devices is not None else None,
           collective_timeout_s)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy(name, devices, collective_timeout_s)
    return _STRATEGIES[key]


_STRATEGIES = {}


def _new_strategy(name, devices, collective_timeout_s):
    tf = _tf()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    parse_tf_config()
    # RING (gRPC) is the implementation that works on CPUs; on GPUs AUTO
    # lets TensorFlow pick NCCL. (Listing devices does not start TensorFlow.)
    implementations = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=(implementations.AUTO
                        if tf.config.list_physical_devices("GPU")
                        else implementations.RING),
        timeout_seconds=collective_timeout_s)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options)
    _patch_keras_for_multi_worker()
    return strategy


def replica_batch_size(global_batch_size, strategy):
    """Returns the per-replica batch C / replicas of the global batch C.

    Args:
        global_batch_size: int >= 1: C, the examples per optimizer step
            summed over every replica of every worker.
        strategy: a `tf.distribute.Strategy`, a
            `keras.distribution.DataParallel`, or None (one device).

    Every full batch then gives exactly the gradient of a one-device step
    on the same C examples. A last, partial batch of an epoch (training-set
    size not a multiple of C) is split as evenly as possible and Keras
    weighs each replica's mean loss equally, so that one step differs
    slightly when its size is not a multiple of the replicas.

    Raises:
        ValueError: if C is not a positive int or does not divide evenly
            among `strategy.num_replicas_in_sync` replicas.
    """
    replicas = num_replicas(strategy)
    if (isinstance(global_batch_size, bool)
            or not isinstance(global_batch_size, int)
            or global_batch_size < 1):
        raise ValueError(
            "batch_size (the global batch) must be an integer >= 1, got "
            f"{global_batch_size!r}")
    if global_batch_size % replicas:
        raise ValueError(
            f"batch_size (the global batch) must be divisible by the "
            f"{replicas} replicas in sync, got batch_size={global_batch_size} "
            f"(remainder {global_batch_size % replicas}); use a multiple of "
            f"{replicas}")
    return global_batch_size // replicas


def check_jit_compile(jit_compile, strategy):
    """Raises ValueError for XLA (`jit_compile=True`) under a strategy.

    Keras resolves `jit_compile="auto"` to False under `tf.distribute`, and
    an explicit True fails at the first step (XLA cannot reach the other
    replicas' variables), so say so before any training.
    """
    if (jit_compile is True and _is_tf_strategy(strategy)
            and strategy is not _tf().distribute.get_strategy()):
        raise ValueError(
            "jit_compile must be False with a tf.distribute strategy (Keras "
            "does not compile distributed steps with XLA), got "
            f"jit_compile=True with {type(strategy).__name__}")


def _task(strategy):
    """Returns (task_type, task_id) of this worker, (None, None) if local."""
    resolver = (getattr(strategy, "cluster_resolver", None)
                if _is_tf_strategy(strategy) else None)
    if resolver is None:
        return None, None
    return resolver.task_type, resolver.task_id


def is_multi_worker(strategy):
    """Returns whether `strategy` runs on a cluster of worker processes."""
    return _task(strategy)[0] is not None


def is_chief(strategy):
    """Returns whether this process writes the run folder.

    True without a cluster (also for `strategy` None or a
    `keras.distribution.DataParallel`, which run in one process); in a
    cluster, True for the task of type `"chief"`, or for worker 0 when there
    is no such task.
    """
    if not _is_tf_strategy(strategy):
        return True
    return bool(strategy.extended.should_checkpoint)


def write_dir(run_dir, strategy):
    """Returns the folder this process writes its callbacks' files to.

    The chief writes `run_dir`. Every other worker writes
    `run_dir/workertemp_<task id>`, the temporary folder of the Keras
    multi-worker guide: the workers' files (TensorBoard events,
    `BackupAndRestore` state) never overwrite the chief's, yet stay at a
    fixed place, so that a restarted worker finds its backup again and
    resumes at the same epoch as the chief. Remove it with
    `remove_write_dir` once the run has succeeded.

    Args:
        run_dir: str, the run folder.
        strategy: a `tf.distribute.Strategy`.
    """
    if is_chief(strategy):
        return run_dir
    _, task_id = _task(strategy)
    return os.path.join(run_dir, f"{_WORKER_DIR_PREFIX}{task_id}")


def backup_dir(run_dir, strategy):
    """Returns the `keras.callbacks.BackupAndRestore` folder of this process.

    The chief backs up to `run_dir/backup`, every other worker to the
    `backup` folder of its `write_dir`. To resume, every worker must restore
    the same epoch, or the workers would run different numbers of steps and
    their collectives would fail. So when the chief's backup is visible
    (the run folder is on a shared filesystem, as the Keras multi-worker
    guide assumes), a non-chief worker first replaces its own backup by a
    copy of the chief's, as `tf.keras` did; otherwise it restores its own,
    which holds the same epoch unless the job was killed between the
    chief's and this worker's saves of the same epoch.

    Call it on every worker before `Model.fit`.

    Args:
        run_dir: str, the run folder.
        strategy: a `tf.distribute.Strategy`.
    """
    chief_backup = os.path.join(run_dir, _rundir.BACKUP_DIR)
    if is_chief(strategy):
        return chief_backup
    own_backup = os.path.join(write_dir(run_dir, strategy), _rundir.BACKUP_DIR)
    if os.path.isdir(chief_backup):
        shutil.rmtree(own_backup, ignore_errors=True)
        shutil.copytree(chief_backup, own_backup)
    return own_backup


def remove_write_dir(run_dir, strategy):
    """Removes a non-chief worker's `write_dir`; does nothing on the chief."""
    if not is_chief(strategy):
        shutil.rmtree(write_dir(run_dir, strategy), ignore_errors=True)


def _patch_keras_for_multi_worker():
    """Lets Keras 3 `fit`/`evaluate` run on more than one worker.

    Keras 3 (3.15 and earlier; keras-team/keras#20585) breaks in two places
    under `MultiWorkerMirroredStrategy` with several workers, both outside
    the math of a step:

    1. Before training it builds the model's state from one input batch,
       which it first averages across workers with
       `strategy.reduce("MEAN", (x, y), axis=None)`; that reduce rejects the
       (x, y) structure ("Attempt to convert a value (PerReplica...)"). The
       batch is only used for its shapes and dtypes: the patch takes the
       first local replica's batch instead.
    2. It averages the scalar logs of each step (loss, metrics) with
       `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars
       ("Invalid reduction dimension 0"). The patch averages them across
       replicas (`axis=None`), which is what the one-worker code does.

    Both patches change behaviour only for a multi-worker strategy and are
    installed once; the gradients, the optimizer step and alpha are not
    touched. Keras 3.15 has no public hook for either (the reduction of
    `fit`'s logs and the symbolic build are private to its TensorFlow
    trainer), so the patch checks that the private names it replaces still
    exist and fails with the Keras version otherwise
    (`check_keras_for_multi_worker`).
    """
    from keras import tree  # pylint: disable=g-import-not-at-top

    tf = _tf()
    tf_trainer = check_keras_for_multi_worker()
    if getattr(tf_trainer, "_rlr_keras_multi_worker_patch", False):
        return
    multi_worker = tf_trainer._collective_all_reduce_multi_worker
    trainer_class = tf_trainer.TensorFlowTrainer
    original_build = trainer_class._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not multi_worker(strategy):
            return original_build(self, iterator=iterator,
                                  data_batch=data_batch)

        def local(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        for _, _, batches in iterator:
            data_batch = tree.map_structure(local, next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def mean(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.reduce("MEAN", value, axis=None)
            return value

        return tree.map_structure(mean, values)

    trainer_class._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer._rlr_keras_multi_worker_patch = True


_PATCHED_NAMES = ("_collective_all_reduce_multi_worker",
                  "reduce_per_replica", "TensorFlowTrainer")


def check_keras_for_multi_worker():
    """Returns Keras' TensorFlow trainer module if the patch applies to it.

    Raises:
        RuntimeError: if this Keras lacks a private name the multi-worker
            patch replaces (keras-team/keras#20585 may be fixed there: check
            it and remove `_patch_keras_for_multi_worker`).
    """
    import keras  # pylint: disable=g-import-not-at-top
    from keras.src.backend.tensorflow import trainer as tf_trainer  # pylint: disable=all

    missing = [name for name in _PATCHED_NAMES
               if not hasattr(tf_trainer, name)]
    if not hasattr(getattr(tf_trainer, "TensorFlowTrainer", None),
                   "_maybe_symbolic_build"):
        missing.append("TensorFlowTrainer._maybe_symbolic_build")
    if missing:
        raise RuntimeError(
            f"Keras {keras.__version__} has no {', '.join(missing)}: the "
            "multi-worker patch for keras-team/keras#20585 (written for "
            "Keras 3.15) does not apply; check whether that issue is fixed "
            "in this version and update experiments/_distribution.py")
    return tf_trainer


def distribute_dataset(dataset, strategy):
    """Returns `dataset` split among the replicas of `strategy`.

    `dataset` must be batched with the global batch size C. The strategy
    splits each of its batches into C / replicas examples per replica, and
    the `DATA` auto-shard policy hands each worker distinct parts of every
    global batch: step k sees exactly the k-th batch of `dataset`, as in a
    one-device run. (The default `AUTO` policy would shard by input files
    when it can, which changes which examples form a step and fails with
    fewer files than workers.) Pass the result to `Model.fit`/`evaluate`
    directly; the number of steps is that of `dataset`.

    Args:
        dataset: a `tf.data.Dataset` of global batches, or a
            `rlr_keras.data.ArrayBatches` (read in index order).
        strategy: a `tf.distribute.Strategy`.
    """
    tf = _tf()
    if not isinstance(dataset, tf.data.Dataset):
        dataset = _to_tf_dataset(dataset)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return strategy.experimental_distribute_dataset(
        dataset.with_options(options))


def _to_tf_dataset(batches):
    """Returns the batches of a `keras.utils.PyDataset` in order, as tf.data.

    An `ArrayBatches` has its own `tf.data` form, the same batches without
    a Python call per batch; any other PyDataset is read through a
    generator.
    """
    if hasattr(batches, "as_tf_dataset"):
        return batches.as_tf_dataset()
    tf = _tf()
    first = batches[0]
    signature = tuple(
        tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype))
        for value in first)

    def generate():
        for index in range(len(batches)):
            yield batches[index]

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=signature)
    # A known length, so that Keras' evaluation does not run into the end.
    return dataset.apply(tf.data.experimental.assert_cardinality(
        len(batches))).prefetch(tf.data.AUTOTUNE)
