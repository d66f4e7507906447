"""Tests for rlr_keras.temperature against hand computations and NumPy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlr_keras import RandomLRSGD
from rlr_keras import RandomLearningRate
from rlr_keras import temperature
from rlr_keras.random_factor import alpha_second_moment
from rlr_keras.temperature import Hyperparameters
from rlr_keras.temperature import TemperatureMonitor
from rlr_keras.temperature import effective_temperature
from rlr_keras.temperature import estimate_diffusion
from rlr_keras.temperature import match_temperature


# effective_temperature --------------------------------------------------------


def test_effective_temperature_matches_hand_computation():
    # 3e-4 * 2.5 / (2 * 50 * (1 - 0.4)) = 7.5e-4 / 60 = 1.25e-5
    assert effective_temperature(3e-4, 50, 0.4, 2.5) == pytest.approx(
        1.25e-5, rel=1e-12)


def test_default_diffusion_gives_temperature_over_diffusion():
    assert effective_temperature(2e-4, 60) == pytest.approx(
        2e-4 / 120, rel=1e-12)
    assert effective_temperature(2e-4, 60, diffusion=7.0) == pytest.approx(
        7.0 * effective_temperature(2e-4, 60), rel=1e-12)


# The equal-temperature pairs of the paper's Figures 5 and 6; the learning rate
# of the Model 2 pair is the mean of the uniform interval [0, 0.005].
PAPER_PAIRS = [
    ((2e-4, 60, 0.0), (1e-4, 30, 0.0)),
    ((2.5e-3, 60, 0.75), (2.5e-3, 30, 0.5)),
    ((2.5e-4, 128, 0.9), (5e-4, 256, 0.9)),
]


@pytest.mark.parametrize("reference, partner", PAPER_PAIRS)
def test_paper_pairs_have_equal_temperature(reference, partner):
    assert effective_temperature(*partner) == pytest.approx(
        effective_temperature(*reference), rel=1e-12)


def test_paper_counter_check_has_different_temperature():
    # Figure 5, experiment III: C = 60 and l = 1e-4 is half as hot.
    assert effective_temperature(1e-4, 60) == pytest.approx(
        0.5 * effective_temperature(2e-4, 60), rel=1e-12)


def test_planner_solves_learning_rate_for_figure_5():
    matched = match_temperature(2e-4, 60, 0.0, new_batch_size=30)
    assert matched.batch_size == 30 and matched.momentum == 0.0
    assert matched.learning_rate == pytest.approx(1e-4, rel=1e-12)


def test_planner_solves_momentum_for_figure_6_left():
    matched = match_temperature(2.5e-3, 60, 0.75, new_batch_size=30,
                                solve_for="momentum")
    assert matched.learning_rate == 2.5e-3 and matched.batch_size == 30
    assert matched.momentum == pytest.approx(0.5, rel=1e-12)


def test_planner_solves_batch_size_for_figure_6_right():
    matched = match_temperature(2.5e-4, 128, 0.9, new_learning_rate=5e-4)
    assert matched == Hyperparameters(5e-4, 256, 0.9)


@pytest.mark.parametrize("reference, partner", PAPER_PAIRS)
@pytest.mark.parametrize("solve_for",
                         ["learning_rate", "batch_size", "momentum"])
def test_planner_recovers_every_value_of_the_paper_pairs(
        reference, partner, solve_for):
    given = {f"new_{name}": value for name, value in zip(
        ("learning_rate", "batch_size", "momentum"), partner)
        if name != solve_for}
    matched = match_temperature(*reference, solve_for=solve_for, **given)
    np.testing.assert_allclose(matched, partner, rtol=1e-12, atol=1e-12)


def test_planner_copies_unspecified_values_from_reference():
    matched = match_temperature(1e-3, 32, 0.9, new_batch_size=64)
    assert matched.momentum == 0.9
    assert matched.learning_rate == pytest.approx(2e-3, rel=1e-12)


def test_planner_rounds_batch_size():
    matched = match_temperature(1e-3, 10, 0.0, new_learning_rate=2.04e-3)
    assert matched.batch_size == 20


def test_planner_momentum_outside_range_raises():
    # Halving C at fixed l and mu = 0 needs mu = -1.
    with pytest.raises(ValueError, match=r"no momentum in \[0, 1\)"):
        match_temperature(1e-4, 60, 0.0, new_batch_size=30,
                          solve_for="momentum")


def test_planner_batch_size_below_one_raises():
    with pytest.raises(ValueError, match="no batch size"):
        match_temperature(1e-2, 2, 0.0, new_learning_rate=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(new_learning_rate=1e-4, new_batch_size=30, new_momentum=0.0),
     "got all three"),
    (dict(new_batch_size=30, new_learning_rate=1e-4,
          solve_for="learning_rate"), "new_learning_rate must be None"),
    (dict(new_batch_size=30, solve_for="temperature"), "solve_for must be"),
    (dict(new_batch_size=0), "new_batch_size must be an integer"),
    (dict(new_momentum=1.0), r"new_momentum must be in \[0, 1\)"),
    (dict(new_learning_rate=-1.0), "new_learning_rate must be in"),
])
def test_planner_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        match_temperature(2e-4, 60, 0.0, **kwargs)


@pytest.mark.parametrize("args, message", [
    ((0.0, 60), r"learning_rate must be in \(0, inf\), got 0.0"),
    ((-1e-3, 60), "learning_rate must be in"),
    ((float("nan"), 60), "learning_rate must be finite"),
    ((1e-3, 0), r"batch_size must be an integer in \[1, inf\], got 0"),
    ((1e-3, -5), "batch_size must be an integer"),
    ((1e-3, 2.5), "batch_size must be an integer, got 2.5"),
    ((1e-3, 60, 1.0), r"momentum must be in \[0, 1\), got 1.0"),
    ((1e-3, 60, -0.1), "momentum must be in"),
    ((1e-3, 60, 0.0, -1.0), "diffusion must be in"),
])
def test_effective_temperature_invalid_arguments_raise(args, message):
    with pytest.raises(ValueError, match=message):
        effective_temperature(*args)


# Command line -----------------------------------------------------------------


def test_command_line_prints_matching_configuration(capsys):
    assert temperature.main([
        "--learning_rate=2e-4", "--batch_size=60", "--momentum=0",
        "--match", "batch_size=30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "reference: learning_rate=0.0002 batch_size=60 momentum=0 "
        "T/D=1.66667e-06",
        "matched:   learning_rate=0.0001 batch_size=30 momentum=0 "
        "T/D=1.66667e-06",
    ]


def test_command_line_solves_momentum(capsys):
    temperature.main([
        "--learning_rate=2.5e-3", "--batch_size=60", "--momentum=0.75",
        "--match", "batch_size=30", "--solve_for=momentum"])
    assert "momentum=0.5 " in capsys.readouterr().out.splitlines()[1]


@pytest.mark.parametrize("extra", [
    ["--match", "batch_size"],
    ["--match", "size=3"],
    ["--match", "batch_size=x"],
    # Halving C at fixed l needs a negative momentum.
    ["--match", "batch_size=30", "--solve_for=momentum"],
])
def test_command_line_bad_input_exits_with_usage_error(extra, capsys):
    with pytest.raises(SystemExit) as raised:
        temperature.main(["--learning_rate=2e-4", "--batch_size=60"] + extra)
    assert raised.value.code == 2
    assert "error:" in capsys.readouterr().err


# estimate_diffusion -----------------------------------------------------------


def _linear_problem(num_examples=23, num_inputs=4, num_outputs=2):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_examples, num_inputs))
    y = rng.normal(size=(num_examples, num_outputs))
    model = keras.Sequential([
        keras.Input((num_inputs,), dtype="float64"),
        keras.layers.Dense(num_outputs, dtype="float64",
                           bias_initializer="random_normal"),
    ])
    return model, x, y


def _reference_diffusion(gradients, delta):
    """D of Appendix A from an (N, n) matrix of per-example gradients."""
    gradients = np.asarray(gradients, np.float64)
    second_moment = 1.0 + delta**2 / 3.0  # Written out independently.
    mean = gradients.mean(axis=0)
    num_weights = gradients.shape[1]
    return (second_moment * np.mean(np.sum(gradients**2, axis=1))
            - mean @ mean) / num_weights


@pytest.mark.parametrize("delta", [0.0, 0.5, 1.0])
def test_linear_least_squares_matches_closed_form(delta):
    model, x, y = _linear_problem()
    kernel, bias = (np.asarray(w) for w in model.get_weights())
    residual = x @ kernel + bias - y  # (N, k)
    k = y.shape[1]
    # f_j = (1/k) sum_o r_jo^2: dW = (2/k) x_j r_j^T, db = (2/k) r_j.
    grad_kernel = 2.0 / k * x[:, :, None] * residual[:, None, :]
    grad_bias = 2.0 / k * residual
    gradients = np.concatenate(
        [grad_kernel.reshape(len(x), -1), grad_bias], axis=1)
    expected = _reference_diffusion(gradients, delta)
    # Chunks of 7 leave an uneven last chunk.
    got = estimate_diffusion(model, "mean_squared_error", x, y, delta=delta,
                             batch_size=7)
    assert abs(got - expected) <= 1e-5 * abs(expected)


def _small_mlp(seed=1):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(3),
    ])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20, 6)).astype("float32")
    y = rng.integers(0, 3, size=(20,))
    return model, x, y


def _loop_gradients(model, loss_fn, x, y):
    rows = []
    for j in range(len(x)):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[j:j + 1], model(x[j:j + 1], training=False))
        grads = tape.gradient(loss, model.trainable_variables)
        rows.append(np.concatenate(
            [np.asarray(g, np.float64).ravel() for g in grads]))
    return np.stack(rows)


def test_small_mlp_vectorized_matches_per_example_loop():
    model, x, y = _small_mlp()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gradients = _loop_gradients(model, loss_fn, x, y)
    expected = _reference_diffusion(gradients, 0.7)
    got = estimate_diffusion(model, loss_fn, x, y, delta=0.7, batch_size=8,
                             return_pieces=True)
    mean = gradients.mean(axis=0)
    assert got.num_weights == gradients.shape[1] == 6 * 8 + 8 + 8 * 3 + 3
    assert got.num_examples == 20
    np.testing.assert_allclose(got.squared_mean_norm, mean @ mean, rtol=1e-5)
    np.testing.assert_allclose(
        got.mean_squared_norm, np.mean(np.sum(gradients**2, axis=1)),
        rtol=1e-5)
    assert abs(got.diffusion - expected) <= 1e-5 * abs(expected)


def test_jit_compile_gives_same_estimate():
    model, x, y = _small_mlp()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    eager = estimate_diffusion(model, loss_fn, x, y, batch_size=8)
    compiled = estimate_diffusion(model, loss_fn, x, y, batch_size=8,
                                  jit_compile=True)
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_delta_enters_only_through_alpha_second_moment(monkeypatch):
    model, x, y = _small_mlp()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    base = estimate_diffusion(model, loss_fn, x, y, return_pieces=True)
    for delta in (0.25, 1.0):
        pieces = estimate_diffusion(model, loss_fn, x, y, delta=delta,
                                    return_pieces=True)
        assert pieces.mean_squared_norm == base.mean_squared_norm
        assert pieces.squared_mean_norm == base.squared_mean_norm
        assert pieces.diffusion == pytest.approx(
            (alpha_second_moment(delta) * base.mean_squared_norm
             - base.squared_mean_norm) / base.num_weights, rel=1e-12)
    # The second moment comes from rlr_keras.random_factor, not a copy.
    monkeypatch.setattr(temperature, "alpha_second_moment", lambda d: 5.0)
    patched = estimate_diffusion(model, loss_fn, x, y, delta=0.3)
    assert patched == pytest.approx(
        (5.0 * base.mean_squared_norm - base.squared_mean_norm)
        / base.num_weights, rel=1e-12)


def test_estimate_does_not_include_regularization():
    model, x, y = _small_mlp()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    before = estimate_diffusion(model, loss_fn, x, y, delta=1.0)
    model.layers[0].kernel_regularizer = keras.regularizers.L2(10.0)
    model.layers[0].add_loss(tf.constant(3.0))
    after = estimate_diffusion(model, loss_fn, x, y, delta=1.0)
    assert after == before


@pytest.mark.parametrize("kwargs, message", [
    (dict(delta=1.5), r"delta must be in \[0, 1\], got 1.5"),
    (dict(batch_size=0), "batch_size must be an integer"),
])
def test_estimate_invalid_arguments_raise(kwargs, message):
    model, x, y = _small_mlp()
    with pytest.raises(ValueError, match=message):
        estimate_diffusion(model, "mean_squared_error", x, y, **kwargs)


def test_estimate_empty_probe_set_raises():
    model, x, y = _small_mlp()
    with pytest.raises(ValueError, match="at least one example"):
        estimate_diffusion(model, "mean_squared_error", x[:0], y[:0])


# Factored Dense gradients versus the vectorized reference ---------------------


def _functional_mlp():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((2, 3))
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(8, activation="tanh")(hidden)
    hidden = keras.layers.Dense(5, activation="relu", use_bias=False)(hidden)
    outputs = keras.layers.Dense(3)(hidden)
    return keras.Model(inputs, outputs)


def _conv_dense():
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(4, activation="tanh"),
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


def _shared_layer():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((6,))
    shared = keras.layers.Dense(6, activation="tanh")
    outputs = keras.layers.Dense(3)(shared(shared(inputs)))
    return keras.Model(inputs, outputs)


def _probe(input_shape, seed=0, num_examples=19):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples,) + input_shape).astype("float32")
    return x, rng.integers(0, 3, size=(num_examples,))


def _check_moments(model, x, y, method):
    """_gradient_moments with `method` against a per-example loop."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gradients = _loop_gradients(model, loss_fn, x, y)
    mean = gradients.mean(axis=0)
    # Chunks of 7 leave an uneven last chunk.
    count, got_mean, scatter = temperature._gradient_moments(
        model, loss_fn, x, y, 7, False, method)
    assert count == len(x)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5,
                               atol=1e-6 * np.abs(mean).max())
    np.testing.assert_allclose(scatter, np.sum((gradients - mean)**2),
                               rtol=1e-5)
    return count, got_mean, scatter


@pytest.mark.parametrize("build, input_shape, factored", [
    (lambda: _small_mlp()[0], (6,), (True, True)),
    (_functional_mlp, (2, 3), (False, True, True, True)),
    (_conv_dense, (6, 6, 2), (False, False, True, True)),
])
def test_factored_method_matches_vectorized_and_loop(
        build, input_shape, factored):
    model = build()
    x, y = _probe(input_shape)
    plan = temperature._layer_chain(model, x)
    assert plan is not None and plan.factored == factored
    _, fast_mean, fast_scatter = _check_moments(model, x, y, "factored")
    _, mean, scatter = _check_moments(model, x, y, "vectorized")
    np.testing.assert_allclose(fast_mean, mean, rtol=1e-5,
                               atol=1e-6 * np.abs(mean).max())
    assert fast_scatter == pytest.approx(scatter, rel=1e-5)


@pytest.mark.parametrize("build", [_branching, _subclassed, _shared_layer])
def test_unsupported_models_fall_back_to_vectorized_method(build):
    model = build()
    x, y = _probe((6,))
    assert temperature._layer_chain(model, x) is None
    _check_moments(model, x, y, "auto")
    with pytest.raises(ValueError, match="method='factored' needs a chain"):
        temperature._gradient_moments(
            model, "mean_squared_error", x, y, 7, False, "factored")


def test_model_1_uses_factored_method():
    from rlr_keras.models import build_model  # noqa: PLC0415
    model = build_model("mlp", (28, 28, 1), seed=0)
    plan = temperature._layer_chain(model, np.zeros((2, 28, 28, 1)))
    assert plan is not None and plan.factored == (False, True, True)
    # An input whose rank the model would adjust takes the reference method.
    assert temperature._layer_chain(model, np.zeros((2, 28, 28))) is None


def test_factored_method_keeps_precision_when_mean_gradient_dominates():
    # Nearly equal inputs and residuals: sum_j |g_j|^2 is over 1e5 times
    # sum_j |g_j - g|^2, so sum_j |a_j|^2 |delta_j|^2 - b |M|^2 cancels
    # more than five digits (float64 keeps the result to ~1e-9 here).
    model, x, y = _linear_problem()
    rng = np.random.default_rng(1)
    x = 10.0 + 1e-3 * rng.normal(size=x.shape)
    kernel, bias = (np.asarray(w) for w in model.get_weights())
    y = x @ kernel + bias - 5.0 + 1e-3 * rng.normal(size=y.shape)
    residual = x @ kernel + bias - y
    k = y.shape[1]
    gradients = np.concatenate([
        (2.0 / k * x[:, :, None] * residual[:, None, :]).reshape(len(x), -1),
        2.0 / k * residual], axis=1)
    mean = gradients.mean(axis=0)
    scatter = np.sum((gradients - mean)**2)
    assert np.sum(gradients**2) > 1e5 * scatter
    assert temperature._layer_chain(model, x) is not None
    got = estimate_diffusion(model, "mean_squared_error", x, y, batch_size=7,
                             return_pieces=True)
    expected = scatter / len(x) / gradients.shape[1]
    assert abs(got.diffusion - expected) <= 1e-5 * expected


# TemperatureMonitor -----------------------------------------------------------


def _compiled_mlp(optimizer):
    model, x, y = _small_mlp()
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, y


def test_monitor_writes_diffusion_and_temperature_to_logs():
    model, x, y = _compiled_mlp(
        RandomLRSGD(learning_rate=0.05, delta=1.0, momentum=0.5, seed=0))
    monitor = TemperatureMonitor(x[:12], y[:12], batch_size=5, frequency=2,
                                 probe_batch_size=5)
    history = model.fit(x, y, batch_size=5, epochs=3, callbacks=[monitor],
                        verbose=0)
    # Measured at the end of epochs 0 and 2.
    assert len(history.history["diffusion"]) == 2
    assert len(history.history["temperature"]) == 2
    diffusion = history.history["diffusion"][-1]
    expected = estimate_diffusion(model, model.loss, x[:12], y[:12],
                                  delta=1.0)
    assert diffusion == pytest.approx(expected, rel=1e-6)
    assert history.history["temperature"][-1] == pytest.approx(
        0.05 * diffusion / (2 * 5 * (1 - 0.5)), rel=1e-6)


def test_monitor_uses_mean_of_random_learning_rate_schedule():
    schedule = RandomLearningRate(0.02, delta=0.6, seed=3)
    model, x, y = _compiled_mlp(
        keras.optimizers.SGD(learning_rate=schedule, momentum=0.9))
    model.fit(x, y, batch_size=10, epochs=1, verbose=0)
    monitor = TemperatureMonitor(x, y, batch_size=10)
    monitor.set_model(model)
    diffusion, temp = monitor.measure()
    assert diffusion == pytest.approx(
        estimate_diffusion(model, model.loss, x, y, delta=0.6), rel=1e-6)
    assert temp == pytest.approx(
        0.02 * diffusion / (2 * 10 * (1 - 0.9)), rel=1e-6)


def test_monitor_takes_zero_momentum_for_optimizers_without_one():
    model, x, y = _compiled_mlp(keras.optimizers.Adam(learning_rate=1e-3))
    monitor = TemperatureMonitor(x, y, batch_size=4, loss="mean_squared_error",
                                 delta=0.0)
    monitor.set_model(model)
    model.optimizer.build(model.trainable_variables)
    diffusion, temp = monitor.measure()
    assert temp == pytest.approx(1e-3 * diffusion / 8, rel=1e-6)


def _read_scalars(directory):
    scalars = {}
    for path in tf.io.gfile.glob(str(directory / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(
                    (event.step, float(tf.make_ndarray(value.tensor))))
    return scalars


def test_monitor_writes_tensorboard_scalars(tmp_path):
    model, x, y = _compiled_mlp(keras.optimizers.SGD(learning_rate=0.01))
    monitor = TemperatureMonitor(x, y, batch_size=10, log_dir=str(tmp_path))
    history = model.fit(x, y, batch_size=10, epochs=2, callbacks=[monitor],
                        verbose=0)
    scalars = _read_scalars(tmp_path / "train")
    assert [step for step, _ in scalars["epoch_diffusion"]] == [0, 1]
    np.testing.assert_allclose(
        [v for _, v in scalars["epoch_diffusion"]],
        history.history["diffusion"], rtol=1e-6)
    np.testing.assert_allclose(
        [v for _, v in scalars["epoch_temperature"]],
        history.history["temperature"], rtol=1e-6)


def test_monitor_config_round_trip():
    x = np.arange(12, dtype="float32").reshape(4, 3)
    y = np.arange(4)
    monitor = TemperatureMonitor(
        x, y, batch_size=32,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        delta=0.5, frequency=3, probe_batch_size=2, log_dir="logs")
    config = monitor.get_config()
    assert set(config) == {"x", "y", "batch_size", "loss", "delta",
                           "frequency", "probe_batch_size", "log_dir",
                           "jit_compile"}
    assert not any(callable(v) for v in config.values())
    restored = TemperatureMonitor.from_config(config)
    again = restored.get_config()
    np.testing.assert_array_equal(again.pop("x"), config.pop("x"))
    np.testing.assert_array_equal(again.pop("y"), config.pop("y"))
    assert again == config

    serialized = keras.saving.serialize_keras_object(monitor)
    assert serialized["registered_name"] == "rlr_keras>TemperatureMonitor"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(clone, TemperatureMonitor)
    np.testing.assert_array_equal(clone.x, x)
    assert clone.loss.get_config()["from_logits"]
    assert clone.frequency == 3 and clone.delta == 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be an integer"),
    (dict(frequency=0), "frequency must be an integer"),
    (dict(delta=2.0), "delta must be in"),
    (dict(probe_batch_size=-1), "probe_batch_size must be an integer"),
    (dict(log_dir=3), "log_dir must be a path"),
    (dict(y=np.ones((3,))), "y must hold as many examples as x"),
])
def test_monitor_invalid_arguments_raise(kwargs, message):
    arguments = dict(x=np.ones((4, 3)), y=np.ones((4,)), batch_size=8)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        TemperatureMonitor(**arguments)


def test_monitor_without_loss_raises_clear_error():
    model, x, y = _small_mlp()
    model.compile(optimizer="sgd")
    monitor = TemperatureMonitor(x, y, batch_size=4)
    monitor.set_model(model)
    with pytest.raises(ValueError, match="needs a single loss"):
        monitor.measure()


def test_all_temperatures_are_finite_at_momentum_near_one():
    assert math.isfinite(effective_temperature(1e-3, 1, 1 - 1e-12))
