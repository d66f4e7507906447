"""What a compiled model's optimizer uses: the mean learning rate and alpha.

The one place that answers "which mean learning rate l and which random
factor alpha does this optimizer apply", shared by the callbacks
(`LearningRateMonitor`, `TemperatureMonitor`) and the temperature utilities.
alpha can come from the optimizer (`RandomLRSGD`) and from its learning-rate
schedule (`RandomLearningRate` given to any Keras optimizer); both are
recognized by their public `alpha_at(step)` method and `delta` attribute.
"""

import keras
import numpy as np
from keras import ops

from rlr_keras import optimizers as _optimizers
from rlr_keras import random_factor as _random_factor
from rlr_keras import schedules as _schedules
from rlr_keras.random_factor import alpha_second_moment


def unwrap(optimizer):
    """Returns the optimizer that owns the learning rate and the iterations.

    `keras.optimizers.LossScaleOptimizer` (mixed precision) delegates both to
    its `inner_optimizer`.
    """
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def learning_rate_object(optimizer):
    """Returns the learning rate as given: a variable or a schedule.

    Public API only. For a float learning rate `optimizer.learning_rate` is
    the `keras.Variable` itself. For a `LearningRateSchedule` that property
    is its current value, so the schedule is rebuilt from the optimizer's
    config: the same class and arguments, hence the same values (a random
    schedule's seed included). `None` when neither applies (a callable, or a
    schedule class Keras cannot deserialize); callers then read only
    `optimizer.learning_rate`.
    """
    current = optimizer.learning_rate
    if isinstance(current, keras.Variable):
        return current
    config = optimizer.get_config().get("learning_rate")
    if not isinstance(config, dict):
        return None
    try:
        schedule = keras.saving.deserialize_keras_object(config)
    except (TypeError, ValueError):
        return None
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    return None


def alpha_sources(optimizer):
    """Returns the objects whose `alpha_at(step)` multiplies the step size.

    The (unwrapped) optimizer itself and its learning-rate schedule, in that
    order, each if it has an `alpha_at` method; empty for a plain optimizer.
    """
    optimizer = unwrap(optimizer)
    return [owner for owner in (optimizer, learning_rate_object(optimizer))
            if callable(getattr(owner, "alpha_at", None))]


def alphas_at(optimizer, steps):
    """Returns alpha at each optimizer step in `steps` as float32 NumPy.

    One vectorized `alpha_at` call per source; alpha = 1 without a source,
    and the product of both when the optimizer and its schedule are random.
    """
    steps = np.asarray(steps, dtype=np.int64)
    alphas = np.ones(steps.shape, dtype=np.float32)
    flat = steps.ravel()
    # Padded to a power of two: eager JAX compiles every op once per shape,
    # and the ranges a monitor asks for differ in length from call to call.
    padded = np.zeros(max(256, 1 << max(flat.size - 1, 0).bit_length()),
                      dtype=np.int64)
    padded[:flat.size] = flat
    for source in alpha_sources(optimizer):
        if (keras.backend.backend() == "tensorflow"
                and type(source).alpha_at in _PLAIN_ALPHA_AT):
            # Eagerly, alpha is some fifty TensorFlow ops of milliseconds in
            # all; one compiled function serves every seed and length.
            values = _random_factor.compiled_random_factor(source.delta)(
                ops.convert_to_tensor(source.seed, "uint32"),
                ops.convert_to_tensor(padded, "int64"))
        else:
            values = source.alpha_at(padded)
        values = ops.convert_to_numpy(values)[:flat.size]
        alphas = alphas * values.astype(np.float32).reshape(steps.shape)
    return alphas


# The alpha_at methods that are `random_factor(self.seed, step, self.delta)`.
_PLAIN_ALPHA_AT = (_optimizers.RandomLRSGD.alpha_at,
                   _schedules.RandomLearningRate.alpha_at)


def optimizer_alpha_second_moment(optimizer):
    """Returns <alpha^2> of the optimizer's random factor (1 without one).

    The factors of the optimizer and of its schedule are independent, so the
    second moment of their product is the product of the second moments.
    """
    moment = 1.0
    for source in alpha_sources(optimizer):
        moment *= alpha_second_moment(float(source.delta))
    return moment


def _base_learning_rate(optimizer):
    """The learning rate without a random schedule's alpha."""
    learning_rate = learning_rate_object(unwrap(optimizer))
    if callable(getattr(learning_rate, "alpha_at", None)) and hasattr(
            learning_rate, "learning_rate"):
        learning_rate = learning_rate.learning_rate  # RandomLearningRate.
    return learning_rate


def learning_rates_at(optimizer, steps):
    """Returns l (the mean learning rate, no alpha) at each of `steps`.

    A `LearningRateSchedule` is evaluated at every step; a variable or a
    callable holds one value, the current one. float32 NumPy.
    """
    learning_rate = _base_learning_rate(optimizer)
    if learning_rate is None:  # Not rebuildable: its current value.
        learning_rate = unwrap(optimizer).learning_rate
    if isinstance(learning_rate,
                  keras.optimizers.schedules.LearningRateSchedule):
        return np.array(
            [ops.convert_to_numpy(
                learning_rate(ops.convert_to_tensor(int(k), "int64")))
             for k in np.ravel(steps)],
            dtype=np.float32).reshape(np.shape(steps))
    if callable(learning_rate) and not isinstance(
            learning_rate, keras.Variable):
        learning_rate = learning_rate()
    return np.full(np.shape(steps), ops.convert_to_numpy(learning_rate),
                   dtype=np.float32)


def iterations(optimizer):
    """Returns the optimizer's step counter as a Python int."""
    return int(ops.convert_to_numpy(unwrap(optimizer).iterations))


def mean_learning_rate(optimizer):
    """Returns the current mean learning rate l as a Python float.

    For `RandomLRSGD` and Keras optimizers with a float learning rate this is
    `optimizer.learning_rate`; a `RandomLearningRate` schedule has its base
    `learning_rate` (at the current step, if that is a schedule) as mean.
    """
    learning_rate = _base_learning_rate(optimizer)
    if learning_rate is None:  # Not rebuildable: its current value.
        learning_rate = unwrap(optimizer).learning_rate
    if isinstance(learning_rate,
                  keras.optimizers.schedules.LearningRateSchedule):
        return float(learning_rates_at(optimizer, [iterations(optimizer)])[0])
    if callable(learning_rate) and not isinstance(
            learning_rate, keras.Variable):
        learning_rate = learning_rate()
    return float(ops.convert_to_numpy(learning_rate))


def is_momentum_sgd(optimizer):
    """Whether the optimizer is SGD with (or without) momentum.

    `RandomLRSGD` and `keras.optimizers.SGD` (with any learning-rate
    schedule, `RandomLearningRate` included): the optimizers whose
    stationary state eq. 20 of Musso describes. Adaptive optimizers (Adam,
    RMSprop, ...) divide the step by a running gradient scale, which the
    derivation does not cover.
    """
    return isinstance(unwrap(optimizer),
                      (_optimizers.RandomLRSGD, keras.optimizers.SGD))


def momentum(optimizer):
    """Returns the optimizer's momentum mu (0 for optimizers without one)."""
    return float(getattr(unwrap(optimizer), "momentum", 0.0) or 0.0)
