"""Tests for RandomLRSGD against Keras' SGD and a NumPy reference of eq. 1-2."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlr_keras import RandomLRSGD
from rlr_keras import RandomLearningRate
from rlr_keras import random_factor

# ---------------------------------------------------------------------------
# Independent NumPy reference of the alpha hash (two keyed lowbias32 rounds).
_M1, _M2, _MASK = 0x7FEB352D, 0x846CA68B, 0xFFFFFFFF


def _np_mix(x):
    x = int(x) & _MASK
    x ^= x >> 16
    x = (x * _M1) & _MASK
    x ^= x >> 15
    x = (x * _M2) & _MASK
    x ^= x >> 16
    return x


def np_alpha(seed, step, delta):
    key_0 = _np_mix(seed ^ 0x9E3779B9)
    key_1 = _np_mix(key_0 ^ 0x85EBCA6B)
    h = _np_mix(_np_mix((step & _MASK) ^ key_0) ^ (step >> 32) ^ key_1)
    centred = (np.float64(h >> 8) - 2.0**23) * 2.0**-23
    return np.float32(1.0 + np.float64(np.float32(delta)) * centred)


def np_rlr_sgd(x, grads, alphas, lrs, momentum, nesterov, wd):
    """Eq. 1-2 of Musso in float64: returns the trajectory of x."""
    x = np.array(x, np.float64)
    v = np.zeros_like(x)
    for g, a, l in zip(grads, alphas, lrs):
        g = g + wd * x
        v = momentum * v - a * g
        step = momentum * v - a * g if nesterov else v
        x = x + l * step
    return x


def _small_model(seed=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def _data(n=64):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(n, 5)).astype("float32"),
        rng.normal(size=(n, 1)).astype("float32"),
    )


def _fit(optimizer, epochs=2, jit_compile=False, model_seed=1, **fit_kwargs):
    x, y = _data()
    model = _small_model(model_seed)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
              **fit_kwargs)
    return model


def _max_diff(a, b):
    return max(np.abs(u - w).max() for u, w in zip(a, b))


# ---------------------------------------------------------------------------
# The alpha stream.


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
@pytest.mark.parametrize("delta", [0.0, 0.3, 1.0])
def test_alpha_matches_numpy_hash(seed, delta):
    steps = [0, 1, 2, 3, 1000, 123456, 2**31 + 5, 2**33 + 17]
    got = random_factor.random_factor(seed, np.array(steps, np.int64), delta)
    want = np.array([np_alpha(seed, s, delta) for s in steps], np.float32)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_alpha_bit_identical_eager_function_and_xla():
    steps = tf.range(0, 500, dtype=tf.int64)

    def f(s):
        return random_factor.random_factor(11, s, 0.77)

    eager = f(steps).numpy()
    graph = tf.function(f)(steps).numpy()
    xla = tf.function(f, jit_compile=True)(steps).numpy()
    assert eager.tobytes() == graph.tobytes() == xla.tobytes()


@pytest.mark.parametrize("delta", [0.25, 1.0])
def test_alpha_statistics(delta):
    n = 20000
    alphas = np.asarray(random_factor.random_factor(5, np.arange(n), delta),
                        np.float64)
    assert alphas.min() >= 1 - delta and alphas.max() <= 1 + delta
    variance = delta**2 / 3
    # Standard errors of the mean and of the sample variance of a uniform
    # distribution (fourth central moment delta^4 / 5); 5 sigma.
    se_mean = math.sqrt(variance / n)
    se_var = math.sqrt((delta**4 / 5 - variance**2) / n)
    assert abs(alphas.mean() - 1.0) < 5 * se_mean
    assert abs(alphas.var() - variance) < 5 * se_var
    # Consecutive draws are uncorrelated.
    c = np.corrcoef(alphas[:-1], alphas[1:])[0, 1]
    assert abs(c) < 5 / math.sqrt(n)


def test_streams_of_different_seeds_are_unrelated():
    n = 20000
    a = np.asarray(random_factor.random_factor(0, np.arange(n), 1.0))
    b = np.asarray(random_factor.random_factor(1, np.arange(n), 1.0))
    assert a[0] != 0.0  # Seed 0, step 0 is no fixed point of the hash.
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(n)
    # Not a re-indexing of each other either: few values in common.
    assert len(np.intersect1d(a, b)) < 0.01 * n


def test_zero_delta_gives_exactly_one():
    alphas = np.asarray(random_factor.random_factor(3, np.arange(1000), 0.0))
    assert np.all(alphas == 1.0)


def test_alpha_second_moment_is_corrected_value():
    from rlr_keras import alpha_second_moment

    assert alpha_second_moment(1.0) == pytest.approx(4.0 / 3.0)
    assert alpha_second_moment(0.5) == pytest.approx(1 + 0.25 / 3)


# ---------------------------------------------------------------------------
# Update rule.


@pytest.mark.parametrize(
    "momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)]
)
def test_zero_delta_matches_keras_sgd(momentum, nesterov):
    ours = _small_model()
    theirs = _small_model()
    opt = RandomLRSGD(0.05, delta=0.0, momentum=momentum, nesterov=nesterov,
                      seed=0)
    ref = keras.optimizers.SGD(0.05, momentum=momentum, nesterov=nesterov)
    x, y = _data()
    for k in range(8):
        xb, yb = x[8 * k: 8 * k + 8], y[8 * k: 8 * k + 8]
        for model, o in ((ours, opt), (theirs, ref)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(xb) - yb) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            o.apply(grads, model.trainable_variables)
        assert _max_diff(ours.get_weights(), theirs.get_weights()) < 1e-6


@pytest.mark.parametrize(
    "momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 1e-2),
                             (0.9, True, 1e-2), (0.5, True, 0.0)]
)
def test_matches_numpy_reference_with_changing_learning_rate(
    momentum, nesterov, wd
):
    rng = np.random.default_rng(1)
    steps = 60
    x0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(steps)]
    lrs = [0.01 * (1 + math.cos(math.pi * k / 7)) + 1e-3 for k in range(steps)]
    var = keras.Variable(x0.astype("float32"))
    opt = RandomLRSGD(lrs[0], delta=1.0, momentum=momentum, nesterov=nesterov,
                      seed=42, coupled_weight_decay=wd)
    opt.build([var])
    alphas = []
    for k in range(steps):
        opt.learning_rate = lrs[k]
        alphas.append(float(opt.alpha_at(k)))
        opt.apply([tf.constant(grads[k], tf.float32)], [var])
    want = np_rlr_sgd(x0, grads, alphas, lrs, momentum, nesterov, wd)
    np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-5)
    assert int(opt.iterations) == steps


def test_one_alpha_per_step_shared_by_all_variables():
    a = keras.Variable(np.zeros((2, 3), "float32"))
    b = keras.Variable(np.zeros((4,), "float32"))
    opt = RandomLRSGD(1.0, delta=1.0, seed=9)
    for k in range(5):
        before = [a.numpy().copy(), b.numpy().copy()]
        opt.apply([-tf.ones((2, 3)), -tf.ones((4,))], [a, b])
        da, db = a.numpy() - before[0], b.numpy() - before[1]
        alpha = np.float32(opt.alpha_at(k))
        # Both variables moved by the very same amount...
        np.testing.assert_array_equal(da.ravel(), np.full(6, da.flat[0]))
        np.testing.assert_array_equal(db, np.full(4, da.flat[0]))
        # ... which is alpha_k, up to the float32 rounding of x_{k+1} - x_k
        # for |x| <= 2 k (an ulp of 8 is 9.5e-7).
        np.testing.assert_allclose(da, alpha, rtol=0, atol=1e-6)


def _alpha_through_step(run, step_fn_kind):
    """Runs one step with x = 0, g = -1, l = 1, mu = 0: then x_new = alpha."""
    var = keras.Variable(np.zeros((3,), "float32"))
    opt = RandomLRSGD(1.0, delta=0.83, seed=123)
    opt.build([var])
    opt.iterations.assign(run)

    def step():
        opt.apply([-tf.ones((3,))], [var])

    if step_fn_kind == "eager":
        step()
    elif step_fn_kind == "function":
        tf.function(step)()
    else:
        tf.function(step, jit_compile=True)()
    return var.numpy(), opt


@pytest.mark.parametrize("kind", ["eager", "function", "xla"])
def test_alpha_inside_step_is_alpha_at_bit_for_bit(kind):
    for k in (0, 17, 2**32 + 3):
        value, opt = _alpha_through_step(k, kind)
        want = np.asarray(opt.alpha_at(k))
        assert value.tobytes() == np.full(3, want, np.float32).tobytes()
        assert want == np_alpha(123, k, 0.83)


def test_clipping_does_not_cancel_alpha():
    var = keras.Variable(np.zeros((4,), "float32"))
    opt = RandomLRSGD(1.0, delta=1.0, seed=4, clipnorm=1.0)
    opt.apply([tf.constant([-30.0, 0.0, 0.0, -40.0])], [var])
    alpha = float(opt.alpha_at(0))
    np.testing.assert_allclose(var.numpy(), [0.6 * alpha, 0, 0, 0.8 * alpha],
                               rtol=1e-6)


def test_gradient_accumulation_counts_real_steps():
    var = keras.Variable(np.zeros((2,), "float32"))
    opt = RandomLRSGD(1.0, delta=1.0, seed=8, gradient_accumulation_steps=2)
    for _ in range(4):
        opt.apply([-tf.ones((2,))], [var])
    assert int(opt.iterations) == 2
    want = np.float32(opt.alpha_at(0)) + np.float32(opt.alpha_at(1))
    np.testing.assert_allclose(var.numpy(), [want, want], rtol=1e-6)


def test_sparse_gradients_stay_sparse():
    emb = keras.layers.Embedding(10, 4)
    emb.build((None,))
    before = emb.embeddings.numpy().copy()
    opt = RandomLRSGD(0.5, delta=1.0, seed=2)
    opt.build(emb.trainable_variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emb(tf.constant([1, 3])))
    grads = tape.gradient(loss, emb.trainable_variables)
    assert isinstance(grads[0], tf.IndexedSlices)
    seen = []
    original = opt.assign_sub

    def spy(variable, value):
        seen.append(type(value))
        original(variable, value)

    opt.assign_sub = spy
    opt.apply(grads, emb.trainable_variables)
    assert seen == [tf.IndexedSlices]
    after = emb.embeddings.numpy()
    alpha = float(opt.alpha_at(0))
    want = before.copy()
    want[[1, 3]] -= 0.5 * alpha
    np.testing.assert_allclose(after, want, rtol=1e-6)


def test_sparse_with_momentum_and_weight_decay_matches_dense():
    emb = keras.layers.Embedding(6, 2)
    emb.build((None,))
    dense = keras.Variable(emb.embeddings.numpy())
    kw = dict(learning_rate=0.1, delta=1.0, seed=2, momentum=0.9,
              coupled_weight_decay=0.01)
    o1, o2 = RandomLRSGD(**kw), RandomLRSGD(**kw)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(emb(tf.constant([0, 4])) ** 2)
        (g,) = tape.gradient(loss, emb.trainable_variables)
        o1.apply([g], emb.trainable_variables)
        o2.apply([tf.convert_to_tensor(g)], [dense])
    np.testing.assert_allclose(emb.embeddings.numpy(), dense.numpy(),
                               rtol=1e-6)


def test_slots_one_per_variable_and_none_without_momentum():
    model = _small_model()
    n = len(model.trainable_variables)
    plain = RandomLRSGD(0.1, seed=0)
    plain.build(model.trainable_variables)
    heavy = RandomLRSGD(0.1, momentum=0.9, seed=0)
    heavy.build(model.trainable_variables)
    sgd = keras.optimizers.SGD(0.1, momentum=0.9)
    sgd.build(model.trainable_variables)
    assert plain.velocities == []
    assert len(heavy.velocities) == n
    assert len(heavy.variables) == len(sgd.variables)


# ---------------------------------------------------------------------------
# Reproducibility, compilation, mixed precision.


def test_same_seed_identical_different_seed_different():
    kw = dict(learning_rate=0.05, delta=1.0, momentum=0.9, nesterov=True)
    a = _fit(RandomLRSGD(seed=5, **kw)).get_weights()
    b = _fit(RandomLRSGD(seed=5, **kw)).get_weights()
    c = _fit(RandomLRSGD(seed=6, **kw)).get_weights()
    assert all(np.array_equal(u, w) for u, w in zip(a, b))
    assert _max_diff(a, c) > 1e-4


def test_jit_compile_matches_no_jit():
    kw = dict(learning_rate=0.05, delta=1.0, momentum=0.9, nesterov=True,
              seed=3)
    a = _fit(RandomLRSGD(**kw), jit_compile=False).get_weights()
    b = _fit(RandomLRSGD(**kw), jit_compile=True).get_weights()
    assert _max_diff(a, b) < 1e-5


def test_random_learning_rate_with_keras_sgd_reproduces_eq_1_2():
    for nesterov in (False, True):
        ours = RandomLRSGD(0.05, delta=1.0, momentum=0.9, nesterov=nesterov,
                           seed=17)
        schedule = RandomLearningRate(0.05, delta=1.0, seed=17)
        theirs = keras.optimizers.SGD(schedule, momentum=0.9,
                                      nesterov=nesterov)
        a = _fit(ours).get_weights()
        b = _fit(theirs).get_weights()
        assert _max_diff(a, b) < 1e-5
    assert float(schedule(3)) == pytest.approx(
        0.05 * float(ours.alpha_at(3)), rel=1e-6)


def test_mixed_precision_trains_and_skipped_step_consumes_no_alpha():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = _data()
        model = _small_model()
        opt = RandomLRSGD(0.05, delta=1.0, momentum=0.9, seed=1)
        model.compile(optimizer=opt, loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert isinstance(model.optimizer,
                          keras.optimizers.LossScaleOptimizer)
        assert np.all(np.isfinite(history.history["loss"]))
    finally:
        keras.mixed_precision.set_global_policy("float32")

    var = keras.Variable(np.zeros((2,), "float32"))
    inner = RandomLRSGD(1.0, delta=1.0, seed=1)
    lso = keras.optimizers.LossScaleOptimizer(inner)
    lso.build([var])
    lso.apply([tf.constant([np.inf, 1.0])], [var])  # skipped
    assert int(inner.iterations) == 0
    np.testing.assert_array_equal(var.numpy(), [0.0, 0.0])
    lso.apply([-tf.ones((2,)) * lso.dynamic_scale], [var])
    assert int(inner.iterations) == 1
    np.testing.assert_allclose(var.numpy(), float(inner.alpha_at(0)),
                               rtol=1e-6)


# ---------------------------------------------------------------------------
# Distribution.


def test_mirrored_strategy_matches_single_device():
    kw = dict(learning_rate=0.05, delta=1.0, momentum=0.9, nesterov=True,
              seed=21)
    single = _fit(RandomLRSGD(**kw), epochs=1).get_weights()
    # ReductionToOneDevice: a second collective-based MirroredStrategy in the
    # test process (the experiments' tests make one) would reuse its
    # collective keys and fail; the all-reduce method does not touch alpha.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        model = _small_model()
        opt = RandomLRSGD(**kw)
        model.compile(optimizer=opt, loss="mse")
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert _max_diff(model.get_weights(), single) < 1e-5
    # Every replica holds the same weights and computes the same alpha.
    for variable in model.trainable_variables:
        copies = [v.numpy() for v in variable.value.values]
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1])
    per_replica = strategy.run(lambda: opt.alpha_at(opt.iterations))
    values = [v.numpy() for v in strategy.experimental_local_results(
        per_replica)]
    assert len(values) == 2 and values[0] == values[1]


# ---------------------------------------------------------------------------
# Serialization and saving.


def test_config_round_trip_and_serialization():
    opt = RandomLRSGD(0.02, delta=0.4, momentum=0.8, nesterov=True, seed=12,
                      coupled_weight_decay=1e-3, clipnorm=1.0)
    config = opt.get_config()
    for key, value in dict(learning_rate=0.02, delta=0.4, momentum=0.8,
                           nesterov=True, seed=12, coupled_weight_decay=1e-3,
                           clipnorm=1.0).items():
        assert config[key] == pytest.approx(value)
    clone = RandomLRSGD.from_config(config)
    assert clone.get_config() == config
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(restored, RandomLRSGD)
    assert restored.get_config() == config

    schedule = RandomLearningRate(
        keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5), delta=0.5,
        seed=3)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, RandomLearningRate)
    assert float(restored(7)) == float(schedule(7))
    plain = RandomLearningRate(0.1, delta=0.5, seed=3)
    assert RandomLearningRate.from_config(plain.get_config()).get_config() \
        == plain.get_config()


def test_seed_none_is_drawn_once_and_stored():
    opt = RandomLRSGD(0.1)
    assert isinstance(opt.seed, int) and 0 <= opt.seed < 2**32
    assert RandomLRSGD.from_config(opt.get_config()).seed == opt.seed
    assert RandomLearningRate(0.1).get_config()["seed"] is not None


def test_save_load_and_continue_equals_uninterrupted(tmp_path):
    kw = dict(learning_rate=0.05, delta=1.0, momentum=0.9, nesterov=True,
              seed=31)
    x, y = _data()
    full = _fit(RandomLRSGD(**kw), epochs=2)
    half = _fit(RandomLRSGD(**kw), epochs=1)
    path = str(tmp_path / "m.keras")
    half.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, RandomLRSGD)
    assert loaded.optimizer.get_config() == half.optimizer.get_config()
    assert int(loaded.optimizer.iterations) == 8
    for a, b in zip(loaded.optimizer.velocities, half.optimizer.velocities):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert _max_diff(loaded.get_weights(), full.get_weights()) < 1e-6


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(delta=1.5), r"delta must be in \[0, 1\], got 1.5"),
        (dict(delta=-0.1), r"delta must be in \[0, 1\]"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (dict(momentum=-0.5), r"momentum must be in \[0, 1\)"),
        (dict(learning_rate=-0.1), r"learning_rate must be in \[0, inf\)"),
        (dict(learning_rate=float("nan")), r"learning_rate must be finite"),
        (dict(learning_rate=float("inf")), r"learning_rate must be finite"),
        (dict(learning_rate="fast"), r"learning_rate must be"),
        (dict(seed=1.5), r"seed must be an integer, got 1.5"),
        (dict(seed=-1), r"seed must be an integer in \[0, 4294967295\]"),
        (dict(seed="a"), r"seed must be an integer"),
        (dict(coupled_weight_decay=-1e-3), r"coupled_weight_decay must be"),
        (dict(nesterov=True), r"nesterov=True requires momentum"),
        (dict(nesterov="yes", momentum=0.9), r"nesterov must be a bool"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomLRSGD(**kwargs)


def test_random_learning_rate_invalid_arguments_raise():
    with pytest.raises(ValueError, match=r"delta must be in \[0, 1\]"):
        RandomLearningRate(0.1, delta=2.0)
    with pytest.raises(ValueError, match="learning_rate must be"):
        RandomLearningRate(-1.0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        RandomLearningRate(0.1, seed=0.5)
