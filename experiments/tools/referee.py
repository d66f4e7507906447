"""Numbers for docs/RESULTS.md that plot.py's tables do not print.

Reads only committed run records (each run folder's metrics.jsonl,
summary.json) and plot.py's pvalues.csv; a group is the run folder's name
without its `_seed=k`. Each subcommand prints a Markdown table.

    python experiments/tools/referee.py holm docs/results/fig3_model1_fashion
        Holm (step-down Bonferroni) over every test of a difference behind a
        folder's claims: all pairs x metrics x {Welch, paired}.
    python experiments/tools/referee.py curves RUNS [--windows=151-160,171-180]
        Per group: final, mean of the last 10 epochs and best test accuracy
        (best is selected on the test set: optimistic), best - final, the
        mean test accuracy in two epoch windows, and the epochs of the
        test-loss minimum (range; how many runs have it in the last 10).
    python experiments/tools/referee.py plateau RUNS
        Per run: mean test accuracy of the last 10 epochs minus that of
        epochs -30..-20 (the plateau rule of issue 22: |.| <= 0.002).
    python experiments/tools/referee.py temperature RUNS
        Per group: D and T of the last probe of the temperature monitor
        (mean +- sample std over seeds) and that probe's epoch.
    python experiments/tools/referee.py equivalence PVALUES.csv
        Per metric: how many pairs the unpaired and the paired TOST call
        equivalent at the margin of that file (plot.py
        --equivalence_margin), and the largest TOST p.
    python experiments/tools/referee.py paired RUNS --metric=final_train_loss
        Paired t-test (seed-mates) of a summary.json metric between every
        pair of groups.
"""

import argparse
import collections
import csv
import itertools
import json
import os
import re

import numpy as np
from scipy import stats

_SEED = re.compile(r"_seed=(\d+)$")


def load_runs(root):
    """Returns {group: {seed: (metrics rows, summary)}} of finished runs."""
    groups = collections.defaultdict(dict)
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        match = _SEED.search(name)
        if not match or not os.path.exists(
                os.path.join(folder, "summary.json")):
            continue
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        with open(os.path.join(folder, "summary.json")) as f:
            summary = json.load(f)
        groups[name[:match.start()]][int(match.group(1))] = (rows, summary)
    return dict(groups)


def holm(pvalues):
    """Holm-adjusted p-values, in the input order."""
    order = np.argsort(pvalues)
    m = len(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    return values.mean(), std


def _fmt(mean_std, digits=4):
    mean, std = mean_std
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def command_holm(args):
    tests = []
    with open(os.path.join(args.folder, "pvalues.csv")) as f:
        for row in csv.DictReader(f):
            for kind, column in (("Welch", "p"), ("paired", "paired_p")):
                value = row.get(column, "")
                if value not in ("", "nan", None):
                    tests.append((row["group_a"], row["group_b"],
                                  row["metric"], kind, float(value),
                                  float(row["difference"])))
    adjusted = holm(np.array([t[4] for t in tests]))
    print(f"{len(tests)} tests (pairs x metrics x kinds) in "
          f"{args.folder}/pvalues.csv; Holm-adjusted p < 0.05 shown first.\n")
    print("| group A | group B | metric | test | A − B | p | Holm p | "
          "survives |")
    print("|---|---|---|---|---|---|---|---|")
    for (a, b, metric, kind, p, diff), q in sorted(
            zip(tests, adjusted), key=lambda t: t[1]):
        if p > args.show_below:
            continue
        print(f"| {a} | {b} | {metric} | {kind} | {diff:+.4f} | {p:.3g} | "
              f"{q:.3g} | {'yes' if q < 0.05 else 'no'} |")


def _windows(spec):
    return [tuple(int(x) for x in part.split("-"))
            for part in spec.split(",")]


def command_curves(args):
    windows = _windows(args.windows) if args.windows else []
    header = ["group", "runs", "final test acc.", "mean of last 10",
              "best (optimistic)", "best − final"]
    header += [f"mean epochs {a}–{b}" for a, b in windows]
    if len(windows) == 2:
        header.append("rise, 2nd − 1st window: mean (runs)")
    header.append("test-loss min: epochs; runs in the last 10")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group, runs in load_runs(args.runs).items():
        accuracy = [np.array([r["test_accuracy"] for r in rows])
                    for rows, _ in runs.values()]
        loss = [np.array([r["test_loss"] for r in rows])
                for rows, _ in runs.values()]
        cells = [group, str(len(runs)),
                 _fmt(_mean_std([a[-1] for a in accuracy])),
                 _fmt(_mean_std([a[-10:].mean() for a in accuracy])),
                 _fmt(_mean_std([a.max() for a in accuracy])),
                 _fmt(_mean_std([a.max() - a[-1] for a in accuracy]))]
        means = [[a[lo - 1:hi].mean() for a in accuracy]
                 for lo, hi in windows]
        cells += [_fmt(_mean_std(m)) for m in means]
        if len(windows) == 2:
            rise = np.array(means[1]) - np.array(means[0])
            cells.append(f"{rise.mean():+.4f} (runs {rise.min():+.4f} to "
                         f"{rise.max():+.4f})")
        minima = [int(np.argmin(l)) + 1 for l in loss]
        late = sum(m > len(l) - 10 for m, l in zip(minima, loss))
        cells.append(f"{min(minima)}–{max(minima)}; {late} of {len(loss)}")
        print("| " + " | ".join(cells) + " |")


def command_plateau(args):
    print("| run | epochs | mean last 10 | mean epochs −30..−20 | "
          "difference | plateau (≤ 0.002) |")
    print("|---|---|---|---|---|---|")
    failed = 0
    for group, runs in load_runs(args.runs).items():
        for seed, (rows, _) in sorted(runs.items()):
            a = np.array([r["test_accuracy"] for r in rows])
            last, earlier = a[-10:].mean(), a[-30:-20].mean()
            ok = abs(last - earlier) <= 0.002
            failed += not ok
            print(f"| {group}_seed={seed} | {len(a)} | {last:.4f} | "
                  f"{earlier:.4f} | {last - earlier:+.4f} | "
                  f"{'yes' if ok else 'NO'} |")
    print(f"\n{failed} run(s) fail the plateau rule.")


def command_temperature(args):
    print("| group | runs | T/D = l/(2C(1−μ)) | last probe epoch | "
          "measured D | measured T |")
    print("|---|---|---|---|---|---|")
    for group, runs in load_runs(args.runs).items():
        d, t, epochs = [], [], set()
        for rows, summary in runs.values():
            probes = [r for r in rows if r.get("diffusion") is not None]
            d.append(probes[-1]["diffusion"])
            t.append(probes[-1]["temperature"])
            epochs.add(probes[-1]["epoch"])
        ratio = {s["temperature_over_d"] for _, s in runs.values()}
        dm, ds = _mean_std(d)
        tm, ts = _mean_std(t)
        print(f"| {group} | {len(runs)} | "
              f"{', '.join(f'{r:.3g}' for r in sorted(ratio))} | "
              f"{', '.join(map(str, sorted(epochs)))} | "
              f"{dm * 1e3:.3f}e-3 ± {ds * 1e3:.3f}e-3 | "
              f"{tm:.3g} ± {ts:.2g} |".replace("± nane-3", "").replace(
                  "± nan", ""))


def command_equivalence(args):
    with open(args.pvalues) as f:
        rows = list(csv.DictReader(f))
    margins = sorted({row["margin"] for row in rows})
    print(f"TOST at margin ±{', '.join(margins)} ({args.pvalues}).\n")
    print("| metric | unpaired: equivalent pairs | max TOST p | "
          "paired: equivalent pairs | max paired TOST p |")
    print("|---|---|---|---|---|")
    for metric in dict.fromkeys(row["metric"] for row in rows):
        r = [row for row in rows if row["metric"] == metric]
        unpaired = sum(row["equivalent"] == "true" for row in r)
        paired = sum(row["paired_equivalent"] == "true" for row in r)
        print(f"| {metric} | {unpaired} of {len(r)} | "
              f"{max(float(row['tost_p']) for row in r):.3g} | "
              f"{paired} of {len(r)} | "
              f"{max(float(row['paired_tost_p']) for row in r):.3g} |")


def command_paired(args):
    groups = load_runs(args.runs)
    rows = []
    for a, b in itertools.combinations(groups, 2):
        seeds = sorted(set(groups[a]) & set(groups[b]))
        if len(seeds) < 2:
            continue
        x = np.array([groups[a][s][1][args.metric] for s in seeds])
        y = np.array([groups[b][s][1][args.metric] for s in seeds])
        diff = x - y
        if np.all(diff == diff[0]):  # no spread: the t statistic is undefined
            p = 1.0 if diff[0] == 0 else 0.0
        else:
            p = float(stats.ttest_rel(x, y).pvalue)
        rows.append((a, b, len(seeds), diff, p))
    adjusted = holm(np.array([row[4] for row in rows]))
    print(f"Paired t-test of {args.metric} over the seeds both groups hold; "
          f"Holm over these {len(rows)} tests.\n")
    print("| group A | group B | seeds | mean A − B | min..max A − B | "
          "paired p | Holm p |")
    print("|---|---|---|---|---|---|---|")
    for (a, b, n, diff, p), q in zip(rows, adjusted):
        print(f"| {a} | {b} | {n} | {diff.mean():+.4f} | "
              f"{diff.min():+.4f}..{diff.max():+.4f} | {p:.2g} | {q:.2g} |")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("holm")
    p.add_argument("folder", help="a docs/results/<figure> folder")
    p.add_argument("--show_below", type=float, default=0.05,
                   help="print the tests whose raw p is at most this")
    p.set_defaults(function=command_holm)
    p = sub.add_parser("curves")
    p.add_argument("runs")
    p.add_argument("--windows", default="",
                   help="e.g. 151-160,171-180 (epochs, 1-based, inclusive)")
    p.set_defaults(function=command_curves)
    for name, function in (("plateau", command_plateau),
                           ("temperature", command_temperature)):
        p = sub.add_parser(name)
        p.add_argument("runs")
        p.set_defaults(function=function)
    p = sub.add_parser("equivalence")
    p.add_argument("pvalues", help="a pvalues.csv written by plot.py")
    p.set_defaults(function=command_equivalence)
    p = sub.add_parser("paired")
    p.add_argument("runs")
    p.add_argument("--metric", default="final_train_loss")
    p.set_defaults(function=command_paired)
    args = parser.parse_args(argv)
    args.function(args)


if __name__ == "__main__":
    main()
