"""The random factor alpha of SGD with random learning rate.

At optimizer step k the update of Musso (eq. 1) scales the gradient by a
random factor alpha_k, uniform on [1 - delta, 1 + delta]. This module is the
single place where alpha_k is computed.

alpha_k is a pure function of (seed, k): a counter-based integer hash
followed by a float32 map to [1 - delta, 1 + delta). The hash is a two-round
keyed construction on 32-bit words with the `lowbias32` mixer m,

    key_0 = m(seed ^ 0x9E3779B9),  key_1 = m(key_0 ^ 0x85EBCA6B)
    h(seed, k) = m(m(k_low ^ key_0) ^ k_high ^ key_1)

(k_low, k_high: the low and high 32 bits of k). The odd constants keep
(seed 0, step 0) away from m's fixed point m(0) = 0, and the two
seed-derived keys keep the streams of different seeds unrelated (a single
XOR key would make one seed's stream a re-indexing of another's).

Every backend computes the same bits. Keras stores `uint32` as `int64` on
PyTorch, where products of 32-bit words do not wrap, so the hash multiplies
in 16-bit limbs and masks to 32 bits after every operation that can carry
past them: no intermediate exceeds 2**49, and on native `uint32` the mask is
a no-op. The map to alpha uses float32 only (no float64, which JAX without
x64 silently drops) and only exact products, so neither a fused multiply-add
nor eager versus compiled execution can change a bit; see `random_factor`.

Being stateless, the stream survives saving and restoring, every replica of
a distribution strategy computes the same value, and a NumPy transcription of
the same operations reproduces it exactly (tests/random_factor_test.py).

Counter range: Keras keeps the optimizer's `iterations` in int64 on
TensorFlow and on JAX with `jax_enable_x64`, so every k < 2**63 is covered.
On PyTorch and on JAX without x64 it is int32 (Keras' choice, which a
subclass cannot change through the public API): after 2**31 - 1 steps it
wraps to -2**31. A 32-bit counter is read modulo 2**32, so alpha goes on
through that wrap exactly as for k >= 2**31, and the stream repeats with a
period of 2**32 (about 4.3e9) steps: step k there uses alpha_{k mod 2**32}
(tests/random_factor_test.py checks both boundaries). Keras' own schedules
see the negative counter after the wrap. Python and NumPy integers are split
into words on the host and reach every k < 2**64 on every backend.
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from rlr_keras import _validation
from rlr_keras._names import SEED_MAX

__all__ = [
    "SEED_MAX",
    "STEP_MAX",
    "alpha_second_moment",
    "compiled_random_factor",
    "random_bits",
    "random_factor",
    "resolve_seed",
    "validate_delta",
    "validate_seed",
]

# lowbias32 constants (C. Wellons, "Prospecting for hash functions", 2018).
_MIX_MULTIPLIER_1 = 0x7FEB352D
_MIX_MULTIPLIER_2 = 0x846CA68B
# Odd constants (golden ratio; murmur3's finalizer) that derive the keys.
_KEY_CONSTANT_0 = 0x9E3779B9
_KEY_CONSTANT_1 = 0x85EBCA6B
_MASK_32 = 0xFFFFFFFF
_MASK_16 = 0xFFFF
_MASK_12 = 0xFFF
# Below this float32 delta, |delta * c| < 2**-25 and alpha rounds to 1.
_SMALLEST_DELTA = 2.0**-25

# SEED_MAX, the largest seed of the alpha stream (seeds are 32-bit words),
# is defined in rlr_keras._names (the commands read it without Keras).
STEP_MAX = 2**64 - 1
"""The largest step a Python or NumPy integer may give (two 32-bit words)."""


def _u32(value):
    return ops.convert_to_tensor(value, dtype="uint32")


def _mask(x):
    """x mod 2**32; a no-op on native uint32, needed where uint32 is int64."""
    return ops.bitwise_and(x, _u32(_MASK_32))


def _multiply(x, constant):
    """x * constant mod 2**32 for 32-bit words x, without 64-bit products.

    With constant = c_hi * 2**16 + c_lo, x * constant = x * c_lo +
    ((x * c_hi) mod 2**16) * 2**16 mod 2**32; each product is below 2**48.
    """
    high = ops.bitwise_and(ops.multiply(x, _u32(constant >> 16)),
                           _u32(_MASK_16))
    low = ops.multiply(x, _u32(constant & _MASK_16))
    return _mask(ops.add(low, ops.left_shift(high, _u32(16))))


def _mix(x):
    """lowbias32: a bijective avalanche mixer on 32-bit words."""
    x = ops.bitwise_xor(x, ops.right_shift(x, _u32(16)))
    x = _multiply(x, _MIX_MULTIPLIER_1)
    x = ops.bitwise_xor(x, ops.right_shift(x, _u32(15)))
    x = _multiply(x, _MIX_MULTIPLIER_2)
    return ops.bitwise_xor(x, ops.right_shift(x, _u32(16)))


def _host_words(step):
    """Splits Python/NumPy integer steps into (low, high) uint32 arrays."""
    if isinstance(step, numbers.Number):
        step = _validation.check_int("step", step, 0, STEP_MAX)
    array = np.asarray(step)
    if array.dtype == object:  # Python ints beyond int64 in a list.
        array = np.array([_validation.check_int("step", s, 0, STEP_MAX)
                          for s in array.ravel()],
                         np.uint64).reshape(array.shape)
    if array.dtype.kind not in "iu":
        raise TypeError(
            "step must be a non-negative integer (or an integer array or "
            f"tensor), got {step!r} of dtype {array.dtype}")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise ValueError(
            f"step must be a non-negative integer, got {int(array.min())}")
    array = array.astype(np.uint64)
    return ((array & _MASK_32).astype(np.uint32),
            (array >> np.uint64(32)).astype(np.uint32))


def _words(step):
    """Returns the low and high 32-bit words of `step` as uint32 tensors."""
    if isinstance(step, (numbers.Number, np.ndarray, np.generic, list,
                         tuple)):
        low, high = _host_words(step)
        return _u32(low), _u32(high)
    if not hasattr(step, "dtype"):  # Not a tensor or variable: '3', None.
        raise TypeError(
            "step must be a non-negative integer, an integer array or an "
            f"integer tensor, got {step!r}")
    step = ops.convert_to_tensor(step)
    dtype = keras.backend.standardize_dtype(step.dtype)
    if dtype in ("int64", "uint64"):
        step = ops.cast(step, "int64")
        low = ops.bitwise_and(step, ops.convert_to_tensor(_MASK_32, "int64"))
        high = ops.right_shift(step, ops.convert_to_tensor(32, "int64"))
        return _mask(ops.cast(low, "uint32")), _mask(ops.cast(high, "uint32"))
    if "int" not in dtype:
        raise TypeError(
            f"step must be an integer tensor, got a tensor of dtype {dtype}")
    # A 32-bit counter (JAX without x64) has no high word.
    low = _mask(ops.cast(step, "uint32"))
    return low, ops.zeros_like(low)


def random_bits(seed: int, step: Any) -> Any:
    """Returns the 32-bit hash h(seed, step) as a uint32 tensor.

    On PyTorch, whose Keras backend stores uint32 as int64, the tensor holds
    the same values in [0, 2**32) as int64.

    Args:
        seed: int in [0, 2**32 - 1].
        step: non-negative int, NumPy integer array, or integer tensor (any
            shape). Python and NumPy values are checked; a tensor is not (a
            negative int32 is read modulo 2**32, an int64 modulo 2**64).

    Raises:
        ValueError: for a seed out of range, or a Python/NumPy step that is
            negative, above 2**64 - 1 or not an integer, or a float tensor.
    """
    return _bits(validate_seed(seed), step)


def _bits(seed, step):
    """`random_bits` without the seed check; `seed` may be a uint32 tensor.

    A tensor seed lets one compiled function serve every seed (see
    `compiled_random_factor`); the integer operations are exact, so a Python
    and a tensor seed give the same bits.
    """
    low, high = _words(step)
    key_0 = _mix(ops.bitwise_xor(_u32(seed), _u32(_KEY_CONSTANT_0)))
    key_1 = _mix(ops.bitwise_xor(key_0, _u32(_KEY_CONSTANT_1)))
    inner = _mix(ops.bitwise_xor(low, key_0))
    return _mix(ops.bitwise_xor(ops.bitwise_xor(inner, high), key_1))


def _split_delta(delta):
    """Returns float32 (d_hi, d_lo) with d = d_hi + d_lo, 12 bits each."""
    d = np.float32(delta)
    d_hi = (np.array(d).view(np.uint32) & np.uint32(0xFFFFF000)).view(
        np.float32)[()]
    return d_hi, np.float32(d - d_hi)  # The difference is exact.


def _map_constants(delta):
    """The constants of the map (see `random_factor`), computed in Python.

    Returns (n, e, b, c, d): d_hi 2**-11 = n 2**-e with n an integer of at
    most 12 bits, and the float32 b = d_hi 2**-23, c = d_lo 2**-11,
    d = d_lo 2**-23 (powers-of-two scalings: exact, and normal for
    delta >= 2**-25).
    """
    d_hi, d_lo = _split_delta(delta)
    leading = float(d_hi * np.float32(2.0**-11))
    numerator, denominator = leading.as_integer_ratio()
    return (numerator, denominator.bit_length() - 1,
            np.float32(d_hi * np.float32(2.0**-23)),
            np.float32(d_lo * np.float32(2.0**-11)),
            np.float32(d_lo * np.float32(2.0**-23)))


def random_factor(seed: int, step: Any, delta: float) -> Any:
    """Returns alpha_k, uniform on [1 - delta, 1 + delta], as float32.

    With m the top 24 bits of h(seed, k), c = (m - 2**23) / 2**23 is uniform
    on the 2**24 points of [-1, 1) and alpha = 1 + d c, d = float32(delta),
    is evaluated in float32 from exact pieces. Split m = 2**12 m_hi + m_lo
    (an integer m_hi - 2**11 in [-2**11, 2**11) and m_lo in [0, 2**12)) and,
    in Python, d = d_hi + d_lo (12 significant bits each). The three products

        p_2 = d_hi 2**-23 m_lo,  p_3 = d_lo 2**-11 (m_hi - 2**11),
        p_4 = d_lo 2**-23 m_lo

    are exact in float32. The leading product p_1 = d_hi 2**-11 (m_hi - 2**11)
    = P 2**-e is formed as an int32 P = n (m_hi - 2**11) (|P| < 2**23) and
    split at 2**-23: p_1 = h + l with h = floor(p_1 2**23) 2**-23 and
    0 <= l < 2**-23, both exact in float32. Then 1 + h is exact too, and

        alpha = (1 + h) + (((p_4 + p_3) + p_2) + l)

    adds the pieces in this fixed order. No product is rounded (so fusing a
    multiply with an add cannot change a bit) and no expression can be
    simplified by a compiler without changing IEEE semantics, so eager and
    compiled code agree. alpha is the float32 nearest to 1 + d c except for
    rare double roundings (about 1 step in 10,000 for delta = 0.7), where it
    is the other neighbour; for delta = 1, 0.5, 0.75 or 0 it is always the
    nearest, and for delta a power of two it is 1 + d c exactly. Rounding can
    reach 1 + delta itself. `delta < 2**-25` gives exactly 1, as 1 + d c
    would round to it.

    Args:
        seed: int in [0, 2**32 - 1], the stream's seed.
        step: int or integer tensor (any shape): the optimizer iteration k
            (see `random_bits` for the accepted values).
        delta: float in [0, 1]: the half-width Delta (a Python number).

    Returns:
        A float32 tensor with the shape of `step`.

    Raises:
        ValueError: for a `seed`, `step` or `delta` out of range.
    """
    return _factor(validate_seed(seed), step, validate_delta(delta))


def _factor(seed, step, delta):
    """`random_factor` without the checks; `seed` may be a uint32 tensor."""
    bits = _bits(seed, step)
    if np.float32(delta) < _SMALLEST_DELTA:
        return ops.ones(ops.shape(bits), "float32")
    numerator, exponent, b, c, d = _map_constants(delta)

    def f32(value):
        return ops.convert_to_tensor(value, "float32")

    top = ops.right_shift(bits, _u32(8))
    m_lo = ops.cast(ops.bitwise_and(top, _u32(_MASK_12)), "float32")
    m_hi = ops.subtract(ops.cast(ops.right_shift(top, _u32(12)), "int32"),
                        ops.convert_to_tensor(2**11, "int32"))
    # P = n (m_hi - 2**11) and its split at 2**-23, in int32 (exact).
    product = ops.multiply(m_hi, ops.convert_to_tensor(numerator, "int32"))
    shift = max(exponent - 23, 0)
    high = ops.right_shift(product, ops.convert_to_tensor(shift, "int32"))
    low = ops.bitwise_and(product,
                          ops.convert_to_tensor(2**shift - 1, "int32"))
    # x - (-y) is x + y bit for bit. Subtractions keep TensorFlow's graph
    # optimizer from merging the additions into one reordered AddN.
    head = ops.subtract(f32(1.0), ops.multiply(
        ops.cast(high, "float32"), f32(-(2.0 ** -(exponent - shift)))))
    m_hi = ops.cast(m_hi, "float32")
    rest = ops.subtract(ops.multiply(f32(d), m_lo),
                        ops.multiply(f32(-c), m_hi))
    rest = ops.subtract(rest, ops.multiply(f32(-b), m_lo))
    rest = ops.subtract(rest, ops.multiply(ops.cast(low, "float32"),
                                           f32(-(2.0**-exponent))))
    return ops.add(head, rest)


_TF_FUNCTIONS = {}


def compiled_random_factor(delta: float) -> Callable[[Any, Any], Any]:
    """Returns `random_factor` for one `delta` as a `tf.function` (TensorFlow).

    The function takes the seed as an argument, so it is traced once per
    `delta` in a process, whatever the seed and the number of steps: a
    function traced per optimizer, or per length, makes TensorFlow warn about
    retracing after five traces (`rlr_keras.LearningRateMonitor` computes a
    sweep's alphas with it). alpha is bit-identical eagerly and compiled.

    Args:
        delta: float in [0, 1]: the half-width Delta.

    Returns:
        A `tf.function` `(seed, steps) -> alpha`: `seed` a uint32 scalar
        tensor (not checked: validate it with `validate_seed`), `steps` an
        int64 vector of any length; alpha has the shape of `steps`.

    Raises:
        ValueError: for a `delta` outside [0, 1].
    """
    delta = validate_delta(delta)
    function = _TF_FUNCTIONS.get(delta)
    if function is None:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        function = tf.function(
            lambda seed, step: _factor(seed, step, delta),
            input_signature=(tf.TensorSpec([], tf.uint32),
                             tf.TensorSpec([None], tf.int64)))
        _TF_FUNCTIONS[delta] = function
    return function


def alpha_second_moment(delta: float) -> float:
    """Returns <alpha^2> = 1 + delta^2 / 3, alpha uniform on [1-delta, 1+delta].

    The paper's eq. 27 (and 29-31) print 1 + delta / 3; the variance of the
    uniform distribution of half-width delta is delta^2 / 3, so the second
    moment is 1 + delta^2 / 3.
    """
    delta = validate_delta(delta)
    return 1.0 + delta**2 / 3.0


def validate_seed(seed: int) -> int:
    """Returns `seed` as an int in [0, 2**32 - 1] or raises ValueError."""
    return _validation.check_int("seed", seed, 0, SEED_MAX)


def resolve_seed(seed: int | None) -> int:
    """Returns `seed` validated, or a fresh seed in [0, 2**32 - 1] if None."""
    if seed is None:
        return random.SystemRandom().randrange(SEED_MAX + 1)
    return validate_seed(seed)


def validate_delta(delta: float) -> float:
    """Returns `delta` as a float in [0, 1] or raises ValueError."""
    return _validation.check_range("delta", delta, 0.0, 1.0)
