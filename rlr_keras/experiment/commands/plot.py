r"""`rlr-plot` (and experiments/plot.py): figures and tables from run folders.

What it draws and computes (curves.png, test_accuracy.png,
generalization_gap.png, table.md, table.csv, pvalues.csv; Welch, TOST,
paired tests, minimum detectable effects) is `rlr_keras.experiment.report`,
described in `rlr_keras/experiment/_report.py`.

Errors in the flags or in the run files end the script with one line on
stderr naming the flag or file and what is allowed (exit status 2 for a
flag, 1 for an unreadable run file; 2 without the `experiments` extra).

Example:

```
rlr-plot --runs=runs/demo
python experiments/plot.py --runs=docs/results/fig3_model1_fashion/runs \
    --plot_dir=docs/results/fig3_model1_fashion --equivalence_margin=0.005
```
"""


import sys

from absl import app
from absl import flags

from rlr_keras.experiment.commands import _parsing

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
_EQUIVALENCE_MARGIN = flags.DEFINE_float(
    "equivalence_margin", 0.005,
    "Equivalence margin of the TOST tests, in accuracy units (0.005 = half a "
    "percentage point); state it before looking at the results. Must be > 0.")



def main(argv):
    """The command: the report of the runs that --runs names."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        from rlr_keras.experiment import _report  # pylint: disable=all
    except ImportError as error:
        sys.stderr.write(f"plot.py: error: {error}\n")
        sys.exit(2)
    try:
        _report.run(runs=_RUNS.value, plot_dir=_PLOT_DIR.value,
                    group_by=_GROUP_BY.value, title=_TITLE.value,
                    equivalence_margin=_EQUIVALENCE_MARGIN.value)
    except ImportError as error:  # No matplotlib: the extra to install.
        sys.stderr.write(f"plot.py: error: {' '.join(str(error).split())}\n")
        sys.exit(2)
    except (_report.FlagValueError, _report.RunFileError) as error:
        message = " ".join(str(error).split())  # One line.
        sys.stderr.write(f"plot.py: error: {message}\n")
        sys.exit(2 if isinstance(error, _report.FlagValueError) else 1)


def run_main():
    """The console script `rlr-plot`."""
    flags.mark_flag_as_required("runs")
    app.run(main, flags_parser=_parsing.flags_parser("plot.py"))


if __name__ == "__main__":
    run_main()
