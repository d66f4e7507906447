"""Tests for rlr_keras.protocols.build."""

import math

import keras
import numpy as np
import pytest

import rlr_keras
from rlr_keras import RandomLRSGD
from rlr_keras import protocols
from rlr_keras.callbacks import CyclicCosine


def test_protocol_names_are_exported():
    assert protocols.PROTOCOLS == ("constant", "random", "cyclic")
    assert rlr_keras.PROTOCOLS is protocols.PROTOCOLS
    assert rlr_keras.protocols.build is protocols.build


def test_constant_protocol_is_random_lr_sgd_with_zero_delta():
    optimizer, callbacks = protocols.build(
        "constant", learning_rate=0.005, momentum=0.9, nesterov=True,
        coupled_weight_decay=1e-3, seed=4)
    assert isinstance(optimizer, RandomLRSGD)
    assert callbacks == []
    assert optimizer.delta == 0.0
    assert float(optimizer.learning_rate) == pytest.approx(0.005)
    assert (optimizer.momentum, optimizer.nesterov, optimizer.seed,
            optimizer.coupled_weight_decay) == (0.9, True, 4, 1e-3)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(optimizer.alpha_at(np.arange(1000))), 1.0)


@pytest.mark.parametrize("delta, expected_delta", [(None, 1.0), (0.5, 0.5)])
def test_random_protocol_has_given_delta_and_constant_mean(delta,
                                                           expected_delta):
    optimizer, callbacks = protocols.build(
        "random", learning_rate=0.005, delta=delta, momentum=0.9, seed=1)
    assert isinstance(optimizer, RandomLRSGD)
    assert callbacks == []
    assert optimizer.delta == expected_delta
    assert float(optimizer.learning_rate) == pytest.approx(0.005)


def test_cyclic_protocol_is_zero_delta_plus_cyclic_cosine():
    protocol = protocols.build("cyclic", learning_rate=0.005, period=18,
                               momentum=0.9, nesterov=True, seed=2)
    assert isinstance(protocol, protocols.Protocol)
    optimizer, callbacks = protocol
    assert isinstance(optimizer, RandomLRSGD)
    assert optimizer.delta == 0.0
    # The optimizer starts at l_0 = 2 l, the value of eq. 21 at tau = 0.
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert len(callbacks) == 1 and isinstance(callbacks[0], CyclicCosine)
    assert callbacks[0].get_config() == {"learning_rate": 0.005,
                                         "period": 18.0}


def test_build_forwards_keras_optimizer_arguments():
    optimizer, _ = protocols.build("random", learning_rate=0.1, clipnorm=1.0,
                                   name="my_sgd")
    assert optimizer.clipnorm == 1.0
    assert optimizer.name == "my_sgd"


def test_random_protocol_mean_learning_rate_is_l_within_standard_error():
    learning_rate, delta, num_steps = 0.005, 1.0, 20_000
    optimizer, _ = protocols.build("random", learning_rate=learning_rate,
                                   delta=delta, seed=123)
    step_sizes = learning_rate * keras.ops.convert_to_numpy(
        optimizer.alpha_at(np.arange(num_steps))).astype(np.float64)
    # l * alpha is uniform on [l (1 - delta), l (1 + delta)], with standard
    # deviation l delta / sqrt(3).
    standard_error = learning_rate * delta / math.sqrt(3 * num_steps)
    assert abs(step_sizes.mean() - learning_rate) < 5 * standard_error
    assert step_sizes.min() >= 0.0 and step_sizes.max() <= 2 * learning_rate


def test_cyclic_protocol_mean_learning_rate_over_a_cycle_is_l():
    learning_rate, period = 0.005, 6
    optimizer, callbacks = protocols.build(
        "cyclic", learning_rate=learning_rate, period=period, momentum=0.9,
        nesterov=True, seed=0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=2 * period,
                        callbacks=callbacks, verbose=0)
    learning_rates = np.array(history.history["learning_rate"])
    assert learning_rates.max() == pytest.approx(2 * learning_rate)
    # Each value is a float32 variable: a relative rounding of 2**-24.
    assert learning_rates.mean() == pytest.approx(learning_rate, rel=2**-22)


@pytest.mark.parametrize("name, kwargs, message", [
    ("linear", dict(),
     "protocol must be one of 'constant', 'random', 'cyclic', got 'linear'"),
    ("Random", dict(), "protocol"),
    ("constant", dict(period=6), "period must be None for the 'constant'"),
    ("random", dict(period=6), "period must be None for the 'random'"),
    ("constant", dict(delta=0.5), "delta must be 0 .* 'constant'"),
    ("cyclic", dict(delta=1.0, period=6), "delta must be 0 .* 'cyclic'"),
    ("random", dict(delta=0.0), r"delta must be in \(0, 1\]"),
    ("random", dict(delta=1.5), "delta"),
    ("cyclic", dict(), "period is required"),
    ("cyclic", dict(period=0), "period"),
    ("constant", dict(learning_rate=-0.1), "learning_rate"),
    ("random", dict(learning_rate=1e300), "learning_rate must be finite in"),
    ("cyclic", dict(learning_rate=2e38, period=6), "learning_rate"),
    ("constant", dict(momentum=1.0), "momentum"),
    ("constant", dict(nesterov=True), "nesterov"),
    ("random", dict(seed=-1), "seed"),
])
def test_invalid_protocols_raise(name, kwargs, message):
    kwargs.setdefault("learning_rate", 0.01)
    with pytest.raises(ValueError, match=message):
        protocols.build(name, **kwargs)


def test_constant_and_cyclic_accept_explicit_zero_delta():
    assert protocols.build("constant", learning_rate=0.1,
                           delta=0).optimizer.delta == 0.0
    assert protocols.build("cyclic", learning_rate=0.1, delta=0.0,
                           period=6).optimizer.delta == 0.0


def test_protocol_by_keyword_and_name_reaches_the_optimizer():
    optimizer, callbacks = protocols.build(
        protocol="cyclic", learning_rate=0.01, period=6, name="cyc", seed=0)
    assert optimizer.name == "cyc"
    assert [type(c) for c in callbacks] == [CyclicCosine]
    by_position = protocols.build("cyclic", learning_rate=0.01, period=6,
                                  name="cyc", seed=0)
    assert by_position.optimizer.get_config() == optimizer.get_config()


@pytest.mark.parametrize("protocol, kwargs, message", [
    (3, dict(), "protocol must be one of 'constant', 'random', 'cyclic', "
                "got 3"),
    (None, dict(), "protocol must be one of"),
    ("random", dict(learning_rate=None), "learning_rate must be a finite"),
    ("random", dict(learning_rate="0.1"), "learning_rate"),
    ("random", dict(delta="a"), "delta must be a finite real number, got 'a'"),
    ("random", dict(seed=1.5), "seed must be an integer, got 1.5"),
    ("random", dict(seed="1"), "seed must be an integer"),
    ("cyclic", dict(period="6"), "period"),
    ("random", dict(momentum=None), "momentum"),
    ("random", dict(momentum=0.9, nesterov=1), "nesterov must be a bool"),
])
def test_wrong_types_raise_type_error(protocol, kwargs, message):
    kwargs.setdefault("learning_rate", 0.01)
    with pytest.raises(TypeError, match=message):
        protocols.build(protocol, **kwargs)
