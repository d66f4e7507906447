"""The learning-rate protocols compared in the paper: constant, random, cyclic.

`build` turns a protocol name and its hyperparameters into the optimizer and
the callbacks that realize it; users and the experiment scripts both go
through it, so each protocol is defined in one place.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras

from rlr_keras import _validation
from rlr_keras import callbacks as _callbacks
from rlr_keras import optimizers as _optimizers
from rlr_keras import random_factor as _random_factor
from rlr_keras import schedules as _schedules
from rlr_keras._names import PROTOCOLS

__all__ = ["PROTOCOLS", "Protocol", "build", "check_arguments"]

# PROTOCOLS (the names) is defined in rlr_keras._names, read by the commands
# without Keras.

_DEFAULT_RANDOM_DELTA = 1.0


class Protocol(NamedTuple):
    """An optimizer and the callbacks that realize a learning-rate protocol.

    Attributes:
        optimizer: the `RandomLRSGD` to pass to `model.compile`.
        callbacks: list of `keras.callbacks.Callback` to pass to `model.fit`
            (empty for the constant and random protocols).
    """

    optimizer: keras.optimizers.Optimizer
    callbacks: list[keras.callbacks.Callback]


def check_arguments(
    protocol: str,
    *,
    learning_rate: float,
    delta: float | None = None,
    period: float | None = None,
    momentum: float = 0.0,
    nesterov: bool = False,
    coupled_weight_decay: float = 0.0,
    seed: int | None = None,
) -> tuple[float, float | None, float | None]:
    """Checks the arguments of `build` without building anything.

    The same checks as `build` (its own and `RandomLRSGD`'s), with no Keras
    object created: a sweep checks every point of its grid this way before
    the first run starts (and before TensorFlow's runtime does).

    Args:
        protocol, learning_rate, delta, period, momentum, nesterov,
        coupled_weight_decay, seed: as in `build`.

    Returns:
        `(learning_rate, delta, period)` as `build` uses them (`delta`
        resolved to its default for `"random"`).

    Raises:
        TypeError, ValueError: as `build` does.
    """
    _validation.check_choice("protocol", protocol, PROTOCOLS)
    learning_rate = _validation.check_float32("learning_rate", learning_rate,
                                              0.0)
    if protocol == "random":
        if delta is None:
            delta = _DEFAULT_RANDOM_DELTA
        delta = _validation.check_range(
            "delta", delta, 0.0, 1.0, low_open=True
        )
    elif delta is not None:
        delta = _validation.check_range("delta", delta, 0.0, 1.0)
        if delta != 0.0:
            raise ValueError(
                f"delta must be 0 (or None) for the {protocol!r} protocol, got "
                f"{delta!r}; a random factor is the 'random' protocol"
            )
    if protocol == "cyclic":
        if period is None:
            raise ValueError(
                "period is required for the 'cyclic' protocol, got None"
            )
        period = _validation.check_range("period", period, 0.0, low_open=True)
    elif period is not None:
        raise ValueError(
            f"period must be None for the {protocol!r} protocol, got "
            f"{period!r}; "
            "only the 'cyclic' protocol has a period"
        )

    initial_learning_rate = learning_rate
    if protocol == "cyclic":
        initial_learning_rate = _schedules.cyclic_cosine(
            learning_rate, period, 0)
    _optimizers._check_sgd_arguments(  # pylint: disable=protected-access
        initial_learning_rate, delta or 0.0, momentum, nesterov,
        coupled_weight_decay)
    if seed is not None:
        _random_factor.validate_seed(seed)
    return learning_rate, delta, period


def build(
    protocol: str,
    *,
    learning_rate: float,
    delta: float | None = None,
    period: float | None = None,
    momentum: float = 0.0,
    nesterov: bool = False,
    coupled_weight_decay: float = 0.0,
    seed: int | None = None,
    **optimizer_kwargs: Any,
) -> Protocol:
    """Returns the optimizer and callbacks of a learning-rate protocol.

    All three protocols of Musso (section 3) have the same mean learning rate
    l = `learning_rate` and use `RandomLRSGD` (momentum mu = `momentum`,
    Nesterov, coupled weight decay w = `coupled_weight_decay`), so they differ
    only in the learning rate applied at optimizer step k of epoch tau:

    ```
    constant:  l                                  (Delta = 0)
    random:    alpha_k * l,  alpha_k ~ U[1 - Delta, 1 + Delta]
    cyclic:    l * (1 + cos(pi * tau / P))        (Delta = 0, eq. 21)
    ```

    with Delta = `delta` and P = `period`. The cyclic protocol is a
    `rlr_keras.callbacks.CyclicCosine` callback on an optimizer whose initial
    learning rate is l_0 = 2 l.

    Args:
        protocol: str, one of `PROTOCOLS`: `"constant"`, `"random"` or
            `"cyclic"`, by position or keyword (`name=` goes to the
            optimizer, as in Keras).
        learning_rate: float >= 0: the mean learning rate l.
        delta: float: Delta. For `"random"`, in (0, 1]; `None` means `1.0`
            (alpha in [0, 2], as in the paper). For `"constant"` and
            `"cyclic"`, `None` or `0`. Defaults to `None`.
        period: float > 0: P, half the cosine cycle, in epochs; required for
            `"cyclic"` and not allowed otherwise. Defaults to `None`.
        momentum: float in [0, 1): mu. Defaults to `0.0`.
        nesterov: bool, Nesterov momentum. Defaults to `False`.
        coupled_weight_decay: float >= 0: w, PyTorch-style L2 added to the
            gradient. Defaults to `0.0`.
        seed: int in [0, 2**32 - 1] or None: the seed of the alpha stream
            (`None` draws one). Defaults to `None`.
        **optimizer_kwargs: further keyword arguments of `RandomLRSGD` (the
            base Keras optimizer's, e.g. `clipnorm`, `name`).

    Returns:
        A `Protocol(optimizer, callbacks)`.

    Raises:
        TypeError: for an argument of the wrong type (e.g. `protocol=3`,
            `learning_rate=None`).
        ValueError: for an unknown `protocol`, an argument out of range, or an
            invalid combination: `delta > 0` with `"constant"` or `"cyclic"`,
            `delta = 0` with `"random"`, a missing `period` with `"cyclic"`,
            or a `period` with another protocol.

    Example:

    >>> from rlr_keras import protocols
    >>> optimizer, callbacks = protocols.build(
    ...     "cyclic", learning_rate=0.005, period=6, momentum=0.9,
    ...     nesterov=True, seed=0)
    >>> type(optimizer).__name__, [type(c).__name__ for c in callbacks]
    ('RandomLRSGD', ['CyclicCosine'])

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        arXiv:2003.06926, 2020.
    """
    learning_rate, delta, period = check_arguments(
        protocol, learning_rate=learning_rate, delta=delta, period=period,
        momentum=momentum, nesterov=nesterov,
        coupled_weight_decay=coupled_weight_decay, seed=seed)
    callbacks = []
    initial_learning_rate = learning_rate
    if protocol == "cyclic":
        callbacks.append(_callbacks.CyclicCosine(learning_rate, period))
        initial_learning_rate = _schedules.cyclic_cosine(
            learning_rate, period, 0
        )
    optimizer = _optimizers.RandomLRSGD(
        learning_rate=initial_learning_rate,
        delta=delta or 0.0,
        momentum=momentum,
        nesterov=nesterov,
        seed=seed,
        coupled_weight_decay=coupled_weight_decay,
        **optimizer_kwargs,
    )
    return Protocol(optimizer, callbacks)
