"""Argument checks shared by every public class and function.

Each check raises an error that names the argument, the value received and
what is allowed, e.g. ``delta must be in [0, 1], got 1.5``: a `TypeError` for a
value of the wrong type (``seed=1.5``, ``delta="a"``, ``learning_rate=None``)
and a `ValueError` for a value of the right type outside the allowed range.
"""

import math
import numbers

import keras

FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: the optimizer's hyperparameters are float32."""


def check_real(name, value):
    """Returns `value` as a float; it must be a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a finite real number, got {value!r}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_range(name, value, low=None, high=None, *, low_open=False,
                high_open=False):
    """Returns `value` as a float after checking `low <= value <= high`.

    `low_open`/`high_open` exclude the bound. `None` means unbounded.
    """
    value = check_real(name, value)
    ok = True
    if low is not None:
        ok &= value > low if low_open else value >= low
    if high is not None:
        ok &= value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(
            f"{name} must be in {left}{lo}, {hi}{right}, got {value!r}"
        )
    return value


def check_float32(name, value, low=None, high=None, **kwargs):
    """Like `check_range`, and `value` must also be finite in float32.

    Keras keeps hyperparameters such as the learning rate in float32
    variables, where a double above `FLOAT32_MAX` (e.g. 1e300) becomes inf.
    """
    value = check_range(name, value, low, high, **kwargs)
    if abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"{name} must be finite in float32 (|{name}| <= "
            f"{FLOAT32_MAX:.7g}), got {value!r}")
    return value


def validate_learning_rate(learning_rate):
    """Returns a float learning rate as float; schedules/callables unchanged.

    Raises:
        ValueError: if a number is negative or not finite in float32.
        TypeError: if `learning_rate` is neither a number, a
            `keras.optimizers.schedules.LearningRateSchedule` nor a callable.
    """
    if isinstance(learning_rate, numbers.Real) and not isinstance(
        learning_rate, bool
    ):
        return check_float32("learning_rate", learning_rate, 0.0)
    if isinstance(
        learning_rate, keras.optimizers.schedules.LearningRateSchedule
    ) or callable(learning_rate):
        return learning_rate
    raise TypeError(
        "learning_rate must be a non-negative float, a "
        "keras.optimizers.schedules.LearningRateSchedule or a callable, "
        f"got {learning_rate!r}"
    )


def check_int(name, value, low=None, high=None):
    """Returns `value` as an int; it must be an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise ValueError(
            f"{name} must be an integer in [{lo}, {hi}], got {value}")
    return value


def check_choice(name, value, choices):
    """Returns `value`; it must be one of `choices`.

    A value of another type than all the choices (e.g. 3 among strings) is a
    `TypeError`, any other value not among them a `ValueError`.
    """
    allowed = ", ".join(repr(c) for c in choices)
    if not any(isinstance(value, type(c)) for c in choices):
        raise TypeError(f"{name} must be one of {allowed}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_bool(name, value):
    """Returns `value`; it must be a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_positive_ints(name, value, length, description, *,
                        none_allowed=False):
    """Returns `value` as a tuple of `length` positive ints, or raises.

    `description` names the entries in the error, e.g. "(height, width)";
    `none_allowed` only says in the error that the caller also accepts None.
    """
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if (items is None or len(items) != length
            or not all(isinstance(d, numbers.Integral)
                       and not isinstance(d, bool) and d > 0 for d in items)):
        alternative = "None or " if none_allowed else ""
        raise ValueError(
            f"{name} must be {alternative}{length} positive ints "
            f"{description}, got {value!r}")
    return tuple(int(d) for d in items)
