"""SGD with random learning rate (Musso, eq. 1-2) as a Keras 3 optimizer.

`RandomLRSGD` is documented for use in its own docstring; the details are
here.

The alpha stream. alpha_k is drawn once per optimizer step and shared by
every variable. It is a pure function of (`seed`, k), computed by
`rlr_keras.random_factor.random_factor`: the same seed gives the same
stream, a restored optimizer continues it, every replica of a
`tf.distribute` strategy sees the same value, and TensorFlow, JAX and
PyTorch, eager or compiled, agree bit for bit. k is `optimizer.iterations`,
which counts real updates also with `gradient_accumulation_steps`; a step
that `LossScaleOptimizer` skips for a non-finite gradient consumes no alpha.
On PyTorch and on JAX without x64 that counter is int32 (see
`rlr_keras.random_factor` for what happens after 2**31 steps).

Parametrization. l multiplies the velocity, as in eq. 2 and in
`torch.optim.SGD`; `keras.optimizers.SGD` instead puts the learning rate
inside the velocity (v <- mu v - l g; x <- x + v). With a constant l and
`delta=0` the two coincide; when l changes during training (the cyclic
protocol) they differ: here a change of l rescales the whole velocity at
once.

Order of operations. Keras' gradient clipping (`clipnorm`, `clipvalue`,
`global_clipnorm`) acts first, then the coupled weight decay, then alpha:
clipping never cancels the random factor. Keras' own `weight_decay` is
decoupled: x <- x - l * wd * x before the step, outside the velocity and
without alpha.

Sparse gradients (`tf.IndexedSlices`, e.g. from `Embedding`) stay sparse
with `momentum=0` and no coupled weight decay; with a velocity or a coupled
decay they are made dense, as the dense velocity needs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from rlr_keras import _validation
from rlr_keras import random_factor as _random_factor

# Re-exported: they lived here before moving below `schedules`.
from rlr_keras._validation import validate_learning_rate  # noqa: F401
from rlr_keras.random_factor import resolve_seed  # noqa: F401

__all__ = ["RandomLRSGD"]


def _check_sgd_arguments(learning_rate, delta, momentum, nesterov,
                         coupled_weight_decay):
    """Returns `RandomLRSGD`'s own arguments checked, without building it.

    The checks of `RandomLRSGD.__init__`, for callers that validate a
    configuration before any Keras object (or TensorFlow's runtime) exists.

    Raises:
        TypeError, ValueError: as `RandomLRSGD` does.
    """
    learning_rate = _validation.validate_learning_rate(learning_rate)
    delta = _random_factor.validate_delta(delta)
    momentum = _validation.check_range(
        "momentum", momentum, 0.0, 1.0, high_open=True
    )
    nesterov = _validation.check_bool("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError(
            "nesterov=True requires momentum in (0, 1), got momentum=0.0"
        )
    coupled_weight_decay = _validation.check_float32(
        "coupled_weight_decay", coupled_weight_decay, 0.0
    )
    return learning_rate, delta, momentum, nesterov, coupled_weight_decay


@keras.saving.register_keras_serializable(package="rlr_keras")
class RandomLRSGD(keras.optimizers.Optimizer):
    """Stochastic gradient descent with a random learning rate.

    At optimizer step k, with g_k the (clipped) mini-batch gradient,
    mu = `momentum`, l = `learning_rate` (at step k when it is a schedule),
    w = `coupled_weight_decay` and alpha_k uniform on [1 - Delta, 1 + Delta],
    Delta = `delta`, the update of Musso (eq. 1-2) is

    ```
    g_k     = clip(grad f_batch(x_k)) + w * x_k
    v_{k+1} = mu * v_k - alpha_k * g_k
    x_{k+1} = x_k + l * v_{k+1}                        # nesterov=False
    x_{k+1} = x_k + l * (mu * v_{k+1} - alpha_k * g_k)  # nesterov=True
    ```

    With `momentum=0`, x_{k+1} = x_k - l * alpha_k * g_k (no velocity slot).
    Since <alpha> = 1, l is the mean learning rate; `delta=0` is plain SGD.
    alpha_k depends only on (`seed`, k = `optimizer.iterations`):
    reproducible, resumable and the same on every backend and replica;
    `alpha_at(k)` returns it. The module docstring has the details.

    Args:
        learning_rate: float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            with no arguments: the mean learning rate l. Defaults to `0.01`.
        delta: float in [0, 1]: Delta, the half-width of the uniform
            distribution of alpha. Defaults to `1.0` (alpha in [0, 2]).
        momentum: float in [0, 1): mu. Defaults to `0.0`.
        nesterov: bool, whether to use the Nesterov update (needs
            `momentum > 0`). Defaults to `False`.
        seed: int in [0, 2**32 - 1] or None: the seed of the alpha stream.
            `None` draws one at construction and stores it in the config, so
            a saved optimizer stays reproducible. Defaults to `None`.
        coupled_weight_decay: float >= 0: w, the L2 coefficient added to the
            gradient (the `weight_decay` of `torch.optim.SGD`; the paper uses
            w = 1e-3 for Models 2 and 3), scaled by alpha and l. Defaults to
            `0.0`.
        **kwargs: the keyword arguments of `keras.optimizers.Optimizer`:
            `weight_decay` (Keras' decoupled decay, x <- x - l * wd * x,
            without alpha), `clipnorm`, `clipvalue`, `global_clipnorm`,
            `use_ema`, `ema_momentum`, `ema_overwrite_frequency`,
            `loss_scale_factor`, `gradient_accumulation_steps`, `name`.

    Raises:
        TypeError: for an argument of the wrong type (e.g. `seed=1.5`).
        ValueError: for an argument outside the ranges above.

    Example:

    >>> import numpy as np, keras
    >>> from rlr_keras import RandomLRSGD
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> opt = RandomLRSGD(learning_rate=0.005, delta=1.0, momentum=0.9,
    ...                   nesterov=True, seed=0)
    >>> model.compile(optimizer=opt, loss="mse")
    >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 1)), verbose=0)
    >>> float(opt.alpha_at(0)) == float(opt.alpha_at(0))
    True

    Composes with: any `LearningRateSchedule` (e.g.
    `rlr_keras.CyclicCosineSchedule`), the `rlr_keras.CyclicCosine` and
    `keras.callbacks.ReduceLROnPlateau` callbacks (with a float
    `learning_rate`), `LossScaleOptimizer` (mixed precision),
    `gradient_accumulation_steps`, `jit_compile`, `tf.distribute` and
    saving/loading; `rlr_keras.LearningRateMonitor` and
    `rlr_keras.TemperatureMonitor` read alpha and l from it. For Adam and
    other optimizers, use `rlr_keras.RandomLearningRate` instead.

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        arXiv:2003.06926, 2020.
    """

    def __init__(
        self,
        learning_rate: (float | keras.optimizers.schedules.LearningRateSchedule
                        | Callable[[], float]) = 0.01,
        delta: float = 1.0,
        momentum: float = 0.0,
        nesterov: bool = False,
        seed: int | None = None,
        coupled_weight_decay: float = 0.0,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str = "random_lr_sgd",
        **kwargs: Any,
    ) -> None:
        learning_rate, delta, momentum, nesterov, coupled_weight_decay = (
            _check_sgd_arguments(learning_rate, delta, momentum, nesterov,
                                 coupled_weight_decay))
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.delta = delta
        self.momentum = momentum
        self.nesterov = nesterov
        self.seed = _random_factor.resolve_seed(seed)
        self.coupled_weight_decay = coupled_weight_decay

    def alpha_at(self, step: Any) -> Any:
        """Returns alpha_k for optimizer iteration `step` (float32 tensor).

        Args:
            step: non-negative int, NumPy integer array or integer tensor
                (any shape): the value of `optimizer.iterations` at the start
                of the step. Python and NumPy values are checked; tensors
                are read modulo their integer width (see
                `rlr_keras.random_factor.random_bits`).

        Raises:
            TypeError: for a step that is not an integer, an integer array
                or an integer tensor (e.g. `'3'`, `2.5`, a float tensor).
            ValueError: for a negative Python/NumPy `step`.
        """
        return _random_factor.random_factor(self.seed, step, self.delta)

    def build(self, variables):
        """Creates one velocity slot per variable (none when momentum is 0)."""
        if self.built:
            return
        super().build(variables)
        self.velocities = []
        if self.momentum != 0.0:
            self.velocities = self.add_optimizer_variables(
                variables, "velocity"
            )

    def update_step(self, gradient, variable, learning_rate):
        """Applies eq. 1-2 to one variable.

        alpha_k is recomputed for each variable (a few dozen scalar integer
        operations): Keras' public optimizer API has no per-step hook that
        runs inside the compiled step on every backend, and compilers merge
        the identical computations.
        """
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        alpha = ops.cast(self.alpha_at(self.iterations), dtype)
        gradient = ops.cast(gradient, dtype)
        if self.coupled_weight_decay:
            gradient = ops.add(
                ops.convert_to_tensor(gradient),
                ops.multiply(
                    variable, ops.cast(self.coupled_weight_decay, dtype)
                ),
            )
        scaled_gradient = ops.multiply(gradient, alpha)
        if self.momentum == 0.0:
            self.assign_sub(
                variable, ops.multiply(scaled_gradient, learning_rate)
            )
            return
        momentum = ops.cast(self.momentum, dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        self.assign(
            velocity,
            ops.subtract(ops.multiply(velocity, momentum), scaled_gradient),
        )
        if self.nesterov:
            step = ops.subtract(
                ops.multiply(velocity, momentum), scaled_gradient
            )
        else:
            step = velocity
        self.assign_add(variable, ops.multiply(step, learning_rate))

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Creates the optimizer from its config; warns if it has no seed.

        A config without `seed` (or with `seed=None`), e.g. written by hand
        or by another optimizer, draws a fresh seed: the restored optimizer
        then does not continue the alpha stream it was saved with.
        """
        if config.get("seed") is None:
            warnings.warn(
                f"{cls.__name__}.from_config: the config has no 'seed', so a "
                "fresh random seed is drawn and the optimizer does not "
                "continue the alpha stream it was saved with; put the "
                "original seed in the config to resume it.",
                stacklevel=2,
            )
        return super().from_config(config, custom_objects=custom_objects)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "delta": self.delta,
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "seed": self.seed,
                "coupled_weight_decay": self.coupled_weight_decay,
            }
        )
        return config
