"""Tests for experiments/train.py on every backend: run folder, SIGKILL, NaN."""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import rlr_keras
from absl import flags
from rlr_keras import random_factor
from tensorboard.backend.event_processing import event_file_loader
from tensorboardX.proto import api_pb2
from tensorboardX.proto import plugin_hparams_pb2

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EXPERIMENTS = os.path.join(_REPO, "experiments")

from _helpers import weights as _weights  # noqa: E402
from rlr_keras.experiment import _rundir  # noqa: E402
from rlr_keras.experiment import _train as train  # noqa: E402
from rlr_keras.experiment.commands import train as train_command  # noqa: E402

_BACKEND = keras.backend.backend()


# Model 1 on the bundled digits: small and offline. batch_size=64 gives 23
# steps per epoch.
_TINY = dict(model="mlp", dataset="digits",
             protocol="random",
             learning_rate=0.05, batch_size=64, epochs=2, seed=3,
             deterministic=True, verbose=0)
_PROBE = 32
# Subprocesses import this checkout's rlr_keras and experiments.
_ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                    PYTHONPATH=os.pathsep.join([_REPO, _EXPERIMENTS]))


def _without_wall_time(rows):
    return [{k: v for k, v in row.items() if k != "wall_time_s"}
            for row in rows]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("runs") / "random")
    summary = train.run(output_dir=output_dir, temperature_probe=_PROBE,
                        **_TINY)
    return output_dir, summary


def test_run_folder_is_complete(finished_run):
    output_dir, summary = finished_run
    names = set(os.listdir(output_dir))
    assert {"flags.cfg", "config.json", "status.json", "metrics.jsonl",
            "summary.json", "model.weights.h5", "model.keras",
            "tensorboard"} <= names
    assert "backup" not in names  # removed once done.
    assert ".lock" not in names  # removed once the run ends.
    assert not [n for n in names if n.endswith(".tmp")]
    assert _rundir.read_status(output_dir) == "done"
    assert set(_rundir.SUMMARY_KEYS) <= set(summary)
    assert summary == _rundir.read_json(os.path.join(output_dir,
                                                     "summary.json"))
    assert summary["num_parameters"] == 8 * 8 * 100 + 100 + 100 * 10 + 10
    config = _rundir.read_json(os.path.join(output_dir, "config.json"))
    assert config["versions"]["backend"] == _BACKEND
    assert _BACKEND in config["versions"]
    # Provenance: the commit of the rlr_keras in use (this checkout).
    package = os.path.dirname(os.path.abspath(rlr_keras.__file__))
    head = subprocess.run(["git", "-C", package, "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True)
    assert config["source"]["commit"] == head.stdout.strip()
    assert isinstance(config["source"]["dirty"], bool)
    # T/D of eq. 20: l / (2 C (1 - mu)).
    np.testing.assert_allclose(summary["temperature_over_d"],
                               0.05 / (2 * 64 * (1 - 0.9)))
    events = os.listdir(os.path.join(output_dir, "tensorboard", "train"))
    assert any(name.startswith("events.out.tfevents") for name in events)


def test_model_keras_loads_with_the_final_weights(finished_run):
    output_dir, _ = finished_run
    loaded = keras.saving.load_model(os.path.join(output_dir, "model.keras"))
    assert isinstance(loaded.optimizer, rlr_keras.RandomLRSGD)
    reference = keras.models.clone_model(loaded)
    reference.load_weights(os.path.join(output_dir, "model.weights.h5"))
    for got, want in zip(loaded.weights, reference.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got),
                                      keras.ops.convert_to_numpy(want))
    # The optimizer's state too: the step counter of the 2 x 23 steps.
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 46


def test_train_subset_is_the_first_examples_of_the_split(tmp_path):
    data = rlr_keras.load_dataset("digits")
    arguments = dict(_TINY, epochs=1)
    subset = train.run(output_dir=str(tmp_path / "subset"), train_subset=128,
                       **arguments)
    arrays = train.run(
        output_dir=str(tmp_path / "arrays"),
        **dict(arguments, dataset=(
            (data.train_images[:128], data.train_labels[:128]),
            (data.test_images, data.test_labels))))
    assert subset["final_test_loss"] == arrays["final_test_loss"]
    rows = {name: _without_wall_time(_rundir.read_jsonl(
        str(tmp_path / name / "metrics.jsonl"))) for name in ("subset",
                                                            "arrays")}
    assert rows["subset"] == rows["arrays"]
    config = _rundir.read_json(str(tmp_path / "subset" / "config.json"))
    assert config["arguments"]["train_subset"] == 128
    with open(tmp_path / "subset" / "flags.cfg", encoding="utf-8") as f:
        assert "--train_subset=128\n" in f.read()


def test_run_recorded_with_weight_decay_is_the_same_run(finished_run,
                                                        tmp_path):
    # Runs recorded before 0.2.0 name the coupled decay weight_decay.
    old = str(tmp_path / "old")
    shutil.copytree(finished_run[0], old)
    path = os.path.join(old, "config.json")
    config = _rundir.read_json(path)
    arguments = config["arguments"]
    arguments["weight_decay"] = arguments.pop("coupled_weight_decay")
    del arguments["train_subset"]
    _rundir.write_json(path, config)
    assert train.run(output_dir=old, temperature_probe=_PROBE,
                     **_TINY) == finished_run[1]


def test_weight_decay_argument_says_which_decay_is_which(tmp_path):
    with pytest.raises(TypeError, match="weight_decay is not an argument of "
                       "a run: Keras' weight_decay .* is decoupled.* "
                       "coupled_weight_decay"):
        train.run(output_dir=str(tmp_path / "run"), weight_decay=1e-3,
                  **_TINY)
    assert not os.path.exists(tmp_path / "run")


def test_metrics_are_sane(finished_run):
    output_dir, summary = finished_run
    rows = _rundir.read_jsonl(os.path.join(output_dir, "metrics.jsonl"))
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        for key in ("train_loss", "test_loss"):
            assert np.isfinite(row[key]) and row[key] > 0
        for key in ("train_accuracy", "test_accuracy"):
            assert 0.0 <= row[key] <= 1.0
        np.testing.assert_allclose(row["learning_rate"], 0.05, rtol=1e-6)
        if _PROBE:
            assert row["diffusion"] > 0 and row["temperature"] > 0
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["test_accuracy"] > 0.5  # 10 classes: chance is 0.1.
    assert summary["final_test_accuracy"] == rows[-1]["test_accuracy"]
    assert summary["best_test_accuracy"] == max(
        row["test_accuracy"] for row in rows)
    for row in rows:  # --evaluate_train (default) and LearningRateMonitor.
        assert row["train_eval_loss"] > 0
        assert 0.0 <= row["train_eval_accuracy"] <= 1.0
        assert 0.0 <= row["alpha_mean"] <= 2.0 and row["alpha_std"] > 0
    assert summary["final_train_eval_accuracy"] == rows[-1][
        "train_eval_accuracy"]
    np.testing.assert_allclose(
        summary["generalization_gap"],
        rows[-1]["train_eval_accuracy"] - rows[-1]["test_accuracy"])


def test_evaluating_the_training_set_changes_no_training_result(tmp_path):
    rows = {}
    for evaluate_train in (False, True):
        output_dir = str(tmp_path / str(evaluate_train))
        train.run(output_dir=output_dir, evaluate_train=evaluate_train,
                  **_TINY)
        rows[evaluate_train] = _without_wall_time(
            _rundir.read_jsonl(os.path.join(output_dir, "metrics.jsonl")))
    for row in rows[True]:
        del row["train_eval_loss"], row["train_eval_accuracy"]
    assert rows[True] == rows[False]


def test_hparams_session_has_the_real_status(finished_run):
    output_dir, _ = finished_run
    contents = {}
    for path in glob.glob(os.path.join(output_dir, "tensorboard",
                                       "events.out.tfevents*")):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                contents[value.tag] = plugin_hparams_pb2.HParamsPluginData(
                    ).FromString(value.metadata.plugin_data.content)
    start = contents["_hparams_/session_start_info"].session_start_info
    assert start.hparams["protocol"].string_value == "random"
    assert start.hparams["learning_rate"].number_value == 0.05
    assert start.group_name == "random"
    end = contents["_hparams_/session_end_info"].session_end_info
    assert end.status == api_pb2.Status.Value("STATUS_SUCCESS")


def test_failed_run_ends_its_hparams_session_with_failure(tmp_path):
    log_dir = str(tmp_path)
    _rundir.write_hparams_session_end(log_dir, success=False)
    (path,) = [os.path.join(log_dir, name) for name in os.listdir(log_dir)]
    (event,) = [e for e in event_file_loader.EventFileLoader(path).Load()
                if e.summary.value]
    content = plugin_hparams_pb2.HParamsPluginData.FromString(
        event.summary.value[0].metadata.plugin_data.content)
    assert content.session_end_info.status == api_pb2.Status.Value(
        "STATUS_FAILURE")


def test_flags_file_replays_the_run(finished_run):
    output_dir, _ = finished_run
    config = _rundir.read_json(os.path.join(output_dir, "config.json"))
    try:
        flags.FLAGS(["train.py",
                     f"--flagfile={os.path.join(output_dir, 'flags.cfg')}"])
        assert train_command.arguments_from_flags() == config["arguments"]
    finally:
        flags.FLAGS.unparse_flags()


def test_done_run_is_not_trained_again(finished_run):
    output_dir, summary = finished_run
    before = os.path.getmtime(os.path.join(output_dir, "metrics.jsonl"))
    assert train.run(output_dir=output_dir, temperature_probe=_PROBE,
                     **_TINY) == summary
    assert os.path.getmtime(os.path.join(output_dir, "metrics.jsonl")) == before


def test_the_same_folder_by_another_path_is_the_same_run(finished_run,
                                                        tmp_path,
                                                        monkeypatch):
    # The folder is the run: a trailing slash, a relative path, or a copy
    # of the folder elsewhere is the same (done) run, not "other arguments".
    output_dir, summary = finished_run
    copy = str(tmp_path / "moved")
    shutil.copytree(output_dir, copy)
    monkeypatch.chdir(os.path.dirname(output_dir))
    for path in (output_dir + os.sep, os.path.basename(output_dir), copy):
        assert train.run(output_dir=path, temperature_probe=_PROBE,
                         **_TINY) == summary


def test_other_arguments_in_same_folder_is_an_error(finished_run):
    output_dir, _ = finished_run
    with pytest.raises(ValueError, match="other arguments.*learning_rate"):
        train.run(output_dir=output_dir, temperature_probe=_PROBE,
                  **{**_TINY, "learning_rate": 0.1})


@pytest.mark.slow
def test_steps_per_execution_and_backups_change_no_result(tmp_path):
    # 1437 digits in batches of 48: 30 steps per epoch, 30 per call by
    # default (1 on PyTorch); backups after every epoch or none at all.
    arguments = dict(_TINY, batch_size=48)
    results = []
    for extra in (dict(steps_per_execution=1, backup_every_s=0.0),
                  dict(), dict(steps_per_execution=5, backup_every_s=1e9)):
        if _BACKEND == "torch" and extra.get("steps_per_execution", 1) > 1:
            continue  # Keras runs one step per call on PyTorch.
        output_dir = str(tmp_path / str(len(results)))
        train.run(output_dir=output_dir, **arguments, **extra)
        rows = _rundir.read_jsonl(os.path.join(output_dir, "metrics.jsonl"))
        results.append((_without_wall_time(rows), _weights(
            os.path.join(output_dir, "model.weights.h5"))))
    reference_rows, reference_weights = results[0]
    for rows, weights in results[1:]:
        assert rows == reference_rows
        assert weights.keys() == reference_weights.keys()
        for name, value in reference_weights.items():
            np.testing.assert_array_equal(weights[name], value, err_msg=name)


def test_default_steps_per_execution_divides_the_epoch():
    config = train.Config()
    assert train._steps_per_execution(config, 235, "tensorflow") == 47
    assert train._steps_per_execution(config, 196, "jax") == 49
    assert train._steps_per_execution(config, 30, "tensorflow") == 30
    assert train._steps_per_execution(config, 23, "tensorflow") == 23
    assert train._steps_per_execution(config, 67, "tensorflow") == 1
    assert train._steps_per_execution(config, 235, "torch") == 1
    assert train._steps_per_execution(
        train.Config(steps_per_execution=5), 235, "tensorflow") == 5
    assert train._steps_per_execution(config, 235, "tensorflow",
                                      tf_strategy=True) == 1
    with pytest.raises(ValueError, match="does not work under tf.distribute"):
        train._steps_per_execution(train.Config(steps_per_execution=5), 235,
                                   "tensorflow", tf_strategy=True)


@pytest.mark.slow
@pytest.mark.parametrize("backup_every_s", [0.0, 1e9])
def test_resume_after_sigkill_is_identical(tmp_path, backup_every_s):
    # Backups after every epoch (resumes after epoch 1), or none yet (starts
    # over): the same run either way.
    arguments = dict(_TINY, epochs=3, backup_every_s=backup_every_s)
    reference = str(tmp_path / "reference")
    train.run(output_dir=reference, **arguments)

    # Killed right after epoch 2's metrics row is written and before its
    # backup: the worst moment, the next attempt must redo epoch 2.
    resumed = str(tmp_path / "resumed")
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        from rlr_keras.experiment import _callbacks
        from rlr_keras.experiment import _train as train
        from rlr_keras.experiment.commands import train as train_command

        record = _callbacks.MetricsRecorder.on_epoch_end

        def record_then_kill(self, epoch, logs=None):
            record(self, epoch, logs)
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        _callbacks.MetricsRecorder.on_epoch_end = record_then_kill
        train.run(output_dir={resumed!r}, **{arguments!r})
    """))
    completed = subprocess.run([sys.executable, str(script)], cwd=_REPO,
                               env=_ENVIRONMENT, capture_output=True,
                               timeout=180, check=False)
    assert completed.returncode == -9, completed.stderr.decode()[-3000:]
    assert _rundir.read_status(resumed) == "running"
    assert len(_rundir.read_jsonl(os.path.join(resumed, "metrics.jsonl"))) == 2
    metadata = os.path.join(resumed, "backup", "training_metadata.json")
    if backup_every_s:
        assert not os.path.exists(metadata)
    else:
        with open(metadata) as f:
            assert json.load(f)["epoch"] == 1

    train.run(output_dir=resumed, **arguments)  # The same command again.

    assert _rundir.read_status(resumed) == "done"
    rows = _rundir.read_jsonl(os.path.join(resumed, "metrics.jsonl"))
    reference_rows = _rundir.read_jsonl(os.path.join(reference,
                                                     "metrics.jsonl"))
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert _without_wall_time(rows) == _without_wall_time(reference_rows)
    summary = _rundir.read_json(os.path.join(resumed, "summary.json"))
    reference_summary = _rundir.read_json(os.path.join(reference,
                                                       "summary.json"))
    del summary["wall_time_s"], reference_summary["wall_time_s"]
    assert summary == reference_summary
    weights = _weights(os.path.join(resumed, "model.weights.h5"))
    reference_weights = _weights(os.path.join(reference, "model.weights.h5"))
    assert weights.keys() == reference_weights.keys()
    assert any("optimizer" in name for name in weights)  # iterations too.
    for name, value in reference_weights.items():
        np.testing.assert_array_equal(weights[name], value, err_msg=name)


def test_nan_loss_fails_the_run_with_a_reason(tmp_path):
    output_dir = str(tmp_path / "diverged")
    with pytest.raises(FloatingPointError, match="training loss became"):
        train.run(output_dir=output_dir,
                  **dict(_TINY, protocol="constant", learning_rate=1e30))
    status = _rundir.read_json(os.path.join(output_dir, "status.json"))
    assert status["status"] == "failed"
    assert "FloatingPointError: training loss became" in status["error"]
    assert not os.path.exists(os.path.join(output_dir, "summary.json"))
    # The diverged epoch is recorded nowhere.
    assert _rundir.read_jsonl(os.path.join(output_dir, "metrics.jsonl")) == []


@pytest.mark.parametrize("arguments, message", [
    (dict(protocol="cyclic"), "period is required"),
    (dict(protocol="constant", period=6.0), "period must be None"),
    (dict(protocol="random", delta=0.0), "delta must be in"),
    (dict(protocol="constant", delta=1.0), "delta must be 0"),
    (dict(batch_size=0), "batch_size"),
    (dict(dataset="idx"), "needs a folder"),
    (dict(model="resnet"), "model must be one of mlp, cnn, vgg16, MODULE"),
    (dict(protocol="sometimes"), "--protocol must be one of"),
    (dict(backup_every_s=-1.0), "--backup_every_s must be a finite number"),
    (dict(backup_every_s=float("nan")), "--backup_every_s must be a finite"),
    (dict(steps_per_execution=0), "--steps_per_execution must be an integer"),
    (dict(steps_per_execution=7), "does not divide the 23 steps"),
    (dict(train_subset=0), r"--train_subset must be an integer in \[1, "),
    (dict(train_subset=True), r"--train_subset must be an integer in \[1, "),
    (dict(train_subset=1438), "--train_subset=1438 is larger than the "
     "training set [(]1437 examples[)]; use at most 1437"),
])
def test_invalid_arguments_fail_before_training(tmp_path, arguments, message):
    output_dir = str(tmp_path / "bad")
    with pytest.raises(ValueError, match=message):
        train.run(output_dir=output_dir, **{**_TINY, **arguments})
    assert not os.path.exists(output_dir)


@pytest.mark.parametrize("argv", [
    ["--protocol=sometimes"],
    ["--model=resnet"],
    ["--batch_size=0"],
    ["--seed=-1"],
    ["--train_subset=0"],
    ["--weight_decay=0.001"],
])
def test_invalid_flags_are_rejected_at_parse_time(argv):
    try:
        with pytest.raises(flags.Error):
            flags.FLAGS(["train.py", "--output_dir=/nonexistent"] + argv)
    finally:
        flags.FLAGS.unparse_flags()


def test_flag_choices_are_the_library_lists():
    def choices(name):
        return tuple(flags.FLAGS[name].parser.enum_values)

    assert choices("protocol") == rlr_keras.PROTOCOLS
    assert train_command._MODEL_NAMES == rlr_keras.MODEL_NAMES
    assert ", ".join(rlr_keras.MODEL_NAMES) in flags.FLAGS["model"].help
    assert train_command._SEED_MAX == random_factor.SEED_MAX


@pytest.mark.parametrize("distribution, backend", [
    ("mirrored", "tensorflow"), ("multi_worker", "tensorflow"),
    ("data_parallel", "jax")])
def test_distribution_of_another_backend_is_refused_before_training(
        tmp_path, distribution, backend):
    if _BACKEND == backend:
        pytest.skip(f"{distribution} runs on {backend}")
    output_dir = str(tmp_path / "wrong_backend")
    with pytest.raises(ValueError, match=rf"distribution='{distribution}' "
                                         rf"needs the {backend} Keras"):
        train.run(output_dir=output_dir, distribution=distribution, **_TINY)
    assert not os.path.exists(output_dir)


@pytest.mark.slow
def test_vgg16_trains_one_epoch_on_cifar_format_files(tmp_path):
    from _helpers import write_cifar_folder  # pylint: disable=import-outside-toplevel

    write_cifar_folder(tmp_path / "cifar", per_batch=8, xz=True)
    summary = train.run(
        output_dir=str(tmp_path / "vgg16"), model="vgg16",
        dataset=f"cifar10_batches:{tmp_path / 'cifar'}", vgg_weights="none",
        protocol=_TINY["protocol"], learning_rate=1e-3, batch_size=8,
        epochs=1, seed=0, verbose=0)
    assert summary["epochs"] == 1
    assert np.isfinite(summary["final_train_loss"])
    assert 0.0 <= summary["final_test_accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.backend_independent
def test_train_py_runs_on_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    output_dir = str(tmp_path / "no_tf")
    program = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None
        sys.modules["tensorflow_datasets"] = None
        sys.argv = ["train.py", "--dataset=digits", "--epochs=1",
                    "--verbose=0", "--output_dir={output_dir}"]
        import runpy
        runpy.run_path({os.path.join(_EXPERIMENTS, "train.py")!r},
                       run_name="__main__")
    """)
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=_REPO, capture_output=True,
        text=True, timeout=180, check=False,
        env=dict(_ENVIRONMENT, KERAS_BACKEND="jax"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert _rundir.read_status(output_dir) == "done"
    config = _rundir.read_json(os.path.join(output_dir, "config.json"))
    assert config["versions"]["backend"] == "jax"
    assert "tensorflow" not in config["versions"]


# BackupAndRestore's files -------------------------------------------------


@pytest.fixture
def keras_backup(tmp_path):
    """A BackupAndRestore folder after 2 epochs of 4 steps; returns it."""
    from rlr_keras import RandomLRSGD  # pylint: disable=import-outside-toplevel

    backup_dir = str(tmp_path / "backup")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=RandomLRSGD(0.01, momentum=0.9, seed=0),
                  loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), batch_size=2, epochs=2,
              verbose=0, callbacks=[keras.callbacks.BackupAndRestore(
                  backup_dir, double_checkpoint=True,
                  delete_checkpoint=False)])
    return backup_dir


def test_keras_backup_files_are_where_train_py_looks(keras_backup):
    # Fails if Keras renames BackupAndRestore's private files or moves the
    # step counter in its weights files: train._backup_files then needs
    # updating.
    (weights, metadata), (old_weights, old_metadata) = train._backup_files(
        keras_backup)
    assert sorted(os.listdir(keras_backup)) == sorted(
        os.path.basename(path)
        for path in (weights, metadata, old_weights, old_metadata))
    assert _rundir.read_json(metadata)["epoch"] == 2
    assert _rundir.read_json(old_metadata)["epoch"] == 1
    assert train._saved_iterations(weights) == 8
    assert train._saved_iterations(old_weights) == 4
    assert train._resume_epoch(keras_backup, steps_per_epoch=4) == 2


def test_torn_backup_weights_fall_back_to_the_previous_pair(keras_backup):
    (weights, metadata), (old_weights, _) = train._backup_files(keras_backup)
    with open(weights, "r+b") as f:
        f.truncate(100)
    assert train._resume_epoch(keras_backup, steps_per_epoch=4) == 1
    assert _rundir.read_json(metadata)["epoch"] == 1
    assert train._saved_iterations(weights) == 4
    with open(weights, "rb") as f, open(old_weights, "rb") as g:
        assert f.read() == g.read()


def test_weights_newer_than_metadata_fall_back(keras_backup):
    # A kill between Keras' weights write and its metadata write.
    (_, metadata), _ = train._backup_files(keras_backup)
    _rundir.write_json(metadata, {"epoch": 1, "batch": 0})
    assert train._resume_epoch(keras_backup, steps_per_epoch=4) == 1


def test_torn_metadata_falls_back(keras_backup):
    (_, metadata), _ = train._backup_files(keras_backup)
    with open(metadata, "w") as f:
        f.write('{"epo')
    assert train._resume_epoch(keras_backup, steps_per_epoch=4) == 1


def test_unusable_backup_starts_over(keras_backup):
    for weights, _ in train._backup_files(keras_backup):
        with open(weights, "r+b") as f:
            f.truncate(10)
    assert train._resume_epoch(keras_backup, steps_per_epoch=4) == 0
    assert not os.path.exists(keras_backup)


def test_hparams_experiment_lists_the_hparams_and_metrics(tmp_path):
    # The sweep root's summary; runs write their own sessions.
    _rundir.write_hparams_experiment(
        str(tmp_path), {"protocol": ["constant", "random"],
                        "learning_rate": [0.05]},
        [("validation", "epoch_accuracy"),
         ("", "epoch_train_eval_accuracy", "Evaluated train accuracy.")])
    (path,) = glob.glob(str(tmp_path / "events.out.tfevents*"))
    (event,) = [e for e in event_file_loader.EventFileLoader(path).Load()
                if e.summary.value]
    experiment = plugin_hparams_pb2.HParamsPluginData.FromString(
        event.summary.value[0].metadata.plugin_data.content).experiment
    assert [info.name for info in experiment.hparam_infos] == [
        "protocol", "learning_rate"]
    assert [(info.name.group, info.name.tag)
            for info in experiment.metric_infos] == [
        ("validation", "epoch_accuracy"), ("", "epoch_train_eval_accuracy")]
