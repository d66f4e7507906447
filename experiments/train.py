r"""Trains one model with one learning-rate protocol; the run folder says all.

Musso, "Stochastic gradient descent with random learning rate" (2020),
section 3: Model 1 (`mlp`), 2 (`cnn`) or 3 (`vgg16`) trained with the
constant, random or cyclic protocol at mean learning rate l. The protocol,
model and data come from the library (`rlr_keras.protocols.build`,
`rlr_keras.models.build_model`, `rlr_keras.data`); this script only wires
them to flags and to a self-describing run folder (`--output_dir`):

```
flags.cfg         the flags it ran with; replay with --flagfile=flags.cfg
config.json       the same arguments as JSON, plus versions
status.json       running -> done, or failed with the error
metrics.jsonl     one line per completed epoch: epoch (1-based), train_loss,
                  train_accuracy, test_loss, test_accuracy, learning_rate,
                  wall_time_s (cumulative), and diffusion/temperature on the
                  epochs the temperature monitor measured them
summary.json      final_test_accuracy, best_test_accuracy,
                  final_train_accuracy, final_train_loss, generalization_gap
                  (= final train - final test accuracy), wall_time_s,
                  num_parameters, temperature_over_d (eq. 20 with D = 1),
                  plus best_epoch, epochs and, if measured, diffusion and
                  temperature (last measured values)
model.weights.h5  the final weights
tensorboard/      train/ and validation/ events: loss, accuracy, learning
                  rate, alpha (rlr/...), D and T; `tensorboard --logdir=...`
backup/           keras.callbacks.BackupAndRestore; removed once done
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
A loss that becomes NaN or infinite stops the run at once with status
`failed` and the reason.

Example (Figure 1 of the paper on the offline digits data, one run):

```
python experiments/train.py --dataset=digits --model=mlp --protocol=random \
    --learning_rate=5e-3 --epochs=20 --output_dir=/tmp/rlr/random_seed0
```
"""

import contextlib
import math
import os
import shutil
import sys
import time

from absl import app
from absl import flags
from absl import logging

import _rundir

# Flags -----------------------------------------------------------------------
# Names are those of `run`'s keyword arguments, so that a flagfile, a run's
# config.json and a call of `run` all read the same.

# Model and data.
_MODEL = flags.DEFINE_enum(
    "model", "mlp", ["mlp", "cnn", "vgg16"],
    "Model 1 (mlp), 2 (cnn) or 3 (vgg16) of the paper's Appendix C.")
_DATASET = flags.DEFINE_string(
    "dataset", "digits",
    "A TFDS name (mnist, fashion_mnist, cifar10, ...), idx:PATH, "
    "idx-split:PATH, cifar10_batches:PATH, or digits (bundled, offline).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data folder (TFDS names only).")
_VGG_WEIGHTS = flags.DEFINE_string(
    "vgg_weights", None,
    "vgg16 only: imagenet (downloads), none (random init) or the path of a "
    "local VGG16 no-top weights file. Defaults to imagenet for vgg16.")

# Protocol and optimizer.
_PROTOCOL = flags.DEFINE_enum(
    "protocol", "constant", ["constant", "random", "cyclic"],
    "Learning-rate protocol (paper section 3).")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 5e-3, "Mean learning rate l.", lower_bound=0.0)
_DELTA = flags.DEFINE_float(
    "delta", 1.0,
    "Half-width Delta of the random factor alpha ~ U[1-Delta, 1+Delta] "
    "(random protocol only).", lower_bound=0.0, upper_bound=1.0)
_PERIOD = flags.DEFINE_float(
    "period", None,
    "Period P in epochs of the cyclic protocol, l (1 + cos(pi tau / P)); "
    "cyclic protocol only (the paper uses 6, 18, 30).", lower_bound=0.0)
_MOMENTUM = flags.DEFINE_float(
    "momentum", 0.9, "Momentum mu.", lower_bound=0.0, upper_bound=1.0)
_NESTEROV = flags.DEFINE_bool("nesterov", True, "Nesterov momentum.")
_WEIGHT_DECAY = flags.DEFINE_float(
    "weight_decay", 0.0,
    "Coupled (PyTorch-style L2) weight decay w, added to the gradient.",
    lower_bound=0.0)

# Training.
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 256, "Mini-batch size C.", lower_bound=1)
_EPOCHS = flags.DEFINE_integer(
    "epochs", 180, "Number of epochs.", lower_bound=1)
_SEED = flags.DEFINE_integer(
    "seed", 0,
    "Seed of the initial weights, the data order and the random factor.",
    lower_bound=0, upper_bound=2**32 - 1)
_DETERMINISTIC = flags.DEFINE_bool(
    "deterministic", False,
    "Bit-identical reruns and resumes: enables TensorFlow op determinism on "
    "the TensorFlow backend; JAX and PyTorch on CPU need nothing.")
_TEMPERATURE_PROBE = flags.DEFINE_integer(
    "temperature_probe", 0,
    "Size of the probe set (from the training split) on which the "
    "temperature monitor measures D and T; 0 turns the monitor off.",
    lower_bound=0)
_ALPHA_LOG_STEPS = flags.DEFINE_integer(
    "alpha_log_steps", 100,
    "Write alpha and l * alpha to TensorBoard every this many optimizer "
    "steps (per-epoch statistics of alpha are always written).",
    lower_bound=1)
_TEMPERATURE_EVERY = flags.DEFINE_integer(
    "temperature_every", 1,
    "Measure D and T every this many epochs.", lower_bound=1)

# Performance.
_JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", False, "Compile the training step with XLA.")
_MIXED_PRECISION = flags.DEFINE_bool(
    "mixed_precision", False,
    "Compute in float16 with float32 variables (mixed_float16 policy).")
_STEPS_PER_EXECUTION = flags.DEFINE_integer(
    "steps_per_execution", 1,
    "Training steps run per tf.function call.", lower_bound=1)
_DISTRIBUTION = flags.DEFINE_enum(
    "distribution", "none", ["none", "mirrored", "multi_worker",
                             "data_parallel"],
    "Data parallelism: none; on TensorFlow, tf.distribute's mirrored (every "
    "local GPU) or multi_worker (the hosts of the TF_CONFIG environment "
    "variable); on JAX, data_parallel (keras.distribution.DataParallel over "
    "every local device). --batch_size stays the global batch C, split "
    "among the replicas (it must divide evenly).")

# Output.
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "The run folder (created if needed). Required.")
_VERBOSE = flags.DEFINE_integer(
    "verbose", 1,
    "0: warnings and errors only; 1: Keras progress bar and info logs; "
    "2: one line per epoch and info logs.", lower_bound=0, upper_bound=2)

# The flags that are arguments of `run`, in the order flags.cfg lists them.
ARGUMENT_NAMES = (
    "model", "dataset", "data_dir", "vgg_weights", "protocol",
    "learning_rate", "delta", "period", "momentum", "nesterov",
    "weight_decay", "batch_size", "epochs", "seed", "deterministic",
    "temperature_probe", "temperature_every", "alpha_log_steps",
    "jit_compile",
    "mixed_precision", "steps_per_execution", "distribution", "output_dir",
    "verbose",
)

# Arguments that may change between the attempts of one run.
# A run may resume on another number of devices: the math is the same.
_NOT_IDENTIFYING = frozenset({"verbose", "alpha_log_steps", "distribution"})

_WEIGHTS_FILE = "model.weights.h5"


def check_arguments(*, model, protocol, delta, period, **unused):
    """Raises ValueError for arguments that do not go together."""
    del unused
    if protocol == "cyclic" and period is None:
        raise ValueError("--period is required for --protocol=cyclic")
    if protocol != "cyclic" and period is not None:
        raise ValueError(
            f"--period applies only to --protocol=cyclic, got --period="
            f"{period:g} with --protocol={protocol}")
    if protocol == "random" and not delta > 0:
        raise ValueError(
            f"--delta must be in (0, 1] for --protocol=random, got {delta!r}")
    if period is not None and not period > 0:
        raise ValueError(f"--period must be > 0, got {period!r}")
    del model
    return True


def _validate_combination(values):
    try:
        return check_arguments(**values)
    except ValueError as error:
        raise flags.ValidationError(str(error)) from None


flags.register_multi_flags_validator(
    ["model", "protocol", "delta", "period"], _validate_combination)


def arguments_from_flags(flag_values=flags.FLAGS):
    """Returns the keyword arguments of `run` given by the parsed flags."""
    return {name: flag_values[name].value for name in ARGUMENT_NAMES}


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


def _claim_run_dir(output_dir, arguments):
    """Writes (or checks) the run's flags and config; returns its status."""
    config_path = os.path.join(output_dir, _rundir.CONFIG_FILE)
    previous = _rundir.read_json(config_path)
    if previous is not None:
        old = previous.get("arguments", {})
        different = sorted(
            name for name in set(old) | set(arguments)
            if name not in _NOT_IDENTIFYING
            and old.get(name) != arguments.get(name))
        if different:
            changes = ", ".join(
                f"{n}: {old.get(n)!r} there, {arguments.get(n)!r} now"
                for n in different)
            raise ValueError(
                f"--output_dir={output_dir} holds a run with other arguments "
                f"({changes}); use another --output_dir or delete that folder")
    os.makedirs(output_dir, exist_ok=True)
    _rundir.write_text(
        os.path.join(output_dir, _rundir.FLAGS_FILE),
        _rundir.flag_lines(arguments, header=(
            "Flags of this run. Replay (resumes, or does nothing if done):\n"
            "  python experiments/train.py --flagfile=THIS_FILE")))
    _rundir.write_json(config_path, {"arguments": arguments,
                                     "versions": _versions()})
    return _rundir.read_status(output_dir)


def _backup_epoch(backup_dir):
    """Returns the epoch BackupAndRestore will resume at (0 if none).

    BackupAndRestore(double_checkpoint=True) keeps the previous checkpoint
    as `*.bkp` and falls back to it when the weights file is torn; a kill
    while it writes its metadata file is repaired here the same way.
    """
    metadata = os.path.join(backup_dir, "training_metadata.json")
    weights = os.path.join(backup_dir, "latest.weights.h5")
    if not os.path.exists(metadata):
        return 0
    try:
        return int(_rundir.read_json(metadata)["epoch"])
    except (ValueError, KeyError, TypeError):
        if not os.path.exists(metadata + ".bkp"):
            logging.warning("Unreadable %s and no previous backup: training "
                            "starts over.", metadata)
            shutil.rmtree(backup_dir)
            return 0
        logging.warning("Unreadable %s: going back to the previous backup.",
                        metadata)
        shutil.copyfile(metadata + ".bkp", metadata)
        if os.path.exists(weights + ".bkp"):
            shutil.copyfile(weights + ".bkp", weights)
        return int(_rundir.read_json(metadata)["epoch"])


def _summary(rows, *, num_parameters, temperature_over_d):
    if not rows:
        raise RuntimeError("no completed epoch recorded in metrics.jsonl")
    last = rows[-1]
    best = max(rows, key=lambda row: row["test_accuracy"])
    summary = {
        "final_test_accuracy": last["test_accuracy"],
        "best_test_accuracy": best["test_accuracy"],
        "best_epoch": best["epoch"],
        "final_train_accuracy": last["train_accuracy"],
        "final_train_loss": last["train_loss"],
        "final_test_loss": last["test_loss"],
        "generalization_gap": last["train_accuracy"] - last["test_accuracy"],
        "wall_time_s": last["wall_time_s"],
        "num_parameters": num_parameters,
        "temperature_over_d": temperature_over_d,
        "epochs": last["epoch"],
    }
    measured = [row for row in rows if row.get("temperature") is not None]
    if measured:
        summary["diffusion"] = measured[-1]["diffusion"]
        summary["temperature"] = measured[-1]["temperature"]
    return summary


def _callback_classes():
    """Keras callbacks of this script (defined lazily: Keras loads slowly)."""
    import keras  # pylint: disable=g-import-not-at-top

    class MetricsRecorder(keras.callbacks.Callback):
        """Writes metrics.jsonl at the end of every epoch (atomically).

        Listed before BackupAndRestore, so that a kill between the two
        writes leaves a metrics row for an epoch the backup does not hold;
        the first epoch of the next attempt drops such rows.
        """

        def __init__(self, path, expected_initial_epoch):
            super().__init__()
            self.path = path
            self.expected_initial_epoch = expected_initial_epoch
            self.rows = None
            self.start = None
            self.previous_wall_time = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            if self.rows is not None:
                return
            if epoch != self.expected_initial_epoch:
                raise RuntimeError(
                    f"BackupAndRestore resumed at epoch {epoch}, but its "
                    f"metadata said {self.expected_initial_epoch}")
            self.rows = [row for row in _rundir.read_jsonl(self.path)
                         if row["epoch"] <= epoch]
            if len(self.rows) != epoch:
                raise RuntimeError(
                    f"{self.path} holds {len(self.rows)} epochs, but the "
                    f"backup resumes after epoch {epoch}")
            if self.rows:
                self.previous_wall_time = self.rows[-1]["wall_time_s"]
            self.start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch + 1}
            for key, value in logs.items():
                name = {"loss": "train_loss", "accuracy": "train_accuracy",
                        "val_loss": "test_loss",
                        "val_accuracy": "test_accuracy"}.get(key, key)
                if name.startswith("val_"):
                    name = "test_" + name[len("val_"):]
                row[name] = float(value)
            if "learning_rate" not in row:
                row["learning_rate"] = float(keras.ops.convert_to_numpy(
                    self.model.optimizer.learning_rate))
            row["wall_time_s"] = (self.previous_wall_time
                                  + time.monotonic() - self.start)
            self.rows.append(row)
            _rundir.write_jsonl(self.path, self.rows)

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        """Raises FloatingPointError as soon as the training loss is NaN/inf.

        Raising (rather than TerminateOnNaN's stop_training) ends `fit`
        before the epoch's end, so neither metrics.jsonl nor the backup
        records the diverged epoch.
        """

        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise FloatingPointError(
                    f"training loss became {float(loss)} in epoch "
                    f"{self.epoch + 1}, batch {batch + 1}; the run stopped "
                    "(lower --learning_rate, or check the data)")

    return MetricsRecorder, StopOnNonFiniteLoss


def _epoch_summaries(log_dir):
    """Returns [the callback writing the epoch logs to TensorBoard]."""
    from rlr_keras import callbacks  # pylint: disable=g-import-not-at-top

    return [callbacks.EpochSummaries(log_dir)]


def _save_weights_atomically(model, path):
    temporary = os.path.join(os.path.dirname(path),
                             f".tmp-{os.getpid()}.weights.h5")
    model.save_weights(temporary)
    os.replace(temporary, path)


# The run ---------------------------------------------------------------------


def run(*, output_dir, model="mlp", dataset="digits", data_dir=None,
        vgg_weights=None, protocol="constant", learning_rate=5e-3, delta=1.0,
        period=None, momentum=0.9, nesterov=True, weight_decay=0.0,
        batch_size=256, epochs=180, seed=0, deterministic=False,
        temperature_probe=0, temperature_every=1, alpha_log_steps=100,
        jit_compile=False,
        mixed_precision=False, steps_per_execution=1, distribution="none",
        verbose=1, strategy=None):
    """Trains one model with one protocol into the run folder `output_dir`.

    Arguments are the flags of the same names (see `--helpfull`), except:

    Args:
        delta: float, used by the random protocol only (the constant and
            cyclic protocols have Delta = 0).
        vgg_weights: str or None; None means `imagenet` for vgg16 (as in the
            paper) and `none` for the other models.
        distribution: str, `none`, `mirrored` or `multi_worker` (the
            `tf.distribute` strategy to create when `strategy` is None;
            TensorFlow backend) or `data_parallel`
            (`keras.distribution.DataParallel` over every local device; JAX
            backend). `batch_size` is the global batch C in every case.
        strategy: a `tf.distribute.Strategy` or None (made from
            `distribution`): the model, optimizer and metrics are created in
            its scope. Under a multi-worker strategy only the chief writes
            the run folder; other workers write `workertemp_<id>` inside it.

    Returns:
        The summary (the contents of summary.json).

    Raises:
        ValueError: for invalid arguments (e.g. a distribution the backend
            does not offer), before any training; also if `output_dir`
            holds a run made with other arguments.
        FloatingPointError: if the training loss becomes NaN or infinite
            (the run's status is then `failed`, with this message).
    """
    arguments = {name: value for name, value in locals().items()
                 if name in ARGUMENT_NAMES}
    if not output_dir:
        raise ValueError("output_dir is required, got "
                         f"{output_dir!r}")
    if protocol not in ("constant", "random", "cyclic"):
        raise ValueError("protocol must be one of constant, random, cyclic, "
                         f"got {protocol!r}")
    if model not in ("mlp", "cnn", "vgg16"):
        raise ValueError(f"model must be one of mlp, cnn, vgg16, got {model!r}")
    if vgg_weights is None:
        vgg_weights = "imagenet" if model == "vgg16" else "none"
    check_arguments(model=model, protocol=protocol, delta=delta,
                    period=period)
    arguments["vgg_weights"] = vgg_weights
    arguments["output_dir"] = output_dir = os.fspath(output_dir)

    # Heavy imports here, so that `--help` and flag errors are instant.
    import keras  # pylint: disable=g-import-not-at-top

    import rlr_keras  # pylint: disable=g-import-not-at-top
    from rlr_keras import data as data_lib  # pylint: disable=all
    from rlr_keras import models  # pylint: disable=g-import-not-at-top
    from rlr_keras import protocols  # pylint: disable=g-import-not-at-top

    import _distribution  # pylint: disable=g-import-not-at-top

    backend = keras.backend.backend()
    if strategy is None:
        _distribution.check_backend(distribution, backend)
    # The strategy comes first: a multi-worker strategy must be created
    # before anything starts the TensorFlow runtime (protocols.build does).
    if strategy is None and distribution in ("mirrored", "multi_worker"):
        strategy = _distribution.make_strategy(distribution)
    elif strategy is None and distribution == "data_parallel":
        strategy = _distribution.make_data_parallel()
    tf_strategy = strategy is not None and distribution != "data_parallel"
    replicas = _distribution.num_replicas(strategy)
    _distribution.replica_batch_size(batch_size, strategy)
    _distribution.check_jit_compile(jit_compile, strategy)
    run_dir, output_dir = output_dir, _distribution.write_dir(output_dir,
                                                              strategy)
    # Validation that needs no data: the library's own checks, cheaply.
    temperature_over_d = rlr_keras.effective_temperature(
        learning_rate, batch_size, momentum)
    data_lib.parse_dataset_spec(dataset)
    protocols.build(protocol, learning_rate=learning_rate,
                    delta=delta if protocol == "random" else None,
                    period=period, momentum=momentum, nesterov=nesterov,
                    coupled_weight_decay=weight_decay, seed=seed)

    summary_path = os.path.join(run_dir, _rundir.SUMMARY_FILE)
    if _rundir.read_status(run_dir) == _rundir.DONE:
        if _distribution.is_chief(strategy):  # Only the chief writes there.
            _claim_run_dir(run_dir, arguments)  # Same arguments, or an error.
        logging.info("%s is done already; not training again.", run_dir)
        return _rundir.read_json(summary_path)
    _claim_run_dir(output_dir, arguments)

    _rundir.write_status(output_dir, _rundir.RUNNING)
    previous_policy = keras.mixed_precision.global_policy().name
    previous_distribution = keras.distribution.distribution()
    try:
        keras.backend.clear_session()
        if deterministic and backend == "tensorflow":
            import tensorflow as tf  # pylint: disable=g-import-not-at-top

            # TensorFlow offers no way back: it stays on in this process.
            tf.config.experimental.enable_op_determinism()
        if distribution == "data_parallel":
            # Variables and batches are laid out on the devices from here on.
            keras.distribution.set_distribution(strategy)
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if mixed_precision else "float32")

        data = data_lib.load_dataset(dataset, data_dir=data_dir)
        backup_dir = _distribution.backup_dir(run_dir, strategy)
        initial_epoch = _backup_epoch(backup_dir)
        if initial_epoch:
            logging.info("Resuming %s after epoch %d.", output_dir,
                         initial_epoch)
        # Under data_parallel a partial batch is padded to split evenly
        # among the devices (padding of weight 0, see the loss below).
        pad_to_multiple = replicas if distribution == "data_parallel" else 1
        train_data = data_lib.train_pipeline(
            data.train_images, data.train_labels, batch_size=batch_size,
            seed=seed, epochs=epochs,
            initial_epoch=min(initial_epoch, epochs - 1),
            pad_to_multiple=pad_to_multiple)
        test_data = data_lib.eval_pipeline(
            data.test_images, data.test_labels, batch_size=batch_size,
            pad_to_multiple=pad_to_multiple)
        steps = train_data.steps_per_epoch
        if tf_strategy:
            train_data = _distribution.distribute_dataset(train_data, strategy)
            test_data = _distribution.distribute_dataset(test_data, strategy)
        # Every random stream below is also seeded explicitly from `seed`; the
        # global seed covers anything that is not.
        keras.utils.set_random_seed(seed)

        scope = strategy.scope() if tf_strategy else contextlib.nullcontext()
        with scope:
            network = models.build_model(
                model, data.input_shape, data.num_classes,
                vgg_weights=vgg_weights, seed=seed)
            optimizer, protocol_callbacks = protocols.build(
                protocol, learning_rate=learning_rate,
                delta=delta if protocol == "random" else None,
                period=period, momentum=momentum, nesterov=nesterov,
                coupled_weight_decay=weight_decay, seed=seed)
            network.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True, **(
                        {"reduction": "mean_with_sample_weight"}
                        if pad_to_multiple > 1 else {})),
                metrics=[keras.metrics.SparseCategoricalAccuracy(
                    name="accuracy")],
                jit_compile=jit_compile,
                steps_per_execution=steps_per_execution)
            optimizer.build(network.trainable_variables)

        log_dir = os.path.join(output_dir, _rundir.TENSORBOARD_DIR)
        metrics_recorder, stop_on_non_finite_loss = _callback_classes()
        callbacks = list(protocol_callbacks)
        callbacks.append(rlr_keras.LearningRateMonitor(
            log_dir, update_freq=alpha_log_steps))
        if temperature_probe:
            probe_x, probe_y = data_lib.probe_subset(
                data.train_images, data.train_labels, temperature_probe,
                seed=seed)
            # Before TensorBoard, which then writes D and T with the rest.
            callbacks.append(rlr_keras.TemperatureMonitor(
                probe_x, probe_y, batch_size=batch_size,
                frequency=temperature_every, jit_compile=jit_compile))
        callbacks += [
            stop_on_non_finite_loss(),
            metrics_recorder(os.path.join(output_dir, _rundir.METRICS_FILE),
                             initial_epoch),
            keras.callbacks.BackupAndRestore(
                backup_dir, double_checkpoint=True, delete_checkpoint=False),
        ]
        callbacks += _epoch_summaries(log_dir)
        logging.info("Training %s (%d parameters) on %s, %s protocol, "
                     "%d epochs of %d steps.", model, network.count_params(),
                     dataset, protocol, epochs, steps)
        network.fit(train_data, epochs=epochs, initial_epoch=initial_epoch,
                    steps_per_epoch=steps, validation_data=test_data,
                    callbacks=callbacks, verbose=verbose, shuffle=False)

        rows = _rundir.read_jsonl(os.path.join(output_dir,
                                               _rundir.METRICS_FILE))
        summary = _summary(rows, num_parameters=network.count_params(),
                           temperature_over_d=temperature_over_d)
        _save_weights_atomically(network,
                                 os.path.join(output_dir, _WEIGHTS_FILE))
        _rundir.write_json(os.path.join(output_dir, _rundir.SUMMARY_FILE),
                           summary)
        _rundir.write_status(output_dir, _rundir.DONE)
    except BaseException as error:  # Record why, whatever it is; re-raise.
        _rundir.write_status(output_dir, _rundir.FAILED,
                             error=f"{type(error).__name__}: {error}")
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if distribution == "data_parallel":
            keras.distribution.set_distribution(previous_distribution)
    shutil.rmtree(backup_dir, ignore_errors=True)
    _distribution.remove_write_dir(run_dir, strategy)
    logging.info("Done: final test accuracy %.4f (best %.4f), %s",
                 summary["final_test_accuracy"],
                 summary["best_test_accuracy"], output_dir)
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING if _VERBOSE.value == 0
                          else logging.INFO)
    run(**arguments_from_flags())


if __name__ == "__main__":
    flags.mark_flag_as_required("output_dir")
    app.run(main)
