r"""Trains one model with one learning-rate protocol; the run folder says all.

Musso, "Stochastic gradient descent with random learning rate" (2020),
section 3: Model 1 (`mlp`), 2 (`cnn`) or 3 (`vgg16`) trained with the
constant, random or cyclic protocol at mean learning rate l. The protocol,
model and data come from the library (`rlr_keras.protocols.build`,
`rlr_keras.models.build_model`, `rlr_keras.data`); this script only wires
them to flags and to a self-describing run folder (`--output_dir`):

```
flags.cfg         the flags it ran with; replay with --flagfile=flags.cfg
config.json       the same arguments as JSON, plus versions and the source
                  (git commit of rlr_keras, and whether the tree was dirty)
status.json       running -> done, or failed with the error
metrics.jsonl     one line per completed epoch: epoch (1-based), train_loss,
                  train_accuracy (Keras' running means over the epoch),
                  train_eval_loss, train_eval_accuracy (the end-of-epoch
                  weights on the whole training set; --evaluate_train),
                  test_loss, test_accuracy, learning_rate, alpha_mean,
                  alpha_std, wall_time_s (cumulative), and
                  diffusion/temperature on the epochs the temperature
                  monitor measured them
summary.json      final_test_accuracy, best_test_accuracy,
                  final_train_accuracy, final_train_loss, generalization_gap
                  (= final train - final test accuracy, train measured by
                  --evaluate_train when on), final_train_eval_accuracy,
                  wall_time_s, num_parameters, temperature_over_d (eq. 20
                  with D = 1), plus best_epoch, epochs and, if measured,
                  diffusion and temperature (last measured values)
model.weights.h5  the final weights
model.keras       the final model, optimizer included; it loads with
                  `keras.saving.load_model` once rlr_keras is imported
tensorboard/      train/ and validation/ events: loss, accuracy, learning
                  rate, alpha (rlr/...), D and T, and the HParams session
                  (its arguments and status); `tensorboard --logdir=...`
backup/           keras.callbacks.BackupAndRestore; removed once done
.lock             held while a trainer works in the folder (one at a time);
                  removed when it ends
```

Every file is written atomically (temporary name, then rename). Train loss
and accuracy are Keras' running means over the epoch's mini-batches; test
metrics are evaluated on the whole test split after each epoch.

It runs on every Keras backend (`KERAS_BACKEND=tensorflow|jax|torch`);
TensorFlow is imported only on the TensorFlow backend, for TFDS dataset
names and for `--distribution=mirrored|multi_worker`. The input pipeline is
`rlr_keras.data.train_pipeline`, NumPy batches on every backend.

Fault tolerance: a run killed at any point (even SIGKILL) and started again
with the same command resumes after the last completed epoch; with
`--deterministic` it ends with the same weights and metrics as an
uninterrupted run on CPU, on every backend (the data order of epoch e is a
function of --seed and e, the random factor of --seed and the step). A run
whose status is `done` is not trained again (delete the folder to retrain).
A loss that becomes NaN or infinite stops the run at the end of that epoch
with status `failed` and the reason; SIGINT and SIGTERM also record
`failed`. Errors in the flags, data or files are one line on stderr
(`train.py: error: ...`, exit status 2), before the run folder is touched.

Example (Figure 1 of the paper on the offline digits data, one run):

```
python experiments/train.py --dataset=digits --model=mlp --protocol=random \
    --learning_rate=5e-3 --epochs=20 --output_dir=/tmp/rlr/random_seed0
```
"""

import _thread
import contextlib
import dataclasses
import glob
import math
import numbers
import os
import re
import shutil
import signal
import socket
import sys
import threading

from absl import logging

from rlr_keras import _quiet
from rlr_keras.experiment import _rundir


@dataclasses.dataclass(frozen=True)
class Config:
    """The arguments of one run: the flags of the same names (`--helpfull`).

    `delta=None` is the library's default for the protocol (1 for random);
    `nesterov=None` means Nesterov momentum whenever `momentum > 0`;
    `vgg_weights=None` means `imagenet` for vgg16 and `none` otherwise.
    `train_subset=N` trains on the first N examples of the training split
    (in the order the dataset holds them; every epoch visits them in the
    order `rlr_keras.data.epoch_order(N, seed, epoch)`), for smoke tests;
    None trains on all of them. `coupled_weight_decay` is the paper's L2
    term added to the gradient (`RandomLRSGD(coupled_weight_decay=)`); runs
    recorded before 0.2.0 call it `weight_decay` (`upgrade_arguments`).
    In Python, `model` may also be a model function and `dataset` a loader
    function, arrays `((x_train, y_train), (x_test, y_test))` or an
    `ImageDataset` (see `rlr_keras.models.build_model` and
    `rlr_keras.data.load_dataset`); the run records their names.
    """

    model: str = "mlp"
    dataset: str = "digits"
    data_dir: str = None
    image_size: str = None
    vgg_weights: str = None
    train_subset: int = None
    protocol: str = "constant"
    learning_rate: float = 5e-3
    delta: float = None
    period: float = None
    momentum: float = 0.9
    nesterov: bool = None
    coupled_weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 180
    seed: int = 0
    deterministic: bool = False
    temperature_probe: int = 0
    temperature_every: int = 1
    alpha_log_steps: int = 100
    evaluate_train: bool = True
    jit_compile: bool = False
    mixed_precision: bool = False
    steps_per_execution: int = None
    backup_every_s: float = 60.0
    distribution: str = "none"
    output_dir: str = None
    verbose: int = 1


_DEFAULT = Config()
# The default --steps_per_execution is at most this many steps (a progress
# bar that still moves; more saves nothing measurable).
AUTO_STEPS_PER_EXECUTION_MAX = 64

ARGUMENT_NAMES = tuple(field.name for field in dataclasses.fields(Config))

# Arguments that may change between the attempts of one run.
# A run may resume on another number of devices: the math is the same.
# So may the steps per call (each step is the same compiled step) and when
# backups are made.
# The folder itself is the run: the path it was named by (relative,
# absolute, with a trailing slash, moved or copied) does not identify it.
_NOT_IDENTIFYING = frozenset({"verbose", "alpha_log_steps", "distribution",
                              "steps_per_execution", "backup_every_s",
                              "output_dir"})

_WEIGHTS_FILE = "model.weights.h5"
_MODEL_FILE = "model.keras"

# Arguments renamed since a run could record them: old name -> new name.
# `weight_decay` (0.1.0) was the coupled L2 term, not Keras' decoupled
# `weight_decay` of `RandomLRSGD`; 0.2.0 gives it the library's name.
RENAMED_ARGUMENTS = {"weight_decay": "coupled_weight_decay"}


def weight_decay_message(prefix="--"):
    """Why `weight_decay` is refused: which weight decay is which."""
    return (
        f"{prefix}weight_decay is not an argument of a run: Keras' "
        "weight_decay (of RandomLRSGD and every Keras optimizer) is "
        "decoupled, subtracted from the weights, which runs do not offer; "
        f"the paper's coupled L2 term, added to the gradient, is "
        f"{prefix}coupled_weight_decay (called {prefix}weight_decay before "
        "rlr_keras 0.2.0)")
_TRAIN_EVAL_BATCH = 1024  # About; see _fit_arguments.

# A quick reachability test before TFDS, which otherwise retries for minutes
# without network.
_TFDS_HOST = ("storage.googleapis.com", 443)
_TFDS_TIMEOUT_S = 3.0


# Checks of the script's own rules (the library checks its own) ---------------


def one_line(error):
    return " ".join(str(error).split())


def check_folder(flag, folder):
    """Raises ValueError unless `folder` can be (or is) a folder we write.

    `flag` names it in the message (`output_dir`, `root`).
    """
    if not folder:
        raise ValueError(f"--{flag} must name a folder, got {folder!r}")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--{flag}={folder} is a file, not a folder")
    existing = os.path.abspath(folder)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
        if os.path.exists(existing) and not os.path.isdir(existing):
            raise ValueError(f"--{flag}={folder}: {existing} is a "
                             "file, not a folder")
    _check_path_length(flag, folder, existing)
    try:  # os.access says yes to root on a read-only file system.
        with open(os.path.join(existing, f".write-test-{os.getpid()}"),
                  "w", encoding="utf-8"):
            pass
        os.remove(os.path.join(existing, f".write-test-{os.getpid()}"))
    except OSError as error:
        raise ValueError(
            f"--{flag}={folder}: cannot write in {existing} "
            f"({error.strerror})") from None


# Room below a folder for the names written in it (temporary files,
# backup/..., tensorboard/validation/events.out.tfevents.<time>.<host>...).
_NAMES_BELOW = 192


def _check_path_length(flag, folder, existing):
    """Raises ValueError if the OS cannot hold `folder` (ENAMETOOLONG)."""
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (AttributeError, OSError, ValueError):  # Not POSIX.
        return
    path = os.path.abspath(folder)
    longest = max(len(os.fsencode(part)) for part in path.split(os.sep))
    if longest > name_max:
        raise ValueError(
            f"--{flag}={folder}: a name in the path is {longest} bytes long, "
            f"beyond the file system's limit of {name_max}; use a shorter "
            "name")
    if len(os.fsencode(path)) + _NAMES_BELOW >= path_max:
        raise ValueError(
            f"--{flag}={folder}: the path is {len(os.fsencode(path))} bytes "
            f"long; the files below it must stay under the system's limit of "
            f"{path_max}: use a shorter path")


def parse_image_size(text):
    if text is None:
        return None
    try:
        size = tuple(int(part) for part in text.split(","))
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"--image_size must be H,W (two positive integers, "
                         f"e.g. 28,28), got {text!r}")
    return size


def _nesterov(config):
    """--nesterov, whose default depends on --momentum."""
    if config.nesterov is None:
        return config.momentum > 0.0  # False for NaN too: the library says.
    return config.nesterov


def _check_tfds_reachable(name, data_dir):
    """Fails fast when TFDS has neither a prepared copy nor the network."""
    folder = os.path.expanduser(
        data_dir or os.environ.get("TFDS_DATA_DIR")
        or os.path.join("~", "tensorflow_datasets"))
    base = name.split(":")[0]
    if glob.glob(os.path.join(folder, base, "**", "dataset_info.json"),
                 recursive=True):
        return
    try:
        socket.create_connection(_TFDS_HOST, timeout=_TFDS_TIMEOUT_S).close()
    except OSError as error:
        raise _rundir.UserError(
            f"--dataset={name}: TFDS has no prepared copy in "
            f"{os.path.join(folder, base)} and cannot download it "
            f"({_TFDS_HOST[0]}: {error}); offline, use --data_dir=FOLDER "
            "holding a prepared copy, or --dataset=idx:PATH, "
            "idx-split:PATH, cifar10_batches:PATH or digits") from None


def _check_data_sizes(config, num_train, steps):
    if config.batch_size > num_train:
        raise ValueError(
            f"--batch_size={config.batch_size} is larger than the training "
            f"set ({num_train} examples); use --batch_size <= {num_train}")
    if config.temperature_probe > num_train:
        raise ValueError(
            f"--temperature_probe={config.temperature_probe} is larger than "
            f"the training set ({num_train} examples); use at most "
            f"{num_train}, or 0 to turn the monitor off")
    if config.steps_per_execution and steps % config.steps_per_execution:
        divisors = [k for k in range(1, steps + 1) if steps % k == 0]
        raise ValueError(
            f"--steps_per_execution={config.steps_per_execution} does not "
            f"divide the {steps} steps of an epoch (an exact resume needs "
            f"whole epochs per call); use one of {divisors}")


def _steps_per_execution(config, steps, backend, tf_strategy=False):
    """--steps_per_execution, or its default for an epoch of `steps` steps.

    `tf_strategy`: whether a tf.distribute strategy runs the steps.
    """
    spe = config.steps_per_execution
    if spe is not None and spe > 1 and tf_strategy:
        raise ValueError(
            f"--steps_per_execution={spe} does not work under tf.distribute "
            f"(--distribution={config.distribution}: Keras 3 fails to run "
            "several steps per call there); leave it unset")
    if spe is not None:
        return spe
    if backend == "torch" or tf_strategy:
        return 1
    return max(k for k in range(1, min(steps, AUTO_STEPS_PER_EXECUTION_MAX)
                                + 1) if steps % k == 0)


# Run-folder bookkeeping -----------------------------------------------------


def _versions():
    """The library, Keras, the backend in use and Python, by version."""
    import importlib  # pylint: disable=g-import-not-at-top

    import keras  # pylint: disable=g-import-not-at-top

    import rlr_keras  # pylint: disable=g-import-not-at-top

    backend = keras.backend.backend()
    return {"rlr_keras": rlr_keras.__version__, "keras": keras.__version__,
            "backend": backend,
            backend: importlib.import_module(backend).__version__,
            "python": sys.version.split()[0]}


def _source():
    """The git commit of the rlr_keras source in use, and whether it is dirty.

    `{"commit": None, "dirty": None}` when the package is not a git checkout
    (installed from a wheel) or git is missing. `dirty` is true when tracked
    files differ from the commit (untracked files, such as run folders, do
    not count).
    """
    import subprocess  # pylint: disable=g-import-not-at-top

    import rlr_keras  # pylint: disable=g-import-not-at-top

    folder = os.path.dirname(os.path.abspath(rlr_keras.__file__))

    def git(*args):
        return subprocess.run(
            ["git", "-C", folder, *args], check=True, capture_output=True,
            text=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def upgrade_arguments(arguments):
    """A run's recorded arguments under today's names (`RENAMED_ARGUMENTS`).

    A run recorded before a rename resumes, and replays from its
    config.json, as if recorded today.
    """
    upgraded = dict(arguments)
    for old, new in RENAMED_ARGUMENTS.items():
        if old in upgraded and new not in upgraded:
            upgraded[new] = upgraded.pop(old)
    return upgraded


def argument_changes(run_dir, arguments):
    """How `arguments` differ from those of the run in `run_dir`.

    Returns a list of `--name: old there, new now` strings, one per
    identifying argument that differs (empty if none, or if `run_dir` holds
    no run).

    Raises:
        ValueError: if the run's config.json is damaged (naming it).
    """
    path = os.path.join(run_dir, _rundir.CONFIG_FILE)
    previous = _rundir.read_json(path)
    if previous is None:
        return []
    old = previous.get("arguments") if isinstance(previous, dict) else None
    if not isinstance(old, dict):
        raise ValueError(  # noqa: TRY004  # A damaged file, as read_json.
            f"{path} has no arguments object; this tool writes it "
            "atomically, so something else changed it: restore or delete "
            "that file")
    old = upgrade_arguments(old)
    different = sorted(
        name for name in set(old) | set(arguments)
        if name not in _NOT_IDENTIFYING
        and old.get(name) != arguments.get(name))
    return [f"--{n}: {old.get(n)!r} there, {arguments.get(n)!r} now"
            for n in different]


def _check_same_arguments(run_dir, arguments):
    """Raises ValueError if `run_dir` holds a run with other arguments."""
    changes = ", ".join(argument_changes(run_dir, arguments))
    if changes:
        raise ValueError(
            f"--output_dir={run_dir} holds a run with other arguments "
            f"({changes}); use another --output_dir or delete that folder")


def _replay_header(arguments):
    """flags.cfg's header: how to replay the run, or why it cannot be."""
    from rlr_keras import data as data_lib  # pylint: disable=all
    from rlr_keras import models  # pylint: disable=g-import-not-at-top

    # Specs recorded for Python objects: callable:... and arrays:...
    prefixes = (models.CALLABLE_PREFIX, data_lib.ARRAYS_PREFIX)
    in_memory = [f"{name}={arguments[name]}" for name in ("model", "dataset")
                 if str(arguments[name]).startswith(prefixes)]
    if in_memory:
        return ("Flags of this run, made from Python objects "
                f"({', '.join(in_memory)}): it cannot be replayed from the\n"
                "command line; call rlr_keras.experiment.train with the same "
                "objects and arguments.")
    return ("Flags of this run. Replay (resumes, or does nothing if done):\n"
            "  rlr-train --flagfile=THIS_FILE\n"
            "  (or python experiments/train.py --flagfile=THIS_FILE)")


def recorded_arguments(config):
    """The arguments of `config` as a run records them (JSON, flags.cfg).

    The model and dataset become their specs (`rlr_keras.models.model_spec`,
    `rlr_keras.data.dataset_spec`): a Python callable or arrays are recorded
    by name or digest.
    """
    from rlr_keras import data as data_lib  # pylint: disable=all
    from rlr_keras import models  # pylint: disable=g-import-not-at-top

    arguments = {name: getattr(config, name) for name in ARGUMENT_NAMES}
    arguments["model"] = models.model_spec(config.model)
    arguments["dataset"] = data_lib.dataset_spec(config.dataset)
    return arguments


def _write_run_description(output_dir, arguments, optimizer_config):
    """Writes flags.cfg and config.json (the arguments, versions)."""
    _rundir.write_text(
        os.path.join(output_dir, _rundir.FLAGS_FILE),
        _rundir.flag_lines(arguments, header=_replay_header(arguments)))
    _rundir.write_json(os.path.join(output_dir, _rundir.CONFIG_FILE),
                       {"arguments": arguments, "versions": _versions(),
                        "source": _source(),
                        "optimizer": optimizer_config})


def _hparams(arguments):
    """The arguments shown in TensorBoard's HParams dashboard."""
    return {name: value for name, value in arguments.items()
            if name not in _NOT_IDENTIFYING | {"output_dir", "data_dir"}}


def _write_hparams_start(log_dir, arguments, run_name):
    if glob.glob(os.path.join(log_dir, "events.out.tfevents*")):
        return  # Written by an earlier attempt, or by the sweep.
    _rundir.write_hparams_session_start(log_dir, _hparams(arguments),
                                        group_name=run_name)


# Keras' BackupAndRestore -----------------------------------------------------


def _backup_files(backup_dir):
    """The (weights, metadata) pairs of BackupAndRestore, newest first.

    These names are private to `keras.callbacks.BackupAndRestore` (Keras
    3.15, `double_checkpoint=True`); Keras offers no way to check a backup
    before `fit`. tests/experiments_train_test.py fails if Keras renames them.
    """
    weights = os.path.join(backup_dir, "latest.weights.h5")
    metadata = os.path.join(backup_dir, "training_metadata.json")
    return [(weights, metadata), (weights + ".bkp", metadata + ".bkp")]


def _saved_iterations(weights_path):
    """The optimizer's step counter in a Keras weights file (else None).

    Keras saves the optimizer's variables as `optimizer/vars/<i>`, the step
    counter first; also private, and covered by the same test.
    """
    import h5py  # pylint: disable=g-import-not-at-top

    try:
        with h5py.File(weights_path, "r") as f:
            return int(f["optimizer/vars/0"][()])
    except Exception:  # pylint: disable=broad-except  # Torn: any error.
        return None


def _backed_up_epoch(weights, metadata, steps_per_epoch):
    """The epoch of a consistent (weights, metadata) pair, else None."""
    try:
        epoch = int(_rundir.read_json(metadata)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None
    if _saved_iterations(weights) != epoch * steps_per_epoch:
        return None
    return epoch


def _resume_epoch(backup_dir, steps_per_epoch):
    """Returns the epoch the backup resumes at, repairing it (0 if none).

    A kill while BackupAndRestore writes leaves a torn weights file, a torn
    metadata file, or weights of one epoch with the metadata of another.
    The newest consistent pair (the step counter in the weights is epoch x
    steps) is kept under the names Keras reads; if neither is, the backup is
    dropped and training starts over, with a warning.
    """
    if not os.path.isdir(backup_dir) or not os.listdir(backup_dir):
        return 0
    pairs = _backup_files(backup_dir)
    for weights, metadata in pairs:
        epoch = _backed_up_epoch(weights, metadata, steps_per_epoch)
        if epoch is None:
            continue
        if (weights, metadata) != pairs[0]:
            logging.warning("The latest backup in %s is torn or "
                            "inconsistent: going back to the previous one "
                            "(epoch %d).", backup_dir, epoch)
            for source, target in zip((weights, metadata), pairs[0]):
                with open(source, "rb") as f:
                    _rundir.write_bytes(target, f.read())
        return epoch
    logging.warning("No usable backup in %s (torn or inconsistent files): "
                    "training starts over.", backup_dir)
    shutil.rmtree(backup_dir)
    return 0


def _check_metrics(output_dir, backup_dir, initial_epoch):
    """Refuses a resume whose metrics.jsonl lost epochs the backup holds.

    Their metrics cannot be measured again from the backup (it holds only
    the last epoch's state): the user restores the file, or starts over.
    """
    path = os.path.join(output_dir, _rundir.METRICS_FILE)
    recorded = len([row for row in _rundir.read_jsonl(path)
                    if isinstance(row, dict)
                    and isinstance(row.get("epoch"), int)
                    and row["epoch"] <= initial_epoch])
    if recorded < initial_epoch:
        raise _rundir.UserError(
            f"{path} holds {recorded} of the {initial_epoch} epochs that the "
            f"backup resumes after (it was deleted or cut short); restore "
            f"it, or delete {backup_dir} to train from the start")


# Summary ---------------------------------------------------------------------


def _summary(rows, *, num_parameters, temperature_over_d):
    if not rows:
        raise RuntimeError("no completed epoch recorded in metrics.jsonl")
    last = rows[-1]
    best = max(rows, key=lambda row: row["test_accuracy"])
    train_accuracy = last.get("train_eval_accuracy", last["train_accuracy"])
    summary = {
        "final_test_accuracy": last["test_accuracy"],
        "best_test_accuracy": best["test_accuracy"],
        "best_epoch": best["epoch"],
        "final_train_accuracy": last["train_accuracy"],
        "final_train_loss": last["train_loss"],
        "final_test_loss": last["test_loss"],
        "generalization_gap": train_accuracy - last["test_accuracy"],
        "wall_time_s": last["wall_time_s"],
        "num_parameters": num_parameters,
        "temperature_over_d": temperature_over_d,
        "epochs": last["epoch"],
    }
    if "train_eval_accuracy" in last:
        summary["final_train_eval_accuracy"] = last["train_eval_accuracy"]
        summary["final_train_eval_loss"] = last["train_eval_loss"]
    measured = [row for row in rows if row.get("temperature") is not None]
    if measured:
        summary["diffusion"] = measured[-1]["diffusion"]
        summary["temperature"] = measured[-1]["temperature"]
    return summary


def _save_atomically(save, path, suffix):
    """Calls `save(temporary)` (a name ending in `suffix`, which Keras
    needs), then moves the file to `path` atomically."""
    temporary = os.path.join(os.path.dirname(path),
                             f".tmp-{os.getpid()}{suffix}")
    try:
        save(temporary)
        with open(temporary, "rb") as f:
            _rundir.write_bytes(path, f.read())
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _save_model(model, path):
    """Saves the whole model as a .keras file, atomically.

    A model Keras cannot serialize (a user's layer without `get_config`)
    gets a warning, not a failed run: model.weights.h5 holds its weights.
    """
    try:
        _save_atomically(model.save, path, ".keras")
    except (TypeError, ValueError, NotImplementedError) as error:
        logging.warning("%s not written: Keras cannot save this model "
                        "(%s); model.weights.h5 holds its weights.", path,
                        one_line(error))


def _save_weights(model, path):
    """Saves the weights atomically (Keras needs a .weights.h5 name)."""
    _save_atomically(model.save_weights, path, ".weights.h5")


# The run ---------------------------------------------------------------------


def run(*, strategy=None, **arguments):
    """Trains one model with one protocol into the run folder `output_dir`.

    Keyword arguments are the fields of `Config` (the flags of the same
    names, see `--helpfull`), plus:

    Args:
        strategy: a `tf.distribute.Strategy` or None (made from
            `distribution`): the model, optimizer and metrics are created in
            its scope. Under a multi-worker strategy only the chief writes
            the run folder; other workers write `workertemp_<id>` inside it.

    Returns:
        The summary (the contents of summary.json).

    Raises:
        ValueError, FileNotFoundError, rlr_keras's and _rundir.UserError:
            for invalid arguments, data or run folders, before the folder is
            touched; also if `output_dir` holds a run made with other
            arguments, or another trainer holds it.
        FloatingPointError: if the training loss becomes NaN or infinite
            (the run's status is then `failed`, with this message).
    """
    if "weight_decay" in arguments:
        raise TypeError(weight_decay_message(prefix=""))
    return train(Config(**arguments), strategy=strategy)


def train(config, *, strategy=None):
    """Trains `config` (a `Config`); see `run`.

    The steps: validate what needs no framework; return at once if the run
    is done; build data, model and protocol (the library validates the
    rest), all before the folder is touched; then, holding the folder's
    lock, claim it, train and summarize.
    """
    config = _validate(config)
    arguments = recorded_arguments(config)
    _check_same_arguments(config.output_dir, arguments)
    if _rundir.read_status(config.output_dir) == _rundir.DONE:
        logging.info("%s is done already; not training again.",
                     config.output_dir)
        return _rundir.read_json(os.path.join(config.output_dir,
                                              _rundir.SUMMARY_FILE))
    _import_frameworks(config)
    with _keras_state(config, strategy) as strategy:
        with _quiet.quiet_imports():  # Some layers import TensorFlow late.
            setup = _build(config, strategy)
        with _rundir.locked(setup.output_dir,
                            owner=os.environ.get(_rundir.LOCK_OWNER_ENV)):
            return _train_in_folder(config, arguments, setup, strategy)


def _import_frameworks(config):
    """Imports Keras (and TensorFlow, if used) without start-up noise."""
    with _quiet.quiet_imports():
        import keras  # pylint: disable=g-import-not-at-top

        from rlr_keras import data as data_lib  # pylint: disable=all
        if (keras.backend.backend() == "tensorflow"
                or (isinstance(config.dataset, str) and data_lib.
                    parse_dataset_spec(config.dataset)[0] == "tfds")):
            import tensorflow  # noqa: F401  # pylint: disable=all


# The integer arguments and their ranges (None: unbounded below). A count
# must fit the int32 counters of Keras' loops and progress bar; a value
# beyond reached TensorBoard's int64 fields and failed after the folder was
# claimed.
INT32_MAX = 2**31 - 1
_INTEGER_RANGES = {"batch_size": 1, "epochs": 1, "temperature_probe": 0,
                   "temperature_every": 1, "alpha_log_steps": 1,
                   "verbose": 0}


def _check_optional_count(name, value, none_means):
    """Raises ValueError unless `value` is None or an integer in
    [1, INT32_MAX]."""
    if value is not None and (isinstance(value, bool)
                              or not isinstance(value, numbers.Integral)
                              or not 1 <= value <= INT32_MAX):
        raise ValueError(f"--{name} must be an integer in [1, {INT32_MAX}] "
                         f"or None ({none_means}), got {value!r}")


def _check_integers(config):
    for name, low in _INTEGER_RANGES.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"--{name} must be an integer, got {value!r}")
        high = 2 if name == "verbose" else INT32_MAX
        if not low <= value <= high:
            raise ValueError(f"--{name} must be an integer in [{low}, "
                             f"{high}], got {value}")


def check_arguments(config):
    """Checks `config` by train.py's rules that need neither data nor a run
    folder: its integer ranges, flags and protocol (the library's checks).

    A sweep calls it on every point of its grid before the first run.

    Raises:
        ValueError, TypeError: naming the argument.
    """
    from rlr_keras import protocols  # pylint: disable=g-import-not-at-top

    _check_integers(config)
    parse_image_size(config.image_size)
    backup_every_s = config.backup_every_s
    if (isinstance(backup_every_s, bool)
            or not isinstance(backup_every_s, numbers.Real)
            or not 0.0 <= backup_every_s < math.inf):
        raise ValueError(f"--backup_every_s must be a finite number >= 0 "
                         f"(seconds), got {backup_every_s!r}")
    _check_optional_count("steps_per_execution", config.steps_per_execution,
                          "the default")
    _check_optional_count("train_subset", config.train_subset,
                          "the whole training split")
    # The flag's choices are the library's list; `run` takes any string.
    if config.protocol not in protocols.PROTOCOLS:
        raise ValueError(f"--protocol must be one of "
                         f"{', '.join(protocols.PROTOCOLS)}, got "
                         f"{config.protocol!r}")
    protocols.check_arguments(
        config.protocol, learning_rate=config.learning_rate,
        delta=config.delta, period=config.period, momentum=config.momentum,
        nesterov=_nesterov(config), coupled_weight_decay=config.coupled_weight_decay,
        seed=config.seed)


def _validate(config):
    """The script's checks that need no framework; returns the resolved
    config (the run folder as a str, the default --vgg_weights)."""
    check_arguments(config)
    check_folder("output_dir", config.output_dir)
    return resolved(config)


def resolved(config):
    """`config` with the run folder as a str and the default vgg_weights."""
    vgg_weights = config.vgg_weights
    if vgg_weights is None:
        vgg_weights = "imagenet" if config.model == "vgg16" else "none"
    return dataclasses.replace(config,
                               output_dir=os.fspath(config.output_dir),
                               vgg_weights=vgg_weights)


def _one_inter_op_thread_on_cpu():
    """TensorFlow on a host without GPU: one inter-op thread.

    The training loop runs one compiled step after another, so TensorFlow's
    default inter-op pool (a thread per core) only competes with the
    compiled step's own (intra-op) threads and tf.data for the cores: on
    the 2-core CPU, Model 1's epoch under `fit` took 9-22 % less time with
    one (three paired runs). No result changes. Left alone when the
    process set a value itself or TensorFlow's runtime already started
    (then it can no longer change).
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    threading = tf.config.threading
    with _quiet.quiet_imports():  # The device query starts CUDA (cuInit).
        gpus = tf.config.list_physical_devices("GPU")
    if gpus or threading.get_inter_op_parallelism_threads():
        return
    try:
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # The runtime started: its pool stays.
        logging.info("TensorFlow already started: its inter-op threads "
                     "stay as they are.")


@contextlib.contextmanager
def _keras_state(config, strategy):
    """Sets Keras' global state for the run (restored after); yields the
    strategy."""
    import keras  # pylint: disable=g-import-not-at-top

    from rlr_keras.experiment import _distribution  # pylint: disable=all

    backend = keras.backend.backend()
    if strategy is None:
        _distribution.check_backend(config.distribution, backend)
    if backend == "tensorflow" and config.distribution == "none":
        _one_inter_op_thread_on_cpu()
    # The strategy comes first: a multi-worker strategy must be created
    # before anything starts the TensorFlow runtime (protocols.build does).
    if strategy is None and config.distribution in _distribution.TF_STRATEGIES:
        strategy = _distribution.make_strategy(config.distribution)
    elif strategy is None and config.distribution == "data_parallel":
        strategy = _distribution.make_data_parallel()
    _distribution.replica_batch_size(config.batch_size, strategy)
    _distribution.check_jit_compile(config.jit_compile, strategy)

    previous_policy = keras.mixed_precision.global_policy().name
    previous_distribution = keras.distribution.distribution()
    try:
        keras.backend.clear_session()
        if config.deterministic and backend == "tensorflow":
            import tensorflow as tf  # pylint: disable=g-import-not-at-top

            # TensorFlow offers no way back: it stays on in this process.
            tf.config.experimental.enable_op_determinism()
        if config.distribution == "data_parallel":
            # Variables and batches are laid out on the devices from here on.
            keras.distribution.set_distribution(strategy)
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if config.mixed_precision else "float32")
        yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if config.distribution == "data_parallel":
            keras.distribution.set_distribution(previous_distribution)


@dataclasses.dataclass
class _Setup:
    """What `_build` makes before the run folder is touched."""

    output_dir: str
    data: object
    network: object
    optimizer: object
    protocol_callbacks: list
    steps: int
    pad_to_multiple: int
    tf_strategy: bool
    temperature_over_d: float


def _build(config, strategy):
    """Loads the data and builds the model and protocol (all validation)."""
    import keras  # pylint: disable=g-import-not-at-top

    import rlr_keras  # pylint: disable=g-import-not-at-top
    from rlr_keras import data as data_lib  # pylint: disable=all
    from rlr_keras import models  # pylint: disable=g-import-not-at-top
    from rlr_keras import protocols  # pylint: disable=g-import-not-at-top

    from rlr_keras.experiment import _distribution  # pylint: disable=all

    # (check_arguments checked the protocol; build_model checks the model:
    # a name, a spec or a callable.)
    nesterov = _nesterov(config)
    temperature_over_d = rlr_keras.effective_temperature(
        config.learning_rate, config.batch_size, config.momentum)
    if isinstance(config.dataset, str):
        kind, name = data_lib.parse_dataset_spec(config.dataset)
        if kind == "tfds":
            _check_tfds_reachable(name, config.data_dir)
    tf_strategy = (strategy is not None
                   and config.distribution != "data_parallel")

    def scope():
        return strategy.scope() if tf_strategy else contextlib.nullcontext()

    with scope():  # Before the data: the protocol's checks are instant.
        optimizer, protocol_callbacks = protocols.build(
            config.protocol, learning_rate=config.learning_rate,
            delta=config.delta, period=config.period,
            momentum=config.momentum, nesterov=nesterov,
            coupled_weight_decay=config.coupled_weight_decay,
            seed=config.seed)

    try:
        data = data_lib.load_dataset(
            config.dataset, data_dir=config.data_dir,
            image_size=parse_image_size(config.image_size))
    except RuntimeError as error:  # TFDS could not download or prepare.
        raise _rundir.UserError(str(error)) from error
    data = _train_subset(data, config.train_subset)
    steps = data_lib.steps_per_epoch(data.num_train, config.batch_size)
    _check_data_sizes(config, data.num_train, steps)

    replicas = _distribution.num_replicas(strategy)
    # Under data_parallel a partial batch is padded to split evenly among the
    # devices (padding of weight 0, see the loss below).
    pad_to_multiple = (replicas if config.distribution == "data_parallel"
                       else 1)
    # Every random stream below is also seeded explicitly from `seed`; the
    # global seed covers anything that is not.
    keras.utils.set_random_seed(config.seed)
    with scope():
        try:
            network = models.build_model(
                config.model, data.input_shape, data.num_classes,
                vgg_weights=config.vgg_weights, seed=config.seed)
        except RuntimeError as error:  # ImageNet weights not downloadable.
            raise _rundir.UserError(str(error)) from error
        except ValueError as error:
            if "image_size" in str(error) and config.image_size is None:
                raise ValueError(f"{error} (train.py: --image_size=H,W)"
                                 ) from error
            raise
        network.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, **(
                    {"reduction": "mean_with_sample_weight"}
                    if pad_to_multiple > 1 else {})),
            metrics=[keras.metrics.SparseCategoricalAccuracy(
                name="accuracy")],
            jit_compile=config.jit_compile,
            steps_per_execution=_steps_per_execution(
                config, steps, keras.backend.backend(), tf_strategy))
        optimizer.build(network.trainable_variables)
    return _Setup(
        output_dir=_distribution.write_dir(config.output_dir, strategy),
        data=data, network=network, optimizer=optimizer,
        protocol_callbacks=list(protocol_callbacks), steps=steps,
        pad_to_multiple=pad_to_multiple, tf_strategy=tf_strategy,
        temperature_over_d=temperature_over_d)


def _train_subset(data, size):
    """The first `size` training examples of `data` (all of them: None)."""
    if size is None:
        return data
    if size > data.num_train:
        raise ValueError(
            f"--train_subset={size} is larger than the training set "
            f"({data.num_train} examples); use at most {data.num_train}")
    return dataclasses.replace(data, train_images=data.train_images[:size],
                               train_labels=data.train_labels[:size])


def _train_in_folder(config, arguments, setup, strategy):
    """Claims the run folder (locked), trains, and writes the summary."""
    from rlr_keras.experiment import _distribution  # pylint: disable=all

    run_dir, output_dir = config.output_dir, setup.output_dir
    _check_same_arguments(output_dir, arguments)  # Now under the lock.
    _write_run_description(output_dir, arguments,
                           setup.optimizer.get_config())
    _rundir.write_status(output_dir, _rundir.RUNNING)
    log_dir = os.path.join(output_dir, _rundir.TENSORBOARD_DIR)
    chief = _distribution.is_chief(strategy)
    if chief:
        _write_hparams_start(log_dir, arguments,
                             os.path.basename(os.path.normpath(run_dir)))
    backup_dir = _distribution.backup_dir(run_dir, strategy)
    try:
        initial_epoch = _resume_epoch(backup_dir, setup.steps)
        _check_metrics(output_dir, backup_dir, initial_epoch)
        if initial_epoch:
            logging.info("Resuming %s after epoch %d.", output_dir,
                         initial_epoch)
        fit_arguments = _fit_arguments(config, setup, strategy,
                                       initial_epoch, backup_dir, log_dir)
        logging.info("Training %s (%d parameters) on %s, %s protocol, "
                     "%d epochs of %d steps.", config.model,
                     setup.network.count_params(), config.dataset,
                     config.protocol, config.epochs, setup.steps)
        setup.network.fit(**fit_arguments)

        rows = _rundir.read_jsonl(os.path.join(output_dir,
                                               _rundir.METRICS_FILE))
        summary = _summary(rows, num_parameters=setup.network.count_params(),
                           temperature_over_d=setup.temperature_over_d)
        _save_weights(setup.network, os.path.join(output_dir, _WEIGHTS_FILE))
        _save_model(setup.network, os.path.join(output_dir, _MODEL_FILE))
        _rundir.write_json(os.path.join(output_dir, _rundir.SUMMARY_FILE),
                           summary)
        _rundir.write_status(output_dir, _rundir.DONE)
    except BaseException as error:  # Record why, whatever it is; re-raise.
        try:
            _rundir.write_status(output_dir, _rundir.FAILED,
                                 error=f"{type(error).__name__}: {error}")
        except OSError as status_error:  # A full disk: the error stays.
            logging.error("Could not record the status failed in %s: %s",
                          output_dir, status_error)
        if chief:
            try:
                _rundir.write_hparams_session_end(log_dir, success=False)
            except Exception:  # pylint: disable=broad-except
                logging.exception("Could not write the HParams session end.")
        raise
    if chief:
        # The values of a sweep's HParams columns that are no epoch scalars.
        _rundir.write_scalars(log_dir, {
            "summary/best_test_accuracy": summary["best_test_accuracy"],
            "summary/generalization_gap": summary["generalization_gap"]},
            step=summary["epochs"])
        _rundir.write_hparams_session_end(log_dir, success=True)
    shutil.rmtree(backup_dir, ignore_errors=True)
    _distribution.remove_write_dir(run_dir, strategy)
    logging.info("Done: final test accuracy %.4f (best %.4f), %s",
                 summary["final_test_accuracy"],
                 summary["best_test_accuracy"], output_dir)
    return summary


def _fit_arguments(config, setup, strategy, initial_epoch, backup_dir,
                   log_dir):
    """The pipelines and callbacks of `fit`, in the order they must run."""
    import keras  # pylint: disable=g-import-not-at-top

    import rlr_keras  # pylint: disable=g-import-not-at-top
    from rlr_keras import callbacks as rlr_callbacks  # pylint: disable=all
    from rlr_keras import data as data_lib  # pylint: disable=all

    from rlr_keras.experiment import _callbacks  # pylint: disable=all
    from rlr_keras.experiment import _distribution  # pylint: disable=all

    data = setup.data
    # On TensorFlow the batches go through tf.data, the same batches in the
    # same order (Keras would read the NumPy ones through a Python
    # generator, one call per batch); under tf.distribute the strategy
    # splits them (_distribution.distribute_dataset).
    as_tf_data = keras.backend.backend() == "tensorflow"
    train_data = data_lib.train_pipeline(
        data.train_images, data.train_labels, batch_size=config.batch_size,
        seed=config.seed, epochs=config.epochs,
        initial_epoch=min(initial_epoch, config.epochs - 1),
        pad_to_multiple=setup.pad_to_multiple)

    def evaluation(images, labels, batch_size):
        pipeline = data_lib.eval_pipeline(
            images, labels, batch_size=batch_size,
            pad_to_multiple=setup.pad_to_multiple)
        steps = len(pipeline)
        if setup.tf_strategy:
            pipeline = _distribution.distribute_dataset(pipeline, strategy)
        elif as_tf_data:
            pipeline = pipeline.as_tf_dataset()
        return pipeline, steps

    # The test split in batches of C: a larger batch would change the test
    # loss in its last bits, and so the results of earlier runs.
    test_data, _ = evaluation(data.test_images, data.test_labels,
                              config.batch_size)
    if setup.tf_strategy:
        train_data = _distribution.distribute_dataset(train_data, strategy)
    elif as_tf_data:
        train_data = train_data.as_tf_dataset()

    # Order matters: callbacks that add to the epoch logs come before those
    # that write them; the divergence check before anything records.
    callbacks = list(setup.protocol_callbacks)
    callbacks.append(_callbacks.StopOnNonFiniteLoss())
    callbacks.append(rlr_keras.LearningRateMonitor(
        log_dir, update_freq=config.alpha_log_steps))
    if config.evaluate_train:
        # A new measurement, so free to take larger batches (faster): a
        # multiple of C, which divides among the replicas as C does.
        batch_size = config.batch_size * max(
            1, _TRAIN_EVAL_BATCH // config.batch_size)
        callbacks.append(_callbacks.TrainEvaluation(*evaluation(
            data.train_images, data.train_labels, batch_size)))
    if config.temperature_probe:
        probe_x, probe_y = data_lib.probe_subset(
            data.train_images, data.train_labels, config.temperature_probe,
            seed=config.seed)
        callbacks.append(rlr_keras.TemperatureMonitor(
            probe_x, probe_y, batch_size=config.batch_size,
            frequency=config.temperature_every,
            jit_compile=config.jit_compile))
    callbacks += [
        _callbacks.MetricsRecorder(
            os.path.join(setup.output_dir, _rundir.METRICS_FILE),
            initial_epoch),
        # Workers must agree on when to back up; their clocks may not.
        _callbacks.EpochBackup(backup_dir, (
            0.0 if _distribution.is_multi_worker(strategy)
            else config.backup_every_s)),
        rlr_callbacks.EpochSummaries(log_dir),
    ]
    return dict(x=train_data, epochs=config.epochs,
                initial_epoch=initial_epoch, steps_per_epoch=setup.steps,
                validation_data=test_data, callbacks=callbacks,
                verbose=config.verbose, shuffle=False)


# The command line ------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like SIGINT: the run records `failed: terminated`."""


def raise_terminated(signum, frame):
    del frame
    raise Terminated(f"terminated by signal {signum} (SIGTERM)")


def handle_interrupts():
    """SIGTERM raises `Terminated` in the main thread (SIGINT, Python's
    KeyboardInterrupt), and an interrupt that Python drops is raised again.

    Python drops an exception raised where it cannot propagate: a signal
    handled while a garbage-collector callback or a `__del__` runs (JAX's
    `_xla_gc_callback`, for one) raises there, and Python prints "Exception
    ignored in ..." and goes on; the run would then train on until it is
    killed, and stay `running`. Such exceptions reach `sys.unraisablehook`:
    ours delivers the signal again (`_thread.interrupt_main`, from a timer
    thread), so that it is raised at the next point where it can propagate.
    """
    signal.signal(signal.SIGTERM, raise_terminated)
    previous = sys.unraisablehook
    if getattr(previous, "redelivers_interrupts", False):
        return

    def redeliver(unraisable):
        error = unraisable.exc_value
        if not isinstance(error, KeyboardInterrupt):
            previous(unraisable)
            return
        # From another thread: in this one the handler would run at once,
        # in the hook, and be dropped again.
        threading.Timer(0.01, _thread.interrupt_main, args=(
            signal.SIGTERM if isinstance(error, Terminated)
            else signal.SIGINT,)).start()

    redeliver.redelivers_interrupts = True
    sys.unraisablehook = redeliver


# Errors in the user's flags, data or files: one line, exit status 2.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError,
                NotADirectoryError, PermissionError, _rundir.UserError)


def as_flag_message(error):
    """One line; a message that starts with a flag's name names the flag."""
    text = one_line(error)
    name = re.match(r"(\w+)(?= must| is |=)", text)
    if name and name.group(1) in ARGUMENT_NAMES:
        text = f"--{text}"
    return text

