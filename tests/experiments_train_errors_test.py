"""experiments/train.py's user errors: one line, exit 2, the folder untouched.

Each case runs the real script in a subprocess (as a user would) without
`TF_CPP_MIN_LOG_LEVEL`, so that the single stderr line also shows that
TensorFlow's start-up noise is filtered out.
"""

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import pytest
from _helpers import snapshot as _snapshot
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EXPERIMENTS = os.path.join(_REPO, "experiments")

from rlr_keras import _quiet  # noqa: E402
from rlr_keras.experiment import _rundir  # noqa: E402
from rlr_keras.experiment import _train as train  # noqa: E402
from rlr_keras.experiment.commands import _parsing  # noqa: E402
from rlr_keras.experiment.commands import train as train_command  # noqa: E402

pytestmark = pytest.mark.backend_independent

_BACKEND = keras.backend.backend()
_TRAIN = os.path.join(_EXPERIMENTS, "train.py")
_ENVIRONMENT = {k: v for k, v in os.environ.items()
                if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
_ENVIRONMENT["PYTHONPATH"] = _REPO
_TINY = ["--dataset=digits", "--epochs=1", "--batch_size=64", "--verbose=0"]


def _train_py(argv, timeout=180, **kwargs):
    return subprocess.run([sys.executable, _TRAIN, *argv], cwd=_REPO,
                          env=_ENVIRONMENT, capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)


def _assert_one_line_error(completed, *fragments):
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert len(lines) == 1, completed.stderr[-3000:]
    assert lines[0].startswith("train.py: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _assert_fails_cleanly(output_dir, argv, *fragments):
    before = _snapshot(output_dir)
    completed = _train_py(_TINY + [f"--output_dir={output_dir}"] + argv)
    _assert_one_line_error(completed, *fragments)
    assert _snapshot(output_dir) == before


@pytest.mark.parametrize("argv, fragments", [
    (["--learning_rate=0"], ["--learning_rate", "0"]),
    (["--learning_rate=nan"], ["--learning_rate", "nan"]),
    (["--learning_rate=inf"], ["--learning_rate", "inf"]),
    (["--momentum=1.0"], ["--momentum", "[0, 1)", "1.0"]),
    (["--momentum=0", "--nesterov"], ["nesterov", "momentum"]),
    (["--protocol=constant", "--delta=0.5"], ["--delta", "0.5", "constant"]),
    (["--protocol=cyclic", "--period=6", "--delta=0.5"], ["--delta", "0.5"]),
    (["--protocol=cyclic"], ["--period", "cyclic"]),
    (["--protocol=random", "--delta=0"], ["--delta", "(0, 1]"]),
    (["--dataset=idx:/nonexistent"], ["/nonexistent", "train-images"]),
    (["--dataset=idxx:/tmp"], ["idxx:/tmp", "idx:PATH", "digits"]),
    (["--model=cnn"], ["cnn", "--image_size=H,W"]),
    (["--image_size=28"], ["--image_size", "'28'"]),
    (["--batch_size=5000"], ["--batch_size=5000", "1437"]),
    (["--temperature_probe=5000"], ["--temperature_probe=5000", "1437"]),
    # 1437 examples / 64 = 23 steps, a prime.
    (["--steps_per_execution=4"], ["--steps_per_execution=4", "[1, 23]"]),
    (["--distribution=multi_worker"], ["multi_worker"]),
])
def test_invalid_flags_are_one_line_and_touch_nothing(tmp_path, argv,
                                                      fragments):
    _assert_fails_cleanly(str(tmp_path / "run"), argv, *fragments)


def test_empty_output_dir_is_one_line():
    completed = _train_py(_TINY + ["--output_dir="])
    _assert_one_line_error(completed, "--output_dir", "''")


def test_output_dir_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    _assert_fails_cleanly(str(path), [], str(path), "is a file")


def test_unwritable_output_dir_is_one_line(tmp_path):
    # /proc refuses new files even to root, where chmod would not.
    _assert_fails_cleanly("/proc/rlr_keras_test/run", [], "cannot write")


def test_rerun_with_another_argument_is_one_line(tmp_path):
    output_dir = str(tmp_path / "run")
    arguments = dataclasses.asdict(train.Config(
        output_dir=output_dir, dataset="digits", epochs=1, batch_size=64,
        verbose=0, vgg_weights="none", learning_rate=0.1))
    os.makedirs(output_dir)
    _rundir.write_json(os.path.join(output_dir, "config.json"),
                       {"arguments": arguments})
    _assert_fails_cleanly(output_dir, [], "other arguments",
                          "--learning_rate: 0.1 there, 0.005 now")


def test_torn_status_file_is_named(tmp_path):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / "status.json").write_text('{"status": "runn')
    _assert_fails_cleanly(str(output_dir), [],
                          str(output_dir / "status.json"), "not valid JSON")


def test_second_trainer_on_a_folder_is_refused(tmp_path):
    output_dir = str(tmp_path / "run")
    with _rundir.locked(output_dir):
        before = _snapshot(output_dir)
        completed = _train_py(_TINY + [f"--output_dir={output_dir}"])
        _assert_one_line_error(completed, output_dir, "in use by pid "
                               f"{os.getpid()}")
        assert _snapshot(output_dir) == before


def test_lock_is_released_after_the_block(tmp_path):
    output_dir = str(tmp_path / "run")
    with _rundir.locked(output_dir):
        with pytest.raises(_rundir.UserError, match="in use"):
            with _rundir.locked(output_dir):
                pass
    with _rundir.locked(output_dir):
        pass


def test_lock_file_is_removed_when_the_block_ends(tmp_path):
    output_dir = str(tmp_path / "run")
    lock = os.path.join(output_dir, _rundir.LOCK_FILE)
    with _rundir.locked(output_dir):
        assert os.path.exists(lock)
    assert not os.path.exists(lock)
    with pytest.raises(RuntimeError):
        with _rundir.locked(output_dir):
            raise RuntimeError("the run failed")
    assert os.listdir(output_dir) == []


def test_a_lock_taken_on_a_removed_file_is_taken_again(tmp_path,
                                                       monkeypatch):
    # A second trainer that opened .lock just before the first one removed
    # it must not hold a lock on the removed file: it locks the new one.
    output_dir = str(tmp_path / "run")
    os.makedirs(output_dir)
    lock = os.path.join(output_dir, _rundir.LOCK_FILE)
    stat, removed = os.stat, []

    def stat_after_removal(path, *args, **kwargs):
        if path == lock and not removed:
            removed.append(path)
            os.remove(path)  # The first trainer ends right now.
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_after_removal)
    with _rundir.locked(output_dir):
        monkeypatch.setattr(os, "stat", stat)
        assert removed and os.path.exists(lock)
        with pytest.raises(_rundir.UserError, match="in use"):
            with _rundir.locked(output_dir):
                pass


def _parse(argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py"] + argv)


@pytest.fixture
def parsed_flags():
    yield _parse
    flags.FLAGS.unparse_flags()


def test_tfds_without_network_fails_fast(tmp_path, monkeypatch, capsys,
                                         parsed_flags):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(train.socket, "create_connection", no_network)
    output_dir = str(tmp_path / "run")
    parsed_flags(["--dataset=mnist", f"--data_dir={tmp_path / 'tfds'}",
                  "--epochs=1", "--verbose=0", f"--output_dir={output_dir}"])
    start = time.monotonic()
    assert train_command.main(["train.py"]) == 2
    assert time.monotonic() - start < 60  # TFDS itself retries for minutes.
    line = capsys.readouterr().err.strip()
    assert line.startswith("train.py: error: --dataset=mnist")
    assert "Network is unreachable" in line and "idx:PATH" in line
    assert not os.path.exists(output_dir)


def test_vgg16_weights_not_downloadable_is_one_line(tmp_path, monkeypatch,
                                                    capsys, parsed_flags):
    from rlr_keras import models  # pylint: disable=import-outside-toplevel

    def offline(*args, **kwargs):
        raise RuntimeError("vgg_weights='imagenet': Keras could not provide "
                           "the file.\nUse vgg_weights=PATH.")

    monkeypatch.setattr(models, "build_model", offline)
    output_dir = str(tmp_path / "run")
    parsed_flags(["--model=vgg16", "--epochs=1", "--verbose=0",
                  f"--output_dir={output_dir}"])
    assert train_command.main(["train.py"]) == 2
    assert capsys.readouterr().err == (
        "train.py: error: --vgg_weights='imagenet': Keras could not provide "
        "the file. Use vgg_weights=PATH.\n")
    assert not os.path.exists(output_dir)


@pytest.mark.slow
def test_sigterm_records_failed_terminated(tmp_path):
    output_dir = str(tmp_path / "run")
    process = subprocess.Popen(
        [sys.executable, _TRAIN, "--dataset=digits", "--epochs=10000",
         "--batch_size=64", "--verbose=0", "--noevaluate_train",
         f"--output_dir={output_dir}"],
        cwd=_REPO, env=_ENVIRONMENT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _rundir.read_jsonl(os.path.join(output_dir,
                                                  "metrics.jsonl")):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    status = _rundir.read_json(os.path.join(output_dir, "status.json"))
    assert status["status"] == "failed"
    assert "terminated" in status["error"]


@pytest.mark.parametrize("signum, error", [
    (signal.SIGTERM, "Terminated"), (signal.SIGINT, "KeyboardInterrupt")])
def test_an_interrupt_lost_in_a_gc_callback_is_raised_again(signum, error):
    # A signal handled while a gc callback runs (as JAX's _xla_gc_callback)
    # raises there, and Python drops it ("Exception ignored in"); the run
    # would train on until killed (CI: exit 137 instead of 124).
    program = textwrap.dedent(f"""
        import gc, os, sys, time
        from rlr_keras.experiment import _train
        _train.handle_interrupts()
        def callback(phase, info):
            if phase == "start" and not getattr(callback, "sent", False):
                callback.sent = True
                os.kill(os.getpid(), {int(signum)})
                for _ in range(1000):  # The handler runs in here.
                    pass
        gc.callbacks.append(callback)
        try:
            gc.collect()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except KeyboardInterrupt as error:
            print(type(error).__name__)
            sys.exit(0)
        print("not raised")
        sys.exit(1)
    """)
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=_REPO, env=_ENVIRONMENT,
        capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.split() == [error]
    assert "Exception ignored" not in completed.stderr


def test_quiet_imports_drops_only_known_noise(tmp_path):
    program = (
        "import os\n"
        "from rlr_keras import _quiet\n"
        "with _quiet.quiet_imports():\n"
        "    os.write(2, b'I0000 00:00:1.2 3 cudart_stub.cc:31] Could not "
        "find cuda drivers on your machine, GPU will not be used.\\n')\n"
        "    os.write(2, b'a real warning\\n')\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n")
    environment = dict(_ENVIRONMENT, PYTHONPATH=_REPO)
    quiet = subprocess.run([sys.executable, "-c", program], env=environment,
                           capture_output=True, text=True, check=True)
    assert quiet.stderr == "a real warning\n"
    assert quiet.stdout == "3\n"
    user = subprocess.run([sys.executable, "-c", program],
                          env=dict(environment, TF_CPP_MIN_LOG_LEVEL="0"),
                          capture_output=True, text=True, check=True)
    assert "cuda drivers" in user.stderr  # The user's choice is respected.
    assert user.stdout == "0\n"


def test_known_noise_is_recognized():
    assert _quiet.is_noise(
        "I0000 00:00:1795853287.904653    3845 port.cc:153] oneDNN custom "
        "operations are on. You may see slightly different numerical")
    assert _quiet.is_noise("WARNING: All log messages before "
                           "absl::InitializeLog() is called are written to "
                           "STDERR")
    assert not _quiet.is_noise("train.py: error: --batch_size=0")


@pytest.mark.slow
def test_successful_run_prints_no_start_up_noise(tmp_path):
    output_dir = str(tmp_path / "run")
    completed = _train_py(_TINY + [f"--output_dir={output_dir}"])
    assert completed.returncode == 0, completed.stderr[-3000:]
    noise = [line for line in completed.stderr.splitlines()
             if _quiet.is_noise(line)]
    assert not noise
    assert _rundir.read_status(output_dir) == "done"
    with open(os.path.join(output_dir, "config.json")) as f:
        assert json.load(f)["arguments"]["output_dir"] == output_dir


# Reliability: faults and values that used to end in tracebacks (issue 24).


def _one_line(capsys, prefix="train.py: error: "):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(prefix), err
    return err


@pytest.mark.parametrize("argv, fragments", [
    (["--epochs=99999999999999999999"],
     ["--epochs must be an integer in [1, 2147483647]",
      "99999999999999999999"]),
    (["--batch_size=3000000000"], ["--batch_size", "3000000000"]),
    (["--image_size=100000,100000"], ["--image_size=100000,100000",
                                      "cannot fit", "GiB"]),
])
def test_out_of_range_values_are_one_line_before_anything_is_written(
        tmp_path, capsys, parsed_flags, argv, fragments):
    output_dir = str(tmp_path / "run")
    parsed_flags(["--dataset=digits", "--verbose=0",
                  f"--output_dir={output_dir}"] + argv)
    assert train_command.main(["train.py"]) == 2
    err = _one_line(capsys)
    for fragment in fragments:
        assert fragment in err
    assert not os.path.exists(output_dir)


def test_output_path_longer_than_the_os_allows_is_one_line(
        tmp_path, capsys, parsed_flags):
    for output_dir, fragment in [
            (str(tmp_path / ("a" * 300) / "run"), "300 bytes long"),
            (str(tmp_path / "/".join(["b" * 200] * 25)), "the path is")]:
        parsed_flags(["--verbose=0", f"--output_dir={output_dir}"])
        assert train_command.main(["train.py"]) == 2
        assert fragment in _one_line(capsys)
    assert os.listdir(tmp_path) == []


def test_unexpected_positional_argument_is_one_line(capsys, parsed_flags):
    parsed_flags(["--output_dir=unused"])
    assert train_command.main(["train.py", "extra"]) == 2
    assert "unexpected arguments ['extra']" in _one_line(capsys)


def test_flagfile_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.cfg"
    path.write_bytes(b"--epochs=1\n\xff\xfe\n")
    try:
        with pytest.raises(SystemExit) as raised:
            _parsing.flags_parser("train.py")(
                ["train.py", f"--flagfile={path}"])
    finally:
        flags.FLAGS.unparse_flags()
    assert raised.value.code == 2
    err = _one_line(capsys)
    assert f"--flagfile={path}: not a UTF-8 text file" in err


def test_disk_full_and_damaged_metrics_end_failed_with_one_line(
        tmp_path, capsys, parsed_flags, monkeypatch):
    output_dir = str(tmp_path / "run")
    metrics = os.path.join(output_dir, "metrics.jsonl")
    write_jsonl = _rundir.write_jsonl

    def full_after_one_epoch(path, rows):
        if len(rows) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        write_jsonl(path, rows)

    monkeypatch.setattr(_rundir, "write_jsonl", full_after_one_epoch)
    argv = ["--dataset=digits", "--epochs=2", "--batch_size=256",
            "--backup_every_s=0", "--noevaluate_train", "--verbose=0",
            f"--output_dir={output_dir}"]
    parsed_flags(argv)
    assert train_command.main(["train.py"]) == 1
    err = _one_line(capsys)
    assert "No space left on device" in err and metrics in err
    status = _rundir.read_json(os.path.join(output_dir, "status.json"))
    assert status["status"] == "failed"
    assert "No space left on device" in status["error"]
    monkeypatch.undo()

    # The backup holds epoch 1: a metrics file without it cannot resume.
    for text, fragments in [(None, [metrics, "holds 0 of the 1 epochs"]),
                            ('{"epoch": 1, "test', [metrics, "line 1",
                                                    "not valid JSON"])]:
        if text is None:
            os.remove(metrics)
        else:
            with open(metrics, "w", encoding="utf-8") as f:
                f.write(text)
        parsed_flags(argv)
        assert train_command.main(["train.py"]) == 2
        err = _one_line(capsys)
        for fragment in fragments:
            assert fragment in err
        assert _rundir.read_status(output_dir) == "failed"
