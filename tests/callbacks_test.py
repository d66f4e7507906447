"""Tests for rlr_keras.callbacks: CyclicCosine and LearningRateMonitor."""

import collections
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from rlr_keras import RandomLRSGD
from rlr_keras import RandomLearningRate
from rlr_keras.callbacks import CyclicCosine
from rlr_keras.callbacks import LearningRateMonitor
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


def read_events(log_dir):
    """Returns {tag: [(step, value as ndarray), ...]} from <log_dir>/train."""
    points = collections.defaultdict(list)
    for path in sorted(tf.io.gfile.glob(str(log_dir / "train" / "events.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                points[value.tag].append(
                    (event.step, tf.make_ndarray(value.tensor)))
    return {tag: sorted(values, key=lambda p: p[0])
            for tag, values in points.items()}


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
    (dict(learning_rate=None, period=6), "learning_rate"),
])
def test_cyclic_cosine_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CyclicCosine(**kwargs)


# LearningRateMonitor ------------------------------------------------------


STEP_TAGS = (Monitor.STEP_ALPHA_TAG, Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG)
EPOCH_TAGS = (Monitor.EPOCH_LEARNING_RATE_TAG, Monitor.EPOCH_ALPHA_MEAN_TAG,
              Monitor.EPOCH_ALPHA_STD_TAG, Monitor.EPOCH_ALPHA_HISTOGRAM_TAG)


def fit_and_read(tmp_path, optimizer, *, epochs=2, num_examples=40,
                 batch_size=4, update_freq=3, steps_per_execution=1,
                 callbacks=()):
    model = tiny_regression_model()
    model.compile(optimizer=optimizer, loss="mse",
                  steps_per_execution=steps_per_execution)
    model.fit(*tiny_data(num_examples), batch_size=batch_size, epochs=epochs,
              verbose=0, callbacks=[*callbacks,
                                    Monitor(tmp_path, update_freq=update_freq)])
    return read_events(tmp_path)


def values(points):
    return np.array([value for _, value in points])


def steps(points):
    return [step for step, _ in points]


def test_monitor_writes_expected_tags_and_points_with_exact_alpha(tmp_path):
    optimizer = RandomLRSGD(learning_rate=0.05, delta=1.0, seed=7)
    events = fit_and_read(tmp_path, optimizer)  # 2 epochs of 10 steps.
    assert set(events) == set(STEP_TAGS + EPOCH_TAGS)
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
    np.testing.assert_allclose(values(events[Monitor.EPOCH_ALPHA_MEAN_TAG]),
                               by_epoch.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(values(events[Monitor.EPOCH_ALPHA_STD_TAG]),
                               by_epoch.std(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(
        values(events[Monitor.EPOCH_LEARNING_RATE_TAG]), np.float32(0.05))
    for _, histogram in events[Monitor.EPOCH_ALPHA_HISTOGRAM_TAG]:
        # TensorBoard histograms are [left edge, right edge, count] buckets.
        assert histogram[:, 2].sum() == 10
        assert histogram[:, 0].min() >= 0.0 and histogram[:, 1].max() <= 2.0


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
    assert steps(events[Monitor.EPOCH_ALPHA_MEAN_TAG]) == [0, 1]


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
        values(events[Monitor.EPOCH_ALPHA_STD_TAG]), 0.0)


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
        values(events[Monitor.EPOCH_ALPHA_MEAN_TAG]), 1.0)
    np.testing.assert_allclose(
        values(events[Monitor.STEP_EFFECTIVE_LEARNING_RATE_TAG]), 0.001)


def test_monitor_epoch_only_and_side_by_side_with_keras_tensorboard(tmp_path):
    optimizer = RandomLRSGD(learning_rate=0.05, seed=0)
    events = fit_and_read(
        tmp_path, optimizer, update_freq="epoch",
        callbacks=[keras.callbacks.TensorBoard(tmp_path, write_graph=False)])
    assert not set(STEP_TAGS) & set(events)
    for tag in EPOCH_TAGS + ("epoch_loss",):
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
    (dict(update_freq=2.5), "update_freq"),
    (dict(update_freq="batch"), "update_freq"),
    (dict(log_dir=3), "log_dir"),
])
def test_monitor_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Monitor(**kwargs)
