"""Tests for rlr_keras.experiment._jobs: several runs at once on one machine.

The slot plan (GPUs, cores) is a pure function, tested with fake GPU lists;
the child processes are tested with tiny Python children (no framework);
`rlr-sweep --jobs` itself with real train children (slow).
"""

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from _helpers import alive as _alive
from _helpers import wait_gone
from rlr_keras.experiment import _jobs
from rlr_keras.experiment import _sweep as sweep

pytestmark = pytest.mark.backend_independent

# ---------------------------------------------------------------------------
# The plan: which GPU or cores each of the runs in flight gets.


def test_one_job_changes_nothing_even_with_gpus():
    assert _jobs.plan(1, gpus=["0", "1"], runs_per_gpu=4) == [
        _jobs.Slot(env={}, cpus=None, device="inherited")]


def test_jobs_are_dealt_round_robin_one_gpu_each():
    slots = _jobs.plan(2, gpus=["0", "1", "2"])
    assert [s.env for s in slots] == [{"CUDA_VISIBLE_DEVICES": "0"},
                                      {"CUDA_VISIBLE_DEVICES": "1"}]
    assert [s.cpus for s in slots] == [None, None]
    assert [s.device for s in slots] == ["gpu 0", "gpu 1"]


def test_runs_sharing_a_gpu_neither_preallocate_nor_reserve_memory():
    slots = _jobs.plan(5, gpus=["GPU-a", "GPU-b", "GPU-c"], runs_per_gpu=2)
    devices = [s.env["CUDA_VISIBLE_DEVICES"] for s in slots]
    assert devices == ["GPU-a", "GPU-b", "GPU-c", "GPU-a", "GPU-b"]
    assert max(collections.Counter(devices).values()) <= 2
    for slot in slots:
        assert slot.env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert slot.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_more_jobs_than_the_gpus_hold_is_refused():
    with pytest.raises(ValueError, match=r"jobs=3 .* 1 GPU\(s\) \(7\) with "
                       r"runs_per_gpu=2 hold 2; lower jobs or raise"):
        _jobs.plan(3, gpus=["7"], runs_per_gpu=2)


@pytest.mark.parametrize("jobs, cores, expected", [
    (2, [0, 1], [(0,), (1,)]),
    (2, [0, 1, 2, 3, 4, 5, 6, 7], [(0, 1, 2, 3), (4, 5, 6, 7)]),
    (3, [0, 1, 2, 3, 4, 5, 6, 7], [(0, 1), (2, 3), (4, 5)]),
    (3, [0, 1], [(0,), (1,), (0,)]),  # More runs than cores: one each.
    (2, [4, 6], [(4,), (6,)]),  # The cores this process may use.
])
def test_on_cpu_each_run_gets_its_share_of_the_cores(jobs, cores, expected):
    slots = _jobs.plan(jobs, gpus=[], cores=cores)
    assert [s.cpus for s in slots] == expected
    threads = str(len(expected[0]))
    for slot in slots:
        assert slot.env == {"OMP_NUM_THREADS": threads,
                            "TF_NUM_INTRAOP_THREADS": threads}


@pytest.mark.parametrize("kwargs, message", [
    (dict(jobs=0), "jobs must be an integer >= 1, got 0"),
    (dict(jobs=2.0), "jobs must be an integer >= 1, got 2.0"),
    (dict(jobs=True), "jobs must be an integer >= 1, got True"),
    (dict(jobs=2, runs_per_gpu=0), "runs_per_gpu must be an integer >= 1"),
])
def test_plan_refuses_bad_counts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _jobs.plan(gpus=["0"], **kwargs)


@pytest.mark.parametrize("value, expected", [
    ("2,3", ["2", "3"]), ("", []), ("-1", []), ("0,-1,1", ["0"]),
    ("GPU-5f1e,GPU-77aa", ["GPU-5f1e", "GPU-77aa"]), (" 1 , 0 ", ["1", "0"]),
])
def test_visible_gpus_reads_cuda_visible_devices_as_cuda_does(value,
                                                              expected):
    assert _jobs.visible_gpus({"CUDA_VISIBLE_DEVICES": value},
                              nvidia_smi="/nonexistent") == expected


def test_visible_gpus_asks_nvidia_smi_when_the_variable_is_unset(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        echo "GPU 0: NVIDIA H100 (UUID: GPU-aaaa)"
        echo "  MIG 1g.10gb Device 0: (UUID: MIG-bbbb)"
        echo "GPU 1: NVIDIA H100 (UUID: GPU-cccc)"
        """))
    fake.chmod(0o755)
    assert _jobs.visible_gpus({}, nvidia_smi=str(fake)) == ["0", "1"]
    assert _jobs.visible_gpus({}, nvidia_smi=str(tmp_path / "none")) == []
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed'\nexit 9\n")
    failing.chmod(0o755)
    assert _jobs.visible_gpus({}, nvidia_smi=str(failing)) == []


# ---------------------------------------------------------------------------
# The children, with tiny Python programs for train.py.

_CHILD = textwrap.dedent("""\
    import json, os, sys, time
    time.sleep(float(sys.argv[1]))
    print(json.dumps({"cpus": sorted(os.sched_getaffinity(0)),
                      "omp": os.environ.get("OMP_NUM_THREADS"),
                      "end": time.monotonic()}))
    if sys.argv[2] != "0":
        print("train.py: error: --batch_size must be small, got 1e9")
    sys.exit(int(sys.argv[2]))
    """)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"),
                    reason="no CPU affinity here")
def test_children_run_slots_at_a_time_and_a_failure_stops_none(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    slots = _jobs.plan(2, gpus=[], cores=cores)
    tasks = [(f"run{i}", [sys.executable, "-c", _CHILD, "0.3",
                          "2" if i == 1 else "0"], str(tmp_path / f"{i}.log"))
             for i in range(5)]
    events = []
    _jobs.run_processes(
        tasks, slots,
        on_start=lambda name, pid, slot, in_flight: events.append(
            ("start", name, in_flight, slot.cpus)),
        on_end=lambda name, pid, returncode, seconds, running: events.append(
            ("end", name, returncode, len(running))))
    in_flight, most = 0, 0
    for event in events:
        in_flight += 1 if event[0] == "start" else -1
        most = max(most, in_flight)
        if event[0] == "start":
            assert event[2] == in_flight - 1
    assert most == 2
    ends = {e[1]: e[2] for e in events if e[0] == "end"}
    assert ends == {"run0": 0, "run1": 2, "run2": 0, "run3": 0, "run4": 0}
    for i in range(5):
        with open(tmp_path / f"{i}.log") as f:
            record = json.loads(f.readline())
        (cpus,) = [e[3] for e in events if e[:2] == ("start", f"run{i}")]
        assert record["cpus"] == list(cpus)
        assert record["omp"] == str(len(cpus))
    assert sweep._failure(str(tmp_path), -1, 2, str(tmp_path / "1.log")) == (
        "--batch_size must be small, got 1e9")


# A sweep process with two long-lived children; prints their pids.
# `_jobs` imports only the standard library: loaded from its file, the
# driver starts without Keras.
_DRIVER = textwrap.dedent("""\
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("_jobs", sys.argv[1])
    _jobs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_jobs)
    child = ("import signal, sys, time\\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\\n"
             "time.sleep(600)\\n")
    tasks = [(f"run{i}", [sys.executable, "-c", child], None)
             for i in range(3)]
    _jobs.run_processes(
        tasks, _jobs.plan(2, gpus=[], cores=[0]),
        on_start=lambda name, pid, slot, n: print(pid, flush=True),
        on_end=lambda name, pid, code, s, r: print("end", code, flush=True))
    """)


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM,
                                    signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_no_child_outlives_the_sweep(signum):
    process = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, _jobs.__file__],
        stdout=subprocess.PIPE, text=True)
    pids = []
    try:
        pids = [int(process.stdout.readline()) for _ in range(2)]
        time.sleep(0.5)  # Past the children's start-up.
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
        assert wait_gone(pids)
        if signum == signal.SIGTERM:  # Forwarded, waited for, then exited.
            assert process.returncode == 128 + signal.SIGTERM
            assert output.split() == ["end", "143", "end", "143"]
        elif signum == signal.SIGINT:  # KeyboardInterrupt once both ended.
            assert process.returncode == -signal.SIGINT
            assert output.split() == ["end", "-2", "end", "-2"]
        # The third run is never started.
        assert [line for line in output.splitlines()
                if not line.startswith("end")] == []
    finally:
        process.kill()
        process.wait()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
