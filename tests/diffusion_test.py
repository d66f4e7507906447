"""Tests for rlr_keras.diffusion on every Keras backend.

References: a NumPy closed form (least squares; a tanh MLP with softmax
cross-entropy, back-propagated by hand) and a per-example loop of the
backend's own gradient. The fixed NumPy weights make every backend compute
the same numbers.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from rlr_keras import diffusion
from rlr_keras.diffusion import estimate_diffusion

BACKEND = keras.backend.backend()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPARSE_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _reference_diffusion(gradients, delta):
    """D of Appendix A from an (N, n) matrix of per-example gradients."""
    gradients = np.asarray(gradients, np.float64)
    second_moment = 1.0 + delta**2 / 3.0  # Written out independently.
    mean = gradients.mean(axis=0)
    return (second_moment * np.mean(np.sum(gradients**2, axis=1))
            - mean @ mean) / gradients.shape[1]


def _float64_available():
    if BACKEND == "torch":
        # Keras' PyTorch backend loses float64 digits in this model: a loop
        # of its own per-example gradients agrees with estimate_diffusion
        # but differs from the float64 closed form at 5e-7 (float32-like).
        return False
    if BACKEND != "jax":
        return True
    import jax  # noqa: PLC0415

    return bool(jax.config.jax_enable_x64)


# Closed forms -------------------------------------------------------------


def _linear_problem(dtype="float32", num_examples=23, num_inputs=4,
                    num_outputs=2):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_examples, num_inputs)).astype(dtype)
    y = rng.normal(size=(num_examples, num_outputs)).astype(dtype)
    model = keras.Sequential([
        keras.Input((num_inputs,), dtype=dtype),
        keras.layers.Dense(num_outputs, dtype=dtype),
    ])
    model.set_weights([rng.normal(size=(num_inputs, num_outputs)),
                       rng.normal(size=(num_outputs,))])
    return model, x, y


def _least_squares_gradients(model, x, y):
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_weights())
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    residual = x @ kernel + bias - y  # (N, k)
    k = y.shape[1]
    # f_j = (1/k) sum_o r_jo^2: dW = (2/k) x_j r_j^T, db = (2/k) r_j.
    return np.concatenate([
        (2.0 / k * x[:, :, None] * residual[:, None, :]).reshape(len(x), -1),
        2.0 / k * residual], axis=1)


def _mlp(seed=1, num_examples=20):
    """Dense(8, tanh) -> Dense(3) logits with fixed NumPy weights."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(3),
    ])
    model.set_weights([0.5 * rng.normal(size=w.shape)
                       for w in model.get_weights()])
    x = rng.normal(size=(num_examples, 6)).astype("float32")
    y = rng.integers(0, 3, size=(num_examples,))
    return model, x, y


def _mlp_gradients(model, x, y):
    """Per-example gradients of the MLP's cross-entropy, by hand in NumPy."""
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in model.get_weights())
    x = np.asarray(x, np.float64)
    hidden = np.tanh(x @ w1 + b1)
    logits = hidden @ w2 + b2
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d2 = p - np.eye(3)[y]  # df/dlogits
    d1 = d2 @ w2.T * (1.0 - hidden**2)
    n = len(x)
    return np.concatenate([
        (x[:, :, None] * d1[:, None, :]).reshape(n, -1), d1,
        (hidden[:, :, None] * d2[:, None, :]).reshape(n, -1), d2], axis=1)


@pytest.mark.parametrize("delta", [0.0, 0.5, 1.0])
def test_linear_least_squares_matches_closed_form(delta):
    model, x, y = _linear_problem()
    expected = _reference_diffusion(
        _least_squares_gradients(model, x, y), delta)
    # Chunks of 7 leave an uneven last chunk.
    got = estimate_diffusion(model, "mean_squared_error", x, y, delta=delta,
                             batch_size=7)
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("factored", [True, False])
def test_mlp_both_paths_match_hand_backpropagation(factored):
    model, x, y = _mlp()
    gradients = _mlp_gradients(model, x, y)
    count, mean, scatter = diffusion._accumulate(
        diffusion._chunk_moments(model, SPARSE_CE, x, False, factored),
        x, y, 7)
    expected_mean = gradients.mean(axis=0)
    assert count == len(x)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-4,
                               atol=1e-6 * np.abs(expected_mean).max())
    assert scatter == pytest.approx(
        np.sum((gradients - expected_mean)**2), rel=1e-5)


def test_mlp_estimate_pieces_match_hand_backpropagation():
    model, x, y = _mlp()
    gradients = _mlp_gradients(model, x, y)
    got = estimate_diffusion(model, SPARSE_CE, x, y, delta=0.7, batch_size=8,
                             return_pieces=True)
    mean = gradients.mean(axis=0)
    assert got.num_weights == gradients.shape[1] == 6 * 8 + 8 + 8 * 3 + 3
    assert got.num_examples == 20
    assert got.squared_mean_norm == pytest.approx(mean @ mean, rel=1e-5)
    assert got.mean_squared_norm == pytest.approx(
        np.mean(np.sum(gradients**2, axis=1)), rel=1e-5)
    assert got.diffusion == pytest.approx(
        _reference_diffusion(gradients, 0.7), rel=1e-5)


@pytest.mark.skipif(BACKEND == "torch", reason="no XLA on PyTorch")
def test_jit_compile_gives_same_estimate():
    model, x, y = _mlp()
    eager = estimate_diffusion(model, SPARSE_CE, x, y, batch_size=8)
    compiled = estimate_diffusion(model, SPARSE_CE, x, y, batch_size=8,
                                  jit_compile=True)
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_delta_enters_only_through_alpha_second_moment(monkeypatch):
    model, x, y = _mlp()
    base = estimate_diffusion(model, SPARSE_CE, x, y, return_pieces=True)
    for delta in (0.25, 1.0):
        pieces = estimate_diffusion(model, SPARSE_CE, x, y, delta=delta,
                                    return_pieces=True)
        assert pieces.mean_squared_norm == base.mean_squared_norm
        assert pieces.squared_mean_norm == base.squared_mean_norm
        assert pieces.diffusion == pytest.approx(
            ((1 + delta**2 / 3) * base.mean_squared_norm
             - base.squared_mean_norm) / base.num_weights, rel=1e-12)
    # The second moment comes from rlr_keras.random_factor, not a copy.
    monkeypatch.setattr(diffusion, "alpha_second_moment", lambda d: 5.0)
    patched = estimate_diffusion(model, SPARSE_CE, x, y, delta=0.3)
    assert patched == pytest.approx(
        (5.0 * base.mean_squared_norm - base.squared_mean_norm)
        / base.num_weights, rel=1e-12)


def test_estimate_does_not_include_regularization():
    model, x, y = _mlp()
    before = estimate_diffusion(model, SPARSE_CE, x, y, delta=1.0)
    model.layers[0].kernel_regularizer = keras.regularizers.L2(10.0)
    model.layers[0].add_loss(keras.ops.convert_to_tensor(3.0))
    after = estimate_diffusion(model, SPARSE_CE, x, y, delta=1.0)
    assert after == before


@pytest.mark.skipif(not _float64_available(),
                    reason="needs exact float64 (JAX: jax_enable_x64; see above)")
def test_factored_path_keeps_precision_when_mean_gradient_dominates():
    # Nearly equal inputs and residuals: sum_j |g_j|^2 is over 1e5 times
    # sum_j |g_j - g|^2, so sum_j |a_j|^2 |delta_j|^2 - b |M|^2 cancels
    # more than five digits (float64 keeps the result to ~1e-9 here).
    model, x, y = _linear_problem("float64")
    rng = np.random.default_rng(1)
    x = 10.0 + 1e-3 * rng.normal(size=x.shape)
    kernel, bias = model.get_weights()
    y = x @ kernel + bias - 5.0 + 1e-3 * rng.normal(size=y.shape)
    gradients = _least_squares_gradients(model, x, y)
    scatter = np.sum((gradients - gradients.mean(axis=0))**2)
    assert np.sum(gradients**2) > 1e5 * scatter
    assert diffusion._dense_chain(model, x) is not None
    got = estimate_diffusion(model, "mean_squared_error", x, y, batch_size=7)
    assert got == pytest.approx(scatter / len(x) / gradients.shape[1],
                                rel=1e-5)


# Paths and models ---------------------------------------------------------


def _loop_gradients(model, loss_fn, x, y):
    """Per-example gradients from a loop of the backend's own gradient."""
    variables = model.trainable_variables
    rows = []
    for j in range(len(x)):
        xj, yj = x[j:j + 1], y[j:j + 1]
        if BACKEND == "tensorflow":
            import tensorflow as tf  # noqa: PLC0415

            with tf.GradientTape() as tape:
                loss = loss_fn(yj, model(xj, training=False))
            grads = tape.gradient(loss, variables)
        elif BACKEND == "jax":
            import jax  # noqa: PLC0415

            def loss_of(values, xj=xj, yj=yj):
                prediction, _ = model.stateless_call(
                    values, [v.value for v in model.non_trainable_variables],
                    xj)
                return loss_fn(yj, prediction)

            grads = jax.grad(loss_of)([v.value for v in variables])
        else:
            import torch  # noqa: PLC0415

            loss = loss_fn(yj, model(xj, training=False))
            grads = torch.autograd.grad(loss, [v.value for v in variables],
                                        allow_unused=True)
        rows.append(np.concatenate([
            np.zeros(v.shape).ravel() if g is None else
            np.asarray(keras.ops.convert_to_numpy(g), np.float64).ravel()
            for v, g in zip(variables, grads)]))
    return np.stack(rows)


def _functional_mlp():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((2, 3))
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(8, activation="tanh")(hidden)
    outputs = keras.layers.Dense(3)(hidden)
    return keras.Model(inputs, outputs)


def _sequential_flatten_dropout():
    keras.utils.set_random_seed(2)
    return keras.Sequential([
        keras.Input((2, 3)), keras.layers.Flatten(),
        keras.layers.Dense(8, activation="tanh"), keras.layers.Dropout(0.5),
        keras.layers.Dense(5, activation="relu", use_bias=False),
        keras.layers.Dense(3),
    ])


def _conv_dense():
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])


def _branching():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="tanh")(inputs)
    merged = keras.layers.Concatenate()([hidden, inputs])
    return keras.Model(inputs, keras.layers.Dense(3)(merged))


class _Subclassed(keras.Model):

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(5, activation="tanh")
        self.logits = keras.layers.Dense(3)

    def call(self, inputs):
        return self.logits(self.hidden(inputs))


def _subclassed():
    keras.utils.set_random_seed(5)
    model = _Subclassed()
    model(np.zeros((1, 6), "float32"))
    return model


def _probe(input_shape, seed=0, num_examples=19):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples,) + input_shape).astype("float32")
    return x, rng.integers(0, 3, size=(num_examples,))


def _check_against_loop(model, x, y, factored):
    gradients = _loop_gradients(model, SPARSE_CE, x, y)
    mean = gradients.mean(axis=0)
    count, got_mean, scatter = diffusion._accumulate(
        diffusion._chunk_moments(model, SPARSE_CE, x, False, factored),
        x, y, 7)
    assert count == len(x)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-4,
                               atol=1e-6 * np.abs(mean).max())
    assert scatter == pytest.approx(np.sum((gradients - mean)**2), rel=1e-5)


def test_dense_chain_with_parameter_free_layers_takes_factored_path():
    model = _sequential_flatten_dropout()
    x, y = _probe((2, 3))
    plan = diffusion._dense_chain(model, x)
    assert plan is not None and plan.dense == (False, True, False, True, True)
    _check_against_loop(model, x, y, factored=True)
    _check_against_loop(model, x, y, factored=False)


def test_functional_chain_takes_factored_path():
    model = _functional_mlp()
    x, y = _probe((2, 3))
    plan = diffusion._dense_chain(model, x)
    assert plan is not None and plan.dense == (False, True, True)
    _check_against_loop(model, x, y, factored=True)


def _shared_layer():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((6,))
    shared = keras.layers.Dense(6, activation="tanh")
    outputs = keras.layers.Dense(3)(shared(shared(inputs)))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("build, input_shape", [
    (_shared_layer, (6,)),
    (_conv_dense, (6, 6, 2)),
    (_branching, (6,)),
    (_subclassed, (6,)),
])
def test_other_models_take_general_path_and_match_loop(build, input_shape):
    model = build()
    x, y = _probe(input_shape)
    assert diffusion._dense_chain(model, x) is None
    _check_against_loop(model, x, y, factored=None)
    with pytest.raises(ValueError, match="factored path needs"):
        diffusion._chunk_moments(model, SPARSE_CE, x, False, True)


def test_dict_inputs_take_general_path():
    keras.utils.set_random_seed(7)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    merged = keras.layers.Concatenate()([a, b])
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(3)(merged))
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(9, 3)).astype("float32"),
         "b": rng.normal(size=(9, 2)).astype("float32")}
    y = rng.integers(0, 3, size=(9,))
    # Same model fed as one concatenated array: a Dense on 5 inputs.
    single = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    single.set_weights(model.get_weights())
    joined = np.concatenate([x["a"], x["b"]], axis=1)
    assert estimate_diffusion(model, SPARSE_CE, x, y) == pytest.approx(
        estimate_diffusion(single, SPARSE_CE, joined, y), rel=1e-5)


def test_model_1_takes_factored_path():
    from rlr_keras.models import build_model  # noqa: PLC0415

    model = build_model("mlp", (28, 28, 1), seed=0)
    plan = diffusion._dense_chain(model, np.zeros((2, 28, 28, 1)))
    assert plan is not None and plan.dense[-2:] == (True, True)
    # An input whose rank the model would adjust takes the general path.
    assert diffusion._dense_chain(model, np.zeros((2, 28, 28))) is None


@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="tf.function's retracing warning")
@pytest.mark.parametrize("factored", [True, False])
def test_fresh_models_do_not_make_tensorflow_warn_about_retracing(
        caplog, factored):
    # A sweep measures a new model per run: one tf.function each, traced
    # once or twice (a last, shorter chunk), which is not retracing.
    caplog.set_level("WARNING", logger="tensorflow")
    for seed in range(7):
        model, x, y = _mlp(seed, num_examples=10)
        diffusion._accumulate(diffusion._chunk_moments(
            model, SPARSE_CE, x, False, factored=factored), x, y, 4)
    assert "retracing" not in caplog.text


# Input validation ----------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(delta=1.5), r"delta must be in \[0, 1\], got 1.5"),
    (dict(batch_size=0), "batch_size must be an integer"),
])
def test_estimate_invalid_arguments_raise(kwargs, message):
    model, x, y = _mlp()
    with pytest.raises(ValueError, match=message):
        estimate_diffusion(model, SPARSE_CE, x, y, **kwargs)


def test_nan_in_x_raises():
    model, x, y = _mlp()
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="x must be finite, got a NaN or inf "
                                         "in example 3"):
        estimate_diffusion(model, SPARSE_CE, x, y)


def test_list_of_lists_raises_type_error():
    model, x, y = _mlp()
    with pytest.raises(TypeError, match=r"x must be an array .* got a list "
                                        "of float; convert it with np.asarray"):
        estimate_diffusion(model, SPARSE_CE, x.tolist(), y)


@pytest.mark.parametrize("kwargs, message", [
    (dict(delta="1"), "delta must be a finite real number, got '1'"),
    (dict(batch_size=2.5), "batch_size must be an integer, got 2.5"),
    (dict(loss_fn=3), "loss_fn must be a Keras loss .*got 3"),
])
def test_estimate_wrong_types_raise_type_error(kwargs, message):
    model, x, y = _mlp()
    kwargs.setdefault("loss_fn", SPARSE_CE)
    with pytest.raises(TypeError, match=message):
        estimate_diffusion(model, x=x, y=y, **kwargs)


def test_scalar_probe_raises_value_error():
    model, _, y = _mlp()
    with pytest.raises(ValueError, match="x must be an array"):
        estimate_diffusion(model, SPARSE_CE, np.float32(1.0), y)


def test_wrong_feature_dimension_raises():
    model, x, y = _mlp()
    with pytest.raises(ValueError, match=r"x must have shape \(N, 6\) to "
                                         r"match the model's input, got "
                                         r"\(20, 5\)"):
        estimate_diffusion(model, SPARSE_CE, x[:, :5], y)


@pytest.mark.parametrize("loss", [
    SPARSE_CE, "sparse_categorical_crossentropy"])
def test_one_hot_labels_for_sparse_loss_raise(loss):
    model, x, y = _mlp()
    with pytest.raises(ValueError, match=r"y must hold integer class labels "
                                         r"of shape \(N,\)"):
        estimate_diffusion(model, loss, x, np.eye(3)[y])


def test_empty_probe_set_and_length_mismatch_raise():
    model, x, y = _mlp()
    with pytest.raises(ValueError, match="at least one example"):
        estimate_diffusion(model, SPARSE_CE, x[:0], y[:0])
    with pytest.raises(ValueError, match="y must hold as many examples as x"):
        estimate_diffusion(model, SPARSE_CE, x, y[:5])


# Without TensorFlow ---------------------------------------------------------


_NO_TENSORFLOW_SCRIPT = textwrap.dedent("""
    import os, sys, tempfile
    sys.modules["tensorflow"] = None  # Any TensorFlow import fails.
    os.environ["KERAS_BACKEND"] = "jax"
    import rlr_keras  # The whole package, with TensorFlow blocked.
    import keras, numpy as np
    from rlr_keras import _summary, callbacks, diffusion, temperature
    from rlr_keras.optimizers import RandomLRSGD
    assert keras.backend.backend() == "jax"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    print("D", diffusion.estimate_diffusion(model, "mse", x, x[:, :2]))
    print("T", temperature.effective_temperature(1e-3, 8))
    model.compile(optimizer=RandomLRSGD(0.01, seed=0), loss="mse")
    log_dir = tempfile.mkdtemp()
    model.fit(x, x[:, :2], batch_size=4, epochs=1, verbose=0, callbacks=[
        callbacks.TemperatureMonitor(x, x[:, :2], batch_size=4),
        callbacks.LearningRateMonitor(log_dir, update_freq=1),
        callbacks.EpochSummaries(log_dir)])
    events = _summary.read_events(os.path.join(log_dir, "train"))
    print("tags", sorted(events))
    assert "tensorflow" not in [m for m in sys.modules
                                if sys.modules[m] is not None]
""")


def test_modules_work_without_tensorflow_on_jax():
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, "-c", _NO_TENSORFLOW_SCRIPT],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rlr/step_alpha" in result.stdout
    assert "epoch_temperature" in result.stdout
