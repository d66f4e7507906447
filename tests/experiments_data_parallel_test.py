"""Tests of `train.py --distribution=data_parallel` (JAX backend only).

conftest.py gives JAX two host CPU devices, so `keras.distribution.
DataParallel` splits every global batch in two, as it would over two GPUs.
"""

import os

import keras
import numpy as np
import pytest

from rlr_keras.experiment import _callbacks
from rlr_keras.experiment import _distribution
from _helpers import weights as _weights
from rlr_keras.experiment import _rundir
from rlr_keras.experiment import _train as train
from rlr_keras.experiment.commands import train as train_command  # noqa: F401  (its flags)

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax",
                                reason="keras.distribution needs JAX")

# 1,437 digits in global batches of 64: 22 full steps and a last one of 29,
# which the pipeline pads to 30 with one example of weight 0.
# learning_rate=0.01: measured 1e-7 apart after the 46 steps. (At 0.05, with
# alpha up to 2 and momentum 0.9, training is chaotic enough to grow float32
# rounding differences of the all-reduce to 4e-3, as any two summation
# orders would.) One step per call, so that the recorder sees every step.
_ARGUMENTS = dict(model="mlp", dataset="digits", protocol="random",
                  learning_rate=0.01, batch_size=64, epochs=2, seed=3,
                  deterministic=True, verbose=0, steps_per_execution=1)
# The same math on other devices: only the order of float32 sums differs.
_WEIGHT_ATOL = 1e-5


class _AlphaRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.alphas = []

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.alphas.append(float(optimizer.alpha_at(optimizer.iterations)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("data_parallel")
    recorded = {}
    original = _callbacks.MetricsRecorder

    for distribution in ("none", "data_parallel"):
        recorder = _AlphaRecorder()
        recorded[distribution] = recorder

        class Recording(original):
            def set_model(self, model, recorder=recorder):
                super().set_model(model)
                recorder.set_model(model)

            def on_train_batch_begin(self, batch, logs=None,
                                     recorder=recorder):
                recorder.on_train_batch_begin(batch, logs)

        monkeypatch_module.setattr(_callbacks, "MetricsRecorder", Recording)
        train.run(output_dir=str(root / distribution),
                  distribution=distribution, **_ARGUMENTS)
    return root, {name: r.alphas for name, r in recorded.items()}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.slow
def test_data_parallel_matches_one_device_with_the_same_alphas(runs):
    root, alphas = runs
    assert len(keras.distribution.list_devices()) == 2
    single = _weights(os.path.join(root, "none", "model.weights.h5"))
    parallel = _weights(os.path.join(root, "data_parallel",
                                     "model.weights.h5"))
    assert single.keys() == parallel.keys()
    for name, value in single.items():
        np.testing.assert_allclose(parallel[name], value, atol=_WEIGHT_ATOL,
                                   rtol=0, err_msg=name)
    (iterations,) = [n for n in single if n.endswith("optimizer/vars/0")]
    assert int(parallel[iterations]) == 2 * 23
    assert len(alphas["none"]) == 2 * 23
    assert alphas["data_parallel"] == alphas["none"]
    rows = {name: _rundir.read_jsonl(os.path.join(root, name,
                                                  "metrics.jsonl"))
            for name in ("none", "data_parallel")}
    for one, other in zip(rows["none"], rows["data_parallel"]):
        # Test accuracy: the same 360 predictions.
        assert other["test_accuracy"] == pytest.approx(
            one["test_accuracy"], abs=1 / 360 + 1e-9)
    assert keras.distribution.distribution() is None  # Restored after.


def test_global_batch_not_divisible_by_devices_fails_before_training(
        tmp_path):
    run_dir = str(tmp_path / "odd")
    with pytest.raises(ValueError, match=r"divisible by the 2 replicas.*"
                                         r"batch_size=63"):
        train.run(output_dir=run_dir, distribution="data_parallel",
                  **{**_ARGUMENTS, "batch_size": 63})
    assert not os.path.exists(run_dir)


def test_num_replicas_of_data_parallel_is_the_device_count():
    assert _distribution.num_replicas(_distribution.make_data_parallel()) == 2
    assert _distribution.num_replicas(None) == 1
