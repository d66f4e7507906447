"""Effective temperature of SGD with random learning rate.

The Fokker-Planck analysis of Musso (section 2.1) gives the stationary
distribution of the weights an effective temperature

    T = l D / (2 C (1 - mu))                                    (eq. 20)

with `l` the mean learning rate, `C` the mini-batch size, `mu` the momentum
and `D` the isotropic diffusion coefficient of the gradient noise. This module
holds that formula (`effective_temperature`) and a planner that finds the
configuration with the same temperature (`match_temperature`; command line
`rlr-temperature`, or `experiments/temperature.py` in a checkout). `D` is
measured by
`rlr_keras.diffusion.estimate_diffusion`, and
`rlr_keras.callbacks.TemperatureMonitor` logs `D` and `T` during training.
"""

from __future__ import annotations

import math
import sys
import typing

from rlr_keras import _validation

__all__ = ["Hyperparameters", "effective_temperature", "match_temperature"]

_QUANTITIES = ("learning_rate", "batch_size", "momentum")


def _check_learning_rate(name, value):
    return _validation.check_range(name, value, 0.0, None, low_open=True)


def _check_new_learning_rate(name, value):
    # The limit of RandomLRSGD (and of any Keras optimizer: a float32
    # variable), so that the planner never proposes a value they refuse.
    return _validation.check_float32(name, value, 0.0, low_open=True)


def _check_batch_size(name, value):
    return _validation.check_int(name, value, 1)


def _check_momentum(name, value):
    return _validation.check_range(name, value, 0.0, 1.0, high_open=True)


def effective_temperature(learning_rate: float, batch_size: int,
                          momentum: float = 0.0,
                          diffusion: float = 1.0) -> float:
    """Returns the effective temperature T of paper eq. 20.

    The stationary solution of the Fokker-Planck equation of SGD with
    momentum (and random learning rate) is a Boltzmann distribution at

        T = l * D / (2 * C * (1 - mu))

    where `l = learning_rate` is the mean learning rate (the mean of
    `l * alpha` for the random protocol), `C = batch_size`, `mu = momentum`
    and `D = diffusion`. With the default `diffusion=1.0` the result is T / D,
    the part of the temperature that the hyperparameters control.

    Args:
        learning_rate: float > 0, the mean learning rate `l`.
        batch_size: int >= 1, the mini-batch size `C`.
        momentum: float in [0, 1), the momentum `mu`. Defaults to `0.0`.
        diffusion: float >= 0, the diffusion coefficient `D` (see
            `estimate_diffusion`). Defaults to `1.0`.

    Returns:
        The temperature as a Python float.

    Raises:
        ValueError: if an argument is outside the range given above, or the
            result is not a finite float (values at the ends of the float
            range).

    Example:

    >>> effective_temperature(2e-4, 60) == effective_temperature(1e-4, 30)
    True

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        2020, eq. 20.
    """
    learning_rate = _check_learning_rate("learning_rate", learning_rate)
    batch_size = _check_batch_size("batch_size", batch_size)
    momentum = _check_momentum("momentum", momentum)
    diffusion = _validation.check_range("diffusion", diffusion, 0.0)
    try:
        temperature = learning_rate * diffusion / (
            2.0 * batch_size * (1.0 - momentum))
    except OverflowError:  # An int batch size beyond the float range.
        temperature = 0.0 if diffusion == 0.0 else math.nan
    if not math.isfinite(temperature):
        raise ValueError(
            "effective_temperature is not a finite float for "
            f"learning_rate={learning_rate!r}, batch_size={batch_size!r}, "
            f"momentum={momentum!r}, diffusion={diffusion!r}; bring the "
            "values closer to 1")
    return temperature


class Hyperparameters(typing.NamedTuple):
    """The hyperparameters that set the effective temperature."""

    learning_rate: float
    batch_size: int
    momentum: float


def match_temperature(learning_rate: float, batch_size: int,
                      momentum: float = 0.0, *,
                      new_learning_rate: float | None = None,
                      new_batch_size: int | None = None,
                      new_momentum: float | None = None,
                      solve_for: str | None = None) -> Hyperparameters:
    """Returns a configuration with the same effective temperature.

    Given a reference configuration `(learning_rate, batch_size, momentum)`
    and some of the values of a new one, solves eq. 20 for the quantity
    `solve_for` so that both have the same T / D (hence the same T if they
    share the diffusion coefficient D). Values of the new configuration that
    are neither given nor solved for are copied from the reference. Because T
    is linear in `l`, `1 / C` and `1 / (1 - mu)`, each solution is a ratio of
    `effective_temperature` values.

    Args:
        learning_rate: float > 0, the reference mean learning rate.
        batch_size: int >= 1, the reference mini-batch size.
        momentum: float in [0, 1), the reference momentum. Defaults to `0.0`.
        new_learning_rate: float > 0 or `None`: the new learning rate.
        new_batch_size: int >= 1 or `None`: the new mini-batch size.
        new_momentum: float in [0, 1) or `None`: the new momentum.
        solve_for: one of `"learning_rate"`, `"batch_size"`, `"momentum"` or
            `None`. `None` picks the first of those (in that order) whose
            `new_*` value is not given. Defaults to `None`.

    Returns:
        A `Hyperparameters(learning_rate, batch_size, momentum)` tuple. A
        solved batch size is rounded to the nearest integer, so the match is
        then exact only when the ratio is an integer; compare the two
        `effective_temperature` values to see the difference.

    Raises:
        TypeError: for an argument of the wrong type.
        ValueError: if an argument is out of range (a new learning rate must
            also be finite in float32, as `RandomLRSGD` requires), if a value
            is given for the quantity being solved for, if all three new
            values are given, or if the solution is not allowed (a momentum
            outside [0, 1), a batch size below 1, a learning rate beyond
            float32, a value beyond the float range). The message says which
            values to raise or lower.

    Example:

    >>> match_temperature(2e-4, 60, 0.0, new_batch_size=30)
    Hyperparameters(learning_rate=0.0001, batch_size=30, momentum=0.0)
    """
    target = effective_temperature(learning_rate, batch_size, momentum)
    if target == 0.0:
        raise ValueError(
            "the reference temperature T/D underflows to 0 for "
            f"learning_rate={learning_rate!r}, batch_size={batch_size!r}, "
            f"momentum={momentum!r}; no configuration can be matched to it")
    new = {
        "learning_rate": new_learning_rate,
        "batch_size": new_batch_size,
        "momentum": new_momentum,
    }
    if solve_for is None:
        missing = [name for name in _QUANTITIES if new[name] is None]
        if not missing:
            raise ValueError(
                "match_temperature needs one of new_learning_rate, "
                "new_batch_size, new_momentum to be None (the quantity to "
                "solve for), got all three"
            )
        solve_for = missing[0]
    _validation.check_choice("solve_for", solve_for, _QUANTITIES)
    if new[solve_for] is not None:
        raise ValueError(
            f"new_{solve_for} must be None when solve_for={solve_for!r}, got "
            f"{new[solve_for]!r}"
        )
    reference = {
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "momentum": momentum,
    }
    for name in _QUANTITIES:
        if name != solve_for and new[name] is None:
            new[name] = reference[name]
    if solve_for != "learning_rate":
        new["learning_rate"] = _check_new_learning_rate(
            "new_learning_rate", new["learning_rate"])
    if solve_for != "batch_size":
        new["batch_size"] = _check_batch_size(
            "new_batch_size", new["batch_size"])
    if solve_for != "momentum":
        new["momentum"] = _check_momentum("new_momentum", new["momentum"])

    if solve_for == "learning_rate":
        # T is proportional to l.
        solved = target / effective_temperature(
            1.0, new["batch_size"], new["momentum"])
        if solved == 0.0:
            raise ValueError(
                "no learning rate matches the reference temperature: the "
                "solution underflows to learning_rate=0.0; raise "
                "new_batch_size or lower new_momentum")
        if not solved <= _validation.FLOAT32_MAX:
            raise ValueError(
                "no learning rate matches the reference temperature: the "
                f"solution learning_rate={solved:.6g} is beyond float32 "
                f"(at most {_validation.FLOAT32_MAX:.7g}, the limit of "
                "RandomLRSGD and Keras optimizers); lower new_batch_size or "
                "raise new_momentum")
        new["learning_rate"] = solved
    elif solve_for == "batch_size":
        # T is proportional to 1 / C.
        exact = effective_temperature(
            new["learning_rate"], 1, new["momentum"]) / target
        if not math.isfinite(exact):
            raise ValueError(
                "no batch size matches the reference temperature: the "
                f"solution batch_size={exact!r} is beyond the float range; "
                "lower new_learning_rate or new_momentum")
        if exact < 0.5:
            raise ValueError(
                "no batch size >= 1 matches the reference temperature: the "
                f"solution is batch_size={exact:.6g}; raise new_learning_rate "
                "or new_momentum"
            )
        new["batch_size"] = max(1, int(round(exact)))
    else:
        # T is proportional to 1 / (1 - mu).
        one_minus = effective_temperature(
            new["learning_rate"], new["batch_size"], 0.0) / target
        solved = 1.0 - one_minus
        if not 0.0 <= solved < 1.0:  # Also False for NaN.
            # Below 0: even mu = 0 is too hot; at 1: no mu is hot enough.
            change = ("lower new_learning_rate or raise new_batch_size"
                      if solved < 0.0 else
                      "raise new_learning_rate or lower new_batch_size")
            raise ValueError(
                "no momentum in [0, 1) matches the reference temperature: the "
                f"solution is momentum={solved!r}; {change}"
            )
        new["momentum"] = solved
    return Hyperparameters(
        float(new["learning_rate"]), int(new["batch_size"]),
        float(new["momentum"]))


def _main():
    """`python -m rlr_keras.temperature`: says where the command line is."""
    print("rlr_keras.temperature is the planner's library module, not a "
          "command; run `rlr-temperature --help` (installed with rlr_keras) "
          "or, in a checkout, `python experiments/temperature.py --help`",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main())
