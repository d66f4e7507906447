"""Keras callbacks: the cyclic learning-rate protocol and its monitoring.

`CyclicCosine` sets the learning rate of eq. 21 of Musso at the start of every
epoch. `LearningRateMonitor` writes the random factor alpha, the effective step
size l * alpha and per-epoch statistics to TensorBoard, `TemperatureMonitor`
the diffusion coefficient D and the effective temperature T, and
`EpochSummaries` the epoch logs, in the layout of
`keras.callbacks.TensorBoard`. All run on every Keras backend: their
TensorBoard files are written without TensorFlow (`tensorboardX`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from rlr_keras import _optimizer_utils
from rlr_keras import _summary
from rlr_keras import _validation
from rlr_keras import diffusion as _diffusion
from rlr_keras import schedules as _schedules
from rlr_keras import temperature as _temperature
from rlr_keras.random_factor import alpha_second_moment
from rlr_keras.random_factor import validate_delta

__all__ = ["CyclicCosine", "EpochSummaries", "LearningRateMonitor",
           "TemperatureMonitor"]


def _check_log_dir(log_dir, none_allowed=False):
    if log_dir is None and none_allowed:
        return None
    try:
        return os.fspath(log_dir)
    except TypeError:
        allowed = "a str or path-like" + (" or None" if none_allowed else "")
        raise TypeError(
            f"log_dir must be {allowed}, got {log_dir!r}") from None


def _model_optimizer(callback):
    optimizer = getattr(callback.model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"{type(callback).__name__} needs a compiled model with an "
            "optimizer, got a model without one"
        )
    return _optimizer_utils.unwrap(optimizer)


@keras.saving.register_keras_serializable(package="rlr_keras")
class CyclicCosine(keras.callbacks.LearningRateScheduler):
    """Sets the cyclic cosine learning rate of Musso (eq. 21) every epoch.

    At the start of epoch tau (counted from 0, the value Keras passes to
    `on_epoch_begin`) the optimizer's learning rate is set to

    ```
    l_tau = l * (1 + cos(pi * tau / P))
    ```

    with l = `learning_rate` and P = `period`, computed by
    `rlr_keras.schedules.cyclic_cosine`. The cosine repeats every 2 P epochs
    (P is half the cycle) and its mean over a full cycle is l, the learning
    rate of the matching constant protocol. Because tau is the epoch index,
    a run started with `fit(..., initial_epoch=k)` or resumed by
    `keras.callbacks.BackupAndRestore` gets l_k, not l_0.

    At the end of each epoch the learning rate the optimizer used is written
    into the epoch logs as `learning_rate`, so `History`, `CSVLogger` and
    `TensorBoard` record it; place this callback before them in the list.

    It is `keras.callbacks.LearningRateScheduler` with `cyclic_cosine` as its
    schedule, plus a check at the start of training and a config of its own
    arguments (Keras' callback would store the schedule, a callable).

    The optimizer must have a float learning rate (a Keras variable): that of
    `RandomLRSGD` multiplies the velocity (x <- x + l_tau v, as in the
    paper), that of `keras.optimizers.SGD` multiplies the gradient inside the
    velocity; any Keras optimizer works. An optimizer whose learning rate is a
    `LearningRateSchedule` is an error; use
    `rlr_keras.schedules.CyclicCosineSchedule` as its learning rate instead.

    Args:
        learning_rate: float >= 0: the mean learning rate l.
        period: float > 0: P, half the cycle, in epochs (the paper uses 6, 18
            and 30).

    Raises:
        ValueError: at construction for an argument outside the ranges above;
            at the start of training if the model's optimizer has a schedule
            or callable learning rate.

    Example:

    >>> import numpy as np, keras
    >>> from rlr_keras import RandomLRSGD
    >>> from rlr_keras.callbacks import CyclicCosine
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=RandomLRSGD(0.01, delta=0.0), loss="mse")
    >>> history = model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=3,
    ...                     callbacks=[CyclicCosine(0.005, period=2)],
    ...                     verbose=0)
    >>> [round(lr, 6) for lr in history.history["learning_rate"]]
    [0.01, 0.005, 0.0]

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        arXiv:2003.06926, 2020 (eq. 21).
    """

    def __init__(self, learning_rate: float, period: float) -> None:
        self.learning_rate = _validation.check_range(
            "learning_rate", learning_rate, 0.0
        )
        self.period = _validation.check_range(
            "period", period, 0.0, low_open=True
        )
        super().__init__(self._learning_rate_at)

    def _learning_rate_at(self, epoch, learning_rate=None):
        """The schedule given to Keras: eq. 21 at epoch tau = `epoch`."""
        del learning_rate  # Eq. 21 depends on the epoch only.
        return _schedules.cyclic_cosine(self.learning_rate, self.period,
                                        epoch)

    def _optimizer(self):
        optimizer = _model_optimizer(self)
        learning_rate = _optimizer_utils.learning_rate_object(optimizer)
        if not isinstance(learning_rate, keras.Variable):
            raise ValueError(
                "CyclicCosine sets the optimizer's learning rate at every "
                "epoch, so the optimizer needs a float learning_rate; "
                f"{type(optimizer).__name__} {optimizer.name!r} has "
                f"learning_rate={learning_rate!r}. Build the optimizer with a "
                "float learning_rate, or drop this callback and use "
                "rlr_keras.schedules.CyclicCosineSchedule as its learning rate"
            )
        return optimizer

    def on_train_begin(self, logs=None):
        # Fails before the first step, with a message that says what to use
        # instead (Keras would fail at epoch 0 with "not settable").
        self._optimizer()

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "period": self.period}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="rlr_keras")
class LearningRateMonitor(keras.callbacks.Callback):
    """Writes alpha, l * alpha and per-epoch statistics to TensorBoard.

    At optimizer step k the update uses the learning rate l_k and the random
    factor alpha_k, so the effective step size is l_k * alpha_k (the step
    that moves `optimizer.iterations` from k to k + 1 uses alpha_k). This
    callback writes, without TensorFlow, into `<log_dir>/train` (the directory
    `keras.callbacks.TensorBoard(log_dir)` writes its training summaries to,
    so both appear in the same TensorBoard run):

    - every N = `update_freq` optimizer steps (k = 0, N, 2N, ..., x-axis k):
      `rlr/step_alpha` (alpha_k) and `rlr/step_effective_learning_rate`
      (l_k * alpha_k, in float32);
    - every epoch (x-axis the epoch index): `rlr/epoch_learning_rate` (l at
      the epoch's first step) and the histogram `rlr/epoch_alpha` of the
      epoch's alphas.

    alpha comes from `alpha_at(k)` of the optimizer (`RandomLRSGD`) and of its
    learning-rate schedule (`rlr_keras.RandomLearningRate` given to any Keras
    optimizer; then l is that schedule's base `learning_rate`); both, if both
    are random; alpha = 1 for an optimizer without a random factor. Since
    alpha_k is a pure function of k, every point of an epoch is computed at
    its end from the range of `optimizer.iterations` over the epoch: the
    counter is read twice per epoch (a device-to-host copy per batch would
    slow training), and the log is complete and exact with any
    `steps_per_execution` and after a resume. The epoch's mean and population
    standard deviation of alpha go into the epoch logs as `alpha_mean` and
    `alpha_std`, so `History`, `CSVLogger`, `EpochSummaries` and
    `keras.callbacks.TensorBoard` record them (TensorBoard tags
    `epoch_alpha_mean`, `epoch_alpha_std`): place this callback before them.
    They are not written a second time under `rlr/`.
    `LossScaleOptimizer` is looked through.

    With `gradient_accumulation_steps` and a `RandomLearningRate` schedule,
    Keras evaluates the schedule at its micro-batch counter; this monitor
    still labels the alpha of update k as `alpha_at(k)`, which then is not
    the value used. `RandomLRSGD` has no such mismatch.

    Args:
        log_dir: str or path-like: the TensorBoard log directory, the same as
            given to `keras.callbacks.TensorBoard`. Defaults to `"logs"`.
        update_freq: int >= 1, the number of optimizer steps between two
            per-step points, or `"epoch"` for per-epoch summaries only.
            Defaults to `100`.

    Raises:
        ValueError: for an argument outside the ranges above.

    Example:

    >>> import os, tempfile, numpy as np, keras
    >>> from rlr_keras import RandomLRSGD
    >>> from rlr_keras.callbacks import LearningRateMonitor
    >>> log_dir = tempfile.mkdtemp()
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=RandomLRSGD(0.01, seed=0), loss="mse")
    >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 1)), batch_size=2,
    ...               callbacks=[LearningRateMonitor(log_dir, update_freq=1)],
    ...               verbose=0)
    >>> os.listdir(log_dir)
    ['train']
    """

    STEP_ALPHA_TAG = "rlr/step_alpha"
    STEP_EFFECTIVE_LEARNING_RATE_TAG = "rlr/step_effective_learning_rate"
    EPOCH_LEARNING_RATE_TAG = "rlr/epoch_learning_rate"
    EPOCH_ALPHA_HISTOGRAM_TAG = "rlr/epoch_alpha"

    def __init__(self, log_dir: str | os.PathLike = "logs",
                 update_freq: int | str = 100) -> None:
        super().__init__()
        self.log_dir = _check_log_dir(log_dir)
        if isinstance(update_freq, str):
            update_freq = _validation.check_choice(
                "update_freq", update_freq, ("epoch",)
            )
        else:
            update_freq = _validation.check_int("update_freq", update_freq, 1)
        self.update_freq = update_freq
        self._writer = None
        self._epoch_first_step = None

    # --- Where l and alpha come from. -------------------------------------

    def _iterations(self):
        return _optimizer_utils.iterations(_model_optimizer(self))

    def _alphas(self, steps):
        """Returns alpha for each optimizer step in `steps`, as float32."""
        return _optimizer_utils.alphas_at(_model_optimizer(self), steps)

    def _base_learning_rates(self, steps):
        """Returns l (without alpha) at each optimizer step in `steps`."""
        return _optimizer_utils.learning_rates_at(_model_optimizer(self),
                                                  steps)

    # --- Writing. -----------------------------------------------------------

    @property
    def _train_writer(self):
        if self._writer is None:
            self._writer = _summary.SummaryWriter(
                os.path.join(self.log_dir, "train"))
        return self._writer

    def _write_steps(self, start, alphas):
        """Writes the per-step points of the steps `start + i` with alpha
        `alphas[i]`."""
        first = -(-start // self.update_freq) * self.update_freq
        steps = np.arange(first, start + len(alphas), self.update_freq,
                          dtype=np.int64)
        if steps.size == 0:
            return
        alphas = alphas[steps - start]
        learning_rates = self._base_learning_rates(steps)
        writer = self._train_writer
        for k, alpha, learning_rate in zip(steps, alphas, learning_rates):
            writer.scalar(self.STEP_ALPHA_TAG, alpha, k)
            writer.scalar(self.STEP_EFFECTIVE_LEARNING_RATE_TAG,
                          learning_rate * alpha, k)

    # --- Callback hooks. ----------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        # Read here rather than in on_train_begin: BackupAndRestore may
        # restore the iterations in its own on_train_begin, after ours.
        self._epoch_first_step = self._iterations()

    def on_epoch_end(self, epoch, logs=None):
        stop = self._iterations()
        if stop <= self._epoch_first_step:
            return
        # One evaluation of alpha per epoch, for the points and statistics.
        alphas = self._alphas(np.arange(self._epoch_first_step, stop))
        if self.update_freq != "epoch":
            self._write_steps(self._epoch_first_step, alphas)
        if logs is not None:
            logs["alpha_mean"] = float(np.mean(alphas, dtype=np.float64))
            logs["alpha_std"] = float(np.std(alphas, dtype=np.float64))
        writer = self._train_writer
        writer.scalar(
            self.EPOCH_LEARNING_RATE_TAG,
            self._base_learning_rates([self._epoch_first_step])[0],
            epoch,
        )
        writer.histogram(self.EPOCH_ALPHA_HISTOGRAM_TAG, alphas, epoch)
        writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "update_freq": self.update_freq}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _deserialize_arrays(value):
    # `serialize_keras_object` stores NumPy arrays nested in a config as
    # {"class_name": "__numpy__", ...}; `from_config` receives them so.
    if isinstance(value, dict):
        if value.get("class_name") == "__numpy__":
            return keras.saving.deserialize_keras_object(value)
        return {k: _deserialize_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_deserialize_arrays(v) for v in value)
    return value


@keras.saving.register_keras_serializable(package="rlr_keras")
class TemperatureMonitor(keras.callbacks.Callback):
    """Measures the diffusion coefficient D and the temperature T in training.

    At the end of every `frequency`-th epoch (epochs 0, k, 2k, ... as in
    `keras.callbacks.TensorBoard(histogram_freq=k)`) the callback measures D
    on the fixed probe set `(x, y)` with `rlr_keras.estimate_diffusion` and
    computes

        T = l * D / (2 * C * (1 - mu))                          (eq. 20)

    with `l` the optimizer's current mean learning rate, `mu` its `momentum`
    (0 for optimizers without one), `C = batch_size` and `D` the measured
    diffusion, whose `<alpha^2>` is that of `delta` or, by default, of the
    optimizer's random factor (the product of the optimizer's and its
    schedule's, if both are random). Both are written into the epoch logs
    under `"diffusion"` and `"temperature"` (so `History`, `CSVLogger`,
    `EpochSummaries` and `keras.callbacks.TensorBoard` see them, if listed
    after this callback) and, if `log_dir` is given, as TensorBoard scalars
    `epoch_diffusion` and `epoch_temperature` at step = epoch in
    `<log_dir>/train`, the directory and tags of
    `keras.callbacks.TensorBoard(log_dir)`. With a TensorBoard or
    `EpochSummaries` callback after this one, leave `log_dir=None`: it writes
    the two new log entries itself. Runs on every Keras backend.

    Eq. 20 is derived for SGD with momentum: `RandomLRSGD` or
    `keras.optimizers.SGD` (with any schedule, `RandomLearningRate`
    included). With any other optimizer (Adam, AdamW, RMSprop, ...) the
    callback warns once at the start of training: D is still measured, but
    T is then only the formula evaluated at that optimizer's learning rate.

    Args:
        x: array (or nested structure of arrays): the probe inputs, held
            fixed for the whole training.
        y: array (or nested structure): the probe targets.
        batch_size: int >= 1, the training mini-batch size `C` (a callback
            cannot read it from `fit`).
        loss: the data loss used for D: a `keras.losses.Loss`, a loss name
            or a registered loss function, or `None` for the model's compiled
            loss. Defaults to `None`.
        delta: float in [0, 1], the random-factor half-width, or `None` to
            read it from the optimizer (and its learning-rate schedule; no
            random factor gives `<alpha^2> = 1`). Defaults to `None`.
        frequency: int >= 1, measure every `frequency` epochs. Defaults to
            `1`.
        probe_batch_size: int >= 1, chunk size of the per-example gradient
            computation. Defaults to `256`.
        log_dir: str, path-like or `None`: TensorBoard log directory.
            Defaults to `None` (logs only).
        jit_compile: bool, compile the measurement with XLA (TensorFlow,
            JAX). Defaults to `False`.

    Raises:
        ValueError: at construction for an argument outside the ranges
            above or an invalid probe set (see `estimate_diffusion`); at
            measurement if the model has no single loss and `loss` is None.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mean_squared_error")
    >>> x = np.ones((8, 3), "float32")
    >>> monitor = TemperatureMonitor(x, x[:, :1], batch_size=4)
    >>> history = model.fit(x, x[:, :1], batch_size=4, callbacks=[monitor],
    ...                     verbose=0)
    >>> "temperature" in history.history
    True

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        2020, eq. 20 and Appendix A.
    """

    def __init__(self, x: Any, y: Any, batch_size: int,
                 loss: Any = None, delta: float | None = None,
                 frequency: int = 1, probe_batch_size: int = 256,
                 log_dir: str | os.PathLike | None = None,
                 jit_compile: bool = False) -> None:
        super().__init__()
        self.x = _diffusion.as_arrays(x, "x")
        self.y = _diffusion.as_arrays(y, "y")
        _diffusion.check_probe(self.x, self.y)
        self.batch_size = _validation.check_int("batch_size", batch_size, 1)
        if loss is not None and not isinstance(loss, (str, dict)):
            loss = _diffusion.resolve_loss(loss, "loss")
        self.loss = loss
        self.delta = None if delta is None else validate_delta(delta)
        self.frequency = _validation.check_int("frequency", frequency, 1)
        self.probe_batch_size = _validation.check_int(
            "probe_batch_size", probe_batch_size, 1)
        self.log_dir = _check_log_dir(log_dir, none_allowed=True)
        self.jit_compile = bool(jit_compile)
        self._writer = None
        self._warned_optimizer = None

    def _loss(self):
        loss = self.loss if self.loss is not None else self.model.loss
        if loss is None or isinstance(loss, (list, tuple)) or (
                isinstance(loss, dict) and "class_name" not in loss):
            raise ValueError(
                "TemperatureMonitor needs a single loss: pass loss= or "
                f"compile the model with one, got {loss!r}")
        return _diffusion.resolve_loss(loss, "loss")

    def _warn_if_not_sgd(self, optimizer):
        if (_optimizer_utils.is_momentum_sgd(optimizer)
                or self._warned_optimizer is optimizer):
            return
        self._warned_optimizer = optimizer  # Once per optimizer.
        warnings.warn(
            "TemperatureMonitor: eq. 20 of Musso, T = l D / (2 C (1 - mu)), "
            "holds for SGD with momentum (RandomLRSGD, keras.optimizers.SGD), "
            f"got {type(optimizer).__name__} {optimizer.name!r}; its "
            "'temperature' is that formula evaluated at its learning rate, "
            "not an effective temperature (D is still the measured gradient "
            "noise)", stacklevel=2)

    def on_train_begin(self, logs=None):
        self._warn_if_not_sgd(_model_optimizer(self))

    def measure(self) -> tuple[float, float]:
        """Returns (D, T) for the model's current weights."""
        optimizer = _model_optimizer(self)
        self._warn_if_not_sgd(optimizer)
        second_moment = (
            alpha_second_moment(self.delta) if self.delta is not None
            else _optimizer_utils.optimizer_alpha_second_moment(optimizer))
        pieces = _diffusion.estimate_diffusion(
            self.model, self._loss(), self.x, self.y,
            batch_size=self.probe_batch_size, return_pieces=True,
            jit_compile=self.jit_compile)
        diffusion = _diffusion.diffusion_from_moments(
            second_moment, pieces.mean_squared_norm,
            pieces.squared_mean_norm, pieces.num_weights)
        temperature = _temperature.effective_temperature(
            _optimizer_utils.mean_learning_rate(optimizer), self.batch_size,
            _optimizer_utils.momentum(optimizer), diffusion)
        return diffusion, temperature

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.frequency:
            return
        diffusion, temperature = self.measure()
        if logs is not None:
            logs["diffusion"] = diffusion
            logs["temperature"] = temperature
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = _summary.SummaryWriter(
                    os.path.join(self.log_dir, "train"))
            self._writer.scalar("epoch_diffusion", diffusion, epoch)
            self._writer.scalar("epoch_temperature", temperature, epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self) -> dict[str, Any]:
        loss = self.loss
        if loss is not None and not isinstance(loss, (str, dict)):
            loss = keras.losses.serialize(loss)
        return {
            "x": self.x,
            "y": self.y,
            "batch_size": self.batch_size,
            "loss": loss,
            "delta": self.delta,
            "frequency": self.frequency,
            "probe_batch_size": self.probe_batch_size,
            "log_dir": self.log_dir,
            "jit_compile": self.jit_compile,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["x"] = _deserialize_arrays(config["x"])
        config["y"] = _deserialize_arrays(config["y"])
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="rlr_keras")
class EpochSummaries(keras.callbacks.Callback):
    """Writes the epoch logs to TensorBoard, like `keras.callbacks.TensorBoard`.

    At the end of every epoch each scalar entry `name` of the epoch logs
    (loss, accuracy, learning_rate, diffusion, temperature, ...) is written
    as `epoch_<name>` at step = epoch into `<log_dir>/train`, and each
    `val_<name>` as `epoch_<name>` into `<log_dir>/validation`: the tags and
    directories of `keras.callbacks.TensorBoard(log_dir)`'s epoch summaries,
    written without TensorFlow, so on every Keras backend. As Keras' callback
    does, it adds `learning_rate`, the optimizer's current learning rate,
    when the logs have none and the optimizer's learning rate is a float.
    Put it after the callbacks that add entries to the logs
    (`TemperatureMonitor`, `CyclicCosine`). Non-scalar entries are skipped.

    Args:
        log_dir: str or path-like: the TensorBoard log directory. Defaults to
            `"logs"`.

    Raises:
        ValueError: if `log_dir` is not a str or path-like.

    Example:

    >>> import os, tempfile, numpy as np, keras
    >>> from rlr_keras.callbacks import EpochSummaries
    >>> log_dir = tempfile.mkdtemp()
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 1)), verbose=0,
    ...               validation_data=(np.ones((4, 4)), np.ones((4, 1))),
    ...               callbacks=[EpochSummaries(log_dir)])
    >>> sorted(os.listdir(log_dir))
    ['train', 'validation']
    """

    def __init__(self, log_dir: str | os.PathLike = "logs") -> None:
        super().__init__()
        self.log_dir = _check_log_dir(log_dir)
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = _summary.SummaryWriter(
                os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        learning_rate = (
            None if optimizer is None
            else _optimizer_utils.learning_rate_object(
                _optimizer_utils.unwrap(optimizer)))
        if "learning_rate" not in logs and isinstance(learning_rate,
                                                      keras.Variable):
            logs["learning_rate"] = float(
                ops.convert_to_numpy(learning_rate))
        for key, value in logs.items():
            value = np.asarray(ops.convert_to_numpy(value))
            if value.size != 1 or not np.issubdtype(value.dtype, np.number):
                continue
            if key.startswith("val_"):
                name, key = "validation", key[len("val_"):]
            else:
                name = "train"
            self._writer(name).scalar(f"epoch_{key}", value.item(), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def get_config(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
