"""Tests for the cosine cycle of rlr_keras.schedules against NumPy.

`RandomLearningRate` is tested in optimizers_test.py and
random_factor_test.py.
"""

import keras
import numpy as np
import pytest

from rlr_keras import RandomLRSGD
from rlr_keras.schedules import CyclicCosineSchedule
from rlr_keras.schedules import cyclic_cosine

PAPER_PERIODS = (6, 18, 30)


def reference_cyclic_cosine(learning_rate, period, epoch):
    """Musso, eq. 21, written independently in NumPy (float64)."""
    return learning_rate * (1.0 + np.cos(np.pi * np.asarray(epoch) / period))


# cyclic_cosine ---------------------------------------------------------------


@pytest.mark.parametrize("period", PAPER_PERIODS)
def test_cyclic_cosine_matches_numpy_over_two_cycles(period):
    learning_rate = 0.005
    epochs = np.arange(2 * 2 * period)  # A cycle is 2 P epochs.
    expected = reference_cyclic_cosine(learning_rate, period, epochs)
    got = [cyclic_cosine(learning_rate, period, int(tau)) for tau in epochs]
    assert all(isinstance(value, float) for value in got)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-18)


def _int_tensor(values):
    return keras.ops.convert_to_tensor(np.asarray(values), "int32")


@pytest.mark.parametrize("period", PAPER_PERIODS)
def test_cyclic_cosine_on_tensors_equals_python_values_in_float32(period):
    learning_rate = 0.005
    epochs = np.arange(2 * 2 * period)
    got = cyclic_cosine(learning_rate, period, _int_tensor(epochs))
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    assert tuple(got.shape) == epochs.shape
    python = np.array([cyclic_cosine(learning_rate, period, int(tau))
                       for tau in epochs], np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), python)
    np.testing.assert_allclose(
        python, reference_cyclic_cosine(learning_rate, period, epochs),
        rtol=2**-23, atol=1e-12 * learning_rate)


def test_python_path_reduces_epoch_modulo_the_cycle():
    for tau in range(12):
        assert cyclic_cosine(0.01, 6, tau + 12 * 1000) == cyclic_cosine(
            0.01, 6, tau)
    # A fractional period is evaluated directly.
    assert cyclic_cosine(0.01, 2.5, 1) == pytest.approx(
        0.01 * (1 + np.cos(np.pi / 2.5)), rel=1e-15)


def test_tensor_epoch_needs_whole_period_and_integer_dtype():
    with pytest.raises(ValueError, match="period must be a whole number"):
        cyclic_cosine(0.01, 2.5, _int_tensor([0, 1]))
    with pytest.raises(TypeError, match="epoch must be a number or an "
                       "integer tensor"):
        cyclic_cosine(0.01, 2, keras.ops.convert_to_tensor([0.0, 1.0]))


@pytest.mark.parametrize("epoch", ["3", None, b"3"])
def test_epoch_of_the_wrong_type_raises_our_type_error(epoch):
    # Checked before the backend converts it (JAX would raise its own).
    with pytest.raises(TypeError, match=f"epoch must be a number >= 0 or an "
                       f"integer tensor, got {epoch!r}"):
        cyclic_cosine(0.01, 2, epoch)


@pytest.mark.parametrize("step", ["3", None, 2.5, [1.5]])
def test_schedule_step_of_the_wrong_type_raises_type_error(step):
    schedule = CyclicCosineSchedule(0.1, period=2, steps_per_epoch=3)
    with pytest.raises(TypeError, match="step must be a non-negative integer"):
        schedule(step)
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        schedule(-1)


@pytest.mark.parametrize("period", PAPER_PERIODS)
def test_cyclic_cosine_has_cycle_two_periods_and_mean_learning_rate(period):
    learning_rate = 0.02
    values = np.array(
        [cyclic_cosine(learning_rate, period, tau)
         for tau in range(4 * period)])
    assert values[0] == pytest.approx(2 * learning_rate)
    assert values[period] == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(values[:2 * period], values[2 * period:],
                               rtol=1e-12, atol=1e-15)
    assert values[:2 * period].mean() == pytest.approx(learning_rate, rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=-0.1, period=6, epoch=0), "learning_rate"),
    (dict(learning_rate=0.1, period=0, epoch=0), "period"),
    (dict(learning_rate=0.1, period=-6, epoch=0), "period"),
    (dict(learning_rate=0.1, period=6, epoch=-1), "epoch"),
    (dict(learning_rate=float("nan"), period=6, epoch=0), "learning_rate"),
])
def test_cyclic_cosine_rejects_invalid_numbers(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cyclic_cosine(**kwargs)


# CyclicCosineSchedule --------------------------------------------------------


def _compilers():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        return [tf.function, lambda f: tf.function(f, jit_compile=True)]
    if backend == "jax":
        import jax  # pylint: disable=g-import-not-at-top

        return [jax.jit]
    return []  # Keras' PyTorch backend runs eagerly by default.


@pytest.mark.parametrize("period, steps_per_epoch", [(6, 1), (3, 7), (18, 2)])
def test_schedule_equals_python_values_every_step_over_two_cycles(
        period, steps_per_epoch):
    learning_rate = 0.005
    schedule = CyclicCosineSchedule(learning_rate, period, steps_per_epoch)
    steps = np.arange(2 * 2 * period * steps_per_epoch)
    python = np.array([cyclic_cosine(learning_rate, period,
                                     int(k) // steps_per_epoch)
                       for k in steps], np.float32)
    vectorized = keras.ops.convert_to_numpy(schedule(_int_tensor(steps)))
    np.testing.assert_array_equal(vectorized, python)
    one_by_one = [keras.ops.convert_to_numpy(schedule(int(k)))
                  for k in steps]
    np.testing.assert_array_equal(one_by_one, python)
    for compile_fn in _compilers():
        compiled = compile_fn(schedule.__call__)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(compiled(_int_tensor(steps))), python)
    np.testing.assert_allclose(
        python, reference_cyclic_cosine(
            learning_rate, period, steps // steps_per_epoch),
        rtol=2**-23, atol=1e-12 * learning_rate)


def test_schedule_reads_the_optimizer_counter_far_into_training():
    schedule = CyclicCosineSchedule(0.005, period=6, steps_per_epoch=235)
    optimizer = RandomLRSGD(learning_rate=schedule, delta=0.0, seed=0)
    for k in (0, 235 * 12 * 1000 + 5, 2**31 - 1):
        optimizer.iterations.assign(k)
        assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) \
            == np.float32(cyclic_cosine(0.005, 6, k // 235))


def test_schedule_drives_random_lr_sgd_step_by_step():
    # With delta = 0, momentum = 0 and a gradient of exactly 1, each step
    # subtracts the learning rate of that step: w_K = -sum_k l_{k // S}.
    learning_rate, period, steps_per_epoch = 0.01, 3, 2
    schedule = CyclicCosineSchedule(learning_rate, period, steps_per_epoch)
    optimizer = RandomLRSGD(learning_rate=schedule, delta=0.0)
    weight = keras.Variable(np.zeros((2,), np.float32))
    gradient = np.ones((2,), np.float32)
    num_steps = 2 * 2 * period * steps_per_epoch
    got = []
    for _ in range(num_steps):
        optimizer.apply_gradients([(gradient, weight)])
        got.append(keras.ops.convert_to_numpy(weight)[0])
    expected = -np.cumsum(reference_cyclic_cosine(
        learning_rate, period, np.arange(num_steps) // steps_per_epoch))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)


def test_schedule_config_round_trip():
    schedule = CyclicCosineSchedule(0.005, period=18, steps_per_epoch=235)
    config = schedule.get_config()
    assert config == {"learning_rate": 0.005, "period": 18.0,
                      "steps_per_epoch": 235}
    restored = CyclicCosineSchedule.from_config(config)
    assert restored.get_config() == config


def test_schedule_serialize_deserialize():
    schedule = CyclicCosineSchedule(0.005, period=6, steps_per_epoch=10)
    serialized = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, CyclicCosineSchedule)
    assert restored.get_config() == schedule.get_config()
    steps = np.arange(200)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(_int_tensor(steps))),
        keras.ops.convert_to_numpy(schedule(_int_tensor(steps))))


def test_schedule_survives_model_save_and_load(tmp_path):
    schedule = CyclicCosineSchedule(0.01, period=2, steps_per_epoch=3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=RandomLRSGD(learning_rate=schedule, delta=0.0,
                                        seed=1), loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded_schedule = loaded.optimizer._learning_rate
    assert isinstance(loaded_schedule, CyclicCosineSchedule)
    assert loaded_schedule.get_config() == schedule.get_config()
    assert int(loaded.optimizer.iterations) == 4
    assert float(loaded.optimizer.learning_rate) == float(schedule(4))


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=-1.0, period=6, steps_per_epoch=1), "learning_rate"),
    (dict(learning_rate=0.1, period=0.0, steps_per_epoch=1), "period"),
    (dict(learning_rate=0.1, period=6, steps_per_epoch=0), "steps_per_epoch"),
    (dict(learning_rate=0.1, period=2.5, steps_per_epoch=1),
     "period must be a whole number of epochs for CyclicCosineSchedule"),
    (dict(learning_rate=1e300, period=6, steps_per_epoch=1),
     r"learning_rate must be in \[0, 1.70141e\+38\]"),
])
def test_schedule_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CyclicCosineSchedule(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=0.1, period=6, steps_per_epoch=2.5),
     "steps_per_epoch must be an integer, got 2.5"),
    (dict(learning_rate="0.1", period=6, steps_per_epoch=1),
     "learning_rate must be a finite real number, got '0.1'"),
    (dict(learning_rate=0.1, period=None, steps_per_epoch=1),
     "period must be a finite real number, got None"),
])
def test_schedule_rejects_arguments_of_the_wrong_type(kwargs, message):
    with pytest.raises(TypeError, match=message):
        CyclicCosineSchedule(**kwargs)
