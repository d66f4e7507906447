"""Tests for experiments/tools/gpu_lease.sh, the GPU-lease script, on CPU.

The script is what a lent GPU machine runs (Keras-JAX, no TensorFlow): a
resumable sweep within a time budget whose compact run records come back in
one archive. Here it runs on the CPU on a few CIFAR-format images written by
the test, with every folder it uses pointed at a temporary one.
"""

import json
import os
import shutil
import subprocess
import tarfile

import keras
import pytest

from _helpers import REPO
from _helpers import write_cifar_folder

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax" or shutil.which("timeout") is None,
    reason="the lease runs Keras-JAX (tested once, on the JAX backend)")

_SCRIPT = os.path.join(REPO, "experiments", "tools", "gpu_lease.sh")
_RECORD_FILES = {"config.json", "flags.cfg", "metrics.jsonl", "status.json",
                 "summary.json"}


def _lease(tmp_path, *args):
    (tmp_path / "out").mkdir(exist_ok=True)
    flagfile = tmp_path / "lease.cfg"
    flagfile.write_text("--model=mlp\n--batch_size=8\n--epochs=2\n"
                        "--learning_rate=0.01\n--protocols=constant,random\n"
                        "--seeds=0\n")
    environment = dict(
        os.environ, OUT=str(tmp_path / "out"), PYTHONPATH=REPO,
        RLR_LEASE_CIFAR_DIR=str(tmp_path / "cifar"),
        RLR_LEASE_PARTS=str(tmp_path / "no_parts"),
        RLR_LEASE_WHEELS=str(tmp_path / "no_wheels"),
        RLR_LEASE_RESULTS=str(tmp_path / "results"),
        RLR_LEASE_ROOT=str(tmp_path / "runs"))
    return subprocess.run(
        ["bash", _SCRIPT, *args, "lease_test", str(flagfile)],
        cwd=REPO, env=environment, capture_output=True, text=True,
        timeout=600, check=False)


def _lease_log(tmp_path, budget_s):
    """Runs a lease of `budget_s` seconds; returns its lease.log."""
    completed = _lease(tmp_path, "run", str(budget_s))
    assert completed.returncode == 0, completed.stderr[-3000:]
    return (tmp_path / "out" / "lease.log").read_text()


@pytest.mark.slow
def test_lease_brings_back_compact_records_that_unpack_and_resume(tmp_path):
    write_cifar_folder(tmp_path / "cifar", per_batch=8, xz=True)
    log = _lease_log(tmp_path, 300)
    assert "sweep exit status: 0" in log, log[-3000:]
    assert (tmp_path / "out" / "card.txt").read_text().strip()
    with tarfile.open(tmp_path / "out" / "records.tar.gz") as archive:
        names = [name for name in archive.getnames()
                 if name.count("/") == 2]
    runs = {name.split("/")[1] for name in names}
    assert runs == {"constant_seed=0", "random_seed=0"}
    assert {name.split("/")[2] for name in names} == _RECORD_FILES

    unpacked = subprocess.run(
        ["bash", _SCRIPT, "unpack", str(tmp_path / "out"), "lease_test"],
        cwd=REPO, capture_output=True, text=True, check=False,
        env=dict(os.environ,
                 RLR_LEASE_RESULTS=str(tmp_path / "results")))
    assert unpacked.returncode == 0, unpacked.stderr
    record = tmp_path / "results" / "lease_test" / "runs" / "random_seed=0"
    assert json.loads((record / "status.json").read_text())["status"] == "done"
    assert not list(record.glob("*.h5"))

    # The next lease starts from the committed records: nothing to retrain.
    log = _lease_log(tmp_path, 300)
    assert "0 to go" in log or "2 done already" in log, log[-3000:]


@pytest.mark.slow
def test_lease_stops_at_its_budget_and_still_packs(tmp_path):
    write_cifar_folder(tmp_path / "cifar", per_batch=8, xz=True)
    log = _lease_log(tmp_path, 1)
    assert "sweep exit status: 124" in log, log[-3000:]
    assert (tmp_path / "out" / "records.tar.gz").exists()
