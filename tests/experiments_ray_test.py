"""Tests for rlr_keras.experiment._ray: the sweep's Ray launcher.

The options, the missing-Ray error and the run-folder lock's retry rule are
cheap; the sweeps with real train children are slow: the same metrics bit
for bit sequentially, with --jobs=2 and on a local Ray; a failed run and a
SIGTERM on Ray; and a two-node Ray cluster on loopback (in a network and PID namespace of
its own) that loses a node mid-run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from _helpers import REPO
from rlr_keras.experiment import _ray
from rlr_keras.experiment import _rundir
from rlr_keras.experiment import _sweep as sweep

pytestmark = pytest.mark.backend_independent

_HAS_RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) and (
    __import__("importlib").util.find_spec("ray") is not None)
needs_ray = pytest.mark.skipif(not _HAS_RAY, reason="Ray is not installed "
                               '(pip install "rlr_keras[ray]")')
# Model 1 on digits, 2 runs: the smallest sweep with two protocols.
_GRID = ["--model=mlp", "--dataset=digits", "--protocols=constant,random",
         "--seeds=0", "--deterministic", "--noplot"]
_NATIVE_LOG = ("I1", "W1", "E1", "[")  # absl/Ray lines other than errors.
_TIMEOUT_S = 600


def _env(**extra):
    return dict(os.environ, PYTHONPATH=REPO, KERAS_BACKEND="jax",
                TF_CPP_MIN_LOG_LEVEL="3", RAY_USAGE_STATS_ENABLED="0",
                CUDA_VISIBLE_DEVICES="", **extra)


def _sweep(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "rlr_keras.experiment.commands.sweep", *args],
        cwd=REPO, capture_output=True, text=True, timeout=_TIMEOUT_S,
        env=env or _env(), check=False)


def _error_line(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith(_NATIVE_LOG)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sweep.py: error: "), lines[0]
    return lines[0]


def _metrics(run_dir):
    """The run's metrics and summary, less the wall times."""
    rows = _rundir.read_jsonl(os.path.join(run_dir, _rundir.METRICS_FILE))
    summary = _rundir.read_json(os.path.join(run_dir, _rundir.SUMMARY_FILE))
    for record in [*rows, summary]:
        record.pop("wall_time_s", None)
    return rows, summary


def _runs(root):
    return sorted(name for name in os.listdir(root)
                  if os.path.isfile(os.path.join(root, name,
                                                 _rundir.STATUS_FILE)))


# ---------------------------------------------------------------------------
# Options and errors.


@pytest.mark.parametrize("kwargs, message", [
    ({"launcher": "ray", "run_cpus": 0}, "run_cpus must be a number > 0"),
    ({"launcher": "ray", "run_gpus": -0.5}, "run_gpus must be a number >= 0"),
    ({"launcher": "ray", "run_cpus": True}, "run_cpus must be a number > 0"),
    ({"launcher": "ray", "ray_address": ""}, "ray_address must be 'local'"),
    ({"launcher": "ray", "jobs": 2},
     "jobs=2 applies to launcher='subprocess'"),
    ({"launcher": "subprocess", "run_gpus": 0.5},
     ("run_gpus applies only to launcher='ray', got run_gpus=0.5 with "
      "launcher='subprocess'")),
    ({"launcher": "slurm"}, ("launcher must be one of 'inprocess', "
                             "'subprocess', 'ray', got 'slurm'")),
])
def test_bad_ray_options_are_refused_before_anything_runs(tmp_path, kwargs,
                                                          message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")
                       .replace(")", r"\)")):
        sweep.run(root=str(tmp_path / "sweep"),
                  base_arguments={"model": "mlp", "dataset": "digits"},
                  protocols=["constant"], seeds=[0], dry_run=True, **kwargs)
    assert not os.path.exists(tmp_path / "sweep")


@pytest.mark.parametrize("args, expected", [
    (["--run_cpus=2"], ["--run_cpus=2.0", "only to --launcher=ray"]),
    (["--launcher=ray", "--jobs=2"], ["--jobs=2", "--run_cpus"]),
    (["--launcher=ray", "--run_cpus=0"], ["run_cpus must be a number > 0"]),
])
def test_ray_flag_errors_are_one_line(tmp_path, args, expected):
    line = _error_line(_sweep(f"--root={tmp_path / 'sweep'}", "--dry_run",
                              "--protocols=constant", *args))
    for text in expected:
        assert text in line, line
    assert not os.path.exists(tmp_path / "sweep")


def test_without_ray_the_ray_launcher_says_what_to_install(tmp_path):
    # `import ray` fails as it does where Ray is not installed.
    code = ("import sys; sys.modules['ray'] = None; "
            "from rlr_keras.experiment.commands import sweep; "
            "sys.argv = ['sweep.py'] + sys.argv[1:]; sweep.run_main()")
    result = subprocess.run(
        [sys.executable, "-c", code, f"--root={tmp_path / 'sweep'}",
         "--launcher=ray", "--protocols=constant", "--seeds=0"],
        cwd=REPO, capture_output=True, text=True, timeout=_TIMEOUT_S,
        env=_env(), check=False)
    line = _error_line(result)
    assert 'pip install "rlr_keras[ray]"' in line, line
    assert not os.path.exists(tmp_path / "sweep")


def test_shared_root_check_names_the_node_that_does_not_see_it(tmp_path):
    class FakeRay:  # Two nodes; the second has its own disk.
        exceptions = type("exceptions", (), {
            "TaskUnschedulableError": RuntimeError})

        @staticmethod
        def nodes():
            return [{"NodeID": "a" * 56, "Alive": True},
                    {"NodeID": "b" * 56, "Alive": True},
                    {"NodeID": "c" * 56, "Alive": False}]

        @staticmethod
        def remote(**unused):
            def wrap(function):
                class Task:
                    calls = 0

                    @classmethod
                    def options(cls, **unused):
                        return cls

                    @classmethod
                    def remote(cls, path, token):
                        cls.calls += 1
                        if cls.calls == 1:
                            return function(path, token)
                        return function(path + ".elsewhere", token)
                return Task
            return wrap

        @staticmethod
        def get(result):
            return result

    pytest.importorskip("ray")
    root = str(tmp_path / "sweep")
    with pytest.raises(ValueError, match=r"--root=.*/sweep must be on storage "
                       r"that every Ray node shares at the same path: a task "
                       r"on node bbbbbbbbbbbb \(.*\) does not see the marker"):
        _ray.check_shared_root(FakeRay, root)
    assert os.listdir(root) == []  # The marker is removed.


# ---------------------------------------------------------------------------
# The run-folder lock: a retry takes over from its lost attempt, no one else.


def test_a_busy_run_folder_is_refused_at_once_to_another_owner(tmp_path):
    with _rundir.locked(str(tmp_path), owner="ray task 1"):
        with (pytest.raises(_rundir.UserError,
                            match=r"in use by pid \d+ on .* \(ray task 1\)"),
              _rundir.locked(str(tmp_path), owner="ray task 2")):
            pass
        with (pytest.raises(_rundir.UserError, match="in use by"),
              _rundir.locked(str(tmp_path))):
            pass


def test_a_retry_waits_for_the_lock_of_its_lost_attempt(tmp_path):
    taken, release = threading.Event(), threading.Event()

    def lost_attempt():  # Its lock lingers (an NFS lease) until released.
        with _rundir.locked(str(tmp_path), owner="ray task 1"):
            taken.set()
            release.wait(60)

    thread = threading.Thread(target=lost_attempt)
    thread.start()
    assert taken.wait(60)
    threading.Timer(0.5, release.set).start()
    with _rundir.locked(str(tmp_path), owner="ray task 1",
                        takeover_wait_s=60):
        assert release.is_set()
        with open(tmp_path / _rundir.LOCK_FILE) as f:
            assert f.read().strip().endswith(" (ray task 1)")
    thread.join()


def test_a_retry_gives_up_when_the_lock_stays_held(tmp_path):
    with (_rundir.locked(str(tmp_path), owner="ray task 1"),
          pytest.raises(_rundir.UserError, match="in use by"),
          _rundir.locked(str(tmp_path), owner="ray task 1",
                         takeover_wait_s=0.2)):
        pass


# ---------------------------------------------------------------------------
# Sweeps with train children.


@pytest.mark.slow
@needs_ray
def test_metrics_are_bit_identical_sequential_jobs_and_ray(tmp_path):
    roots = {}
    for launcher, extra in (("subprocess", []),
                            ("jobs", ["--launcher=subprocess", "--jobs=2"]),
                            ("ray", ["--launcher=ray"])):
        roots[launcher] = str(tmp_path / launcher)
        flags = extra or [f"--launcher={launcher}"]
        result = _sweep(f"--root={roots[launcher]}", "--epochs=2", *_GRID,
                        *flags)
        assert result.returncode == 0, result.stderr[-3000:]
    names = _runs(roots["subprocess"])
    assert names == ["constant_seed=0", "random_seed=0"]
    for launcher in ("jobs", "ray"):
        assert _runs(roots[launcher]) == names
        for name in names:
            assert _metrics(os.path.join(roots[launcher], name)) == _metrics(
                os.path.join(roots["subprocess"], name)), (launcher, name)
    events = sweep.read_log(roots["ray"])
    starts = [e for e in events if e["event"] == "start"]
    assert sorted(e["run"] for e in starts) == names
    assert all(e["node"] and e["host"] for e in starts)
    assert sorted(e["run"] for e in events if e["event"] == "done") == names

    # A second Ray sweep skips both runs (and needs no Ray).
    result = _sweep(f"--root={roots['ray']}", "--epochs=2", *_GRID,
                    "--launcher=ray")
    assert result.returncode == 0, result.stderr[-3000:]
    events = sweep.read_log(roots["ray"])
    last = events[[e["event"] for e in events].index("sweep_end") + 1:]
    assert sorted(e["run"] for e in last if e["event"] == "skip") == names
    assert not [e for e in last if e["event"] == "start"]


def _can_unshare():
    if not sys.platform.startswith("linux") or not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"],
            capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.slow
@needs_ray
@pytest.mark.skipif(not _can_unshare(),
                    reason="needs `unshare --net --pid` (root on Linux) to "
                    "keep the Ray cluster on a loopback of its own")
def test_two_node_cluster_survives_a_lost_node(tmp_path):
    grid = [*_GRID, "--epochs=12", "--backup_every_s=0"]
    result_path = tmp_path / "result.json"
    script = os.path.join(REPO, "tests", "_ray_cluster_script.py")
    cluster = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c",
         'ip link set lo up && exec "$@"', "bash", sys.executable, script,
         str(tmp_path), str(result_path), "--", *grid],
        cwd=REPO, capture_output=True, text=True, timeout=2 * _TIMEOUT_S,
        env=_env(), check=False)
    assert result_path.exists(), cluster.stderr[-3000:]
    seen = json.loads(result_path.read_text())
    logs = "\n".join(
        path.read_text(errors="replace")[-2000:]
        for path in (tmp_path / f"{i}.log" for i in ("ray", "sweep1", "sweep2"))
        if path.exists())
    assert seen.get("first") == 0 and seen.get("second") == 0, (seen, logs)
    assert seen["status_at_kill"] == "running", seen  # Killed mid-run.
    root = str(tmp_path / "sweep")
    names = _runs(root)
    assert names == ["constant_seed=0", "random_seed=0"]
    events = sweep.read_log(root)

    # The runs went to both nodes; the lost run started again elsewhere.
    starts = [e for e in events if e["event"] == "start"]
    assert len({e["node"] for e in starts}) == 2, starts
    lost = [e for e in starts if e["run"] == seen["lost_run"]]
    assert [e["node"] == seen["lost_node"] for e in lost] == [True, False]
    assert all(_rundir.read_status(os.path.join(root, name)) == _rundir.DONE
               for name in names)
    # It resumed from its last backup ...
    with open(os.path.join(root, "logs", f"{seen['lost_run']}.log"),
              errors="replace") as f:
        assert "Resuming" in f.read()
    # ... and ended as an uninterrupted run does.
    reference = tmp_path / "reference"
    protocol = seen["lost_run"].split("_")[0]
    train = subprocess.run(
        [sys.executable, "-m", "rlr_keras.experiment.commands.train",
         f"--output_dir={reference}", f"--protocol={protocol}", "--seed=0",
         *[flag for flag in grid if not flag.startswith(
             ("--protocols", "--seeds", "--noplot"))]],
        cwd=REPO, capture_output=True, text=True, timeout=_TIMEOUT_S,
        env=_env(), check=False)
    assert train.returncode == 0, train.stderr[-3000:]
    assert _metrics(os.path.join(root, seen["lost_run"])) == _metrics(
        str(reference))

    # The second sweep skipped every run.
    second = events[[e["event"] for e in events].index("sweep_end") + 1:]
    assert sorted(e["run"] for e in second if e["event"] == "skip") == names
    assert not [e for e in second if e["event"] in ("start", "failed")]


@pytest.mark.slow
@needs_ray
def test_a_failed_run_stops_no_other_and_sigterm_cancels_the_tasks(
        tmp_path):
    # Three runs on a local Ray with two CPUs: the first fails at once (its
    # folder is held by another trainer, this test), the other two train on
    # until the sweep gets SIGTERM; every run records why it ended.
    root = tmp_path / "sweep"
    training_runs = ("random_seed=0", "cyclic_period=2_seed=0")
    grid = [flag for flag in _GRID if not flag.startswith("--protocols")]
    with (open(tmp_path / "sweep.log", "wb") as log,
          _rundir.locked(str(root / "constant_seed=0"))):
        process = subprocess.Popen(
            [sys.executable, "-m", "rlr_keras.experiment.commands.sweep",
             f"--root={root}", "--epochs=200", "--backup_every_s=0", *grid,
             "--protocols=constant,random,cyclic", "--periods=2",
             "--launcher=ray"],
            cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            def training():
                return all(_rundir.read_jsonl(
                    root / name / _rundir.METRICS_FILE)
                    for name in training_runs)

            deadline = time.monotonic() + _TIMEOUT_S
            while not training() and process.poll() is None:
                assert time.monotonic() < deadline, "the runs never trained"
                time.sleep(0.1)
            assert process.poll() is None, "the sweep ended before SIGTERM"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=_TIMEOUT_S) == 128 + signal.SIGTERM
        finally:
            process.kill()
            process.wait()
    for name in training_runs:
        assert _rundir.read_status(str(root / name)) == _rundir.FAILED, name
    failed = {e["run"]: e["error"] for e in sweep.read_log(str(root))
              if e["event"] == "failed"}
    assert sorted(failed) == sorted(["constant_seed=0", *training_runs])
    assert "is in use by pid" in failed["constant_seed=0"], failed
