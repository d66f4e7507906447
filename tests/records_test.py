"""The committed run records (docs/results/*/runs/) replay at this commit.

Every record's flags.cfg says to replay it with `python experiments/train.py
--flagfile=THIS_FILE` from the repository root. These tests check that this
still works: the flags match the record's config.json and need no migration
(experiments/tools/migrate_records.py), and one record of each figure folder
trains through train.py's command line, on small IDX
files that the test writes (the records' own data lie outside the
repository), for one epoch.
"""

import glob
import gzip
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

# The records' flags and train.py's command line are the same on every
# backend: checked once, in the TensorFlow run.
pytestmark = pytest.mark.backend_independent

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RECORDS = sorted(glob.glob(
    os.path.join(_REPO, "docs", "results", "*", "runs", "*", "flags.cfg")))
_ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                    PYTHONPATH=_REPO)
# Enough training images for every record's batch size (256) and probe set
# (1,024) after the 80/20 split of idx-split.
_IMAGES = 1600


def _flags(path):
    """Returns {name: value} of a flagfile's `--name=value` lines."""
    flags = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("--"):
                name, _, value = line[2:].partition("=")
                flags[name] = value
    return flags


def _arguments(record):
    with open(os.path.join(os.path.dirname(record), "config.json")) as f:
        return json.load(f)["arguments"]


def _write_idx(path, array):
    """Writes `array` (uint8) as a gzipped IDX file (magic 0x08, ndim)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory):
    """A folder with the four MNIST-format IDX files, 10 balanced classes."""
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", _IMAGES), ("t10k", _IMAGES)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 256, size=(count, 28, 28))
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def test_there_are_records():
    assert len(_RECORDS) >= 75


def test_flags_match_config():
    """flags.cfg and config.json's arguments say the same for every record,
    and nothing that today's train.py refuses is left."""
    for record in _RECORDS:
        flags, arguments = _flags(record), _arguments(record)
        if arguments["protocol"] != "random":
            assert "delta" not in flags, record
            assert arguments["delta"] is None, record
        assert flags["dataset"] == arguments["dataset"], record
        assert flags["protocol"] == arguments["protocol"], record
        assert float(flags["learning_rate"]) == arguments["learning_rate"]
        assert int(flags["epochs"]) == arguments["epochs"], record
        # No path on the machine that made the run, except an installed
        # Debian dataset (apt-get install dataset-fashion-mnist).
        path = flags["dataset"].partition(":")[2]
        assert (not os.path.isabs(path)
                or path.startswith("/usr/share/datasets/")), record


def test_migration_is_complete_and_idempotent():
    completed = subprocess.run(
        [sys.executable, "experiments/tools/migrate_records.py", "--check",
         "docs/results"], cwd=_REPO, capture_output=True, text=True,
        check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.search(r"\b0 need migration", completed.stdout)


def _one_record_per_figure():
    """One record per figure folder: a constant or cyclic one where the
    folder has them (their delta was the migration's main change), else the
    first."""
    chosen = {}
    for record in _RECORDS:
        figure = record.split(os.sep)[-4]
        best = chosen.get(figure)
        if best is None or (_arguments(best)["protocol"] == "random"
                            and _arguments(record)["protocol"] != "random"):
            chosen[figure] = record
    return sorted(chosen.items())


@pytest.mark.slow
@pytest.mark.parametrize(
    "record", [record for _, record in _one_record_per_figure()],
    ids=[figure for figure, _ in _one_record_per_figure()])
def test_record_replays(record, idx_folder, tmp_path):
    """The record's own flagfile trains through train.py at this commit
    (its data and epochs replaced by the test's)."""
    kind = _flags(record)["dataset"].partition(":")[0]
    output_dir = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "experiments/train.py", f"--flagfile={record}",
         f"--output_dir={output_dir}", f"--dataset={kind}:{idx_folder}",
         "--epochs=1", "--verbose=0"],
        cwd=_REPO, env=_ENVIRONMENT, capture_output=True, text=True,
        check=False,
        timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(output_dir / "status.json") as f:
        assert json.load(f)["status"] == "done"
    with open(output_dir / "config.json") as f:
        config = json.load(f)
    expected = dict(_arguments(record), dataset=f"{kind}:{idx_folder}",
                    epochs=1, output_dir=str(output_dir), verbose=0)
    for name, value in expected.items():
        if name in config["arguments"]:
            assert config["arguments"][name] == value, name
    # Provenance of the new run: the commit and whether the tree was dirty.
    assert set(config["source"]) >= {"commit", "dirty"}
    assert isinstance(config["source"]["dirty"], bool)
