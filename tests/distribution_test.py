"""Tests of data-parallel training (experiments/_distribution.py).

MirroredStrategy runs in this process over the two logical CPU devices of
conftest.py. MultiWorkerMirroredStrategy runs as two worker processes
(tests/_multi_worker_script.py) on 127.0.0.1; every process is started in
its own session, waited for with a hard timeout, and its process group is
killed in `finally`, so a stuck collective can never hang the suite.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow_only
tf = pytest.importorskip("tensorflow")

from rlr_keras.experiment import _distribution
from _helpers import free_ports
from _helpers import kill_group
from _helpers import log_tail
from _helpers import PROCESS_TIMEOUT_S
from _helpers import wait_all
from _helpers import worker_env
import _multi_worker_script as worker
from rlr_keras.experiment import _rundir

from rlr_keras import RandomLRSGD
from rlr_keras.models import build_model

_TESTS = os.path.dirname(os.path.abspath(__file__))

_DEVICES = ["/cpu:0", "/cpu:1"]
_WEIGHT_ATOL = 1e-5


def _mirrored():
    return _distribution.make_strategy("mirrored", devices=_DEVICES)


def _max_abs_diff(a, b):
    assert len(a) == len(b)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(a, b))


# ---------------------------------------------------------------------------
# Strategy, batch size, files.


def test_make_strategy_none_is_the_default_strategy():
    strategy = _distribution.make_strategy("none")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_make_strategy_mirrored_uses_the_given_devices():
    strategy = _mirrored()
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="horovod"), "distribution must be one of"),
    (dict(name="none", devices=["/cpu:0"]), "devices applies only"),
    (dict(name="mirrored", collective_timeout_s=10), "collective_timeout_s"),
])
def test_make_strategy_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _distribution.make_strategy(**kwargs)


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment"):
        _distribution.make_strategy("multi_worker")


@pytest.mark.parametrize("text, match", [
    ("{not json", "TF_CONFIG must be JSON"),
    ('{"task": {"type": "worker", "index": 0}}', r"TF_CONFIG\['cluster'\]"),
    ('{"cluster": {"worker": ["localhost"]}, '
     '"task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', r"TF_CONFIG\['task'\]"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, '
     '"task": {"type": "worker", "index": 2}}', "index=2"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "type='ps'"),
])
def test_invalid_tf_config_is_a_clear_error(text, match):
    with pytest.raises(ValueError, match=match):
        _distribution.parse_tf_config({"TF_CONFIG": text})


def test_parse_tf_config_returns_the_cluster():
    config = _distribution.parse_tf_config({"TF_CONFIG": json.dumps({
        "cluster": {"worker": ["host1:12345", "host2:12345"]},
        "task": {"type": "worker", "index": 1}})})
    assert config["task"] == {"type": "worker", "index": 1}


def test_replica_batch_size_divides_the_global_batch():
    assert _distribution.replica_batch_size(
        256, _distribution.make_strategy("none")) == 256
    assert _distribution.replica_batch_size(256, _mirrored()) == 128


def test_uneven_global_batch_is_an_error_naming_both_numbers():
    with pytest.raises(ValueError, match=r"divisible by the 2 replicas.*"
                                         r"batch_size=33"):
        _distribution.replica_batch_size(33, _mirrored())


@pytest.mark.parametrize("bad", [0, -4, 32.0, True, "32"])
def test_replica_batch_size_rejects_non_positive_ints(bad):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        _distribution.replica_batch_size(bad, _mirrored())


def test_xla_is_refused_under_a_strategy():
    _distribution.check_jit_compile(True, _distribution.make_strategy("none"))
    _distribution.check_jit_compile(False, _mirrored())
    with pytest.raises(ValueError, match="jit_compile must be False"):
        _distribution.check_jit_compile(True, _mirrored())


def test_chief_writes_the_run_dir_other_workers_a_temporary_dir(tmp_path):
    run_dir = str(tmp_path / "run")
    for strategy in (_distribution.make_strategy("none"), _mirrored()):
        assert _distribution.is_chief(strategy)
        assert _distribution.write_dir(run_dir, strategy) == run_dir
        assert _distribution.backup_dir(run_dir, strategy) == os.path.join(
            run_dir, "backup")
    # A non-chief worker, as MultiWorkerMirroredStrategy describes it.
    other = types.SimpleNamespace(
        extended=types.SimpleNamespace(should_checkpoint=False),
        cluster_resolver=types.SimpleNamespace(task_type="worker", task_id=1))
    assert not _distribution.is_chief(other)
    # Workers back up together (train.py ignores --backup_every_s there).
    assert _distribution.is_multi_worker(other)
    assert not any(_distribution.is_multi_worker(strategy) for strategy in (
        None, _distribution.make_strategy("none"), _mirrored()))
    own = os.path.join(run_dir, "workertemp_1")
    assert _distribution.write_dir(run_dir, other) == own
    # It resumes from the chief's backup when it can see it.
    os.makedirs(os.path.join(run_dir, "backup"))
    _rundir.write_text(os.path.join(run_dir, "backup", "state"), "chief")
    _rundir.write_text(os.path.join(own, "backup", "state"), "stale")
    assert _distribution.backup_dir(run_dir, other) == os.path.join(
        own, "backup")
    with open(os.path.join(own, "backup", "state")) as f:
        assert f.read() == "chief"
    _distribution.remove_write_dir(run_dir, other)
    assert not os.path.exists(own)
    assert os.path.isdir(os.path.join(run_dir, "backup"))


def test_distribute_dataset_splits_each_global_batch_in_order():
    strategy = _mirrored()
    data = np.arange(64, dtype=np.float32).reshape(16, 4)
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(8)
    distributed = _distribution.distribute_dataset(dataset, strategy)
    batches = []
    for batch in distributed:
        parts = [p.numpy() for p in strategy.experimental_local_results(batch)]
        assert [len(p) for p in parts] == [4, 4]
        batches.append(np.concatenate(parts))
    np.testing.assert_array_equal(np.concatenate(batches), data)


# ---------------------------------------------------------------------------
# MirroredStrategy over two logical CPU devices.


class _AlphaRecordingSGD(RandomLRSGD):
    """RandomLRSGD that also stores, per variable, the alpha it applied.

    Under a strategy Keras runs `update_step` once per device copy of each
    variable, so the per-device copies of `applied_alphas` hold the alpha
    that each replica computed at the last step.
    """

    def build(self, variables):
        super().build(variables)
        self.applied_alphas = [
            self.add_variable((), initializer="zeros", name=f"alpha_{i}")
            for i in range(len(variables))]

    def update_step(self, gradient, variable, learning_rate):
        slot = self.applied_alphas[self._get_variable_index(variable)]
        self.assign(slot, self.alpha_at(self.iterations))
        super().update_step(gradient, variable, learning_rate)


def _fit_model_1(strategy, images, labels, *, global_batch_size, epochs,
                 record):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(
        global_batch_size)
    dataset = _distribution.distribute_dataset(dataset, strategy)
    with strategy.scope():
        model = build_model("mlp", (28, 28, 1), 10, seed=0)
        optimizer = _AlphaRecordingSGD(**worker.OPTIMIZER_KWARGS)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    per_step = []

    def on_batch_end(batch, logs=None):
        step = int(optimizer.iterations.numpy()) - 1
        per_step.append([
            [float(c) for c in _device_copies(slot)]
            for slot in optimizer.applied_alphas] + [
            [float(optimizer.alpha_at(step))]])

    callbacks = [keras.callbacks.LambdaCallback(
        on_train_batch_end=on_batch_end)] if record else []
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=callbacks,
              shuffle=False)
    return model, optimizer, per_step


def _device_copies(variable):
    value = variable.value
    return [v.numpy() for v in getattr(value, "values", (value,))]


def test_mirrored_matches_single_device_with_the_same_alpha_on_each_replica():
    images, labels = worker.make_data(128)
    kwargs = dict(global_batch_size=32, epochs=2)
    single, _, _ = _fit_model_1(
        _distribution.make_strategy("none"), images, labels, record=False,
        **kwargs)
    strategy = _mirrored()
    _distribution.replica_batch_size(32, strategy)
    mirrored, optimizer, per_step = _fit_model_1(
        strategy, images, labels, record=True, **kwargs)

    assert int(optimizer.iterations.numpy()) == 8
    assert _max_abs_diff(mirrored.get_weights(),
                         single.get_weights()) < _WEIGHT_ATOL
    # At every step each replica applied the same alpha to every variable,
    # and it is the alpha of the step.
    assert len(per_step) == 8
    for step, record in enumerate(per_step):
        *per_variable, (expected,) = record
        assert expected == float(optimizer.alpha_at(step))
        for copies in per_variable:
            assert copies == [expected, expected], (step, copies)
    # alpha computed inside strategy.run agrees on both replicas.
    alphas = strategy.experimental_local_results(
        strategy.run(lambda: optimizer.alpha_at(optimizer.iterations)))
    assert len(alphas) == 2 and float(alphas[0]) == float(alphas[1])
    # Every mirrored variable, model and optimizer, never diverged.
    for variable in mirrored.weights + optimizer.variables:
        copies = _device_copies(variable)
        assert len(copies) == 2, variable.path
        np.testing.assert_array_equal(copies[0], copies[1],
                                      err_msg=variable.path)


# ---------------------------------------------------------------------------
# MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.


@contextlib.contextmanager
def _workers(tmp_path, run_dir, tag, *extra_args):
    """Starts two workers; yields [(process, output, log)]; kills them after."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    started = []
    try:
        for index in range(2):
            output = str(tmp_path / f"{tag}_worker{index}.npz")
            log = str(tmp_path / f"{tag}_worker{index}.log")
            with open(log, "wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, os.path.join(_TESTS,
                                                  "_multi_worker_script.py"),
                     f"--run_dir={run_dir}", f"--output={output}",
                     "--distribution=multi_worker", *extra_args],
                    env=worker_env({"worker": hosts}, index),
                    stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, start_new_session=True)
            started.append((process, output, log))
        yield started
    finally:
        for process, _, _ in started:
            kill_group(process)


def _load(output):
    with np.load(output) as f:
        weights = [f[f"w{i}"] for i in range(sum(
            k.startswith("w") for k in f.files))]
        return {"weights": weights, "alphas": f["alphas"].tolist(),
                "iterations": int(f["iterations"]),
                "epochs_run": int(f["epochs_run"])}


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
    """The reference: the same training, one process, no strategy."""
    run_dir = str(tmp_path_factory.mktemp("single") / "run")
    return worker.train(_distribution.make_strategy("none"), run_dir)


def _assert_complete_chief_run_dir(run_dir):
    assert _rundir.read_status(run_dir) == _rundir.DONE
    summary = _rundir.read_json(os.path.join(run_dir, _rundir.SUMMARY_FILE))
    assert summary["num_replicas"] == 2
    assert summary["iterations"] == worker.EPOCHS * (
        worker.NUM_EXAMPLES // worker.GLOBAL_BATCH_SIZE)
    events = [name for folder, _, names in os.walk(
        os.path.join(run_dir, _rundir.TENSORBOARD_DIR))
        for name in names if name.startswith("events.out.tfevents")]
    assert events
    # The backup is removed once training is done; worker folders too.
    leftovers = [name for name in os.listdir(run_dir)
                 if name == _rundir.BACKUP_DIR or name.startswith("workertemp")]
    assert not leftovers, leftovers


def _assert_matches_reference(results, reference):
    for index, result in enumerate(results):
        assert result["iterations"] == reference["iterations"]
        assert _max_abs_diff(result["weights"],
                             reference["weights"]) < _WEIGHT_ATOL, index
    # Synchronous training: the workers hold bit-identical weights.
    assert _max_abs_diff(results[0]["weights"], results[1]["weights"]) == 0


@pytest.mark.slow
def test_two_workers_match_one_process(tmp_path, single_process_run):
    run_dir = str(tmp_path / "run")
    with _workers(tmp_path, run_dir, "clean") as started:
        wait_all(started)
    results = [_load(output) for _, output, _ in started]
    _assert_matches_reference(results, single_process_run)
    # Each worker applied the reference's alpha at every step.
    for result in results:
        assert result["alphas"] == pytest.approx(
            single_process_run["alphas"], abs=0)
        assert result["epochs_run"] == worker.EPOCHS
    _assert_complete_chief_run_dir(run_dir)


@pytest.mark.slow
def test_killed_worker_fails_the_job_which_then_resumes(
        tmp_path, single_process_run):
    run_dir = str(tmp_path / "run")
    metadata = os.path.join(run_dir, _rundir.BACKUP_DIR,
                            "training_metadata.json")
    with _workers(tmp_path, run_dir, "killed",
                  "--seconds_per_step=0.3") as started:
        (chief, _, chief_log), (other, _, other_log) = started
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while not os.path.exists(metadata):
            for process, _, log in started:
                assert process.poll() is None, (
                    f"a worker exited before the first backup; "
                    f"log:\n{log_tail(log)}")
            assert time.monotonic() < deadline, (
                f"no backup after {PROCESS_TIMEOUT_S} s; "
                f"log:\n{log_tail(chief_log)}")
            time.sleep(0.1)
        os.killpg(other.pid, signal.SIGKILL)
        try:
            chief.wait(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the chief hung {PROCESS_TIMEOUT_S} s after its "
                        f"peer died; log:\n{log_tail(chief_log)}")
        assert chief.returncode != 0, log_tail(chief_log)
        # A TensorFlow error (the peer's missing heartbeats), not a hang.
        assert re.search(r"errors_impl\.\w+Error", log_tail(chief_log)), (
            log_tail(chief_log))
    assert _rundir.read_status(run_dir) == _rundir.RUNNING
    assert os.path.exists(metadata)  # The chief's backup survived.

    # Restarting the same job resumes from the backup, as Keras documents.
    with _workers(tmp_path, run_dir, "resumed") as started:
        wait_all(started)
    results = [_load(output) for _, output, _ in started]
    _assert_matches_reference(results, single_process_run)
    steps = len(results[0]["alphas"])
    assert results[0]["epochs_run"] < worker.EPOCHS and steps > 0
    assert results[0]["alphas"] == single_process_run["alphas"][-steps:]
    _assert_complete_chief_run_dir(run_dir)


def test_make_strategy_returns_one_mirrored_strategy_per_configuration():
    # Two collective MirroredStrategy objects in one process clash (their
    # collective keys collide); in-process sweeps call make_strategy per run.
    first = _distribution.make_strategy("mirrored", devices=_DEVICES)
    assert _distribution.make_strategy("mirrored", devices=_DEVICES) is first


# ---------------------------------------------------------------------------
# The Keras patch for keras-team/keras#20585: version-checked, installed once,
# touching nothing but multi-worker strategies.


def test_keras_multi_worker_patch_applies_to_this_keras():
    from keras.src.backend.tensorflow import trainer as tf_trainer  # noqa: E501  pylint: disable=g-import-not-at-top

    assert _distribution.check_keras_for_multi_worker() is tf_trainer


def test_keras_multi_worker_patch_refuses_a_keras_without_its_names(
        monkeypatch):
    from keras.src.backend.tensorflow import trainer as tf_trainer  # noqa: E501  pylint: disable=g-import-not-at-top

    monkeypatch.delattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build")
    monkeypatch.delattr(tf_trainer, "reduce_per_replica")
    with pytest.raises(RuntimeError,
                       match=rf"Keras {re.escape(keras.__version__)} has no "
                             r"reduce_per_replica, TensorFlowTrainer\."
                             r"_maybe_symbolic_build.*20585"):
        _distribution._patch_keras_for_multi_worker()


def test_keras_multi_worker_patch_is_installed_once_and_delegates(
        monkeypatch):
    from keras.src.backend.tensorflow import trainer as tf_trainer  # noqa: E501  pylint: disable=g-import-not-at-top

    # Undone after the test: the originals come back.
    monkeypatch.setattr(tf_trainer, "_rlr_keras_multi_worker_patch", False,
                        raising=False)
    monkeypatch.setattr(tf_trainer, "reduce_per_replica",
                        tf_trainer.reduce_per_replica)
    monkeypatch.setattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build",
                        tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    original = tf_trainer.reduce_per_replica
    _distribution._patch_keras_for_multi_worker()
    patched = tf_trainer.reduce_per_replica
    assert patched is not original
    _distribution._patch_keras_for_multi_worker()
    assert tf_trainer.reduce_per_replica is patched  # Not wrapped twice.
    # One worker (here MirroredStrategy): exactly the original reduction.
    strategy = _mirrored()
    values = strategy.run(lambda: tf.constant([1.0, 2.0]))
    np.testing.assert_array_equal(
        patched(values, strategy, "concat"),
        original(values, strategy, "concat"))
    np.testing.assert_array_equal(
        patched({"loss": values}, strategy, "auto")["loss"],
        original({"loss": values}, strategy, "auto")["loss"])
