"""Tests for experiments/plot.py on fake run folders written by the test."""

import csv
import os
import sys

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments"))

import _rundir  # noqa: E402
import plot  # noqa: E402

_EPOCHS = 4


def _fake_run(root, protocol, seed, final_test, *, period=None,
              status=_rundir.DONE, epochs=_EPOCHS):
    """Writes a run folder the way train.py does, with chosen numbers."""
    name = f"{protocol}{'' if period is None else period}_seed={seed}"
    folder = os.path.join(root, name)
    arguments = {"protocol": protocol, "period": period, "seed": seed,
                 "learning_rate": 0.005, "batch_size": 256, "momentum": 0.9,
                 "output_dir": folder, "model": "mlp", "dataset": "digits"}
    _rundir.write_json(os.path.join(folder, _rundir.CONFIG_FILE),
                       {"arguments": arguments})
    rows = []
    for epoch in range(1, epochs + 1):
        rows.append({
            "epoch": epoch,
            "train_loss": 1.0 / epoch + 0.01 * seed,
            "train_accuracy": 0.99 - 0.1 / epoch,
            "test_accuracy": final_test - 0.1 / epoch,
            "test_loss": 1.2 / epoch,
            "learning_rate": 0.005,
        })
    rows[-1]["test_accuracy"] = final_test
    _rundir.write_jsonl(os.path.join(folder, _rundir.METRICS_FILE), rows)
    if status == _rundir.DONE:
        _rundir.write_json(os.path.join(folder, _rundir.SUMMARY_FILE), {
            "final_test_accuracy": final_test,
            "best_test_accuracy": final_test,
            "final_train_accuracy": rows[-1]["train_accuracy"],
            "final_train_loss": rows[-1]["train_loss"],
            "generalization_gap": rows[-1]["train_accuracy"] - final_test,
            "wall_time_s": 1.0,
            "num_parameters": 79510,
            "temperature_over_d": 0.005 / (2 * 256 * 0.1),
        })
    _rundir.write_status(folder, status)
    return folder


@pytest.fixture
def sweep_root(tmp_path):
    root = str(tmp_path / "sweep")
    accuracies = {
        ("constant", None): [0.90, 0.91, 0.92],
        ("random", None): [0.93, 0.95, 0.94],
        ("cyclic", 6): [0.92, 0.93, 0.90],
    }
    for (protocol, period), values in accuracies.items():
        for seed, value in enumerate(values):
            _fake_run(root, protocol, seed, value, period=period)
    # An unfinished run must be left out, not break the plots.
    _fake_run(root, "random", 9, 0.5, status=_rundir.RUNNING, epochs=2)
    return root, accuracies


def test_writes_figures_and_tables(sweep_root, tmp_path):
    root, _ = sweep_root
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"))
    for name in ("curves", "test_accuracy", "generalization_gap", "table_md",
                 "table_csv", "pvalues_csv"):
        assert os.path.getsize(paths[name]) > 0, name
    for name in ("curves", "test_accuracy", "generalization_gap"):
        with open(paths[name], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # No temporary files are left behind.
    assert not [n for n in os.listdir(tmp_path / "plots") if n.endswith(".tmp")]


def test_table_has_mean_std_per_protocol(sweep_root, tmp_path):
    root, accuracies = sweep_root
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"))
    with open(paths["table_csv"]) as f:
        table = {row["group"]: row for row in csv.DictReader(f)}
    assert list(table) == ["constant", "random", "cyclic P=6"]
    for (protocol, period), values in accuracies.items():
        label = protocol if period is None else f"{protocol} P={period}"
        row = table[label]
        assert int(row["runs"]) == 3  # the unfinished run is not counted.
        np.testing.assert_allclose(float(row["final_test_accuracy_mean"]),
                                   np.mean(values))
        np.testing.assert_allclose(float(row["final_test_accuracy_std"]),
                                   np.std(values, ddof=1))
    with open(paths["table_md"]) as f:
        markdown = f.read()
    assert "| cyclic P=6 | 3 |" in markdown
    assert "Welch" in markdown


def test_pvalues_are_welch_for_every_pair(sweep_root, tmp_path):
    root, accuracies = sweep_root
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"))
    with open(paths["pvalues_csv"]) as f:
        rows = [row for row in csv.DictReader(f)
                if row["metric"] == "final_test_accuracy"]
    pairs = {(row["group_a"], row["group_b"]): float(row["p"]) for row in rows}
    assert set(pairs) == {("constant", "random"), ("constant", "cyclic P=6"),
                          ("random", "cyclic P=6")}
    expected = stats.ttest_ind(accuracies[("constant", None)],
                               accuracies[("random", None)],
                               equal_var=False).pvalue
    np.testing.assert_allclose(pairs[("constant", "random")], expected)


def test_single_seed_gives_undefined_pvalue(tmp_path):
    root = str(tmp_path / "runs")
    _fake_run(root, "constant", 0, 0.9)
    _fake_run(root, "random", 0, 0.95)
    paths = plot.run(runs=[root])
    assert os.path.dirname(paths["table_md"]) == os.path.join(root, "plots")
    with open(paths["table_md"]) as f:
        assert "n/a" in f.read()


def test_group_by_overrides_default_grouping(sweep_root, tmp_path):
    root, _ = sweep_root
    groups, group_by, skipped = plot.load_groups([root], group_by=["model"])
    assert group_by == ["model"]
    assert list(groups) == ["model=mlp"]
    assert len(groups["model=mlp"]) == 9
    assert len(skipped) == 1


def test_no_finished_run_is_a_clear_error(tmp_path):
    root = str(tmp_path / "runs")
    _fake_run(root, "constant", 0, 0.9, status=_rundir.FAILED)
    with pytest.raises(ValueError, match="no finished run"):
        plot.run(runs=[root])
