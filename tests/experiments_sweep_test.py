"""Tests for experiments/sweep.py: grid expansion, kill and resume, HParams."""

import collections
import os
import signal
import subprocess
import sys
import time

import pytest
from absl import flags

from rlr_keras.experiment import _rundir
from _helpers import REPO as _REPO
from _helpers import alive as _alive
from _helpers import snapshot
from _helpers import wait_gone
from rlr_keras.experiment import _report
from rlr_keras.experiment import _sweep as sweep
from rlr_keras.experiment.commands import sweep as sweep_command

from rlr_keras._summary import read_events

_BASE = dict(model="mlp", dataset="digits", learning_rate=0.05,
             batch_size=64, epochs=2, verbose=0, momentum=0.9, nesterov=True,
             delta=1.0, coupled_weight_decay=0.0)


def _base_arguments(**overrides):
    from rlr_keras.experiment import _train as train  # pylint: disable=g-import-not-at-top
    from rlr_keras.experiment.commands import train as train_command  # pylint: disable=g-import-not-at-top

    arguments = {name: flags.FLAGS[name].default
                 for name in train.ARGUMENT_NAMES}
    arguments.update(_BASE, **overrides)
    return arguments


def test_expand_crosses_protocols_periods_seeds_grid_and_variants():
    runs = sweep.expand(
        base_arguments=_base_arguments(),
        protocols=["constant", "cyclic"], periods=[6.0, 18.0], seeds=[0, 1],
        grid=[("momentum", [0.5, 0.75])],
        variants=[{"batch_size": 60, "learning_rate": 2e-4},
                  {"batch_size": 30, "learning_rate": 1e-4}])
    assert len(runs) == 3 * 2 * 2 * 2  # protocol points x seeds x grid x var.
    names = [name for name, _ in runs]
    assert len(set(names)) == len(names)
    assert ("cyclic_period=18_batch_size=30_learning_rate=0.0001_"
            "momentum=0.75_seed=1") in names
    for name, arguments in runs:
        assert (arguments["period"] is None) == (
            arguments["protocol"] != "cyclic")
        assert name.endswith(f"seed={arguments['seed']}")
        assert arguments["epochs"] == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(protocols=["cyclic"], periods=None), "--periods is required"),
    (dict(protocols=["random"], periods=[6.0]), "only to the cyclic"),
    (dict(protocols=["random"], seeds=[0, 0]), "repeats a seed"),
    (dict(protocols=["random"], grid=[("batch_size", [32])],
          variants=[{"batch_size": 16}]), "both --grid and --variant"),
])
def test_expand_rejects_inconsistent_grids(kwargs, message):
    kwargs = {"seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=message):
        sweep.expand(base_arguments=_base_arguments(), **kwargs)


def test_grid_values_are_parsed_and_checked_like_train_flags():
    assert sweep_command.parse_grid(["batch_size=30,60", "nesterov=false,true"]) == [
        ("batch_size", [30, 60]), ("nesterov", [False, True])]
    assert sweep_command.parse_variant("batch_size=60,learning_rate=2e-4") == {
        "batch_size": 60, "learning_rate": 2e-4}
    with pytest.raises(ValueError, match="not a train.py flag"):
        sweep_command.parse_grid(["batchsize=30"])
    with pytest.raises(ValueError, match="set per run"):
        sweep_command.parse_grid(["seed=1,2"])
    with pytest.raises(ValueError, match="bad value"):
        sweep_command.parse_grid(["batch_size=0"])


def _events(root):
    return [event for event in sweep.read_log(root) if event["run"]]


@pytest.mark.slow
@pytest.mark.backend_independent
def test_killed_sweep_resumes_without_repeating_or_losing_runs(tmp_path):
    root = str(tmp_path / "sweep")
    command = [sys.executable, os.path.join(_REPO, "experiments", "sweep.py"),
               f"--root={root}", "--protocols=constant,random",
               "--seeds=0,1", "--noplot"]
    command += [_rundir.format_flag(name, value)
                for name, value in _BASE.items()]
    process = subprocess.Popen(
        command, cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO))
    try:
        # Kill as soon as the first run is done and the second has started.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = [e["run"] for e in _events(root) if e["event"] == "start"]
            if len(started) >= 2:
                break
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.02)
        else:
            pytest.fail("the sweep did not start its second run in time")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        output = process.communicate()[0].decode()
    assert "[1/4]" in output and "ETA" in output, output[-3000:]
    before = _events(root)
    done_before = {e["run"] for e in before if e["event"] == "done"}
    assert 1 <= len(done_before) < 4

    result = sweep.run(root=root, base_arguments=_base_arguments(),
                       protocols=["constant", "random"], seeds=[0, 1],
                       make_plots=True)

    names = {f"{protocol}_seed={seed}" for protocol in ("constant", "random")
             for seed in (0, 1)}
    assert set(result["done"]) == names and not result["failed"]
    assert set(result["skipped"]) == done_before
    events = _events(root)
    starts = collections.Counter(e["run"] for e in events
                                 if e["event"] == "start")
    dones = collections.Counter(e["run"] for e in events
                                if e["event"] == "done")
    assert dones == {name: 1 for name in names}  # none lost, none repeated.
    for name in done_before:
        assert starts[name] == 1  # a finished run is never started again.
    for name in names:
        run_dir = os.path.join(root, name)
        assert _rundir.read_status(run_dir) == "done"
        rows = _rundir.read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
        assert [row["epoch"] for row in rows] == [1, 2]
        # The run's HParams session (written by train.py, whose group is
        # the run folder's name) beside Keras' train/validation logs.
        log_dir = os.path.join(run_dir, "tensorboard")
        sessions = [data for data in _hparams_plugin_data(log_dir)
                    if data.HasField("session_start_info")]
        assert [s.session_start_info.group_name for s in sessions] == [name]
        # The dashboard's metrics are scalars that the runs write.
        for group, tag, _ in sweep.HPARAMS_METRICS:
            assert tag in read_events(os.path.join(log_dir, group)), tag
    assert os.path.isfile(os.path.join(root, "plots", "table.md"))


def _hparams_plugin_data(log_dir):
    from tensorboard.backend.event_processing import event_file_loader  # noqa: E501  pylint: disable=g-import-not-at-top
    from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=g-import-not-at-top

    found = []
    for name in sorted(os.listdir(log_dir)):
        if name.startswith("events.out.tfevents"):
            for event in event_file_loader.EventFileLoader(
                    os.path.join(log_dir, name)).Load():
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name == "hparams":
                        found.append(plugin_data_pb2.HParamsPluginData
                                     .FromString(value.metadata.plugin_data
                                                 .content))
    return found


def test_hparams_experiment_at_the_root_lists_domains_and_metrics(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sweep._train, "run", lambda **arguments: None)
    root = str(tmp_path / "sweep")
    for _ in range(2):  # A restarted sweep replaces its experiment.
        sweep.run(root=root, base_arguments=_base_arguments(),
                  protocols=["constant", "cyclic"], periods=[6.0, 18.0],
                  seeds=[0, 1], grid=[("batch_size", [30, 60])],
                  variants=[{"nesterov": True}, {"nesterov": False}],
                  make_plots=False)
    (data,) = _hparams_plugin_data(root)
    experiment = data.experiment
    domains = {}
    for info in experiment.hparam_infos:
        domains[info.name] = [
            getattr(v, v.WhichOneof("kind"))
            for v in info.domain_discrete.values]
    assert domains == {"protocol": ["constant", "cyclic"],
                       "period": [6.0, 18.0], "seed": [0.0, 1.0],
                       "batch_size": [30.0, 60.0],
                       "nesterov": [False, True]}
    metrics = [(m.name.group, m.name.tag) for m in experiment.metric_infos]
    assert ("validation", "epoch_accuracy") in metrics
    assert ("train", "epoch_loss") in metrics
    assert ("", "summary/generalization_gap") in metrics
    assert metrics == [(g, t) for g, t, _ in sweep.HPARAMS_METRICS]


_CONFIGS = os.path.join(_REPO, "experiments", "configs")


@pytest.mark.parametrize("name", sorted(os.listdir(_CONFIGS)))
def test_every_config_has_a_header_and_expands(name):
    path = os.path.join(_CONFIGS, name)
    with open(path) as f:
        header = f.read()
    for part in ("# Claim:", "# Command", "# Expected runtime", "# Outputs:"):
        assert part in header, f"{name} lacks {part!r}"
    try:
        flags.FLAGS(["sweep.py", f"--flagfile={path}"])
        runs = sweep.expand(
            base_arguments=sweep_command.train_command.arguments_from_flags(),
            protocols=flags.FLAGS.protocols,
            seeds=[int(seed) for seed in flags.FLAGS.seeds],
            periods=([float(p) for p in flags.FLAGS.periods]
                     if flags.FLAGS.periods else None),
            grid=sweep_command.parse_grid(flags.FLAGS.grid),
            variants=[sweep_command.parse_variant(v) for v in flags.FLAGS.variant])
    finally:
        flags.FLAGS.unparse_flags()
    assert runs


# ---------------------------------------------------------------------------
# Folder names, delta, and errors of the command line.


@pytest.mark.parametrize("value, text", [
    (0.005, "0.005"), (2.5e-4, "0.00025"), (1e-4, "0.0001"), (6.0, "6"),
    (1e-5, "1e-05"), (0.1234567, "0.1234567"), (0.1234568, "0.1234568"),
    (1 / 3, repr(1 / 3)), (60, "60"), (True, "True"),
])
def test_folder_names_hold_values_exactly_and_keep_g_names(value, text):
    assert sweep._format(value) == text
    if isinstance(value, float):
        assert float(sweep._format(value)) == value


def test_values_that_g_would_merge_get_distinct_folders():
    runs = sweep.expand(base_arguments=_base_arguments(),
                        protocols=["random"], seeds=[0],
                        grid=[("learning_rate", [0.1234567, 0.1234568])])
    assert [name for name, _ in runs] == [
        "random_learning_rate=0.1234567_seed=0",
        "random_learning_rate=0.1234568_seed=0"]


def test_a_grid_value_given_twice_is_refused():
    with pytest.raises(ValueError, match="repeats the value 0.001"):
        sweep_command.parse_grid(["learning_rate=1e-3,0.001"])


def test_delta_reaches_only_the_random_runs():
    runs = dict(sweep.expand(
        base_arguments=_base_arguments(delta=0.5),
        protocols=["constant", "random", "cyclic"], periods=[6.0], seeds=[0],
        grid=[("delta", [0.25])]))
    assert set(runs) == {"constant_seed=0", "random_delta=0.25_seed=0",
                         "cyclic_period=6_seed=0"}
    assert runs["random_delta=0.25_seed=0"]["delta"] == 0.25
    assert runs["constant_seed=0"]["delta"] is None
    assert runs["cyclic_period=6_seed=0"]["delta"] is None
    runs = dict(sweep.expand(base_arguments=_base_arguments(delta=0.5),
                             protocols=["constant", "random"], seeds=[0]))
    assert runs["random_seed=0"]["delta"] == 0.5
    assert runs["constant_seed=0"]["delta"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(protocols=["constant", "random"], grid=[("delta", [0.5, 1.0])]),
     "the constant runs would repeat"),
    (dict(protocols=["cyclic", "random"], periods=[6.0],
          variants=[{"delta": 0.5}, {"delta": 1.0}]),
     "the cyclic runs would repeat"),
    (dict(protocols=["constant"], grid=[("delta", [0.5])]),
     "delta applies only to the random protocol"),
    (dict(protocols=["cyclic"], periods=[6.0, 6.0]), "repeats a period"),
    (dict(protocols=["constant", "randomm"]), "among constant, random"),
])
def test_expand_refuses_grids_with_identical_or_meaningless_runs(kwargs,
                                                                 message):
    with pytest.raises(ValueError, match=message):
        sweep.expand(base_arguments=_base_arguments(), seeds=[0], **kwargs)


def test_sweep_passes_the_equivalence_margin_to_plot(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep._train, "run", lambda **arguments: None)
    monkeypatch.setattr(_report, "run",
                        lambda **arguments: calls.append(arguments))
    sweep.run(root=str(tmp_path), base_arguments=_base_arguments(),
              protocols=["constant"], seeds=[0], equivalence_margin=0.02)
    assert calls and calls[0]["equivalence_margin"] == 0.02


# Lines TensorFlow's C++ runtime writes to stderr when it is imported.
_NATIVE_LOG = ("WARNING: All log messages before absl::InitializeLog()",
               "I0000 ", "W0000 ", "E0000 ")


def _run_sweep(*args):
    return subprocess.run(
        [sys.executable, os.path.join(_REPO, "experiments", "sweep.py"),
         *args], cwd=_REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO))


@pytest.mark.backend_independent
@pytest.mark.parametrize("args, expected", [
    (["--protocols=constant", "--periods=6"],
     ["--periods", "6", "only to the cyclic", "--protocols=constant"]),
    (["--protocols=cyclic"], ["--periods is required", "cyclic"]),
    (["--grid=learning_rate=1e-3,0.001"],
     ["--grid=learning_rate=1e-3,0.001", "repeats the value 0.001"]),
    (["--protocols=constant", "--delta=0.5"],
     ["--delta=0.5", "only to the random protocol", "--protocols=constant"]),
    (["--protocols=constant,random", "--grid=delta=0.5,1.0"],
     ["delta", "random protocol", "constant runs would repeat"]),
    (["--grid=batch_size=0"], ["batch_size", "'0'", "positive integer"]),
    (["--seed=3"], ["--seed", "set per run", "--seeds"]),
    (["--protocols=constant,randomm"],
     ["--protocols", "randomm", "among constant, random, cyclic"]),
    (["--seeds=0,x"], ["--seeds", "integers in [0, 4294967295]"]),
    (["--nosuchflag"], ["nosuchflag"]),
    (["--jobs=0"], ["--jobs=0", "positive integer"]),
    (["--runs_per_gpu=0"], ["--runs_per_gpu=0", "positive integer"]),
    (["--jobs=2", "--launcher=inprocess"],
     ["--jobs=2", "process of its own", "--launcher=inprocess"]),
])
def test_command_line_errors_are_one_line(tmp_path, args, expected):
    result = _run_sweep(f"--root={tmp_path / 'sweep'}", "--dry_run", *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith(_NATIVE_LOG)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sweep.py: error: ")
    for text in expected:
        assert text in lines[0], lines[0]
    assert not os.path.exists(tmp_path / "sweep")


# ---------------------------------------------------------------------------
# --launcher=subprocess: a train.py child never outlives the sweep.


def _children(pid):
    """The pids whose parent is `pid` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


@pytest.mark.slow
@pytest.mark.backend_independent
@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM],
                         ids=["SIGKILL", "SIGTERM"])
def test_train_child_dies_with_the_sweep(tmp_path, signum):
    root = str(tmp_path / "sweep")
    command = [sys.executable, os.path.join(_REPO, "experiments", "sweep.py"),
               f"--root={root}", "--protocols=constant", "--seeds=0",
               "--noplot", "--launcher=subprocess"]
    command += [_rundir.format_flag(name, value)
                for name, value in dict(_BASE, epochs=500, delta=None).items()
                if value is not None]
    process = subprocess.Popen(
        command, cwd=_REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO))
    children = []
    try:
        deadline = time.monotonic() + 120
        while not children and time.monotonic() < deadline:
            assert process.poll() is None
            children = _children(process.pid)
            time.sleep(0.05)
        assert children, "the sweep started no train.py in time"
        time.sleep(1.0)  # Let the child get past its start-up.
        process.send_signal(signum)
        process.wait(timeout=60)
        assert wait_gone(children)
        if signum == signal.SIGTERM:  # Forwarded, waited for, then exited.
            assert process.returncode == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.wait()
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


# ---------------------------------------------------------------------------
# Reliability (issue 24): refusals before anything runs, signals.


@pytest.mark.backend_independent
def test_rerun_with_another_common_flag_is_refused_before_anything(tmp_path):
    root = str(tmp_path / "sweep")
    common = {"protocols": ["constant"], "seeds": [0], "make_plots": False}
    result = sweep.run(root=root, base_arguments=_base_arguments(epochs=1),
                       **common)
    assert result["done"] == ["constant_seed=0"]
    before = snapshot(root)
    for overrides, message in [
            ({"epochs": 2}, "--epochs: 1 there, 2 now"),
            ({"epochs": 1, "momentum": 0.5},
             "--momentum: 0.9 there, 0.5 now")]:
        with pytest.raises(ValueError, match=message) as raised:
            sweep.run(root=root, base_arguments=_base_arguments(**overrides),
                      **common)
        assert f"--root={root} holds runs made with other arguments" in str(
            raised.value)
        assert "constant_seed=0" in str(raised.value)
        assert snapshot(root) == before  # sweep.json and the log unchanged.
    # The same flags: the run counts as done.
    result = sweep.run(root=root, base_arguments=_base_arguments(epochs=1),
                       **common)
    assert result["skipped"] == ["constant_seed=0"]


@pytest.mark.backend_independent
@pytest.mark.parametrize("kwargs, message", [
    ({"grid": [("learning_rate", [0.01, -1.0, 0.02])]},
     (r"--learning_rate must be in \[0, inf\), got -1.0 \(run "
      r"constant_learning_rate=-1_seed=0\)")),
    ({"protocols": ["cyclic"], "periods": [6.0, float("inf")]},
     r"--period must be finite, got inf \(run cyclic_period=inf_seed=0\)"),
    ({"grid": [("epochs", [1, 10**20])]},
     r"--epochs must be an integer in \[1, 2147483647\], got 10{20}"),
])
def test_grid_values_are_checked_by_train_rules_before_anything(
        tmp_path, monkeypatch, kwargs, message):
    started = []
    monkeypatch.setattr(sweep._train, "run",
                        lambda **arguments: started.append(arguments))
    root = str(tmp_path / "sweep")
    kwargs = {"protocols": ["constant"], "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=message):
        sweep.run(root=root, base_arguments=_base_arguments(),
                  make_plots=False, **kwargs)
    assert not started and not os.path.exists(root)


@pytest.mark.backend_independent
def test_root_that_is_a_file_or_empty_is_one_line(tmp_path, capsys,
                                                   monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for root, message in [(str(a_file), f"--root={a_file} is a file"),
                          ("", "--root must name a folder, got ''")]:
        with pytest.raises(ValueError, match=message):
            sweep.run(root=root, base_arguments=_base_arguments(),
                      protocols=["constant"], seeds=[0], make_plots=False)
    # On the command line: one line, exit status 2.
    monkeypatch.chdir(tmp_path)
    flags.FLAGS(["sweep.py", "--root=", "--protocols=constant", "--seeds=0",
                 "--noplot"])
    try:
        with pytest.raises(SystemExit) as raised:
            sweep_command.main(["sweep.py"])
    finally:
        flags.FLAGS.unparse_flags()
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "sweep.py: error: --root must name a folder, got ''\n")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


@pytest.mark.backend_independent
def test_sigterm_to_an_in_process_sweep_records_failed_and_sweep_end(
        tmp_path, capsys, monkeypatch):
    from rlr_keras.experiment import _train  # pylint: disable=g-import-not-at-top

    def terminated(**arguments):
        os.kill(os.getpid(), signal.SIGTERM)  # The handler raises here.
        time.sleep(10)  # Not reached.

    monkeypatch.setattr(sweep._train, "run", terminated)
    root = str(tmp_path / "sweep")
    previous = signal.getsignal(signal.SIGTERM)
    flags.FLAGS(["sweep.py", f"--root={root}", "--protocols=constant",
                 "--seeds=0,1", "--noplot"])
    try:
        with pytest.raises(SystemExit) as raised:
            sweep_command.main(["sweep.py"])
    finally:
        flags.FLAGS.unparse_flags()
        signal.signal(signal.SIGTERM, previous)
    assert raised.value.code == 128 + signal.SIGTERM
    assert "terminated by signal 15" in capsys.readouterr().err
    events = sweep.read_log(root)
    assert [e["event"] for e in events] == ["sweep_start", "start", "failed",
                                            "sweep_end"]
    assert events[2]["run"] == "constant_seed=0"
    assert events[2]["error"].startswith(_train.Terminated.__name__)
    assert "SIGTERM" in events[3]["interrupted"]


@pytest.mark.backend_independent
def test_subprocess_launcher_records_why_train_refused_a_run(
        tmp_path, monkeypatch, capfd):
    # A stand-in for train.py that refuses its flags as train.py does.
    refusal = "train.py: error: --learning_rate must be in [0, inf), got -1.0"
    monkeypatch.setattr(sweep, "_train_command", lambda arguments: [
        sys.executable, "-c",
        f"import sys; sys.stderr.write({refusal!r} + '\\n'); sys.exit(2)"])
    root = str(tmp_path / "sweep")
    result = sweep.run(root=root, base_arguments=_base_arguments(),
                       protocols=["constant"], seeds=[0],
                       launcher="subprocess", make_plots=False)
    reason = "--learning_rate must be in [0, inf), got -1.0"
    assert result["failed"] == {"constant_seed=0": f"RuntimeError: {reason}"}
    (failed,) = [e for e in sweep.read_log(root) if e["event"] == "failed"]
    assert failed["error"] == f"RuntimeError: {reason}"
    assert refusal in capfd.readouterr().err  # Still shown as it came.
