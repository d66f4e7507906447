"""The random factor alpha of SGD with random learning rate.

At optimizer step k the update of Musso (eq. 1) scales the gradient by a
random factor alpha_k, uniform on [1 - delta, 1 + delta]. This module is the
single place where alpha_k is computed.

alpha_k is a pure function of (seed, k): a counter-based integer hash
followed by an exact map to [1 - delta, 1 + delta). The hash is a two-round
keyed construction on uint32 words with the `lowbias32` mixer m,

    key_0 = m(seed ^ 0x9E3779B9),  key_1 = m(key_0 ^ 0x85EBCA6B)
    h(seed, k) = m(m(k_low ^ key_0) ^ k_high ^ key_1)

(k_low, k_high: the low and high 32 bits of k). The odd constants keep
(seed 0, step 0) away from m's fixed point m(0) = 0, and the two
seed-derived keys keep the streams of different seeds unrelated (a single
XOR key would make one seed's stream a re-indexing of another's).

Being stateless, the stream survives saving and restoring, and every
replica of a `tf.distribute` strategy computes the same value. Unlike
`tf.random.stateless_uniform`, it gives bit-identical values eagerly, inside
`tf.function` and under XLA, and a NumPy transcription of the same integer
operations reproduces it exactly.
"""

import keras
from keras import ops

from rlr_keras import _validation

# lowbias32 constants (C. Wellons, "Prospecting for hash functions", 2018).
_MIX_MULTIPLIER_1 = 0x7FEB352D
_MIX_MULTIPLIER_2 = 0x846CA68B
# Odd constants (golden ratio; murmur3's finalizer) that derive the keys.
_KEY_CONSTANT_0 = 0x9E3779B9
_KEY_CONSTANT_1 = 0x85EBCA6B
SEED_MAX = 2**32 - 1


def _u32(value):
    return ops.convert_to_tensor(value, dtype="uint32")


def _mix(x):
    """lowbias32: a bijective avalanche mixer on uint32 words."""
    x = ops.bitwise_xor(x, ops.right_shift(x, _u32(16)))
    x = ops.multiply(x, _u32(_MIX_MULTIPLIER_1))
    x = ops.bitwise_xor(x, ops.right_shift(x, _u32(15)))
    x = ops.multiply(x, _u32(_MIX_MULTIPLIER_2))
    x = ops.bitwise_xor(x, ops.right_shift(x, _u32(16)))
    return x


def random_bits(seed, step):
    """Returns the 32-bit hash of (seed, step) as a uint32 tensor.

    Args:
        seed: int in [0, 2**32 - 1].
        step: int or integer tensor (any shape) of non-negative steps.
    """
    step = ops.convert_to_tensor(step)
    if keras.backend.standardize_dtype(step.dtype) in ("int64", "uint64"):
        step = ops.cast(step, "int64")
        low = ops.cast(ops.bitwise_and(step, 0xFFFFFFFF), "uint32")
        high = ops.cast(ops.right_shift(step, 32), "uint32")
    else:  # 32-bit counters (e.g. JAX without x64): no high word.
        low = ops.cast(step, "uint32")
        high = ops.zeros_like(low)
    key_0 = _mix(_u32(seed ^ _KEY_CONSTANT_0))
    key_1 = _mix(ops.bitwise_xor(key_0, _u32(_KEY_CONSTANT_1)))
    inner = _mix(ops.bitwise_xor(low, key_0))
    return _mix(ops.bitwise_xor(ops.bitwise_xor(inner, high), key_1))


def random_factor(seed, step, delta):
    """Returns alpha_k, uniform on [1 - delta, 1 + delta), as float32.

    The top 24 bits of the hash give u = m / 2**24 with m an integer; then
    alpha = 1 + delta * (2u - 1). The product is formed in float64, where it
    is exact (24-bit by 24-bit mantissas), and rounded once to float32, so the
    result does not depend on whether the compiler fuses the multiply-add.

    Args:
        seed: int in [0, 2**32 - 1], the stream's seed.
        step: int or integer tensor (any shape): the optimizer iteration k.
        delta: float in [0, 1] (or a float tensor): the half-width Delta.

    Returns:
        A float32 tensor with the shape of `step`. `delta = 0` gives exactly 1.
    """
    bits = random_bits(seed, step)
    top = ops.cast(ops.right_shift(bits, _u32(8)), "float64")
    centred = ops.multiply(ops.subtract(top, 2.0**23), 2.0**-23)  # in [-1, 1)
    half_width = ops.cast(ops.cast(delta, "float32"), "float64")
    return ops.cast(ops.add(1.0, ops.multiply(half_width, centred)), "float32")


def alpha_second_moment(delta):
    """Returns <alpha^2> = 1 + delta^2 / 3, alpha uniform on [1-delta, 1+delta].

    The paper's eq. 27 (and 29-31) print 1 + delta / 3; the variance of the
    uniform distribution of half-width delta is delta^2 / 3, so the second
    moment is 1 + delta^2 / 3.
    """
    delta = _validation.check_range("delta", delta, 0.0, 1.0)
    return 1.0 + delta**2 / 3.0


def validate_seed(seed):
    """Returns `seed` as an int in [0, 2**32 - 1] or raises ValueError."""
    return _validation.check_int("seed", seed, 0, SEED_MAX)


def validate_delta(delta):
    """Returns `delta` as a float in [0, 1] or raises ValueError."""
    return _validation.check_range("delta", delta, 0.0, 1.0)
