"""Tests for the report (rlr-plot, experiments/plot.py) on fake run folders written by the test."""

import csv
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EXPERIMENTS = os.path.join(_REPO, "experiments")

from rlr_keras.experiment import _rundir  # noqa: E402
from rlr_keras.experiment import _stats  # noqa: E402
from rlr_keras.experiment import _report as plot  # noqa: E402

pytestmark = pytest.mark.backend_independent

_EPOCHS = 4


def _fake_run(root, protocol, seed, final_test, *, period=None,
              status=_rundir.DONE, epochs=_EPOCHS, train_eval=None,
              delta=1.0, extra_metrics=None):
    """Writes a run folder the way train.py does, with chosen numbers.

    `train_eval`: if given, every metrics row also holds
    `train_eval_accuracy` = train_eval and `train_eval_loss`.
    """
    name = f"{protocol}{'' if period is None else period}_seed={seed}"
    folder = os.path.join(root, name)
    arguments = {"protocol": protocol, "period": period, "seed": seed,
                 "learning_rate": 0.005, "batch_size": 256, "momentum": 0.9,
                 "delta": delta, "output_dir": folder, "model": "mlp",
                 "dataset": "digits"}
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
            "learning_rate": (0.005 if period is None else
                              0.005 * (1 + math.cos(math.pi * (epoch - 1)
                                                    / period))),
        })
        if train_eval is not None:
            rows[-1].update(train_eval_accuracy=train_eval,
                            train_eval_loss=0.5 / epoch)
        rows[-1].update((extra_metrics or {}).get(epoch, {}))
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


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_pvalues_csv_has_tost_and_mde_for_every_pair(sweep_root, tmp_path):
    root, accuracies = sweep_root
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"),
                     equivalence_margin=0.02)
    rows = {(row["group_a"], row["group_b"], row["metric"]): row
            for row in _read_csv(paths["pvalues_csv"])}
    assert len(rows) == 3 * len(plot._PVALUE_METRICS)
    row = rows[("constant", "random", "final_test_accuracy")]
    a, b = accuracies[("constant", None)], accuracies[("random", None)]
    # TOST: the larger p of two one-sided Welch tests on shifted samples.
    lower = stats.ttest_ind(np.add(a, 0.02), b, equal_var=False,
                            alternative="greater").pvalue
    upper = stats.ttest_ind(np.subtract(a, 0.02), b, equal_var=False,
                            alternative="less").pvalue
    np.testing.assert_allclose(float(row["tost_p"]), max(lower, upper))
    assert row["equivalent"] == ("true" if max(lower, upper) < 0.05
                                 else "false")
    np.testing.assert_allclose(float(row["difference"]),
                               np.mean(a) - np.mean(b))
    np.testing.assert_allclose(float(row["margin"]), 0.02)
    assert (row["n_a"], row["n_b"]) == ("3", "3")
    pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    np.testing.assert_allclose(
        float(row["mde"]), _stats.minimum_detectable_effect(pooled, 3, 3))
    with open(paths["table_md"]) as f:
        markdown = f.read()
    assert "TOST" in markdown and "±0.02" in markdown
    assert "| constant | random | final_test_accuracy |" in markdown


def test_groups_with_the_same_seeds_are_also_compared_pairwise(sweep_root,
                                                                tmp_path):
    root, accuracies = sweep_root
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"),
                     equivalence_margin=0.02)
    row = next(row for row in _read_csv(paths["pvalues_csv"])
               if (row["group_a"], row["group_b"], row["metric"])
               == ("constant", "random", "final_test_accuracy"))
    a, b = accuracies[("constant", None)], accuracies[("random", None)]
    np.testing.assert_allclose(float(row["paired_p"]),
                               stats.ttest_rel(a, b).pvalue)
    np.testing.assert_allclose(float(row["paired_tost_p"]),
                               _stats.paired_tost(a, b, 0.02))
    assert row["paired_equivalent"] in ("true", "false")


def test_groups_with_other_seeds_have_no_paired_comparison(tmp_path):
    root = str(tmp_path / "sweep")
    for seed, value in enumerate([0.90, 0.91, 0.92]):
        _fake_run(root, "constant", seed, value)
        _fake_run(root, "random", seed + 10, value)
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"))
    for row in _read_csv(paths["pvalues_csv"]):
        assert row["paired_p"] == row["paired_tost_p"] == "nan", row
        assert row["paired_equivalent"] == "n/a"


@pytest.mark.parametrize("margin,expected", [(0.1, "true"), (0.001, "false")])
def test_equivalence_margin_decides_equivalence(sweep_root, tmp_path, margin,
                                                expected):
    root, _ = sweep_root
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"),
                     equivalence_margin=margin)
    rows = [row for row in _read_csv(paths["pvalues_csv"])
            if row["metric"] == "best_test_accuracy"]
    assert {row["equivalent"] for row in rows} == {expected}


def test_single_seed_comparisons_are_undefined(tmp_path):
    root = str(tmp_path / "runs")
    _fake_run(root, "constant", 0, 0.9)
    _fake_run(root, "random", 0, 0.95)
    paths = plot.run(runs=[root])
    for row in _read_csv(paths["pvalues_csv"]):
        assert row["p"] == row["tost_p"] == row["mde"] == "nan", row
        assert row["equivalent"] == "n/a"


def test_gap_uses_train_eval_accuracy_when_every_run_has_it(tmp_path):
    root = str(tmp_path / "runs")
    for seed, (test, train_eval) in enumerate([(0.90, 0.97), (0.92, 0.96)]):
        _fake_run(root, "constant", seed, test, train_eval=train_eval)
        _fake_run(root, "random", seed, test, train_eval=train_eval)
    paths = plot.run(runs=[root])
    table = {row["group"]: row for row in _read_csv(paths["table_csv"])}
    np.testing.assert_allclose(
        float(table["constant"]["generalization_gap_mean"]),
        np.mean([0.97 - 0.90, 0.96 - 0.92]))
    np.testing.assert_allclose(
        float(table["constant"]["final_train_accuracy_mean"]), 0.965)
    assert table["constant"]["train_accuracy_source"] == "train_eval_accuracy"
    with open(paths["table_md"]) as f:
        assert "evaluated after each epoch (`train_eval_accuracy`" in f.read()


def test_gap_falls_back_to_running_mean_and_says_so(sweep_root, tmp_path):
    root, _ = sweep_root
    # One run with train_eval_accuracy is not enough: all or none.
    _fake_run(root, "cyclic", 7, 0.9, period=6, train_eval=0.99)
    paths = plot.run(runs=[root], plot_dir=str(tmp_path / "plots"))
    table = {row["group"]: row for row in _read_csv(paths["table_csv"])}
    assert {row["train_accuracy_source"] for row in table.values()} == {
        "train_accuracy"}
    running_mean = 0.99 - 0.1 / _EPOCHS
    np.testing.assert_allclose(
        float(table["random"]["generalization_gap_mean"]),
        running_mean - np.mean([0.93, 0.95, 0.94]))
    with open(paths["table_md"]) as f:
        assert "running mean over the epoch's mini-batches" in f.read()


def test_learning_rate_curve_per_protocol(tmp_path):
    root = str(tmp_path / "runs")
    constant = [plot.load_run(_fake_run(root, "constant", 0, 0.9))]
    cyclic = [plot.load_run(_fake_run(root, "cyclic", 0, 0.9, period=2))]
    random = [plot.load_run(_fake_run(root, "random", s, 0.9, delta=0.6))
              for s in range(2)]
    epochs, mean, spread, _ = plot.learning_rate_curve(constant)
    assert epochs == [1, 2, 3, 4]
    np.testing.assert_allclose(mean, 0.005)
    np.testing.assert_allclose(spread, 0.0)
    # Eq. 21 with P = 2: 2 l, l, 0, l.
    _, mean, _, _ = plot.learning_rate_curve(cyclic)
    np.testing.assert_allclose(mean, [0.01, 0.005, 0.0, 0.005], atol=1e-12)
    # alpha uniform on [0.4, 1.6]: std 0.6 / sqrt(3).
    _, mean, spread, note = plot.learning_rate_curve(random)
    np.testing.assert_allclose(mean, 0.005)
    np.testing.assert_allclose(spread, 0.005 * 0.6 / math.sqrt(3))
    assert "Δ/√3" in note
    # Measured alpha statistics, when the metrics hold them, win.
    measured = {e: {"alpha_mean": 1.1, "alpha_std": 0.3} for e in range(1, 5)}
    random = [plot.load_run(_fake_run(root, "random", 5, 0.9,
                                      extra_metrics=measured))]
    _, mean, spread, note = plot.learning_rate_curve(random)
    np.testing.assert_allclose(mean, 0.005 * 1.1)
    np.testing.assert_allclose(spread, 0.005 * 0.3)
    assert "measured" in note
    # A cyclic run without recorded learning rates: nothing drawn, not l.
    missing = {e: {"learning_rate": None} for e in range(1, 5)}
    cyclic = [plot.load_run(_fake_run(root, "cyclic", 1, 0.9, period=3,
                                      extra_metrics=missing))]
    _, mean, _, note = plot.learning_rate_curve(cyclic)
    assert all(math.isnan(m) for m in mean) and "no learning_rate" in note


def test_protocol_specific_arguments_stay_out_of_other_labels():
    group_by = ["protocol", "delta", "period"]
    assert plot.group_label({"protocol": "constant", "delta": 0.0},
                            group_by) == "constant"
    assert plot.group_label({"protocol": "random", "delta": 0.5},
                            group_by) == "random Delta=0.5"
    assert plot.group_label({"protocol": "cyclic", "delta": 0.0, "period": 6},
                            group_by) == "cyclic P=6"


def _run_script(*flags_):
    return subprocess.run(
        [sys.executable, os.path.join(_EXPERIMENTS, "plot.py"), *flags_],
        capture_output=True, text=True, timeout=120, check=False)


def _tear(path, line=None):
    """Cuts `path` in the middle (of line `line`, 1-based, for JSONL)."""
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    if line is None:
        text = "".join(lines)
        text = text[:len(text) // 2]
    else:
        lines[line - 1] = lines[line - 1][:10] + "\n"
        text = "".join(lines)
    with open(path, "w") as f:
        f.write(text)


@pytest.mark.parametrize("case", [
    "group_by", "runs_empty", "runs_missing", "runs_without_runs",
    "plot_dir_file", "torn_config", "torn_summary", "torn_status",
    "torn_metrics_line"])
def test_bad_input_is_one_readable_error_line(sweep_root, tmp_path, case):
    root, _ = sweep_root
    run_dir = os.path.join(root, "random_seed=1")
    plot_dir = str(tmp_path / "plots")
    flags_ = [f"--runs={root}", f"--plot_dir={plot_dir}"]
    if case == "group_by":
        flags_.append("--group_by=protocl,period")
        expected, code = ["--group_by", "'protocl'", "valid:", "protocol",
                          "period"], 2
    elif case == "runs_empty":
        flags_[0] = "--runs="
        expected, code = ["--runs is empty"], 2
    elif case == "runs_missing":
        flags_[0] = f"--runs={tmp_path / 'nowhere'}"
        expected, code = ["--runs", "nowhere", "does not exist"], 2
    elif case == "runs_without_runs":
        os.makedirs(tmp_path / "empty")
        flags_[0] = f"--runs={tmp_path / 'empty'}"
        expected, code = ["--runs", "no run folder", "config.json"], 2
    elif case == "plot_dir_file":
        with open(plot_dir, "w") as f:
            f.write("not a folder")
        expected, code = ["--plot_dir", plot_dir, "is a file"], 2
    elif case.startswith("torn_") and case != "torn_metrics_line":
        name = {"torn_config": _rundir.CONFIG_FILE,
                "torn_summary": _rundir.SUMMARY_FILE,
                "torn_status": _rundir.STATUS_FILE}[case]
        _tear(os.path.join(run_dir, name))
        expected, code = [os.path.join(run_dir, name), "line", "not valid "
                          "JSON"], 1
    else:
        _tear(os.path.join(run_dir, _rundir.METRICS_FILE), line=3)
        expected, code = [os.path.join(run_dir, _rundir.METRICS_FILE)
                          + ": line 3:", "not valid JSON"], 1
    result = _run_script(*flags_)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert not os.path.isdir(plot_dir) or not os.listdir(plot_dir)


def test_regenerates_from_committed_run_records(tmp_path):
    # docs/results/<figure>/runs/: only the four small files per run.
    figure_dir = tmp_path / "docs" / "results" / "fig_test"
    runs_dir = str(figure_dir / "runs")
    for seed, (constant, random) in enumerate([(0.90, 0.93), (0.91, 0.95),
                                               (0.92, 0.94)]):
        _fake_run(runs_dir, "constant", seed, constant)
        _fake_run(runs_dir, "random", seed, random)
    for folder in os.listdir(runs_dir):
        assert sorted(os.listdir(os.path.join(runs_dir, folder))) == [
            "config.json", "metrics.jsonl", "status.json", "summary.json"]
    result = _run_script(f"--runs={runs_dir}", f"--plot_dir={figure_dir}",
                         "--title=Test figure", "--equivalence_margin=0.05")
    assert result.returncode == 0, result.stderr
    for name in ("curves.png", "test_accuracy.png", "generalization_gap.png"):
        with open(figure_dir / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    pvalues = _read_csv(figure_dir / "pvalues.csv")
    assert {(row["group_a"], row["group_b"]) for row in pvalues} == {
        ("constant", "random")}
    for column in ("t", "p", "tost_p", "equivalent", "mde", "margin",
                   "difference"):
        assert column in pvalues[0], column
    table = _read_csv(figure_dir / "table.csv")
    assert [row["group"] for row in table] == ["constant", "random"]
    assert "train_accuracy_source" in table[0]
    with open(figure_dir / "table.md") as f:
        markdown = f.read()
    assert "# Test figure" in markdown
    assert "| constant | 3 |" in markdown and "TOST p" in markdown
    assert (f"Regenerate: `python experiments/plot.py --runs={runs_dir} "
            f"--plot_dir={figure_dir} '--title=Test figure' "
            "--equivalence_margin=0.05`") in markdown


@pytest.mark.slow
def test_matplotlib_only_where_a_report_is_made(sweep_root, tmp_path):
    # A sweep without a report runs with matplotlib missing (Keras itself
    # imports SciPy, so only matplotlib can be checked this way); the report
    # then says which extra to install.
    root, _ = sweep_root
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from rlr_keras import experiment\n"
        "result = experiment.sweep(sys.argv[2], model='mlp', "
        "dataset='digits', protocols=['constant'], seeds=[0], epochs=1, "
        "batch_size=256, verbose=0, plot=False)\n"
        "assert result['done'] == ['constant_seed=0'], result\n"
        "try:\n"
        "    experiment.report([sys.argv[1]], plot_dir=sys.argv[3])\n"
        "except ImportError as error:\n"
        "    assert 'rlr_keras[experiments]' in str(error), error\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n")
    result = subprocess.run(
        [sys.executable, "-c", code, root, str(tmp_path / "own_sweep"),
         str(tmp_path / "plots")],
        capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, PYTHONPATH=_REPO, KERAS_BACKEND="jax"))
    assert result.returncode == 0, result.stderr[-3000:]


def test_learning_rate_curve_of_random_runs_with_default_delta(tmp_path):
    # delta: null is the library's default (1); no alpha statistics, or no
    # metrics at all, fall back to it instead of a TypeError.
    root = str(tmp_path / "runs")
    random = [plot.load_run(_fake_run(root, "random", 0, 0.9, delta=None))]
    _, mean, spread, note = plot.learning_rate_curve(random)
    np.testing.assert_allclose(mean, 0.005)
    np.testing.assert_allclose(spread, 0.005 / math.sqrt(3))
    assert "Δ/√3" in note
    with open(os.path.join(random[0]["path"], _rundir.METRICS_FILE), "w"):
        pass
    epochs, mean, spread, _ = plot.learning_rate_curve(
        [plot.load_run(random[0]["path"])])
    assert epochs == mean == spread == []


def test_config_whose_arguments_are_not_an_object_is_named(tmp_path):
    root = str(tmp_path / "runs")
    folder = _fake_run(root, "constant", 0, 0.9)
    path = os.path.join(folder, _rundir.CONFIG_FILE)
    _rundir.write_json(path, {"arguments": ["protocol", "constant"]})
    with pytest.raises(plot.RunFileError,
                       match=f"{path}: 'arguments' must be an object"):
        plot.load_run(folder)
