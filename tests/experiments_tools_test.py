"""Tests for experiments/tools/migrate_records.py and referee.py."""

import importlib.util
import json
import os

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

pytestmark = pytest.mark.backend_independent

_TOOLS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments", "tools")


def _load(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(_TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


migrate_records = _load("migrate_records")
referee = _load("referee")

_HEADER = ("# Flags of this run. Replay (resumes, or does nothing if done):\n"
           "#   python experiments/train.py --flagfile=THIS_FILE\n")


def _write_record(folder, protocol, delta, dataset):
    folder.mkdir(parents=True)
    arguments = {"protocol": protocol, "delta": delta, "dataset": dataset,
                 "learning_rate": 0.005, "period": None}
    with open(folder / "config.json", "w") as f:
        f.write(json.dumps({"arguments": arguments, "versions": {}},
                           indent=2, sort_keys=True) + "\n")
    lines = [f"--protocol={protocol}", f"--dataset={dataset}",
             "--learning_rate=0.005"]
    if delta is not None:
        lines.append(f"--delta={delta}")
    with open(folder / "flags.cfg", "w") as f:
        f.write(_HEADER + "\n".join(lines) + "\n")


def test_migration_drops_delta_of_constant_and_relativizes_path(tmp_path):
    run = tmp_path / "runs" / "constant_seed=0"
    _write_record(run, "constant", 1.0,
                  "idx-split:/work/shared/data/mnist-t10k")
    assert migrate_records.main([str(tmp_path)]) == 0
    flags = (run / "flags.cfg").read_text()
    arguments = json.loads((run / "config.json").read_text())["arguments"]
    assert not [line for line in flags.splitlines()
                if line.startswith("--delta")]
    assert "--dataset=idx-split:../shared/data/mnist-t10k" in flags
    assert arguments["delta"] is None
    assert arguments["dataset"] == "idx-split:../shared/data/mnist-t10k"
    assert flags.count(migrate_records.MARK) == 1
    # Idempotent: a second pass changes no byte, and --check finds nothing.
    before = flags, (run / "config.json").read_text()
    assert migrate_records.main([str(tmp_path)]) == 0
    assert ((run / "flags.cfg").read_text(),
            (run / "config.json").read_text()) == before
    assert migrate_records.main(["--check", str(tmp_path)]) == 0


def test_migration_keeps_random_delta_and_installed_dataset(tmp_path):
    run = tmp_path / "random_seed=0"
    _write_record(run, "random", 0.1, "idx:/usr/share/datasets/fashion-mnist")
    before = (run / "flags.cfg").read_text()
    assert migrate_records.main(["--check", str(tmp_path)]) == 0
    migrate_records.main([str(tmp_path)])
    assert (run / "flags.cfg").read_text() == before


def test_migration_renames_weight_decay_in_both_files(tmp_path):
    run = tmp_path / "random_seed=0"
    _write_record(run, "random", 0.1, "digits")
    with open(run / "config.json") as f:
        config = json.load(f)
    config["arguments"]["weight_decay"] = 0.001
    with open(run / "config.json", "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with open(run / "flags.cfg", "a") as f:
        f.write("--weight_decay=0.001\n--batch_size=60\n")
    assert migrate_records.main(["--check", str(tmp_path)]) == 1
    assert migrate_records.main([str(tmp_path)]) == 0
    flags = (run / "flags.cfg").read_text()
    arguments = json.loads((run / "config.json").read_text())["arguments"]
    assert "weight_decay" not in arguments
    assert arguments["coupled_weight_decay"] == 0.001
    body = [line for line in flags.splitlines() if not line.startswith("#")]
    assert body[-2:] == ["--coupled_weight_decay=0.001", "--batch_size=60"]
    assert flags.count(migrate_records.MARK_RENAMED) == 1
    assert migrate_records.MARK not in flags  # Nothing of issue 22 to do.
    before = flags, (run / "config.json").read_text()
    assert migrate_records.main([str(tmp_path)]) == 0
    assert ((run / "flags.cfg").read_text(),
            (run / "config.json").read_text()) == before


def test_holm_matches_statsmodels():
    pvalues = np.random.default_rng(0).uniform(0, 0.1, size=30)
    expected = multipletests(pvalues, method="holm")[1]
    np.testing.assert_allclose(referee.holm(pvalues), expected, rtol=1e-12)
