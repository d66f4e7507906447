"""Tests for RandomLRSGD against Keras' SGD and a NumPy reference of eq. 1-2."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from rlr_keras import RandomLRSGD
from rlr_keras import RandomLearningRate

BACKEND = keras.backend.backend()

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


def _numpy(x):
    return np.array(ops.convert_to_numpy(x))


def _max_diff(a, b):
    return max(np.abs(u - w).max() for u, w in zip(a, b))


# ---------------------------------------------------------------------------
# The alpha stream itself is tested in random_factor_test.py.


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
    rng = np.random.default_rng(3)
    for _ in range(8):
        grads = [ops.convert_to_tensor(rng.normal(size=w.shape), "float32")
                 for w in ours.get_weights()]
        for model, o in ((ours, opt), (theirs, ref)):
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
        opt.apply([grads[k].astype("float32")], [var])
    want = np_rlr_sgd(x0, grads, alphas, lrs, momentum, nesterov, wd)
    np.testing.assert_allclose(ops.convert_to_numpy(var), want, rtol=1e-5,
                               atol=1e-5)
    assert int(opt.iterations) == steps


def test_one_alpha_per_step_shared_by_all_variables():
    a = keras.Variable(np.zeros((2, 3), "float32"))
    b = keras.Variable(np.zeros((4,), "float32"))
    opt = RandomLRSGD(1.0, delta=1.0, seed=9)
    for k in range(5):
        before = [_numpy(a), _numpy(b)]
        opt.apply([-np.ones((2, 3), "float32"), -np.ones((4,), "float32")],
                  [a, b])
        da, db = _numpy(a) - before[0], _numpy(b) - before[1]
        alpha = np.float32(opt.alpha_at(k))
        # Both variables moved by the very same amount...
        np.testing.assert_array_equal(da.ravel(), np.full(6, da.flat[0]))
        np.testing.assert_array_equal(db, np.full(4, da.flat[0]))
        # ... which is alpha_k, up to the float32 rounding of x_{k+1} - x_k
        # for |x| <= 2 k (an ulp of 8 is 9.5e-7).
        np.testing.assert_allclose(da, alpha, rtol=0, atol=1e-6)


def _alpha_through_step(run, kind):
    """Runs one step with x = 0, g = -1, l = 1, mu = 0: then x_new = alpha."""
    var = keras.Variable(np.zeros((3,), "float32"))
    opt = RandomLRSGD(1.0, delta=0.83, seed=123)
    opt.build([var])
    opt.iterations.assign(run)
    gradient = -np.ones((3,), "float32")
    if kind == "jax.jit":
        import jax  # pylint: disable=g-import-not-at-top

        @jax.jit
        def step(optimizer_values, value):
            (new_value,), _ = opt.stateless_apply(
                optimizer_values, [gradient], [value])
            return new_value

        return _numpy(step([v.value for v in opt.variables], var.value)), opt

    def step():
        opt.apply([gradient], [var])

    if kind == "eager":
        step()
    else:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        tf.function(step, jit_compile=kind == "xla")()
    return _numpy(var), opt


_STEP_KINDS = {"tensorflow": ["eager", "function", "xla"],
               "jax": ["eager", "jax.jit"], "torch": ["eager"]}[BACKEND]


@pytest.mark.parametrize("kind", _STEP_KINDS)
def test_alpha_inside_step_is_alpha_at_bit_for_bit(kind):
    counter_is_64_bit = keras.backend.standardize_dtype(
        RandomLRSGD(seed=0).iterations.dtype) == "int64"
    for k in (0, 17, 2**31 - 1) + ((2**32 + 3,) if counter_is_64_bit else ()):
        value, opt = _alpha_through_step(k, kind)
        want = np.float32(ops.convert_to_numpy(opt.alpha_at(k)))
        assert value.tobytes() == np.full(3, want, np.float32).tobytes()


def test_dense_model_trains_with_delta_one_on_this_backend():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(optimizer=RandomLRSGD(0.05, delta=1.0, momentum=0.9,
                                        seed=0), loss="mse")
    losses = model.fit(x, y, batch_size=32, epochs=5, verbose=0,
                       shuffle=False).history["loss"]
    assert np.all(np.isfinite(losses))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert losses[-1] < 0.1 * losses[0]


def test_clipping_does_not_cancel_alpha():
    var = keras.Variable(np.zeros((4,), "float32"))
    opt = RandomLRSGD(1.0, delta=1.0, seed=4, clipnorm=1.0)
    opt.apply([np.array([-30.0, 0.0, 0.0, -40.0], "float32")], [var])
    alpha = float(opt.alpha_at(0))
    np.testing.assert_allclose(_numpy(var), [0.6 * alpha, 0, 0, 0.8 * alpha],
                               rtol=1e-6)


def test_gradient_accumulation_counts_real_steps():
    var = keras.Variable(np.zeros((2,), "float32"))
    opt = RandomLRSGD(1.0, delta=1.0, seed=8, gradient_accumulation_steps=2)
    for _ in range(4):
        opt.apply([-np.ones((2,), "float32")], [var])
    assert int(opt.iterations) == 2
    want = np.float32(opt.alpha_at(0)) + np.float32(opt.alpha_at(1))
    np.testing.assert_allclose(_numpy(var), [want, want], rtol=1e-6)


@pytest.mark.tensorflow_only
def test_sparse_gradients_stay_sparse():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

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


@pytest.mark.tensorflow_only
def test_sparse_with_momentum_and_weight_decay_matches_dense():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

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


def test_mixed_precision_trains():
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


@pytest.mark.skipif(
    BACKEND == "jax", reason="an eager LossScaleOptimizer.apply traces a "
    "stateful cond, which Keras-JAX only runs inside its stateless train step")
def test_step_skipped_by_loss_scale_optimizer_consumes_no_alpha():
    var = keras.Variable(np.zeros((2,), "float32"))
    inner = RandomLRSGD(1.0, delta=1.0, seed=1)
    lso = keras.optimizers.LossScaleOptimizer(inner)
    lso.build([var])
    lso.apply([np.array([np.inf, 1.0], "float32")], [var])  # skipped
    assert int(inner.iterations) == 0
    np.testing.assert_array_equal(_numpy(var), [0.0, 0.0])
    scale = np.float32(ops.convert_to_numpy(lso.dynamic_scale))
    lso.apply([-np.ones((2,), "float32") * scale], [var])
    assert int(inner.iterations) == 1
    np.testing.assert_allclose(_numpy(var), float(inner.alpha_at(0)),
                               rtol=1e-6)


# ---------------------------------------------------------------------------
# Distribution.


@pytest.mark.tensorflow_only
def test_mirrored_strategy_matches_single_device():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

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
        np.testing.assert_array_equal(_numpy(a), _numpy(b))
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
        (dict(learning_rate=1e300),
         r"learning_rate must be finite in float32 .*got 1e\+300"),
        (dict(coupled_weight_decay=1e39),
         r"coupled_weight_decay must be finite in float32"),
        (dict(seed=-1), r"seed must be an integer in \[0, 4294967295\]"),
        (dict(coupled_weight_decay=-1e-3), r"coupled_weight_decay must be"),
        (dict(nesterov=True), r"nesterov=True requires momentum"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomLRSGD(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(learning_rate="fast"), r"learning_rate must be .*got 'fast'"),
        (dict(learning_rate=None), r"learning_rate must be .*got None"),
        (dict(delta="a"), r"delta must be a finite real number, got 'a'"),
        (dict(delta=None), r"delta must be a finite real number, got None"),
        (dict(momentum="0.9"), r"momentum must be a finite real number"),
        (dict(seed=1.5), r"seed must be an integer, got 1.5"),
        (dict(seed="a"), r"seed must be an integer, got 'a'"),
        (dict(coupled_weight_decay=None), r"coupled_weight_decay must be"),
        (dict(nesterov="yes", momentum=0.9), r"nesterov must be a bool"),
    ],
)
def test_arguments_of_the_wrong_type_raise_type_error(kwargs, message):
    with pytest.raises(TypeError, match=message):
        RandomLRSGD(**kwargs)


def test_random_learning_rate_invalid_arguments_raise():
    with pytest.raises(ValueError, match=r"delta must be in \[0, 1\]"):
        RandomLearningRate(0.1, delta=2.0)
    with pytest.raises(ValueError, match="learning_rate must be"):
        RandomLearningRate(-1.0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        RandomLearningRate(0.1, seed=0.5)
    with pytest.raises(TypeError, match="learning_rate must be .* got None"):
        RandomLearningRate(None)
    with pytest.raises(TypeError, match="delta must be a finite real"):
        RandomLearningRate(0.1, delta="1")


def test_random_learning_rate_rejects_learning_rate_infinite_in_float32():
    with pytest.raises(ValueError, match="learning_rate must be finite in"):
        RandomLearningRate(1e300)


def test_config_without_seed_warns_that_the_stream_restarts():
    config = RandomLRSGD(0.1, seed=3).get_config()
    del config["seed"]
    with pytest.warns(UserWarning, match="no 'seed'.*fresh random seed"):
        restored = RandomLRSGD.from_config(config)
    assert 0 <= restored.seed <= 2**32 - 1
    config = RandomLearningRate(0.1, seed=3).get_config()
    config["seed"] = None
    with pytest.warns(UserWarning, match="no 'seed'"):
        RandomLearningRate.from_config(config)


def test_saved_model_whose_optimizer_lacks_seed_warns_on_load(tmp_path):
    import json  # pylint: disable=g-import-not-at-top
    import zipfile  # pylint: disable=g-import-not-at-top

    model = _small_model()
    model.compile(optimizer=RandomLRSGD(0.1, seed=3), loss="mse")
    path = tmp_path / "m.keras"
    model.save(path)
    edited = tmp_path / "no_seed.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["compile_config"]["optimizer"]["config"]["seed"]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.warns(UserWarning, match="no 'seed'"):
        keras.models.load_model(edited)


def test_config_with_seed_loads_without_warning():
    import warnings  # pylint: disable=g-import-not-at-top

    config = RandomLRSGD(0.1, seed=3).get_config()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RandomLRSGD.from_config(config).seed == 3


# ---------------------------------------------------------------------------
# RandomLearningRate on adaptive optimizers; ReduceLROnPlateau.


def np_adamw(x, grads, lrs, weight_decay, beta_1=0.9, beta_2=0.999,
             epsilon=1e-7):
    """Keras' AdamW in float64: x <- x (1 - wd l_k), then Adam with l_k."""
    x = np.array(x, np.float64)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for k, (g, l) in enumerate(zip(grads, lrs), start=1):
        x = x * (1.0 - weight_decay * l)
        m = beta_1 * m + (1.0 - beta_1) * g
        v = beta_2 * v + (1.0 - beta_2) * g * g
        step = l * math.sqrt(1.0 - beta_2**k) / (1.0 - beta_1**k)
        x = x - step * m / (np.sqrt(v) + epsilon)
    return x


def test_adamw_scales_step_and_weight_decay_by_alpha():
    # Keras multiplies the decoupled decay by the current learning rate,
    # which a RandomLearningRate schedule makes alpha_k * l: alpha scales the
    # decay as well as Adam's normalized step.
    schedule = RandomLearningRate(0.1, delta=1.0, seed=4)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule,
                                       weight_decay=0.5)
    x0 = np.array([1.0, -2.0, 0.5], np.float32)
    grads = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    variable = keras.Variable(x0)
    for g in grads:  # PyTorch's fused AdamW needs tensors.
        optimizer.apply([ops.convert_to_tensor(g)], [variable])
    lrs = [float(_numpy(schedule(k))) for k in range(len(grads))]
    np.testing.assert_allclose(_numpy(variable),
                               np_adamw(x0, grads, lrs, 0.5), rtol=1e-5)
    # The decay taken at the mean l instead (alpha only in Adam's step)
    # would be visibly different.
    mean_decay = np_adamw(x0, grads, lrs, 0.0) * np.prod(
        1.0 - 0.5 * 0.1 * np.ones(len(grads)))
    assert np.abs(_numpy(variable) - mean_decay).max() > 1e-3


def _plateau_fit(optimizer, epochs):
    # min_delta so large that no epoch after the first counts as better:
    # the learning rate is reduced at the end of epoch 1, 2, ...
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e9, verbose=0)
    return _fit(optimizer, epochs=epochs, callbacks=[plateau])


def test_reduce_lr_on_plateau_refuses_a_random_learning_rate_schedule():
    optimizer = keras.optimizers.SGD(RandomLearningRate(0.01, seed=0))
    with pytest.raises(TypeError, match="not settable"):
        _plateau_fit(optimizer, epochs=2)


def test_reduce_lr_on_plateau_lowers_l_of_random_lr_sgd_alpha_unchanged():
    optimizer = RandomLRSGD(learning_rate=0.01, delta=1.0, seed=3)
    _plateau_fit(optimizer, epochs=3)
    assert float(_numpy(optimizer.learning_rate)) == pytest.approx(0.0025)
    # alpha is inside the optimizer: the stream is still alpha_at(k).
    assert int(_numpy(optimizer.iterations)) == 24
    probe = keras.Variable(np.zeros((1,), np.float32))
    again = RandomLRSGD.from_config(optimizer.get_config())
    again.build([probe])
    again.iterations.assign(24)
    again.apply([np.ones((1,), np.float32)], [probe])
    assert float(_numpy(probe)[0]) == pytest.approx(
        -0.0025 * float(_numpy(optimizer.alpha_at(24))), rel=1e-6)
