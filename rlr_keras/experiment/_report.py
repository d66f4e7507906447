r"""Reports: the paper's kinds of figure and tables, from run folders.

`rlr_keras.experiment.report` (and `rlr-plot`, experiments/plot.py).

Reads only what a run (`rlr_keras.experiment.train`) writes into run folders (`config.json`,
`status.json`, `metrics.jsonl`, `summary.json`; weights and TensorBoard
events are not needed, so a folder of committed run records such as
`docs/results/<figure>/runs/` is enough). Finished runs (status `done`) are
grouped by the arguments that differ between them, seed excepted (e.g.
`constant`, `random`, `cyclic P=6`, or `random C=60 l=0.0002`), and each
group is summarized over its seeds.

Outputs, in `plot_dir` (default `<first runs folder>/plots`):

* `curves.png`: four panels against the epoch, mean over seeds with a
  +-1 std band: training loss, training accuracy, test accuracy (Figures 1,
  2, 5 and 6 of the paper) and the learning rate per epoch (constant: l;
  random: the mean and std of l * alpha, from the metrics' `alpha_mean` and
  `alpha_std` when present, else l +- l Delta / sqrt(3), the std of alpha
  uniform on [1 - Delta, 1 + Delta]; cyclic: the cosine, from the metrics'
  `learning_rate`). Each group has its own colour, line style and markers,
  so curves that coincide stay visible.
* `test_accuracy.png`: best and final test accuracy, every seed as a point
  with the group's mean +- std (Figures 3, 4 left and 5 right).
* `generalization_gap.png`: final train minus final test accuracy, every
  seed with the mean +- std (Figure 4 right).
* `table.md`: per-group means +- std, Welch's t-test p-values for every pair
  of groups, and for every pair and metric the TOST equivalence test and the
  minimum detectable effect; `table.csv` (per group) and `pvalues.csv` (per
  pair and metric) hold the same numbers for machines.

Train accuracy: if every run's metrics rows hold `train_eval_accuracy` (and
`train_eval_loss`), the training set evaluated after the epoch, those are
used for the final train accuracy, train loss, generalization gap and
curves; otherwise Keras' running means over the epoch's mini-batches
(`train_accuracy`, `train_loss`). The tables and labels say which.

Statistics (`_stats.py`): std is the sample std over seeds (ddof = 1, 0 for
a single seed). For groups a, b with d = mean(a) - mean(b):

* Welch's t-test, p two-sided (`scipy.stats.ttest_ind(equal_var=False)`).
* TOST with margin delta = `--equivalence_margin` (accuracy units, stated
  before the analysis): p = max(P(T_nu > (d + delta) / se),
  P(T_nu < (d - delta) / se)), Welch's se and nu; "equivalent" when
  p < 0.05.
* MDE: the true difference that a two-sided Welch test at alpha = 0.05
  detects with 80 % power, for normal data with the pooled sample std s_p
  and the two group sizes (`_stats.minimum_detectable_effect`).

All are `n/a` with fewer than two runs in a group.

Errors in the flags or in the run files end the script with one line on
stderr naming the flag or file and what is allowed (exit status 2 for a
flag, 1 for an unreadable run file).

Example:

```
python experiments/plot.py --runs=runs/demo
python experiments/plot.py --runs=docs/results/fig3_model1_fashion/runs \
    --plot_dir=docs/results/fig3_model1_fashion --equivalence_margin=0.005
```
"""


import csv
import io
import itertools
import json
import math
import os
import shlex

from absl import logging

from rlr_keras.experiment import _rundir

try:  # SciPy, statsmodels (matplotlib is imported where a figure is drawn).
    from rlr_keras.experiment import _stats
except ImportError as _error:
    raise ImportError(
        f"reports need SciPy, statsmodels and matplotlib ({_error}): pip install "
        "\"rlr_keras[experiments]\"") from _error

ALPHA = 0.05  # Level of every test.
POWER = 0.8  # Power of the minimum detectable effect.

# Arguments that never define a group: they differ between seeds or do not
# change the training.
_NOT_GROUPING = frozenset({"seed", "output_dir", "verbose", "data_dir"})

# Arguments that only matter for one protocol (no `Delta=0` on a constant).
_PROTOCOL_ONLY = {"delta": "random", "period": "cyclic"}

# Short names in labels, as the paper writes them.
_SHORT_NAMES = {
    "learning_rate": "l",
    "batch_size": "C",
    "momentum": "mu",
    "period": "P",
    "delta": "Delta",
    "coupled_weight_decay": "w",
    "weight_decay": "w",  # Its name in runs recorded before 0.2.0.
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

# Where the train accuracy and loss come from: metrics keys and a description.
_TRAIN_EVALUATED = ("train_eval_accuracy", "train_eval_loss",
                    "training set evaluated after each epoch")
_TRAIN_RUNNING_MEAN = ("train_accuracy", "train_loss",
                       "Keras' running mean over the epoch's mini-batches")

_LINE_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


class FlagValueError(ValueError):
    """A flag (an argument of `run`) with a value that cannot be used."""


class RunFileError(ValueError):
    """A file of a run folder that cannot be read (torn or hand-edited)."""


# Reading run folders ----------------------------------------------------------


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise RunFileError(f"{path}: cannot be read ({error})") from None


def _parse_json_object(text, path, line=None):
    where = f"{path}: line {line}" if line else path
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if line is None:
            where = f"{path}: line {error.lineno} column {error.colno}"
        raise RunFileError(
            f"{where}: not valid JSON ({error.msg}); the file is torn or was "
            "edited by hand: restore it or move the run folder away"
        ) from None
    if not isinstance(value, dict):
        raise RunFileError(f"{where}: expected a JSON object {{...}}, got "
                           f"{type(value).__name__}")
    return value


def _read_json(path):
    """Returns the JSON object in `path`, None if missing; RunFileError."""
    text = _read_text(path)
    return None if text is None else _parse_json_object(text, path)


def _read_metrics(path):
    """Returns metrics.jsonl's rows ([] if missing); RunFileError if torn."""
    rows = []
    for number, line in enumerate((_read_text(path) or "").splitlines(), 1):
        if not line.strip():
            continue
        row = _parse_json_object(line, path, number)
        if not isinstance(row.get("epoch"), int):
            raise RunFileError(f"{path}: line {number}: no integer 'epoch' "
                               "(each line is one epoch, 1-based)")
        rows.append(row)
    return rows


def load_run(folder):
    """Returns the run's config, status, metrics and summary, checked.

    Like `_rundir.load_run`, but a file that is not valid JSON raises a
    `RunFileError` naming the file and line.
    """
    config_path = os.path.join(folder, _rundir.CONFIG_FILE)
    config = _read_json(config_path) or {}
    if not isinstance(config.get("arguments", {}), dict):
        raise RunFileError(
            f"{config_path}: 'arguments' must be an object (name: value), "
            f"got a {type(config['arguments']).__name__}; restore or delete "
            "that file")
    status = _read_json(os.path.join(folder, _rundir.STATUS_FILE)) or {}
    return {
        "path": folder,
        "config": config,
        "status": status.get("status"),
        "error": status.get("error"),
        "metrics": _read_metrics(os.path.join(folder, _rundir.METRICS_FILE)),
        "summary": _read_json(os.path.join(folder, _rundir.SUMMARY_FILE)),
    }


def _run_folders(runs):
    """Returns every run folder below `runs`; FlagValueError if none."""
    runs = [root for root in runs or [] if root.strip()]
    if not runs:
        raise FlagValueError(
            "--runs is empty; give one or more sweep roots or run folders, "
            "comma-separated")
    folders = []
    for root in runs:
        if not os.path.exists(root):
            raise FlagValueError(
                f"--runs: {root!r} does not exist; give sweep roots or run "
                "folders")
        if not os.path.isdir(root):
            raise FlagValueError(
                f"--runs: {root!r} is a file; give sweep roots or run folders")
        found = _rundir.find_runs(root)
        if not found:
            raise FlagValueError(
                f"--runs: no run folder (a folder with {_rundir.CONFIG_FILE}) "
                f"at or below {root!r}")
        folders += found
    return folders


# Grouping ---------------------------------------------------------------------


def _arguments(run):
    return run["config"].get("arguments", {})


def _default_group_by(runs):
    names = sorted({name for run in runs for name in _arguments(run)})

    def values(name):
        # Delta varies only if it varies among the random runs: the other
        # protocols record None (sweep.py drops it for them), which says
        # nothing about the random runs. (A cyclic period stays in the label
        # even when there is one.)
        if name != "delta":
            return {repr(_arguments(run).get(name)) for run in runs}
        return {repr(_arguments(run).get(name)) for run in runs
                if _arguments(run).get("protocol") == "random"}

    varying = [
        name for name in names
        if name not in _NOT_GROUPING and name != "protocol"
        and len(values(name)) > 1
    ]
    return ["protocol"] + varying


def _format_value(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_label(arguments, group_by):
    """Returns e.g. `cyclic P=6` for the arguments named in `group_by`."""
    parts = []
    protocol = arguments.get("protocol")
    for name in group_by:
        value = arguments.get(name)
        if value is None:
            continue  # e.g. the period of a constant run.
        if name == "protocol":
            parts.insert(0, str(value))
        elif ("protocol" in group_by and name in _PROTOCOL_ONLY
              and _PROTOCOL_ONLY[name] != protocol):
            continue
        else:
            short = _SHORT_NAMES.get(name, name)
            parts.append(f"{short}={_format_value(value)}")
    return " ".join(parts) or "all runs"


def load_groups(runs, group_by=None):
    """Reads finished runs and groups them.

    Args:
        runs: list of str, sweep roots or run folders.
        group_by: list of str or None, the arguments that define a group.

    Returns:
        (groups, group_by, skipped): an ordered dict label -> list of runs (as
        `load_run` returns them), the grouping used, and the folders of
        unfinished runs that were left out.

    Raises:
        FlagValueError: for `runs` without a finished run, or a `group_by`
            name that is not an argument of the runs.
        RunFileError: for a run file that is not valid JSON.
    """
    loaded, skipped = [], []
    for folder in _run_folders(runs):
        run = load_run(folder)
        if run["status"] == _rundir.DONE and run["summary"] is not None:
            loaded.append(run)
        else:
            skipped.append(folder)
    if not loaded:
        raise FlagValueError(
            f"--runs: no finished run (status 'done') below {', '.join(runs)}")
    if group_by:
        known = sorted({name for run in loaded for name in _arguments(run)})
        unknown = [name for name in group_by if name not in known]
        if unknown:
            verb = "is not an argument" if len(unknown) == 1 else (
                "are not arguments")
            raise FlagValueError(
                f"--group_by: {', '.join(map(repr, unknown))} {verb} of the "
                f"runs; valid: {', '.join(known)}")
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


# Numbers ----------------------------------------------------------------------


def train_source(runs):
    """Returns `_TRAIN_EVALUATED` if every run's last epoch has it, else
    `_TRAIN_RUNNING_MEAN` (accuracy key, loss key, description)."""
    evaluated = all(
        run["metrics"] and all(run["metrics"][-1].get(key) is not None
                               for key in _TRAIN_EVALUATED[:2])
        for run in runs)
    return _TRAIN_EVALUATED if evaluated else _TRAIN_RUNNING_MEAN


def run_values(run, source):
    """Returns the run's value of every table metric.

    The final train accuracy and loss come from `source`; the generalization
    gap is final train accuracy - final test accuracy.
    """
    summary = run["summary"]
    values = {name: summary.get(name) for name in _TABLE_METRICS}
    values["temperature_over_d"] = summary.get("temperature_over_d")
    if source is _TRAIN_EVALUATED:
        last = run["metrics"][-1]
        values["final_train_accuracy"] = last[source[0]]
        values["final_train_loss"] = last[source[1]]
    train, test = values["final_train_accuracy"], values["final_test_accuracy"]
    if train is not None and test is not None:
        values["generalization_gap"] = train - test
    return values


def summarize(groups, source, margin):
    """Returns per-group rows and per-pair comparisons.

    Returns:
        (rows, comparisons): rows are (label, n, {metric: (mean, std)},
        {metric: [value per run]}); comparisons are dicts with the keys of
        `_COMPARISON_FIELDS`, one per pair of groups and metric of
        `_PVALUE_METRICS`.
    """
    rows = []
    seeds = {}
    for label, runs in groups.items():
        values = [run_values(run, source) for run in runs]
        per_metric = {metric: [v[metric] for v in values]
                      for metric in _TABLE_METRICS + ("temperature_over_d",)}
        stats = {metric: _stats.mean_std(per_metric[metric])
                 for metric in per_metric}
        rows.append((label, len(runs), stats, per_metric))
        seeds[label] = [_arguments(run).get("seed") for run in runs]
    comparisons = []
    for (label_a, _, _, values_a), (label_b, _, _, values_b) in (
            itertools.combinations(rows, 2)):
        # Runs pair up when both groups hold the same seeds, once each.
        common = sorted(set(seeds[label_a]) & set(seeds[label_b]),
                        key=str)
        pairable = (len(common) >= 2
                    and sorted(seeds[label_a], key=str) == common
                    and sorted(seeds[label_b], key=str) == common)
        for metric in _PVALUE_METRICS:
            a, b = values_a[metric], values_b[metric]
            welch = _stats.welch(a, b)
            tost_p = _stats.tost(a, b, margin)
            n_a = sum(v is not None for v in a)
            n_b = sum(v is not None for v in b)
            paired_p = paired_tost_p = math.nan
            if pairable:
                by_seed_a = dict(zip(seeds[label_a], a))
                by_seed_b = dict(zip(seeds[label_b], b))
                pair_a = [by_seed_a[seed] for seed in common]
                pair_b = [by_seed_b[seed] for seed in common]
                paired_p = _stats.paired(pair_a, pair_b).p
                paired_tost_p = _stats.paired_tost(pair_a, pair_b, margin)
            comparisons.append({
                "group_a": label_a, "group_b": label_b, "metric": metric,
                "t": welch.t, "p": welch.p, "n_a": n_a, "n_b": n_b,
                "difference": welch.difference, "welch_df": welch.df,
                "margin": margin, "tost_p": tost_p,
                "equivalent": (None if math.isnan(tost_p)
                               else bool(tost_p < ALPHA)),
                "mde": _stats.minimum_detectable_effect(
                    _stats.pooled_std(a, b), n_a, n_b, alpha=ALPHA,
                    power=POWER),
                "paired_p": paired_p, "paired_tost_p": paired_tost_p,
                "paired_equivalent": (None if math.isnan(paired_tost_p)
                                      else bool(paired_tost_p < ALPHA)),
            })
    return rows, comparisons


_COMPARISON_FIELDS = ("group_a", "group_b", "metric", "t", "p", "n_a", "n_b",
                      "difference", "welch_df", "margin", "tost_p",
                      "equivalent", "mde", "paired_p", "paired_tost_p",
                      "paired_equivalent")


# Tables -----------------------------------------------------------------------


def _number(value, digits=4):
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _pvalue(value):
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def _yes_no(value):
    return "n/a" if value is None else ("yes" if value else "no")


def _markdown(rows, comparisons, source, margin, title, command):
    out = io.StringIO()
    if title:
        out.write(f"# {title}\n\n")
    out.write(f"Mean ± std over seeds (sample std). Train accuracy and loss: "
              f"{source[2]} (`{source[0]}`, `{source[1]}`); "
              "generalization_gap = final train − final test accuracy.\n\n")
    header = ["group", "runs"] + list(_TABLE_METRICS) + ["T/D"]
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|" + "---|" * len(header) + "\n")
    for label, n, stats, _ in rows:
        cells = [label, str(n)]
        for metric in _TABLE_METRICS:
            mean, std = stats[metric]
            cells.append(f"{_number(mean)} ± {_number(std)}")
        cells.append(f"{stats['temperature_over_d'][0]:.3g}"
                     if not math.isnan(stats["temperature_over_d"][0])
                     else "n/a")
        out.write("| " + " | ".join(cells) + " |\n")
    if comparisons:
        out.write("\nWelch's t-test p-values (two-sided) between groups.\n\n")
        out.write("| group A | group B | " + " | ".join(_PVALUE_METRICS)
                  + " |\n")
        out.write("|" + "---|" * (2 + len(_PVALUE_METRICS)) + "\n")
        by_pair = {}
        for comparison in comparisons:
            by_pair.setdefault(
                (comparison["group_a"], comparison["group_b"]), {}
            )[comparison["metric"]] = comparison["p"]
        for (label_a, label_b), values in by_pair.items():
            out.write(f"| {label_a} | {label_b} | " + " | ".join(
                _pvalue(values[m]) for m in _PVALUE_METRICS) + " |\n")
        out.write(
            f"\nEquivalence: TOST (two one-sided Welch t-tests) with the "
            f"margin ±{margin:g} set before the analysis "
            f"(`--equivalence_margin`); equivalent = TOST p < {ALPHA:g}. "
            f"MDE: the smallest true difference that a two-sided Welch test "
            f"at α = {ALPHA:g} detects with {POWER:.0%} power, for the "
            "pooled sample std and these numbers of seeds; a difference "
            "below it can go unseen. A − B is the difference of the "
            "means. Paired: where both groups hold the same seeds, the "
            "paired t-test and paired TOST on the per-seed differences "
            "(runs with one seed share the initial weights and the α "
            "stream); n/a otherwise.\n\n")
        out.write("| group A | group B | metric | A − B | Welch p | TOST p | "
                  f"equivalent (±{margin:g}) | MDE ({POWER:.0%} power) | "
                  "paired p | paired TOST p | equivalent (paired) |\n")
        out.write("|" + "---|" * 11 + "\n")
        for c in comparisons:
            out.write(
                f"| {c['group_a']} | {c['group_b']} | {c['metric']} | "
                f"{_number(c['difference'])} | {_pvalue(c['p'])} | "
                f"{_pvalue(c['tost_p'])} | {_yes_no(c['equivalent'])} | "
                f"{_number(c['mde'])} | {_pvalue(c['paired_p'])} | "
                f"{_pvalue(c['paired_tost_p'])} | "
                f"{_yes_no(c['paired_equivalent'])} |\n")
    out.write(f"\nRegenerate: `{command}`\n")
    return out.getvalue()


def _csv_text(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _csv_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "n/a"
    return repr(value) if isinstance(value, float) else str(value)


# Figures ----------------------------------------------------------------------


def _curves(runs, key):
    """Returns epochs, mean and std of `key` over runs (common epochs only)."""
    series = [{row["epoch"]: row.get(key) for row in run["metrics"]}
              for run in runs]
    epochs = sorted(set.intersection(*(set(s) for s in series)))
    means, stds = [], []
    for epoch in epochs:
        mean, std = _stats.mean_std([s[epoch] for s in series])
        means.append(mean)
        stds.append(std)
    return epochs, means, stds


def learning_rate_curve(runs):
    """Returns (epochs, mean, spread, description) of the step size l * alpha.

    Constant and cyclic: the metrics' `learning_rate` (l_tau), spread 0. Random:
    l_tau times the mean of alpha, spread l_tau times its std, from the
    metrics' `alpha_mean` / `alpha_std` when every row has them, else the
    distribution's values, 1 and Delta / sqrt(3) (alpha uniform on
    [1 - Delta, 1 + Delta]). Where the metrics have no learning rate, the
    config's mean l, except for the cyclic protocol (NaN: not drawn).
    """
    arguments = _arguments(runs[0])
    epochs, rate, _ = _curves(runs, "learning_rate")
    if any(math.isnan(r) for r in rate):
        if arguments.get("protocol") == "cyclic":
            return (epochs, [math.nan] * len(epochs), [0.0] * len(epochs),
                    "no learning_rate in metrics.jsonl")
        rate = [float(arguments.get("learning_rate", math.nan))] * len(epochs)
    if arguments.get("protocol") != "random":
        return epochs, rate, [0.0] * len(epochs), "l"
    _, alpha_mean, _ = _curves(runs, "alpha_mean")
    _, alpha_std, _ = _curves(runs, "alpha_std")
    if (alpha_mean and not any(math.isnan(v) for v in alpha_mean + alpha_std)):
        return (epochs, [r * m for r, m in zip(rate, alpha_mean)],
                [r * s for r, s in zip(rate, alpha_std)],
                "band: mean ± std of l·α per epoch, measured")
    delta = arguments.get("delta")
    delta = 1.0 if delta is None else float(delta)  # None: the default, 1.
    return (epochs, rate, [r * delta / math.sqrt(3) for r in rate],
            "band: l ± l·Δ/√3, the std of l·α")


def _style(index, count, epochs):
    """Returns plot() keywords that tell group `index` apart."""
    # At least `count` epochs apart, so that the per-group shifts differ.
    step = max(count, len(epochs) // 8, 1)
    return {"linestyle": _LINE_STYLES[index % len(_LINE_STYLES)],
            "marker": _MARKERS[index % len(_MARKERS)],
            # Shifted per group, so that markers of coinciding lines alternate.
            "markevery": (min(len(epochs) - 1, index * step // max(1, count))
                          if epochs else 0, step),
            "markersize": 5, "linewidth": 1.6}


def _save(figure, path):
    """Saves a figure atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _rundir.write_bytes(path, buffer.getvalue())


def _plain_log_axis(axes):
    from matplotlib import ticker  # pylint: disable=g-import-not-at-top

    axes.set_yscale("log")
    formatter = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    axes.yaxis.set_major_formatter(formatter)
    axes.yaxis.set_minor_formatter(formatter)


def _draw_curves(plt, groups, source, title):
    from matplotlib import ticker  # pylint: disable=g-import-not-at-top

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True)
    loss_axes, lr_axes = axes[0]
    train_axes, test_axes = axes[1]
    lr_notes = set()
    handles = []
    for index, (label, runs) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        panels = ((loss_axes, source[1]), (train_axes, source[0]),
                  (test_axes, "test_accuracy"))
        for panel, key in panels:
            epochs, mean, std = _curves(runs, key)
            line, = panel.plot(epochs, mean, color=color, label=label,
                               **_style(index, len(groups), epochs))
            panel.fill_between(epochs, [m - s for m, s in zip(mean, std)],
                               [m + s for m, s in zip(mean, std)],
                               color=color, alpha=0.15, linewidth=0)
        handles.append(line)
        epochs, mean, spread, note = learning_rate_curve(runs)
        if all(math.isnan(m) for m in mean):
            lr_notes.add(f"{label}: {note}")
        lr_axes.plot(epochs, mean, color=color,
                     **_style(index, len(groups), epochs))
        if any(spread):
            lr_axes.fill_between(epochs, [m - s for m, s in zip(mean, spread)],
                                 [m + s for m, s in zip(mean, spread)],
                                 color=color, alpha=0.15, linewidth=0)
            lr_notes.add(f"random: {note}")
    kind = ("evaluated after each epoch" if source is _TRAIN_EVALUATED
            else "running mean over the epoch")
    _plain_log_axis(loss_axes)
    loss_axes.set(ylabel="training loss (log scale)")
    loss_axes.set_title(f"training loss, {kind}", fontsize="medium")
    train_axes.set(ylabel="training accuracy")
    train_axes.set_title(f"training accuracy, {kind}", fontsize="medium")
    test_axes.set(ylabel="test accuracy")
    test_axes.set_title("test accuracy", fontsize="medium")
    lr_axes.set(ylabel="learning rate")
    lr_axes.set_title("learning rate per epoch" + "".join(
        f"\n{note}" for note in sorted(lr_notes)), fontsize="medium")
    lr_axes.yaxis.set_major_formatter(
        ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    for panel in axes.flat:
        panel.set_xlabel("epoch")
        panel.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        panel.xaxis.set_tick_params(labelbottom=True)
        panel.grid(alpha=0.3)
    # Long labels (variants) go in fewer columns, so the legend stays as wide
    # as the panels.
    longest = max(len(label) for label in groups)
    columns = max(1, min(len(groups), 5, 110 // (longest + 6)))
    rows = -(-len(groups) // columns)
    figure.legend(handles, list(groups), loc="lower center", ncol=columns,
                  frameon=False, title="mean over seeds, band ± 1 std")
    figure.tight_layout(rect=(0, 0.04 + 0.03 * rows, 1,
                              0.96 if title else 1))
    if title:
        figure.suptitle(title)
    return figure


def _dot_plot(plt, rows, series, ylabel, title):
    """Every seed as a dot and the mean ± std, per group; `series` lists
    (metric, name, colour)."""
    labels = [label for label, _, _, _ in rows]
    figure, axes = plt.subplots(figsize=(max(5.5, 1.5 * len(labels) + 2), 4.5))
    width = 0.5 / len(series)
    for column, (metric, name, color) in enumerate(series):
        shift = (column - (len(series) - 1) / 2) * width
        for position, (_, _, stats, values) in enumerate(rows):
            points = [v for v in values[metric] if v is not None]
            # Seeds spread sideways (not randomly) so that equal ones show.
            offsets = ([0.0] if len(points) < 2 else
                       [width * 0.5 * (k / (len(points) - 1) - 0.5)
                        for k in range(len(points))])
            order = sorted(range(len(points)), key=points.__getitem__)
            axes.scatter([position + shift - width * 0.2 + offsets[k]
                          for k in range(len(points))],
                         [points[i] for i in order], s=22, facecolors="none",
                         edgecolors=color, linewidths=1.2, zorder=3,
                         label=f"{name}: seeds" if position == 0 else None)
            mean, std = stats[metric]
            axes.errorbar([position + shift + width * 0.3], [mean], yerr=[std],
                          fmt="D", color=color, markersize=6, capsize=4,
                          zorder=4,
                          label=f"{name}: mean ± std" if position == 0
                          else None)
    low, high = axes.get_ylim()
    axes.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    if axes.get_ylim()[0] < 0 < axes.get_ylim()[1]:
        axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set_xticks(list(range(len(labels))), labels, rotation=20, ha="right")
    axes.set_xlim(-0.6, len(labels) - 0.4)
    low, high = axes.get_ylim()
    # Dots, not bars, so a truncated axis does not exaggerate; say its range.
    note = f"axis from {low:.4g} to {high:.4g}"
    if low > 0:
        note += ", not from 0"
    axes.set_ylabel(f"{ylabel}\n({note})")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    if title:
        axes.set_title(title)
    return figure


def _draw(groups, rows, source, output_dir, title):
    try:
        import matplotlib  # pylint: disable=g-import-not-at-top
    except ImportError as error:
        raise ImportError(
            f"reports need matplotlib ({error}): pip install "
            "\"rlr_keras[experiments]\"") from error

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figures = {
        "curves": _draw_curves(plt, groups, source, title),
        "test_accuracy": _dot_plot(
            plt, rows, (("best_test_accuracy", "best", colors[0]),
                        ("final_test_accuracy", "final", colors[1])),
            "test accuracy", title),
        "generalization_gap": _dot_plot(
            plt, rows, (("generalization_gap", "gap", colors[2]),),
            "train − test accuracy, last epoch\n(train: "
            + ("evaluated after the epoch)" if source is _TRAIN_EVALUATED
               else "running mean over the epoch)"), title),
    }
    paths = {}
    for name, figure in figures.items():
        paths[name] = os.path.join(output_dir, f"{name}.png")
        _save(figure, paths[name])
        plt.close(figure)
    return paths


# Entry points -----------------------------------------------------------------


def _command(runs, plot_dir, group_by, title, margin):
    parts = ["python", "experiments/plot.py", f"--runs={','.join(runs)}",
             f"--plot_dir={plot_dir}"]
    if group_by:
        parts.append(f"--group_by={','.join(group_by)}")
    if title:
        parts.append(f"--title={title}")
    parts.append(f"--equivalence_margin={margin:g}")
    return " ".join(shlex.quote(part) for part in parts)


def _check_plot_dir(output_dir):
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FlagValueError(
            f"--plot_dir: {output_dir!r} is a file; give a folder (created if "
            "missing)")
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise FlagValueError(
            f"--plot_dir: cannot create {output_dir!r} ({error.strerror}); "
            "give a folder that can be created") from None


def run(*, runs, plot_dir=None, group_by=None, title=None,
        equivalence_margin=0.005):
    """Writes the figures and tables for the finished runs below `runs`.

    Args:
        runs: list of str, sweep roots or run folders.
        plot_dir: str or None, defaults to `<runs[0]>/plots`.
        group_by: list of str or None, see `--group_by`.
        title: str or None, a title for the figures and table.
        equivalence_margin: float > 0, the TOST margin in accuracy units.
            Defaults to `0.005`.

    Returns:
        A dict name -> path of every file written.

    Raises:
        FlagValueError: for an argument that cannot be used (no finished
            run, an unknown `group_by` name, a `plot_dir` that is a file, a
            margin <= 0); its message names the flag.
        RunFileError: for a run file that is not valid JSON.
    """
    if isinstance(runs, str):
        runs = [runs]
    if not (isinstance(equivalence_margin, (int, float))
            and math.isfinite(equivalence_margin) and equivalence_margin > 0):
        raise FlagValueError(
            "--equivalence_margin must be a number > 0 in accuracy units "
            f"(e.g. 0.005), got {equivalence_margin!r}")
    runs = [root for root in runs or [] if root.strip()]
    groups, group_by_used, skipped = load_groups(runs, group_by)
    output_dir = plot_dir or os.path.join(runs[0], "plots")
    _check_plot_dir(output_dir)
    for folder in skipped:
        logging.warning("Left out unfinished run %s", folder)
    logging.info("Groups (by %s): %s", ",".join(group_by_used),
                 {label: len(members) for label, members in groups.items()})
    source = train_source(
        [member for members in groups.values() for member in members])
    rows, comparisons = summarize(groups, source, equivalence_margin)
    paths = _draw(groups, rows, source, output_dir, title)

    command = _command(runs, output_dir, group_by, title, equivalence_margin)
    paths["table_md"] = os.path.join(output_dir, "table.md")
    _rundir.write_text(paths["table_md"], _markdown(
        rows, comparisons, source, equivalence_margin, title, command))
    header = ["group", "runs"]
    for metric in _TABLE_METRICS + ("temperature_over_d",):
        header += [f"{metric}_mean", f"{metric}_std"]
    header.append("train_accuracy_source")
    table = []
    for label, n, stats, _ in rows:
        row = [label, n]
        for metric in _TABLE_METRICS + ("temperature_over_d",):
            row += [repr(value) for value in stats[metric]]
        row.append(source[0])
        table.append(row)
    paths["table_csv"] = os.path.join(output_dir, "table.csv")
    _rundir.write_text(paths["table_csv"], _csv_text(header, table))
    paths["pvalues_csv"] = os.path.join(output_dir, "pvalues.csv")
    _rundir.write_text(paths["pvalues_csv"], _csv_text(
        _COMPARISON_FIELDS,
        [[_csv_value(c[field]) for field in _COMPARISON_FIELDS]
         for c in comparisons]))
    for name, path in paths.items():
        logging.info("Wrote %s: %s", name, path)
    return paths
