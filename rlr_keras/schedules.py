"""Learning-rate schedules: the random learning rate and the cosine cycle.

Each schedule is a pure function of the step (or epoch) with a thin
`keras.optimizers.schedules.LearningRateSchedule` adapter on top.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from rlr_keras import _validation
from rlr_keras import random_factor as _random_factor

__all__ = ["CyclicCosineSchedule", "RandomLearningRate", "cyclic_cosine"]

# l_tau <= 2 l must stay finite in a float32 learning-rate variable.
_MAX_CYCLIC_LEARNING_RATE = _validation.FLOAT32_MAX / 2
# The longest cycle looked up in a table (2 P float32 values, 8 MB).
_MAX_TABLE_PERIOD = 2**20


@keras.saving.register_keras_serializable(package="rlr_keras")
class RandomLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate multiplied by the random factor alpha at every step.

    Gives any Keras optimizer (Adam, SGD, RMSprop, ...) a random learning
    rate: at step k the optimizer receives

    ```
    l_k = alpha_k * l(k),    alpha_k ~ U[1 - Delta, 1 + Delta]
    ```

    with l = `learning_rate` (a float or a schedule), Delta = `delta`, and
    alpha_k the same stream as `RandomLRSGD(seed=seed, delta=delta)`
    (`rlr_keras.random_factor.random_factor`). With
    `keras.optimizers.SGD(momentum=mu, nesterov=...)` and a constant l this
    reproduces eq. 1-2 of Musso exactly (up to float rounding): Keras' SGD
    keeps v' = l v, so v' <- mu v' - l alpha_k g and x <- x + v' is
    x <- x + l v with v <- mu v - alpha_k g. With a time-varying l the two
    parametrizations differ; see `RandomLRSGD`.

    On adaptive optimizers (Adam, AdamW, RMSprop, ...) alpha_k multiplies
    the step after the optimizer's normalization by its running gradient
    scale, not the gradient noise that the paper analyses; eq. 20 (and
    `TemperatureMonitor`) does not apply there. Keras' decoupled
    `weight_decay` (AdamW, or `weight_decay=` of any optimizer) is
    x <- x - l_k * wd * x with the current learning rate l_k, so alpha_k
    scales the decay too (tested against a NumPy AdamW).

    `keras.callbacks.ReduceLROnPlateau` cannot lower a schedule: Keras
    raises a TypeError ("not settable") when it tries. Use `RandomLRSGD`
    with a float `learning_rate` instead: alpha lives in the optimizer, so
    the callback lowers l and the alpha stream goes on. For other
    optimizers, give the decay in advance as this schedule's base,
    `RandomLearningRate(keras.optimizers.schedules.ExponentialDecay(...))`.

    Keras evaluates a schedule at its raw step counter, which counts
    micro-batches when `gradient_accumulation_steps` is set; there alpha then
    changes every micro-batch index. Prefer `RandomLRSGD` in that case: it
    draws alpha per real update.

    Args:
        learning_rate: float >= 0 or a `LearningRateSchedule`: l.
        delta: float in [0, 1]: Delta. Defaults to `1.0`.
        seed: int in [0, 2**32 - 1] or None (drawn once and stored in the
            config). Defaults to `None`.

    Example:

    >>> import keras
    >>> from rlr_keras import RandomLearningRate
    >>> lr = RandomLearningRate(0.005, delta=1.0, seed=0)
    >>> opt = keras.optimizers.Adam(learning_rate=lr)
    >>> 0.0 <= float(lr(0)) <= 0.01
    True
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
        delta: float = 1.0,
        seed: int | None = None,
    ) -> None:
        learning_rate = _validation.validate_learning_rate(learning_rate)
        if not isinstance(learning_rate, float) and not isinstance(
            learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            raise TypeError(
                "learning_rate must be a non-negative float or a "
                f"LearningRateSchedule, got {learning_rate!r}"
            )
        self.learning_rate = learning_rate
        self.delta = _random_factor.validate_delta(delta)
        self.seed = _random_factor.resolve_seed(seed)

    def alpha_at(self, step: Any) -> Any:
        """Returns alpha_k for step `step` (int or integer tensor).

        Raises:
            TypeError: for a step that is not an integer, an integer array
                or an integer tensor.
            ValueError: for a negative Python/NumPy `step` (tensors are not
                checked; see `rlr_keras.random_factor.random_bits`).
        """
        return _random_factor.random_factor(self.seed, step, self.delta)

    def __call__(self, step: Any) -> Any:
        alpha = self.alpha_at(step)  # Checks a Python step first.
        if isinstance(
            self.learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            base = ops.cast(self.learning_rate(step), "float32")
        else:
            base = ops.convert_to_tensor(self.learning_rate, "float32")
        return ops.multiply(base, alpha)

    def get_config(self) -> dict[str, Any]:
        learning_rate = self.learning_rate
        if not isinstance(learning_rate, float):
            learning_rate = keras.saving.serialize_keras_object(learning_rate)
        return {
            "learning_rate": learning_rate,
            "delta": self.delta,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        """Creates the schedule from its config; warns if it has no seed."""
        config = dict(config)
        if config.get("seed") is None:
            warnings.warn(
                f"{cls.__name__}.from_config: the config has no 'seed', so a "
                "fresh random seed is drawn and the schedule does not "
                "continue the alpha stream it was saved with; put the "
                "original seed in the config to resume it.",
                stacklevel=2,
            )
        if isinstance(config["learning_rate"], dict):
            config["learning_rate"] = keras.saving.deserialize_keras_object(
                config["learning_rate"]
            )
        return cls(**config)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _eq21(learning_rate, period, epoch):
    """l (1 + cos(pi tau / P)) in double precision, tau reduced mod 2 P."""
    if float(period).is_integer() and float(epoch).is_integer():
        epoch = int(epoch) % (2 * int(period))
    return learning_rate * (1.0 + math.cos(math.pi * epoch / period))


def _check_cyclic_learning_rate(learning_rate):
    return _validation.check_range(
        "learning_rate", learning_rate, 0.0, _MAX_CYCLIC_LEARNING_RATE)


def _cycle_table(learning_rate, period):
    """The 2 P float32 values of one cycle, for an integer period P."""
    if not period.is_integer():
        raise ValueError(
            "period must be a whole number of epochs when the epoch is a "
            "tensor (one cycle of 2 * period values is looked up), got "
            f"{period!r}; use Python numbers (e.g. the CyclicCosine "
            "callback) for a fractional period")
    if period > _MAX_TABLE_PERIOD:
        raise ValueError(
            f"period must be at most {_MAX_TABLE_PERIOD} epochs when the "
            f"epoch is a tensor, got {period!r}")
    return np.array([_eq21(learning_rate, period, tau)
                     for tau in range(2 * int(period))], np.float32)


def cyclic_cosine(learning_rate: float, period: float, epoch: Any) -> Any:
    """Returns the cyclic learning rate of Musso, eq. 21, at epoch `epoch`.

    ```
    l_tau = l * (1 + cos(pi * tau / P))
    ```

    with l = `learning_rate`, P = `period` and tau = `epoch`, the number of
    completed training epochs (tau = 0 during the first epoch). l_tau starts
    at 2 l, reaches 0 at tau = P and is back at 2 l at tau = 2 P: the cosine
    repeats every 2 P epochs (the paper calls P the period; it is half the
    cycle). Over a full cycle of integer epochs tau = 0, ..., 2 P - 1 (P an
    integer) the mean of l_tau is exactly l, so the cyclic protocol has the
    same mean learning rate as the constant and random ones.

    This is the only implementation of eq. 21 in the package; the
    `CyclicCosineSchedule` adapter and the `rlr_keras.callbacks.CyclicCosine`
    callback both call it. For integer P and tau the cosine is evaluated at
    tau mod 2 P, in double precision; a tensor `epoch` looks the float32
    roundings of those same values up in a table of one cycle. So on every
    backend, eagerly or compiled, the tensor result equals the Python result
    rounded to float32 (the value a float32 learning-rate variable holds),
    bit for bit, without float64 tensors.

    Args:
        learning_rate: float in [0, 1.7e38] (2 l must be finite in
            float32): the mean learning rate l.
        period: float > 0: P, in epochs; a whole number when `epoch` is a
            tensor.
        epoch: number >= 0, or an integer tensor (any shape): tau.

    Returns:
        A Python float when `epoch` is a Python (or NumPy) number; otherwise
        a float32 tensor with the shape of `epoch`.

    Raises:
        ValueError: for an argument outside the ranges above, a fractional
            `period` with a tensor `epoch`, or a non-integer tensor `epoch`.

    Example:

    >>> from rlr_keras.schedules import cyclic_cosine
    >>> [round(cyclic_cosine(0.1, period=2, epoch=tau), 6) for tau in range(4)]
    [0.2, 0.1, 0.0, 0.1]
    """
    learning_rate = _check_cyclic_learning_rate(learning_rate)
    period = _validation.check_range("period", period, 0.0, low_open=True)
    if _is_number(epoch):
        epoch = _validation.check_range("epoch", epoch, 0.0)
        return _eq21(learning_rate, period, epoch)
    return _look_up(_cycle_table(learning_rate, period), epoch)


def _look_up(table, epoch):
    """table[epoch mod len(table)] for an integer tensor `epoch`."""
    if not isinstance(epoch, (np.ndarray, list, tuple)) and not hasattr(
            epoch, "dtype"):  # '3', None: before the backend sees them.
        raise TypeError(
            f"epoch must be a number >= 0 or an integer tensor, got {epoch!r}")
    epoch = ops.convert_to_tensor(epoch)
    dtype = keras.backend.standardize_dtype(epoch.dtype)
    if "int" not in dtype:
        raise TypeError(
            f"epoch must be a number or an integer tensor, got a tensor of "
            f"dtype {dtype}")
    index = ops.mod(epoch, ops.convert_to_tensor(len(table), dtype))
    return ops.take(ops.convert_to_tensor(table, "float32"), index)


@keras.saving.register_keras_serializable(package="rlr_keras")
class CyclicCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The cyclic cosine learning rate of Musso (eq. 21), step by step.

    At optimizer step k the learning rate is

    ```
    l_tau = l * (1 + cos(pi * tau / P)),    tau = k // S
    ```

    with l = `learning_rate`, P = `period` and S = `steps_per_epoch`: the
    learning rate is constant within an epoch and follows `cyclic_cosine`
    from epoch to epoch, repeating every 2 P epochs with mean l over a cycle.
    It is the in-graph alternative to the `rlr_keras.callbacks.CyclicCosine`
    callback, for when the number of optimizer steps per epoch is known.

    With `RandomLRSGD` the learning rate multiplies the velocity (x <- x +
    l_tau v, as in the paper); with `keras.optimizers.SGD` it multiplies the
    gradient inside the velocity, which differs when l_tau changes.

    The values are exactly those of the callback: one cycle of `cyclic_cosine`
    is computed in double precision at construction and rounded to float32,
    and step k reads entry (k // S) mod 2 P, so every backend, eager or
    compiled, gives the same bits.

    Args:
        learning_rate: float in [0, 1.7e38]: the mean learning rate l.
        period: whole number > 0: P, half the cycle, in epochs (the
            `rlr_keras.callbacks.CyclicCosine` callback also takes a
            fractional P).
        steps_per_epoch: int >= 1: S, the number of optimizer steps in one
            epoch (with `gradient_accumulation_steps`, count real updates).

    Raises:
        ValueError: for an argument outside the ranges above.

    Example:

    >>> import keras
    >>> from rlr_keras.schedules import CyclicCosineSchedule
    >>> lr = CyclicCosineSchedule(0.005, period=6, steps_per_epoch=235)
    >>> opt = keras.optimizers.SGD(learning_rate=lr)
    >>> round(float(lr(6 * 235)), 6)
    0.0

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        arXiv:2003.06926, 2020 (eq. 21).
    """

    def __init__(self, learning_rate: float, period: float,
                 steps_per_epoch: int) -> None:
        self.learning_rate = _check_cyclic_learning_rate(learning_rate)
        self.period = _validation.check_range(
            "period", period, 0.0, low_open=True
        )
        if not self.period.is_integer():
            raise ValueError(
                "period must be a whole number of epochs for "
                f"CyclicCosineSchedule, got {period!r}; use the CyclicCosine "
                "callback for a fractional period")
        self.steps_per_epoch = _validation.check_int(
            "steps_per_epoch", steps_per_epoch, 1
        )
        self._table = _cycle_table(self.learning_rate, self.period)

    def __call__(self, step: Any) -> Any:
        if isinstance(step, (numbers.Number, np.ndarray, np.generic, list)):
            array = np.asarray(step)
            if array.dtype.kind not in "iu":
                raise TypeError(
                    f"step must be a non-negative integer, got {step!r}")
            if array.size and array.min() < 0:
                raise ValueError(
                    f"step must be a non-negative integer, got {step!r}")
            step = array
        elif not hasattr(step, "dtype"):
            raise TypeError(
                "step must be a non-negative integer or an integer tensor, "
                f"got {step!r}")
        step = ops.convert_to_tensor(step)
        dtype = keras.backend.standardize_dtype(step.dtype)
        if "int" not in dtype:
            raise TypeError(
                f"step must be an integer tensor, got dtype {dtype}")
        epoch = ops.floor_divide(
            step, ops.convert_to_tensor(self.steps_per_epoch, dtype))
        return _look_up(self._table, epoch)

    def get_config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "period": self.period,
            "steps_per_epoch": self.steps_per_epoch,
        }
