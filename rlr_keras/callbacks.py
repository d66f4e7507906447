"""Keras callbacks: the cyclic learning-rate protocol and its monitoring.

`CyclicCosine` sets the learning rate of eq. 21 of Musso at the start of every
epoch. `LearningRateMonitor` writes the random factor alpha, the effective step
size l * alpha and per-epoch statistics to TensorBoard, next to the summaries
of `keras.callbacks.TensorBoard`.
"""

import os

import keras
import numpy as np
from keras import ops

from rlr_keras import _optimizer_utils
from rlr_keras import _validation
from rlr_keras import schedules as _schedules


def _tf():
    # TensorFlow only where summaries are written, so that the protocols
    # (CyclicCosine) import on any Keras backend.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf


def _model_optimizer(callback):
    optimizer = getattr(callback.model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"{type(callback).__name__} needs a compiled model with an "
            "optimizer, got a model without one"
        )
    return _optimizer_utils.unwrap(optimizer)


@keras.saving.register_keras_serializable(package="rlr_keras")
class CyclicCosine(keras.callbacks.Callback):
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

    def __init__(self, learning_rate, period):
        super().__init__()
        self.learning_rate = _validation.check_range(
            "learning_rate", learning_rate, 0.0
        )
        self.period = _validation.check_range(
            "period", period, 0.0, low_open=True
        )

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
        self._optimizer()  # Fails before the first step, not at epoch 0.

    def on_epoch_begin(self, epoch, logs=None):
        self._optimizer().learning_rate = _schedules.cyclic_cosine(
            self.learning_rate, self.period, epoch
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                ops.convert_to_numpy(self._optimizer().learning_rate)
            )

    def get_config(self):
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
    callback writes, with `tf.summary` into `<log_dir>/train` (the directory
    `keras.callbacks.TensorBoard(log_dir)` writes its training summaries to,
    so both appear in the same TensorBoard run):

    - every N = `update_freq` optimizer steps (k = 0, N, 2N, ..., x-axis k):
      `rlr/step_alpha` (alpha_k) and `rlr/step_effective_learning_rate`
      (l_k * alpha_k, in float32);
    - every epoch (x-axis the epoch index): `rlr/epoch_learning_rate` (l at
      the epoch's first step), `rlr/epoch_alpha_mean` and
      `rlr/epoch_alpha_std` (mean and population standard deviation of alpha
      over the epoch's steps) and the histogram `rlr/epoch_alpha`.

    alpha comes from `alpha_at(k)` of the optimizer (`RandomLRSGD`) and of its
    learning-rate schedule (`rlr_keras.RandomLearningRate` given to any Keras
    optimizer; then l is that schedule's base `learning_rate`); both, if both
    are random; alpha = 1 for an optimizer without a random factor. Since
    alpha_k is a pure function of k, the values are computed for every step
    from the range of `optimizer.iterations` since the previous callback
    call: the log is complete and exact also with `steps_per_execution > 1`,
    where Keras calls batch callbacks once per chunk of steps, and after a
    resume. `LossScaleOptimizer` is looked through.

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
    EPOCH_ALPHA_MEAN_TAG = "rlr/epoch_alpha_mean"
    EPOCH_ALPHA_STD_TAG = "rlr/epoch_alpha_std"
    EPOCH_ALPHA_HISTOGRAM_TAG = "rlr/epoch_alpha"

    def __init__(self, log_dir="logs", update_freq=100):
        super().__init__()
        try:
            self.log_dir = os.fspath(log_dir)
        except TypeError:
            raise ValueError(
                f"log_dir must be a str or path-like, got {log_dir!r}"
            ) from None
        if isinstance(update_freq, str):
            update_freq = _validation.check_choice(
                "update_freq", update_freq, ("epoch",)
            )
        else:
            update_freq = _validation.check_int("update_freq", update_freq, 1)
        self.update_freq = update_freq
        self._writer = None
        self._epoch_first_step = None
        self._last_step = None

    # --- Where l and alpha come from. -------------------------------------

    def _iterations(self):
        return int(ops.convert_to_numpy(_model_optimizer(self).iterations))

    def _alphas(self, steps):
        """Returns alpha for each optimizer step in `steps`, as float32."""
        optimizer = _model_optimizer(self)
        sources = [
            getattr(owner, "alpha_at")
            for owner in (
                optimizer, _optimizer_utils.learning_rate_object(optimizer)
            )
            if hasattr(owner, "alpha_at")
        ]
        steps = np.asarray(steps, dtype=np.int64)
        alphas = np.ones(steps.shape, dtype=np.float32)
        for alpha_at in sources:
            alphas = alphas * ops.convert_to_numpy(
                self._compiled(alpha_at)(steps.ravel())
            ).astype(np.float32).reshape(steps.shape)
        return alphas

    def _compiled(self, alpha_at):
        tf = _tf()
        # One traced graph per alpha source: eager keras.ops calls cost
        # ~10x more per callback call, and the values are bit-identical.
        cache = self.__dict__.setdefault("_alpha_functions", {})
        key = id(alpha_at.__self__)
        if key not in cache:
            cache[key] = tf.function(
                alpha_at, input_signature=[tf.TensorSpec([None], tf.int64)]
            )
        return cache[key]

    def _base_learning_rates(self, steps):
        """Returns l (without alpha) at each optimizer step in `steps`."""
        learning_rate = _optimizer_utils.learning_rate_object(
            _model_optimizer(self)
        )
        if hasattr(learning_rate, "alpha_at") and hasattr(
            learning_rate, "learning_rate"
        ):
            learning_rate = learning_rate.learning_rate  # RandomLearningRate.
        if isinstance(
            learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            return np.array(
                [
                    ops.convert_to_numpy(
                        learning_rate(ops.convert_to_tensor(k, "int64"))
                    )
                    for k in np.ravel(steps)
                ],
                dtype=np.float32,
            ).reshape(np.shape(steps))
        if callable(learning_rate) and not isinstance(
            learning_rate, keras.Variable
        ):
            learning_rate = learning_rate()
        # A variable holds one value between two callback calls.
        return np.full(
            np.shape(steps),
            ops.convert_to_numpy(learning_rate),
            dtype=np.float32,
        )

    # --- Writing. -----------------------------------------------------------

    @property
    def _train_writer(self):
        tf = _tf()
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "train")
            )
        return self._writer

    def _write_steps(self, start, stop):
        """Writes the per-step points for optimizer steps in [start, stop)."""
        tf = _tf()
        first = -(-start // self.update_freq) * self.update_freq
        steps = np.arange(first, stop, self.update_freq, dtype=np.int64)
        if steps.size == 0:
            return
        alphas = self._alphas(steps)
        learning_rates = self._base_learning_rates(steps)
        with self._train_writer.as_default():
            for k, alpha, learning_rate in zip(steps, alphas, learning_rates):
                tf.summary.scalar(self.STEP_ALPHA_TAG, alpha, step=int(k))
                tf.summary.scalar(
                    self.STEP_EFFECTIVE_LEARNING_RATE_TAG,
                    learning_rate * alpha,
                    step=int(k),
                )

    # --- Callback hooks. ----------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        # Read here rather than in on_train_begin: BackupAndRestore may
        # restore the iterations in its own on_train_begin, after ours.
        self._epoch_first_step = self._last_step = self._iterations()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        stop = self._iterations()
        self._write_steps(self._last_step, stop)
        self._last_step = stop

    def on_epoch_end(self, epoch, logs=None):
        tf = _tf()
        stop = self._iterations()
        if self.update_freq != "epoch":
            self._write_steps(self._last_step, stop)
            self._last_step = stop
        if stop <= self._epoch_first_step:
            return
        alphas = self._alphas(np.arange(self._epoch_first_step, stop))
        with self._train_writer.as_default():
            tf.summary.scalar(
                self.EPOCH_LEARNING_RATE_TAG,
                self._base_learning_rates([self._epoch_first_step])[0],
                step=epoch,
            )
            tf.summary.scalar(
                self.EPOCH_ALPHA_MEAN_TAG,
                np.mean(alphas, dtype=np.float64),
                step=epoch,
            )
            tf.summary.scalar(
                self.EPOCH_ALPHA_STD_TAG,
                np.std(alphas, dtype=np.float64),
                step=epoch,
            )
            tf.summary.histogram(
                self.EPOCH_ALPHA_HISTOGRAM_TAG, alphas, step=epoch
            )
        self._train_writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {"log_dir": self.log_dir, "update_freq": self.update_freq}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
