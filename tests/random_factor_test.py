"""Tests for the alpha stream against an independent NumPy transcription.

Runs on every Keras backend: the same (seed, k, delta) must give the same
float32 alpha on TensorFlow, JAX (with and without x64) and PyTorch, eagerly
and compiled. Keras' PyTorch backend runs eagerly unless asked otherwise, so
there the eager value is the one an optimizer step uses.
"""

import fractions
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from rlr_keras import RandomLearningRate
from rlr_keras import RandomLRSGD
from rlr_keras import random_factor

BACKEND = keras.backend.backend()
SEEDS = (0, 1, 2**32 - 1, 12345)
DELTAS = (0.0, 0.3, 0.7, 1.0)
LARGE_STEPS = (2**31 - 1, 2**31, 2**32 + 5, 2**40)
NUM_STEPS = 4096
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------
# NumPy transcription: the hash on uint64 words (products of 32-bit words fit
# in 64 bits), the map in np.float32 arithmetic, from the docstring formulas.
_MASK = np.uint64(0xFFFFFFFF)


def _np_mix(x):
    x = x & _MASK
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & _MASK
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & _MASK
    return x ^ (x >> np.uint64(16))


def np_bits(seed, steps):
    steps = np.asarray(steps, np.uint64)
    key_0 = _np_mix(np.uint64(seed ^ 0x9E3779B9))
    key_1 = _np_mix(key_0 ^ np.uint64(0x85EBCA6B))
    inner = _np_mix((steps & _MASK) ^ key_0)
    return _np_mix(inner ^ (steps >> np.uint64(32)) ^ key_1)


def np_alpha(seed, steps, delta):
    bits = np_bits(seed, steps)
    f32 = np.float32
    d = f32(delta)
    if d < 2.0**-25:
        return np.ones(bits.shape, f32)
    # d_hi: d truncated to 12 significant bits; d_lo = d - d_hi.
    _, exponent = math.frexp(float(d))
    quantum = 2.0 ** (exponent - 12)
    d_hi = f32(math.floor(float(d) / quantum) * quantum)
    d_lo = f32(float(d) - float(d_hi))
    top = bits >> np.uint64(8)
    m_hi = (top >> np.uint64(12)).astype(np.int64) - 2048
    m_lo = (top & np.uint64(0xFFF)).astype(f32)
    # p_1 = d_hi 2**-11 (m_hi - 2048) = P 2**-e, split at 2**-23 (floor).
    numerator, denominator = fractions.Fraction(
        float(d_hi) * 2.0**-11).as_integer_ratio()
    exponent = denominator.bit_length() - 1
    shift = max(exponent - 23, 0)
    product = numerator * m_hi
    high = product >> shift
    low = product - (high << shift)
    head = f32(1) + high.astype(f32) * f32(2.0 ** -(exponent - shift))
    tail = low.astype(f32) * f32(2.0**-exponent)
    p_2 = f32(d_hi * f32(2.0**-23)) * m_lo
    p_3 = f32(d_lo * f32(2.0**-11)) * m_hi.astype(f32)
    p_4 = f32(d_lo * f32(2.0**-23)) * m_lo
    return head + (((p_4 + p_3) + p_2) + tail)


def _counter_bits():
    dtype = RandomLRSGD(seed=0).iterations.dtype
    return 64 if keras.backend.standardize_dtype(dtype) == "int64" else 32


def _reachable_large_steps():
    limit = 2 ** (_counter_bits() - 1)
    return [k for k in LARGE_STEPS if k < limit]


def _counter_tensor(steps):
    """Steps as a tensor of the optimizer counter's dtype."""
    dtype = "int64" if _counter_bits() == 64 else "int32"
    return ops.convert_to_tensor(np.asarray(steps), dtype)


def _bits_of(alpha):
    return np.asarray(ops.convert_to_numpy(alpha), np.float32).view(np.uint32)


def _compilers():
    """(name, fn -> compiled fn) for the backend's compilers."""
    if BACKEND == "tensorflow":
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        return [("tf.function", tf.function),
                ("xla", lambda f: tf.function(f, jit_compile=True))]
    if BACKEND == "jax":
        import jax  # pylint: disable=g-import-not-at-top

        return [("jax.jit", jax.jit)]
    return []  # Keras' PyTorch backend runs eagerly by default.


# ---------------------------------------------------------------------------
# Bit-identical values.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("delta", DELTAS)
def test_alpha_equals_numpy_for_first_steps_and_large_steps(seed, delta):
    want = np_alpha(seed, np.arange(NUM_STEPS), delta).view(np.uint32)
    got = random_factor.random_factor(seed, _counter_tensor(
        np.arange(NUM_STEPS)), delta)
    np.testing.assert_array_equal(_bits_of(got), want)
    large = _reachable_large_steps()
    got = random_factor.random_factor(seed, _counter_tensor(large), delta)
    np.testing.assert_array_equal(
        _bits_of(got), np_alpha(seed, large, delta).view(np.uint32))
    # Python integers are split on the host: every k < 2**64 on any backend.
    for k in LARGE_STEPS + (2**64 - 1,):
        assert _bits_of(random_factor.random_factor(seed, k, delta)) == \
            np_alpha(seed, [k], delta).view(np.uint32)[0]


@pytest.mark.parametrize("delta", DELTAS)
def test_compiled_alpha_equals_eager_alpha(delta):
    compilers = _compilers()
    if not compilers:
        pytest.skip(f"{BACKEND}: Keras runs this backend eagerly")
    steps = _counter_tensor(list(range(NUM_STEPS))
                            + _reachable_large_steps())
    want = np_alpha(12345, ops.convert_to_numpy(steps), delta)

    def alpha(s):
        return random_factor.random_factor(12345, s, delta)

    np.testing.assert_array_equal(_bits_of(alpha(steps)), want.view(np.uint32))
    for name, compile_fn in compilers:
        got = _bits_of(compile_fn(alpha)(steps))
        np.testing.assert_array_equal(got, want.view(np.uint32), err_msg=name)


_X64_SCRIPT = """
import json, sys
import numpy as np
import jax
import keras
from rlr_keras import random_factor
assert jax.config.jax_enable_x64
steps = keras.ops.convert_to_tensor(np.array(json.loads(sys.argv[1])),
                                    "int64")
out = {}
for seed in (0, 2**32 - 1):
    for delta in (0.3, 1.0):
        def alpha(s):
            return random_factor.random_factor(seed, s, delta)
        out[f"{seed} {delta}"] = [
            np.asarray(a, np.float32).view(np.uint32).tolist()
            for a in (alpha(steps), jax.jit(alpha)(steps))]
print(json.dumps(out))
"""


@pytest.mark.skipif(BACKEND != "jax", reason="JAX only")
def test_jax_with_x64_gives_the_same_alpha():
    steps = list(range(512)) + list(LARGE_STEPS)
    env = dict(os.environ, JAX_ENABLE_X64="1", KERAS_BACKEND="jax",
               JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _X64_SCRIPT, json.dumps(steps)], env=env,
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for key, (eager, jitted) in out.items():
        seed, delta = key.split()
        want = np_alpha(int(seed), steps, float(delta)).view(np.uint32)
        np.testing.assert_array_equal(eager, want)
        np.testing.assert_array_equal(jitted, want)


def test_optimizer_counter_reaches_large_steps():
    opt = RandomLRSGD(delta=0.7, seed=1)
    for k in _reachable_large_steps():
        opt.iterations.assign(k)
        assert _bits_of(opt.alpha_at(opt.iterations)) == \
            np_alpha(1, [k], 0.7).view(np.uint32)[0]


def _alphas_of_optimizer_steps(optimizer, first, count):
    """alpha of `count` real steps from iterations = `first`: with l = 1,
    g = 1 and momentum 0, a step from x = 0 leaves x = -alpha exactly."""
    variable = keras.Variable(np.zeros((1,), np.float32))
    optimizer.build([variable])
    optimizer.iterations.assign(first)
    alphas = []
    for _ in range(count):
        variable.assign(np.zeros((1,), np.float32))
        optimizer.apply([np.ones((1,), np.float32)], [variable])
        alphas.append(-ops.convert_to_numpy(variable)[0])
    return np.array(alphas, np.float32)


def test_steps_across_2_to_the_31_continue_the_stream():
    # Keras keeps iterations in int32 on PyTorch and on JAX without x64: it
    # wraps from 2**31 - 1 to -2**31, which alpha reads modulo 2**32, so the
    # stream goes on as if the counter had not wrapped.
    optimizer = RandomLRSGD(learning_rate=1.0, delta=0.7, seed=9)
    first = 2**31 - 3
    got = _alphas_of_optimizer_steps(optimizer, first, 6)
    want = np_alpha(9, first + np.arange(6), 0.7)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    last = int(ops.convert_to_numpy(optimizer.iterations))
    assert last == (first + 6 if _counter_bits() == 64
                    else first + 6 - 2**32)


def test_steps_across_2_to_the_32_repeat_only_on_int32_counters():
    optimizer = RandomLRSGD(learning_rate=1.0, delta=0.7, seed=9)
    # 2**32 - 2 is -2 in an int32 counter (the same value modulo 2**32).
    first = 2**32 - 2 if _counter_bits() == 64 else -2
    got = _alphas_of_optimizer_steps(optimizer, first, 4)
    steps = 2**32 - 2 + np.arange(4)
    if _counter_bits() == 32:
        steps = steps % 2**32  # The documented period: 2**32 steps.
    want = np_alpha(9, steps, 0.7)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_power_of_two_delta_gives_exactly_one_plus_delta_c():
    bits = np_bits(7, np.arange(NUM_STEPS))
    c = ((bits >> np.uint64(8)).astype(np.float64) - 2.0**23) * 2.0**-23
    for delta in (1.0, 0.5, 0.25):
        got = ops.convert_to_numpy(
            random_factor.random_factor(7, np.arange(NUM_STEPS), delta))
        np.testing.assert_array_equal(got, (1.0 + delta * c).astype(
            np.float32))


@pytest.mark.parametrize("delta", [0.3, 0.7, 0.123456789])
def test_alpha_within_one_float32_spacing_of_exact_value(delta):
    bits = np_bits(3, np.arange(NUM_STEPS))
    c = ((bits >> np.uint64(8)).astype(np.float64) - 2.0**23) * 2.0**-23
    exact = 1.0 + np.float64(np.float32(delta)) * c  # 48 bits: exact.
    got = ops.convert_to_numpy(
        random_factor.random_factor(3, np.arange(NUM_STEPS), delta))
    spacing = np.spacing(np.abs(got).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(got - exact) <= spacing)


def test_tiny_delta_gives_exactly_one():
    for delta in (0.0, 1e-30, 2.0**-26):
        got = ops.convert_to_numpy(
            random_factor.random_factor(0, np.arange(100), delta))
        np.testing.assert_array_equal(got, 1.0)


# ---------------------------------------------------------------------------
# Statistics.


@pytest.mark.parametrize("delta", [0.3, 0.7, 1.0])
def test_alpha_moments_within_standard_errors(delta):
    n = 2**16
    alpha = ops.convert_to_numpy(
        random_factor.random_factor(12345, np.arange(n), delta)).astype(
            np.float64)
    assert alpha.min() >= np.float32(1 - delta)
    assert alpha.max() <= np.float32(1 + delta)
    variance = delta**2 / 3
    # Uniform on [1 - delta, 1 + delta]: fourth central moment delta^4 / 5;
    # E[alpha^4] = ((1 + delta)^5 - (1 - delta)^5) / (10 delta).
    second = random_factor.alpha_second_moment(delta)
    fourth = ((1 + delta) ** 5 - (1 - delta) ** 5) / (10 * delta)
    se_mean = math.sqrt(variance / n)
    se_var = math.sqrt((delta**4 / 5 - variance**2) / n)
    se_second = math.sqrt((fourth - second**2) / n)
    assert abs(alpha.mean() - 1.0) < 5 * se_mean
    assert abs(alpha.var() - variance) < 5 * se_var
    assert second == pytest.approx(1 + delta**2 / 3)
    assert abs(np.mean(alpha**2) - second) < 5 * se_second
    correlation = np.corrcoef(alpha[:-1], alpha[1:])[0, 1]
    assert abs(correlation) < 5 / math.sqrt(n)


def test_streams_of_different_seeds_are_unrelated():
    n = 20000
    a = ops.convert_to_numpy(random_factor.random_factor(0, np.arange(n), 1.0))
    b = ops.convert_to_numpy(random_factor.random_factor(1, np.arange(n), 1.0))
    assert a[0] != 0.0  # Seed 0, step 0 is no fixed point of the hash.
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(n)
    assert len(np.intersect1d(a, b)) < 0.01 * n  # Not a re-indexing.


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("step, message", [
    (-1, r"step must be an integer in \[0, 18446744073709551615\], got -1"),
    (2**64, "step must be an integer in"),
    (np.array([0, -3]), "step must be a non-negative integer, got -3"),
])
def test_bad_python_steps_raise(step, message):
    with pytest.raises(ValueError, match=message):
        RandomLRSGD(seed=0).alpha_at(step)
    with pytest.raises(ValueError, match=message):
        RandomLearningRate(0.1, seed=0)(step)


@pytest.mark.parametrize("step, message", [
    (2.5, "step must be an integer, got 2.5"),
    (True, "step must be an integer, got True"),
    (np.array([0.5]), "step must be a non-negative integer"),
    # Checked before the backend sees it: JAX would raise its own TypeError.
    ("3", "step must be a non-negative integer, an integer array or an "
          "integer tensor, got '3'"),
    (None, "step must be a non-negative integer, an integer array or an "
           "integer tensor, got None"),
    (["3"], "step must be a non-negative integer"),
])
def test_steps_of_the_wrong_type_raise_our_type_error(step, message):
    with pytest.raises(TypeError, match=message):
        RandomLRSGD(seed=0).alpha_at(step)
    with pytest.raises(TypeError, match=message):
        RandomLearningRate(0.1, seed=0)(step)
    with pytest.raises(TypeError, match=message):
        random_factor.random_factor(0, step, 1.0)


def test_float_tensor_step_raises():
    with pytest.raises(TypeError, match="step must be an integer tensor"):
        random_factor.random_factor(0, ops.convert_to_tensor([1.0]), 1.0)


def test_random_learning_rate_rejects_negative_step():
    with pytest.raises(ValueError, match="step must be an integer in"):
        RandomLearningRate(0.1, seed=0)(-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(seed=-1, step=0, delta=1.0), r"seed must be an integer in \[0, "),
    (dict(seed=2**32, step=0, delta=1.0), "seed"),
    (dict(seed=0, step=0, delta=1.5), r"delta must be in \[0, 1\], got 1.5"),
])
def test_bad_seed_or_delta_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_factor.random_factor(**kwargs)
