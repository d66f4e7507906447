"""Tests for rlr_keras.callbacks on every Keras backend.

TensorBoard files are read back with `rlr_keras._summary.read_events`
(tensorboard's event loader, no TensorFlow).
"""

import math
import warnings

import keras
import numpy as np
import pytest

from rlr_keras import RandomLRSGD
from rlr_keras import RandomLearningRate
from rlr_keras import _summary
from rlr_keras.callbacks import CyclicCosine
from rlr_keras.callbacks import EpochSummaries
from rlr_keras.callbacks import LearningRateMonitor
from rlr_keras.callbacks import TemperatureMonitor
from rlr_keras.diffusion import estimate_diffusion
from rlr_keras.schedules import CyclicCosineSchedule

PAPER_PERIODS = (6, 18, 30)
Monitor = LearningRateMonitor


def reference_cyclic_cosine(learning_rate, period, epoch):
    """Musso, eq. 21, written independently in NumPy (float64)."""
    return learning_rate * (1.0 + np.cos(np.pi * np.asarray(epoch) / period))


def unit_gradient_model():
    """w -> mean(x w) with x = 1: the gradient of the loss is exactly 1.

    With momentum 0 and delta = 0 each optimizer step then subtracts the
    learning rate it used from the weight, which reveals it.
    """
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
    ])
    return model


def unit_gradient_loss(y_true, y_pred):
    del y_true
    return keras.ops.mean(y_pred)


def tiny_regression_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])


def tiny_data(num_examples):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_examples, 3)).astype("float32")
    y = rng.normal(size=(num_examples, 1)).astype("float32")
    return x, y


def read_events(log_dir, run="train"):
    """Returns {tag: [(step, value as ndarray), ...]} from <log_dir>/<run>."""
    return _summary.read_events(log_dir / run)


# CyclicCosine --------------------------------------------------------------


@pytest.mark.parametrize("period", PAPER_PERIODS)
def test_cyclic_cosine_sets_eq21_each_epoch_over_two_cycles(period):
    learning_rate = 0.005
    model = tiny_regression_model()
    optimizer = RandomLRSGD(learning_rate=0.123, delta=0.0)
    model.compile(optimizer=optimizer, loss="mse")
    callback = CyclicCosine(learning_rate, period)
    callback.set_model(model)
    callback.on_train_begin()
    epochs = np.arange(2 * 2 * period)
    got = []
    for epoch in epochs:
        callback.on_epoch_begin(int(epoch))
        got.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(
        got, reference_cyclic_cosine(learning_rate, period, epochs),
        rtol=2**-23, atol=1e-12)


def test_cyclic_cosine_learning_rate_is_used_and_logged_in_fit():
    learning_rate, period = 0.01, 6
    num_epochs = 2 * 2 * period
    model = unit_gradient_model()
    model.compile(optimizer=RandomLRSGD(learning_rate=1.0, delta=0.0),
                  loss=unit_gradient_loss)
    weights = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights.append(
            float(model.layers[0].kernel.numpy()[0, 0])))
    history = model.fit(
        np.ones((2, 1)), np.zeros((2, 1)), batch_size=2, epochs=num_epochs,
        callbacks=[CyclicCosine(learning_rate, period), record], verbose=0)
    expected = reference_cyclic_cosine(learning_rate, period,
                                       np.arange(num_epochs))
    np.testing.assert_allclose(history.history["learning_rate"], expected,
                               rtol=2**-23, atol=1e-12)
    # One step per epoch with gradient 1: the weight drops by l_tau.
    np.testing.assert_allclose(weights, -np.cumsum(expected), rtol=1e-5,
                               atol=1e-8)


def test_cyclic_cosine_resumes_at_initial_epoch():
    learning_rate, period = 0.01, 6
    model = unit_gradient_model()
    model.compile(optimizer=RandomLRSGD(learning_rate=1.0, delta=0.0),
                  loss=unit_gradient_loss)
    history = model.fit(
        np.ones((2, 1)), np.zeros((2, 1)), batch_size=2, initial_epoch=4,
        epochs=7, callbacks=[CyclicCosine(learning_rate, period)], verbose=0)
    expected = reference_cyclic_cosine(learning_rate, period, [4, 5, 6])
    np.testing.assert_allclose(history.history["learning_rate"], expected,
                               rtol=2**-23)
    np.testing.assert_allclose(model.layers[0].kernel.numpy()[0, 0],
                               -expected.sum(), rtol=1e-5)


class _InterruptAtEpoch(keras.callbacks.Callback):

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def test_cyclic_cosine_resumes_after_backup_and_restore(tmp_path):
    learning_rate, period, num_epochs = 0.01, 2, 6
    data = (np.ones((2, 1)), np.zeros((2, 1)))

    def fit(extra_callbacks):
        model = unit_gradient_model()
        model.compile(optimizer=RandomLRSGD(learning_rate=1.0, delta=0.0),
                      loss=unit_gradient_loss)
        history = model.fit(
            *data, batch_size=2, epochs=num_epochs, verbose=0,
            callbacks=[CyclicCosine(learning_rate, period),
                       keras.callbacks.BackupAndRestore(tmp_path / "backup"),
                       *extra_callbacks])
        return model, history

    with pytest.raises(RuntimeError, match="interrupted"):
        fit([_InterruptAtEpoch(3)])
    model, history = fit([])
    expected = reference_cyclic_cosine(learning_rate, period,
                                       np.arange(num_epochs))
    np.testing.assert_allclose(history.history["learning_rate"], expected[3:],
                               rtol=2**-23, atol=1e-12)
    np.testing.assert_allclose(model.layers[0].kernel.numpy()[0, 0],
                               -expected.sum(), rtol=1e-5)


def test_cyclic_cosine_works_with_keras_sgd_and_loss_scale_optimizer():
    for optimizer in (
            keras.optimizers.SGD(learning_rate=0.5, momentum=0.9),
            keras.optimizers.LossScaleOptimizer(RandomLRSGD(0.5, delta=0.0))):
        model = tiny_regression_model()
        model.compile(optimizer=optimizer, loss="mse")
        history = model.fit(*tiny_data(4), epochs=3, verbose=0,
                            callbacks=[CyclicCosine(0.01, period=3)])
        np.testing.assert_allclose(
            history.history["learning_rate"],
            reference_cyclic_cosine(0.01, 3, np.arange(3)), rtol=2**-23)


@pytest.mark.parametrize("learning_rate", [
    keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5),
    CyclicCosineSchedule(0.01, period=6, steps_per_epoch=2),
    RandomLearningRate(0.01, delta=1.0, seed=0),
])
def test_cyclic_cosine_rejects_a_schedule_learning_rate(learning_rate):
    model = tiny_regression_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
                  loss="mse")
    with pytest.raises(ValueError, match="needs a float learning_rate"):
        model.fit(*tiny_data(4), verbose=0,
                  callbacks=[CyclicCosine(0.01, period=6)])


def test_cyclic_cosine_equals_keras_scheduler_with_cyclic_cosine():
    # The callback is Keras' LearningRateScheduler with eq. 21: the same
    # learning rates and weights, bit for bit.
    from rlr_keras.schedules import cyclic_cosine  # noqa: PLC0415

    def fit(callback):
        model = unit_gradient_model()
        model.compile(optimizer=RandomLRSGD(learning_rate=1.0, delta=0.0),
                      loss=unit_gradient_loss)
        history = model.fit(np.ones((2, 1)), np.zeros((2, 1)), batch_size=2,
                            epochs=8, callbacks=[callback], verbose=0)
        return (history.history["learning_rate"],
                keras.ops.convert_to_numpy(model.layers[0].kernel))

    ours = CyclicCosine(0.01, period=3)
    assert isinstance(ours, keras.callbacks.LearningRateScheduler)
    keras_rates, keras_weights = fit(keras.callbacks.LearningRateScheduler(
        lambda epoch: cyclic_cosine(0.01, 3, epoch)))
    rates, weights = fit(ours)
    assert rates == keras_rates
    np.testing.assert_array_equal(weights, keras_weights)


def test_cyclic_cosine_config_round_trip_and_serialization():
    callback = CyclicCosine(0.005, period=18)
    config = callback.get_config()
    assert config == {"learning_rate": 0.005, "period": 18.0}
    assert CyclicCosine.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(callback))
    assert isinstance(restored, CyclicCosine)
    assert restored.get_config() == config


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=-0.1, period=6), "learning_rate"),
    (dict(learning_rate=0.1, period=0), "period"),
    (dict(learning_rate=0.1, period=math.inf), "period"),
])
def test_cyclic_cosine_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CyclicCosine(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=None, period=6),
     "learning_rate must be a finite real number, got None"),
    (dict(learning_rate=0.1, period="6"),
     "period must be a finite real number, got '6'"),
])
def test_cyclic_cosine_rejects_arguments_of_the_wrong_type(kwargs, message):
    with pytest.raises(TypeError, match=message):
        CyclicCosine(**kwargs)


# LearningRateMonitor ------------------------------------------------------


STEP_TAGS = (Monitor.STEP_ALPHA_TAG, Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG)
EPOCH_TAGS = (Monitor.EPOCH_LEARNING_RATE_TAG,
              Monitor.EPOCH_ALPHA_HISTOGRAM_TAG)
# The epoch statistics go through the logs; an epoch-summary callback after
# the monitor writes them (once).
ALPHA_MEAN_TAG = "epoch_alpha_mean"
ALPHA_STD_TAG = "epoch_alpha_std"


def fit_and_read(tmp_path, optimizer, *, epochs=2, num_examples=40,
                 batch_size=4, update_freq=3, steps_per_execution=1,
                 callbacks=(), after=None):
    """Fits with `callbacks`, the monitor, then `after` (EpochSummaries)."""
    if after is None:
        after = [EpochSummaries(tmp_path)]
    model = tiny_regression_model()
    model.compile(optimizer=optimizer, loss="mse",
                  steps_per_execution=steps_per_execution)
    model.fit(*tiny_data(num_examples), batch_size=batch_size, epochs=epochs,
              verbose=0, callbacks=[
                  *callbacks, Monitor(tmp_path, update_freq=update_freq),
                  *after])
    return read_events(tmp_path)


def values(points):
    return np.array([value for _, value in points])


def steps(points):
    return [step for step, _ in points]


def test_monitor_writes_expected_tags_and_points_with_exact_alpha(tmp_path):
    optimizer = RandomLRSGD(learning_rate=0.05, delta=1.0, seed=7)
    events = fit_and_read(tmp_path, optimizer)  # 2 epochs of 10 steps.
    # Each quantity under one tag: rlr/ for what only the monitor writes.
    assert set(events) == set(STEP_TAGS + EPOCH_TAGS) | {
        ALPHA_MEAN_TAG, ALPHA_STD_TAG, "epoch_loss", "epoch_learning_rate"}
    logged = list(range(0, 20, 3))
    for tag in STEP_TAGS:
        assert steps(events[tag]) == logged
    for tag in EPOCH_TAGS:
        assert steps(events[tag]) == [0, 1]

    alphas = values(events[Monitor.STEP_ALPHA_TAG])
    assert alphas.dtype == np.float32
    expected = keras.ops.convert_to_numpy(optimizer.alpha_at(np.array(logged)))
    np.testing.assert_array_equal(alphas, expected)  # Bit for bit.
    np.testing.assert_array_equal(
        values(events[Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG]),
        np.float32(0.05) * expected)

    all_alphas = keras.ops.convert_to_numpy(optimizer.alpha_at(np.arange(20)))
    by_epoch = all_alphas.astype(np.float64).reshape(2, 10)
    np.testing.assert_allclose(values(events[ALPHA_MEAN_TAG]),
                               by_epoch.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(values(events[ALPHA_STD_TAG]),
                               by_epoch.std(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(
        values(events[Monitor.EPOCH_LEARNING_RATE_TAG]), np.float32(0.05))
    for _, histogram in events[Monitor.EPOCH_ALPHA_HISTOGRAM_TAG]:
        # [left edge, right edge, count] buckets.
        assert histogram[:, 2].sum() == 10
        assert histogram[:, 0].min() >= 0.0 and histogram[:, 1].max() <= 2.0


def test_monitor_puts_epoch_alpha_statistics_into_the_logs(tmp_path):
    optimizer = RandomLRSGD(learning_rate=0.05, delta=1.0, seed=7)
    model = tiny_regression_model()
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(*tiny_data(40), batch_size=4, epochs=2, verbose=0,
                        callbacks=[Monitor(tmp_path, update_freq=3)])
    by_epoch = keras.ops.convert_to_numpy(optimizer.alpha_at(
        np.arange(20))).astype(np.float64).reshape(2, 10)
    np.testing.assert_allclose(history.history["alpha_mean"],
                               by_epoch.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(history.history["alpha_std"],
                               by_epoch.std(axis=1), rtol=1e-12)


@pytest.mark.parametrize("delta", [1.0, 0.3, 0.7])
def test_monitor_alphas_are_random_factor_bit_for_bit(delta):
    # The monitor's alpha (compiled once per delta on TensorFlow) is the
    # library's random_factor of each step, up to 2**63 - 1.
    from rlr_keras import _optimizer_utils
    from rlr_keras import random_factor
    optimizer = RandomLRSGD(learning_rate=0.1, delta=delta, seed=2**32 - 1)
    steps = np.concatenate([
        np.arange(300), 2**31 - 3 + np.arange(6), 2**32 - 3 + np.arange(6),
        [2**40 + 5, 2**63 - 1]]).astype(np.int64)
    for _ in range(2):  # Traced, then reused.
        got = _optimizer_utils.alphas_at(optimizer, steps)
        expected = keras.ops.convert_to_numpy(
            random_factor.random_factor(optimizer.seed, steps, delta))
        np.testing.assert_array_equal(got.view(np.uint32),
                                      expected.view(np.uint32))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.function tracing is TensorFlow's")
def test_monitor_traces_alpha_once_for_every_seed_and_length():
    # A sweep builds one optimizer per run and asks for ranges of several
    # lengths; five traces of one function make TensorFlow warn.
    from rlr_keras import _optimizer_utils
    from rlr_keras import random_factor
    delta = 0.625  # No other test compiles this delta.
    for seed in range(7):
        schedule = RandomLearningRate(0.1, delta=delta, seed=seed + 100)
        for optimizer in (RandomLRSGD(0.1, delta=delta, seed=seed),
                          keras.optimizers.SGD(schedule)):
            steps = np.arange(seed, 300 * seed + 10)
            np.testing.assert_array_equal(
                _optimizer_utils.alphas_at(optimizer, steps),
                keras.ops.convert_to_numpy(random_factor.random_factor(
                    optimizer.seed if isinstance(optimizer, RandomLRSGD)
                    else schedule.seed, steps, delta)))
    function = random_factor.compiled_random_factor(delta)
    assert function.experimental_get_tracing_count() == 1


def test_monitor_does_not_sync_with_the_device_every_batch():
    # Per-step points are written at the epoch's end: no batch hook.
    assert (Monitor.on_train_batch_end
            is keras.callbacks.Callback.on_train_batch_end)


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="Keras allows steps_per_execution > 1 only off "
                           "PyTorch")
@pytest.mark.parametrize("steps_per_execution", [4, 7])
def test_monitor_is_complete_with_steps_per_execution(
        tmp_path, steps_per_execution):
    optimizer = RandomLRSGD(learning_rate=0.05, delta=0.5, seed=11)
    events = fit_and_read(tmp_path, optimizer, update_freq=1,
                          steps_per_execution=steps_per_execution)
    points = events[Monitor.STEP_ALPHA_TAG]
    assert steps(points) == list(range(20))
    np.testing.assert_array_equal(
        values(points),
        keras.ops.convert_to_numpy(optimizer.alpha_at(np.arange(20))))
    assert steps(events[ALPHA_MEAN_TAG]) == [0, 1]


def test_monitor_continues_the_step_axis_on_a_second_fit(tmp_path):
    optimizer = RandomLRSGD(learning_rate=0.05, seed=3)
    model = tiny_regression_model()
    model.compile(optimizer=optimizer, loss="mse")
    data = tiny_data(12)
    model.fit(*data, batch_size=4, epochs=1, verbose=0,
              callbacks=[Monitor(tmp_path, update_freq=1)])
    model.fit(*data, batch_size=4, initial_epoch=1, epochs=2, verbose=0,
              callbacks=[Monitor(tmp_path, update_freq=1)])
    events = read_events(tmp_path)
    assert steps(events[Monitor.STEP_ALPHA_TAG]) == list(range(6))
    np.testing.assert_array_equal(
        values(events[Monitor.STEP_ALPHA_TAG]),
        keras.ops.convert_to_numpy(optimizer.alpha_at(np.arange(6))))
    assert steps(events[Monitor.EPOCH_LEARNING_RATE_TAG]) == [0, 1]


def test_monitor_with_random_learning_rate_schedule_on_keras_sgd(tmp_path):
    schedule = RandomLearningRate(0.05, delta=1.0, seed=5)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    events = fit_and_read(tmp_path, optimizer, update_freq=1)
    expected = keras.ops.convert_to_numpy(schedule.alpha_at(np.arange(20)))
    np.testing.assert_array_equal(values(events[Monitor.STEP_ALPHA_TAG]),
                                  expected)
    np.testing.assert_array_equal(
        values(events[Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG]),
        np.float32(0.05) * expected)
    np.testing.assert_array_equal(
        values(events[Monitor.EPOCH_LEARNING_RATE_TAG]), np.float32(0.05))


def test_monitor_with_cyclic_protocol_logs_l_tau_and_alpha_one(tmp_path):
    optimizer = RandomLRSGD(learning_rate=1.0, delta=0.0, momentum=0.9)
    events = fit_and_read(tmp_path, optimizer, epochs=4, update_freq=5,
                          callbacks=[CyclicCosine(0.01, period=2)])
    l_tau = reference_cyclic_cosine(0.01, 2, np.arange(4)).astype(np.float32)
    np.testing.assert_allclose(values(events[Monitor.EPOCH_LEARNING_RATE_TAG]),
                               l_tau, rtol=2**-23, atol=1e-12)
    np.testing.assert_array_equal(values(events[Monitor.STEP_ALPHA_TAG]), 1.0)
    np.testing.assert_allclose(
        values(events[Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG]),
        np.repeat(l_tau, 2), rtol=2**-23, atol=1e-12)  # Steps 0, 5, ..., 35.
    np.testing.assert_array_equal(
        values(events[ALPHA_STD_TAG]), 0.0)


def test_monitor_with_per_step_schedule_logs_its_value_at_each_step(tmp_path):
    schedule = CyclicCosineSchedule(0.01, period=1, steps_per_epoch=3)
    optimizer = RandomLRSGD(learning_rate=schedule, delta=1.0, seed=2)
    events = fit_and_read(tmp_path, optimizer, epochs=1, num_examples=40,
                          update_freq=1)
    alphas = keras.ops.convert_to_numpy(optimizer.alpha_at(np.arange(10)))
    l_k = keras.ops.convert_to_numpy(schedule(np.arange(10)))
    np.testing.assert_array_equal(
        values(events[Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG]), l_k * alphas)


def test_monitor_of_plain_keras_optimizer_logs_alpha_one(tmp_path):
    events = fit_and_read(tmp_path, keras.optimizers.Adam(0.001), epochs=1)
    np.testing.assert_array_equal(values(events[Monitor.STEP_ALPHA_TAG]), 1.0)
    np.testing.assert_array_equal(
        values(events[ALPHA_MEAN_TAG]), 1.0)
    np.testing.assert_allclose(
        values(events[Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG]), 0.001)


def test_monitor_epoch_only_and_side_by_side_with_keras_tensorboard(tmp_path):
    optimizer = RandomLRSGD(learning_rate=0.05, seed=0)
    events = fit_and_read(
        tmp_path, optimizer, update_freq="epoch",
        after=[keras.callbacks.TensorBoard(tmp_path, write_graph=False)
               if keras.backend.backend() == "tensorflow"
               else EpochSummaries(tmp_path)])
    assert not set(STEP_TAGS) & set(events)
    for tag in EPOCH_TAGS + ("epoch_loss", ALPHA_MEAN_TAG, ALPHA_STD_TAG):
        assert steps(events[tag]) == [0, 1]


def test_monitor_config_round_trip_and_serialization(tmp_path):
    monitor = Monitor(tmp_path, update_freq=10)
    config = monitor.get_config()
    assert config == {"log_dir": str(tmp_path), "update_freq": 10}
    assert Monitor.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(Monitor(update_freq="epoch")))
    assert isinstance(restored, Monitor)
    assert restored.get_config() == {"log_dir": "logs", "update_freq": "epoch"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(update_freq=0), "update_freq"),
    (dict(update_freq="batch"), "update_freq"),
])
def test_monitor_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Monitor(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(update_freq=2.5), "update_freq must be an integer, got 2.5"),
    (dict(update_freq=None), "update_freq must be an integer, got None"),
    (dict(log_dir=3), "log_dir must be a str or path-like, got 3"),
])
def test_monitor_rejects_arguments_of_the_wrong_type(kwargs, message):
    with pytest.raises(TypeError, match=message):
        Monitor(**kwargs)


# TemperatureMonitor -------------------------------------------------------


SPARSE_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _compiled_mlp(optimizer, seed=1, loss=SPARSE_CE):
    # The fixed-weight MLP of the estimate_diffusion tests.
    from diffusion_test import _mlp  # noqa: PLC0415

    model, x, y = _mlp(seed)
    model.compile(optimizer=optimizer, loss=loss)
    return model, x, y


def test_temperature_monitor_writes_diffusion_and_temperature_to_logs():
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


def test_temperature_monitor_uses_mean_of_random_learning_rate_schedule():
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


def test_temperature_monitor_multiplies_second_moments_of_both_factors():
    # RandomLRSGD with a RandomLearningRate schedule: alpha = alpha1 alpha2,
    # independent, so <alpha^2> = (1 + 0.5^2/3) (1 + 1/3).
    schedule = RandomLearningRate(0.02, delta=1.0, seed=3)
    model, x, y = _compiled_mlp(RandomLRSGD(schedule, delta=0.5, seed=1))
    monitor = TemperatureMonitor(x, y, batch_size=10)
    monitor.set_model(model)
    diffusion, _ = monitor.measure()
    pieces = estimate_diffusion(model, model.loss, x, y, return_pieces=True)
    second_moment = (1 + 0.25 / 3) * (1 + 1 / 3)
    assert diffusion == pytest.approx(
        (second_moment * pieces.mean_squared_norm - pieces.squared_mean_norm)
        / pieces.num_weights, rel=1e-12)


def test_temperature_monitor_looks_through_loss_scale_optimizer():
    model, x, y = _compiled_mlp(keras.optimizers.LossScaleOptimizer(
        RandomLRSGD(learning_rate=0.01, delta=0.5, momentum=0.9, seed=0)))
    monitor = TemperatureMonitor(x, y, batch_size=4)
    monitor.set_model(model)
    diffusion, temp = monitor.measure()
    assert diffusion == pytest.approx(
        estimate_diffusion(model, model.loss, x, y, delta=0.5), rel=1e-6)
    assert temp == pytest.approx(0.01 * diffusion / (8 * 0.1), rel=1e-6)


def test_temperature_monitor_takes_zero_momentum_without_one():
    model, x, y = _compiled_mlp(keras.optimizers.Adam(learning_rate=1e-3))
    monitor = TemperatureMonitor(x, y, batch_size=4, loss=SPARSE_CE,
                                 delta=0.0)
    monitor.set_model(model)
    model.optimizer.build(model.trainable_variables)
    with pytest.warns(UserWarning, match="holds for SGD with momentum"):
        diffusion, temp = monitor.measure()
    assert temp == pytest.approx(1e-3 * diffusion / 8, rel=1e-6)


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(learning_rate=1e-3),
    lambda: keras.optimizers.AdamW(learning_rate=RandomLearningRate(
        1e-3, seed=0)),
    lambda: keras.optimizers.RMSprop(learning_rate=1e-3, momentum=0.9),
])
def test_temperature_monitor_warns_once_for_optimizers_eq_20_does_not_cover(
        optimizer):
    optimizer = optimizer()
    model, x, y = _compiled_mlp(optimizer)
    monitor = TemperatureMonitor(x[:8], y[:8], batch_size=8)
    with pytest.warns(UserWarning) as record:
        model.fit(x, y, batch_size=8, epochs=2, callbacks=[monitor],
                  verbose=0)
    messages = [str(w.message) for w in record
                if "TemperatureMonitor" in str(w.message)]
    assert messages == [(
        "TemperatureMonitor: eq. 20 of Musso, T = l D / (2 C (1 - mu)), "
        "holds for SGD with momentum (RandomLRSGD, keras.optimizers.SGD), "
        f"got {type(optimizer).__name__} {optimizer.name!r}; its "
        "'temperature' is that formula evaluated at its learning rate, not "
        "an effective temperature (D is still the measured gradient noise)")]


@pytest.mark.parametrize("optimizer", [
    lambda: RandomLRSGD(learning_rate=0.01, momentum=0.9, seed=0),
    lambda: keras.optimizers.SGD(learning_rate=RandomLearningRate(
        0.01, seed=0), momentum=0.9),
    lambda: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(learning_rate=0.01)),
])
def test_temperature_monitor_does_not_warn_for_sgd(optimizer):
    model, x, y = _compiled_mlp(optimizer())
    monitor = TemperatureMonitor(x[:8], y[:8], batch_size=8)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="TemperatureMonitor")
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[monitor],
                  verbose=0)


def test_temperature_monitor_writes_tensorboard_scalars(tmp_path):
    model, x, y = _compiled_mlp(keras.optimizers.SGD(learning_rate=0.01))
    monitor = TemperatureMonitor(x, y, batch_size=10, log_dir=tmp_path)
    history = model.fit(x, y, batch_size=10, epochs=2, callbacks=[monitor],
                        verbose=0)
    scalars = read_events(tmp_path)
    assert steps(scalars["epoch_diffusion"]) == [0, 1]
    np.testing.assert_allclose(values(scalars["epoch_diffusion"]),
                               history.history["diffusion"], rtol=1e-6)
    np.testing.assert_allclose(values(scalars["epoch_temperature"]),
                               history.history["temperature"], rtol=1e-6)


def test_temperature_monitor_config_round_trip():
    x = np.arange(12, dtype="float32").reshape(4, 3)
    y = np.arange(4)
    monitor = TemperatureMonitor(
        x, y, batch_size=32, loss=SPARSE_CE, delta=0.5, frequency=3,
        probe_batch_size=2, log_dir="logs")
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
    (dict(y=np.ones((3,))), "y must hold as many examples as x"),
    (dict(x=np.full((4, 3), np.nan)), "x must be finite"),
])
def test_temperature_monitor_invalid_arguments_raise(kwargs, message):
    arguments = dict(x=np.ones((4, 3)), y=np.ones((4,)), batch_size=8)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        TemperatureMonitor(**arguments)


@pytest.mark.parametrize("kwargs, message", [
    (dict(log_dir=3), "log_dir must be a str or path-like or None, got 3"),
    (dict(x=[[1.0, 2.0, 3.0]] * 4), "x must be an array"),
    (dict(loss=3), "loss must be a Keras loss"),
    (dict(batch_size="8"), "batch_size must be an integer, got '8'"),
    (dict(delta="0.5"), "delta must be a finite real number"),
])
def test_temperature_monitor_wrong_types_raise_type_error(kwargs, message):
    arguments = dict(x=np.ones((4, 3)), y=np.ones((4,)), batch_size=8)
    arguments.update(kwargs)
    with pytest.raises(TypeError, match=message):
        TemperatureMonitor(**arguments)


def test_temperature_monitor_without_loss_raises_clear_error():
    model, x, y = _compiled_mlp("sgd", loss=None)
    monitor = TemperatureMonitor(x, y, batch_size=4)
    monitor.set_model(model)
    with pytest.raises(ValueError, match="needs a single loss"):
        monitor.measure()


# EpochSummaries -----------------------------------------------------------


def test_epoch_summaries_write_train_and_validation_like_keras(tmp_path):
    model, x, y = _compiled_mlp(RandomLRSGD(learning_rate=0.05, seed=0))
    model.compile(optimizer=model.optimizer, loss=SPARSE_CE,
                  metrics=["accuracy"])
    history = model.fit(
        x, y, batch_size=5, epochs=2, verbose=0, validation_data=(x, y),
        callbacks=[TemperatureMonitor(x, y, batch_size=5),
                   EpochSummaries(tmp_path)])
    train = read_events(tmp_path, "train")
    validation = read_events(tmp_path, "validation")
    assert set(train) == {"epoch_loss", "epoch_accuracy", "epoch_diffusion",
                          "epoch_temperature", "epoch_learning_rate"}
    assert set(validation) == {"epoch_loss", "epoch_accuracy"}
    for name in ("loss", "accuracy", "diffusion", "temperature"):
        assert steps(train[f"epoch_{name}"]) == [0, 1]
        np.testing.assert_allclose(values(train[f"epoch_{name}"]),
                                   history.history[name], rtol=1e-6)
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(values(validation[f"epoch_{name}"]),
                                   history.history[f"val_{name}"], rtol=1e-6)
    np.testing.assert_allclose(values(train["epoch_learning_rate"]), 0.05,
                               rtol=1e-6)


@pytest.mark.tensorflow_only
def test_epoch_summaries_match_keras_tensorboard(tmp_path):
    model, x, y = _compiled_mlp(keras.optimizers.SGD(learning_rate=0.01))
    model.fit(x, y, batch_size=5, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[EpochSummaries(tmp_path / "ours"),
                         keras.callbacks.TensorBoard(tmp_path / "keras",
                                                     write_graph=False)])
    for run in ("train", "validation"):
        ours = read_events(tmp_path / "ours", run)
        theirs = {tag: points for tag, points in
                  read_events(tmp_path / "keras", run).items()
                  if tag.startswith("epoch_")}
        assert set(ours) == set(theirs)
        for tag, points in theirs.items():
            assert steps(ours[tag]) == steps(points)
            np.testing.assert_allclose(values(ours[tag]), values(points),
                                       rtol=1e-6)


def test_epoch_summaries_config_and_invalid_log_dir(tmp_path):
    callback = EpochSummaries(tmp_path)
    assert callback.get_config() == {"log_dir": str(tmp_path)}
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(callback))
    assert isinstance(restored, EpochSummaries)
    assert restored.get_config() == {"log_dir": str(tmp_path)}
    with pytest.raises(TypeError, match="log_dir must be a str or "
                                        "path-like, got 3"):
        EpochSummaries(3)
