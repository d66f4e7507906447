r"""Draws the paper's kinds of figure and a table from run folders.

Reads only what `train.py` writes into run folders (`config.json`,
`status.json`, `metrics.jsonl`, `summary.json`); finished runs (status `done`)
are grouped by the arguments that differ between them, seed excepted (e.g.
`constant`, `random`, `cyclic P=6`, or `random C=60 l=0.0002`), and each group
is summarized over its seeds.

Outputs, in `--plot_dir` (default `<first --runs folder>/plots`):

* `curves.png`: training loss (left) and train/test accuracy (right) against
  the epoch, mean over seeds with a +-1 std band (Figures 1 and 2 of the
  paper).
* `test_accuracy.png`: best and final test accuracy per group, mean +- std
  (Figures 3, 4 left and 5 right).
* `generalization_gap.png`: train minus test accuracy at the end, mean +-
  std (Figure 4 right).
* `table.md`: the per-group table and Welch's t-test p-values for every
  pair of groups; `table.csv` (per-group mean and std) and `pvalues.csv`
  (one row per pair and metric) hold the same numbers for machines.

The std is the sample standard deviation over seeds (ddof = 1; 0 for a single
seed). p-values are from `scipy.stats.ttest_ind(equal_var=False)` (Welch),
undefined (`n/a`) with fewer than two runs in a group.

Example:

```
python experiments/plot.py --runs=runs/demo
```
"""

import csv
import io
import itertools
import math
import os
import warnings

from absl import app
from absl import flags
from absl import logging

import _rundir

_RUNS = flags.DEFINE_list(
    "runs", None,
    "Sweep roots or run folders; every run folder below them is read.")
_PLOT_DIR = flags.DEFINE_string(
    "plot_dir", None,
    "Where figures and tables go. Defaults to `<first --runs folder>/plots`.")
_GROUP_BY = flags.DEFINE_list(
    "group_by", None,
    "train.py arguments that define a group (e.g. protocol,period). "
    "Defaults to `protocol` plus every argument that differs between runs, "
    "seed excepted.")
_TITLE = flags.DEFINE_string("title", None, "Title on top of each figure.")

# Arguments that never define a group: they differ between seeds or do not
# change the training.
_NOT_GROUPING = frozenset({"seed", "output_dir", "verbose", "data_dir"})

# Short names in labels, as the paper writes them.
_SHORT_NAMES = {
    "learning_rate": "l",
    "batch_size": "C",
    "momentum": "mu",
    "period": "P",
    "delta": "Delta",
    "weight_decay": "w",
}

_TABLE_METRICS = (
    "best_test_accuracy",
    "final_test_accuracy",
    "final_train_accuracy",
    "generalization_gap",
    "final_train_loss",
)
_PVALUE_METRICS = ("best_test_accuracy", "final_test_accuracy",
                   "generalization_gap")


def _arguments(run):
    return run["config"].get("arguments", {})


def _default_group_by(runs):
    names = sorted({name for run in runs for name in _arguments(run)})
    varying = [
        name for name in names
        if name not in _NOT_GROUPING and name != "protocol"
        and len({repr(_arguments(run).get(name)) for run in runs}) > 1
    ]
    return ["protocol"] + varying


def _format_value(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_label(arguments, group_by):
    """Returns e.g. `cyclic P=6` for the arguments named in `group_by`."""
    parts = []
    for name in group_by:
        value = arguments.get(name)
        if value is None:
            continue  # e.g. the period of a constant run.
        if name == "protocol":
            parts.insert(0, str(value))
        else:
            short = _SHORT_NAMES.get(name, name)
            parts.append(f"{short}={_format_value(value)}")
    return " ".join(parts) or "all runs"


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance)


def _welch(a, b):
    """Returns (t, p) of Welch's t-test, NaN when undefined."""
    from scipy import stats  # pylint: disable=g-import-not-at-top

    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():  # Identical samples: p is NaN, fine.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def load_groups(runs, group_by=None):
    """Reads finished runs and groups them.

    Args:
        runs: list of str, sweep roots or run folders.
        group_by: list of str or None, the arguments that define a group.

    Returns:
        (groups, group_by, skipped): an ordered dict label -> list of runs (as
        `_rundir.load_run` returns them), the grouping used, and the folders
        of unfinished runs that were left out.
    """
    loaded, skipped = [], []
    for root in runs:
        if not os.path.isdir(root):
            raise ValueError(f"--runs: {root!r} is not a folder")
        for folder in _rundir.find_runs(root):
            run = _rundir.load_run(folder)
            if run["status"] == _rundir.DONE and run["summary"] is not None:
                loaded.append(run)
            else:
                skipped.append(folder)
    if not loaded:
        raise ValueError(
            f"no finished run (status 'done') below {', '.join(runs)}")
    group_by = list(group_by) if group_by else _default_group_by(loaded)
    groups = {}
    for run in loaded:
        label = group_label(_arguments(run), group_by)
        groups.setdefault(label, []).append(run)
    order = {"constant": 0, "random": 1, "cyclic": 2}

    def value_key(value):
        if value is None:
            return (2, 0.0, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, float(value), "")
        return (1, 0.0, str(value))

    def sort_key(label):
        arguments = _arguments(groups[label][0])
        return (order.get(arguments.get("protocol"), 3),
                [value_key(arguments.get(name)) for name in group_by])

    groups = {label: groups[label] for label in sorted(groups, key=sort_key)}
    return groups, group_by, skipped


def summarize(groups):
    """Returns rows (label, n, {metric: (mean, std)}) and p-value rows."""
    rows = []
    for label, runs in groups.items():
        stats = {
            metric: _mean_std([run["summary"].get(metric) for run in runs])
            for metric in _TABLE_METRICS + ("temperature_over_d",)
        }
        rows.append((label, len(runs), stats))
    pvalues = []
    for (label_a, runs_a), (label_b, runs_b) in itertools.combinations(
            groups.items(), 2):
        for metric in _PVALUE_METRICS:
            t, p = _welch([run["summary"].get(metric) for run in runs_a],
                          [run["summary"].get(metric) for run in runs_b])
            pvalues.append((label_a, label_b, metric, t, p))
    return rows, pvalues


def _number(value, digits=4):
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _pvalue(value):
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def _markdown(rows, pvalues, title):
    out = io.StringIO()
    if title:
        out.write(f"# {title}\n\n")
    out.write("Mean ± std over seeds (sample std).\n\n")
    header = ["group", "runs"] + list(_TABLE_METRICS) + ["T/D"]
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|" + "---|" * len(header) + "\n")
    for label, n, stats in rows:
        cells = [label, str(n)]
        for metric in _TABLE_METRICS:
            mean, std = stats[metric]
            cells.append(f"{_number(mean)} ± {_number(std)}")
        cells.append(f"{stats['temperature_over_d'][0]:.3g}"
                     if not math.isnan(stats["temperature_over_d"][0])
                     else "n/a")
        out.write("| " + " | ".join(cells) + " |\n")
    if pvalues:
        out.write("\nWelch's t-test p-values (two-sided) between groups.\n\n")
        out.write("| group A | group B | " + " | ".join(_PVALUE_METRICS)
                  + " |\n")
        out.write("|" + "---|" * (2 + len(_PVALUE_METRICS)) + "\n")
        by_pair = {}
        for label_a, label_b, metric, _, p in pvalues:
            by_pair.setdefault((label_a, label_b), {})[metric] = p
        for (label_a, label_b), values in by_pair.items():
            out.write(f"| {label_a} | {label_b} | " + " | ".join(
                _pvalue(values[m]) for m in _PVALUE_METRICS) + " |\n")
    return out.getvalue()


def _csv_text(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _curves(runs, key):
    """Returns epochs, mean and std of `key` over runs (common epochs only)."""
    series = [{row["epoch"]: row.get(key) for row in run["metrics"]}
              for run in runs]
    epochs = sorted(set.intersection(*(set(s) for s in series)))
    means, stds = [], []
    for epoch in epochs:
        mean, std = _mean_std([s[epoch] for s in series])
        means.append(mean)
        stds.append(std)
    return epochs, means, stds


def _save(figure, path):
    """Saves a figure atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _rundir.write_bytes(path, buffer.getvalue())


def _draw(groups, rows, output_dir, title):
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paths = {}

    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (label, runs) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        epochs, mean, std = _curves(runs, "train_loss")
        loss_axes.plot(epochs, mean, color=color, label=label)
        loss_axes.fill_between(epochs, [m - s for m, s in zip(mean, std)],
                               [m + s for m, s in zip(mean, std)],
                               color=color, alpha=0.2, linewidth=0)
        for key, style, suffix in (("train_accuracy", "-", "train"),
                                   ("test_accuracy", "--", "test")):
            epochs, mean, std = _curves(runs, key)
            accuracy_axes.plot(epochs, mean, style, color=color,
                               label=f"{label} ({suffix})")
            accuracy_axes.fill_between(
                epochs, [m - s for m, s in zip(mean, std)],
                [m + s for m, s in zip(mean, std)], color=color, alpha=0.15,
                linewidth=0)
    loss_axes.set(xlabel="epoch", ylabel="training loss", yscale="log")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy")
    loss_axes.legend(fontsize="small")
    accuracy_axes.legend(fontsize="x-small", ncol=2)
    if title:
        figure.suptitle(title)
    paths["curves"] = os.path.join(output_dir, "curves.png")
    _save(figure, paths["curves"])
    plt.close(figure)

    labels = [label for label, _, _ in rows]
    positions = range(len(labels))
    figure, axes = plt.subplots(figsize=(max(5, 1.3 * len(labels) + 2), 4))
    width = 0.38
    for offset, metric, name in ((-width / 2, "best_test_accuracy", "best"),
                                 (width / 2, "final_test_accuracy", "final")):
        axes.bar([p + offset for p in positions],
                 [stats[metric][0] for _, _, stats in rows], width,
                 yerr=[stats[metric][1] for _, _, stats in rows], capsize=4,
                 label=name)
    low = min(stats[m][0] - stats[m][1] for _, _, stats in rows
              for m in ("best_test_accuracy", "final_test_accuracy"))
    high = max(stats[m][0] + stats[m][1] for _, _, stats in rows
               for m in ("best_test_accuracy", "final_test_accuracy"))
    margin = max(0.005, 0.25 * (high - low))
    axes.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
    axes.set_xticks(list(positions), labels, rotation=20, ha="right")
    axes.set(ylabel="test accuracy (mean ± std over seeds)")
    axes.legend()
    if title:
        axes.set_title(title)
    paths["test_accuracy"] = os.path.join(output_dir, "test_accuracy.png")
    _save(figure, paths["test_accuracy"])
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(max(5, 1.3 * len(labels) + 2), 4))
    axes.bar(list(positions),
             [stats["generalization_gap"][0] for _, _, stats in rows],
             yerr=[stats["generalization_gap"][1] for _, _, stats in rows],
             capsize=4, color=colors[2 % len(colors)])
    axes.set_xticks(list(positions), labels, rotation=20, ha="right")
    axes.set(ylabel="train − test accuracy (mean ± std)")
    if title:
        axes.set_title(title)
    paths["generalization_gap"] = os.path.join(output_dir,
                                               "generalization_gap.png")
    _save(figure, paths["generalization_gap"])
    plt.close(figure)
    return paths


def run(*, runs, plot_dir=None, group_by=None, title=None):
    """Writes the figures and tables for the finished runs below `runs`.

    Args:
        runs: list of str, sweep roots or run folders.
        plot_dir: str or None, defaults to `<runs[0]>/plots`.
        group_by: list of str or None, see `--group_by`.
        title: str or None, a title for the figures and table.

    Returns:
        A dict name -> path of every file written.

    Raises:
        ValueError: if there is no finished run.
    """
    if isinstance(runs, str):
        runs = [runs]
    output_dir = plot_dir or os.path.join(runs[0], "plots")
    groups, group_by, skipped = load_groups(runs, group_by)
    for folder in skipped:
        logging.warning("Left out unfinished run %s", folder)
    logging.info("Groups (by %s): %s", ",".join(group_by),
                 {label: len(members) for label, members in groups.items()})
    os.makedirs(output_dir, exist_ok=True)
    rows, pvalues = summarize(groups)
    paths = _draw(groups, rows, output_dir, title)

    paths["table_md"] = os.path.join(output_dir, "table.md")
    _rundir.write_text(paths["table_md"], _markdown(rows, pvalues, title))
    header = ["group", "runs"]
    for metric in _TABLE_METRICS + ("temperature_over_d",):
        header += [f"{metric}_mean", f"{metric}_std"]
    table = []
    for label, n, stats in rows:
        row = [label, n]
        for metric in _TABLE_METRICS + ("temperature_over_d",):
            row += [repr(value) for value in stats[metric]]
        table.append(row)
    paths["table_csv"] = os.path.join(output_dir, "table.csv")
    _rundir.write_text(paths["table_csv"], _csv_text(header, table))
    paths["pvalues_csv"] = os.path.join(output_dir, "pvalues.csv")
    _rundir.write_text(paths["pvalues_csv"], _csv_text(
        ["group_a", "group_b", "metric", "t", "p"],
        [[a, b, m, repr(t), repr(p)] for a, b, m, t, p in pvalues]))
    for name, path in paths.items():
        logging.info("Wrote %s: %s", name, path)
    return paths


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run(runs=_RUNS.value, plot_dir=_PLOT_DIR.value,
        group_by=_GROUP_BY.value, title=_TITLE.value)


if __name__ == "__main__":
    flags.mark_flag_as_required("runs")
    app.run(main)
