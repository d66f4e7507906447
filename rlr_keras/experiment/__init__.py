r"""Compare learning-rate protocols on any model and data: runs, sweeps, reports.

The experiment layer of rlr_keras, built on the core (`rlr_keras`: the
optimizer, protocols, callbacks, temperature, models and data). Three
functions, the same as the installed commands `rlr-train`, `rlr-sweep` and
`rlr-plot` (and the paper's `experiments/*.py` scripts):

- `train(output_dir=..., **arguments)`: one run into one self-describing,
  resumable run folder.
- `sweep(root, model=..., dataset=..., protocols=..., seeds=..., ...)`: a
  grid of runs (protocols x seeds x hyperparameters), one folder each under
  `root`, resumable; then a report.
- `report(runs)`: figures and tables (mean ± std over seeds, Welch, TOST,
  paired tests, minimum detectable effects) into `<root>/plots`.

Your own model is a function `f(input_shape, num_classes)` (plus `seed=` if
it takes it) returning an uncompiled `keras.Model` that outputs logits; your
own data is `((x_train, y_train), (x_test, y_test))` NumPy arrays (uint8
images are scaled to [0, 1], float features pass unchanged), an
`rlr_keras.data.ImageDataset`, or a function returning either. On the
command line they are specs: `--model=MODULE:FUNCTION` or
`--model=path/to/file.py:FUNCTION`, `--dataset=npz:PATH`,
`--dataset=MODULE:FUNCTION`, ... (`rlr_keras.models.build_model`,
`rlr_keras.data.load_dataset`).

A run folder holds:

```
flags.cfg         the flags it ran with; replay with --flagfile=flags.cfg
config.json       the same arguments as JSON, the versions, and the source
                  (git commit of rlr_keras and whether its tree was dirty)
status.json       running -> done, or failed with the error
metrics.jsonl     one line per completed epoch (losses, accuracies, the
                  learning rate, alpha statistics, D and T when measured)
summary.json      final/best test accuracy, final train accuracy and loss,
                  generalization gap, wall time, T/D, ...
model.weights.h5  the final weights
model.keras       the final model (keras.saving.load_model, once rlr_keras
                  is imported)
tensorboard/      train/ and validation/ events, HParams session
```

A run made from Python objects records their names (`callable:module.f`,
`arrays:<digest>`) and cannot be replayed from the command line; one made
from specs replays with `rlr-train --flagfile=<run>/flags.cfg`.

Plotting and statistics (matplotlib, SciPy, statsmodels: `pip install
"rlr_keras[experiments]"`) are imported only when a report is made.

Example:

```python
import keras
import numpy as np
from rlr_keras import experiment

def tiny(input_shape, num_classes, seed=None):
    inputs = keras.Input(input_shape)
    outputs = keras.layers.Dense(num_classes)(inputs)
    return keras.Model(inputs, outputs)

x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int64")
result = experiment.sweep(
    "runs/tiny", model=tiny, dataset=((x, y), (x[:64], y[:64])),
    protocols=["constant", "random"], seeds=[0, 1], epochs=2,
    learning_rate=0.05, batch_size=64, verbose=0)
print(result["done"])
```
"""

from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Union

__all__ = ["Config", "report", "sweep", "train"]


def __getattr__(name):
    # `Config` without importing the training code at `import` time.
    if name == "Config":
        from rlr_keras.experiment import _train  # pylint: disable=all

        return _train.Config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train(*, output_dir: str, model: Any = "mlp", dataset: Any = "digits",
          **arguments: Any) -> Dict[str, Any]:
    """Trains one model with one learning-rate protocol into `output_dir`.

    The arguments are the fields of `rlr_keras.experiment.Config`, the flags
    of `rlr-train` of the same names (`rlr-train --helpfull`): `protocol`
    ("constant", "random", "cyclic"), `learning_rate` (the mean l), `delta`,
    `period`, `momentum`, `nesterov`, `coupled_weight_decay`, `batch_size`
    (C), `epochs`, `seed`, `deterministic`, `temperature_probe`, ... A run
    that is done is not trained again; one that was interrupted resumes
    after its last completed epoch (bit-identical with
    `deterministic=True` on CPU).

    Args:
        output_dir: str, the run folder (created if needed).
        model: str or callable, a built-in name (`"mlp"`, `"cnn"`,
            `"vgg16"`), `"MODULE:FUNCTION"`, `"path/to/file.py:FUNCTION"`, or
            the function `f(input_shape, num_classes[, seed=])` returning an
            uncompiled `keras.Model` that outputs logits.
        dataset: a dataset spec (`"digits"`, `"mnist"`, `"idx:PATH"`,
            `"npz:PATH"`, `"MODULE:FUNCTION"`, ...), arrays `((x_train,
            y_train), (x_test, y_test))`, an `ImageDataset`, or a function
            returning either.
        **arguments: the other fields of `Config`.

    Returns:
        The run's summary (summary.json).

    Raises:
        ValueError, TypeError: for invalid arguments, models or data, before
            the run folder is touched; also if `output_dir` holds a run made
            with other arguments.
        FloatingPointError: if the training loss becomes NaN or infinite.
    """
    from rlr_keras.experiment import _train  # pylint: disable=all

    return _train.run(output_dir=output_dir, model=model, dataset=dataset,
                      **arguments)


def sweep(root: str, *, model: Any, dataset: Any,
          protocols: Sequence[str] = ("constant", "random", "cyclic"),
          seeds: Iterable[int] = (0, 1, 2),
          periods: Optional[Sequence[float]] = None,
          grid: Sequence[Any] = (), variants: Sequence[Mapping] = (),
          launcher: Optional[str] = None, jobs: int = 1,
          runs_per_gpu: int = 1, ray_address: Optional[str] = None,
          run_cpus: Optional[float] = None,
          run_gpus: Optional[float] = None, plot: bool = True,
          title: Optional[str] = None,
          group_by: Optional[Sequence[str]] = None,
          equivalence_margin: float = 0.005, dry_run: bool = False,
          **train_arguments: Any) -> Dict[str, Any]:
    """Runs (or resumes) a sweep of protocols x seeds x grid, then reports.

    Every point is one `train` run in `root/<name>`, named after what varies
    (`constant_seed=0`, `cyclic_period=6_seed=1`, ...). Runs that are done
    are skipped; a sweep started again finishes exactly the missing runs.

    Args:
        root: str, the sweep's folder.
        model, dataset: as in `train` (common to all runs).
        protocols: the protocols to compare, among "constant", "random" and
            "cyclic".
        seeds: one run per seed for every other point.
        periods: the cyclic protocol's periods P in epochs (one cyclic run
            per period); required with "cyclic".
        grid: `[(name, [values]), ...]`, train arguments to sweep (product).
        variants: `[{name: value, ...}, ...]`, sets of train arguments.
        launcher: "inprocess" (this process), "subprocess" (a fresh
            process per run; needs a model and dataset given as specs) or
            "ray" (each run a Ray task; specs too; `pip install
            "rlr_keras[ray]"`).
            Defaults to "inprocess", or "subprocess" when jobs > 1.
        jobs: int >= 1, how many runs train at once, each in a process of
            its own (output in `root/logs/<name>.log`): one GPU each if
            GPUs are visible, else `cores // jobs` cores each. Defaults to 1
            (one run after the other).
        runs_per_gpu: int >= 1, how many of the `jobs` runs may share one
            GPU. Defaults to 1.
        ray_address: str, launcher "ray": "local" (a Ray of the sweep's
            own, the default), "auto" or "HOST:PORT" (a running cluster;
            `root` must be on storage every node shares).
        run_cpus, run_gpus: float, launcher "ray": the CPUs and GPUs each
            run's task asks for (fractions allowed). Default 1 and 0.
        plot: bool, write the report into `root/plots` at the end.
        title, group_by, equivalence_margin: passed to `report`.
        dry_run: bool, only list the runs and their status.
        **train_arguments: the other `train` arguments, common to all runs.

    Returns:
        `{"done": [names], "failed": {name: error}, "skipped": [names]}`.

    Raises:
        ValueError, TypeError: for an inconsistent grid, or a model or
            dataset that does not load (checked before any run starts);
            for jobs > 1 with launcher "inprocess", or more jobs than the
            visible GPUs hold; Ray options without launcher "ray", or a
            root that not every Ray node sees.
        ImportError: launcher "ray" without Ray installed.
    """
    from rlr_keras.experiment import _sweep  # pylint: disable=all

    base_arguments = dict(train_arguments, model=model, dataset=dataset)
    return _sweep.run(
        root=root, base_arguments=base_arguments, protocols=list(protocols),
        seeds=list(seeds), periods=None if periods is None else list(periods),
        grid=list(grid), variants=list(variants), launcher=launcher,
        jobs=jobs, runs_per_gpu=runs_per_gpu, ray_address=ray_address,
        run_cpus=run_cpus, run_gpus=run_gpus,
        make_plots=plot, title=title, group_by=group_by,
        equivalence_margin=equivalence_margin, dry_run=dry_run)


def report(runs: Union[str, Sequence[str]], *, plot_dir: Optional[str] = None,
           group_by: Optional[Sequence[str]] = None,
           title: Optional[str] = None,
           equivalence_margin: float = 0.005) -> Dict[str, str]:
    """Writes the figures and tables of the finished runs below `runs`.

    Runs are grouped by the arguments that differ between them, seed
    excepted; each group is summarized over its seeds. Writes
    `curves.png`, `test_accuracy.png`, `generalization_gap.png`, `table.md`,
    `table.csv` and `pvalues.csv` (see `rlr-plot --helpfull`).

    Args:
        runs: str or list of str, sweep roots or run folders.
        plot_dir: str or None, defaults to `<runs[0]>/plots`.
        group_by: the arguments that define the groups, or None (those that
            differ).
        title: str or None, the figures' and table's title.
        equivalence_margin: float > 0, the TOST margin in accuracy units.

    Returns:
        A dict name -> path of every file written.

    Raises:
        ImportError: without matplotlib and SciPy (the `experiments` extra).
        ValueError: for no finished run, a bad argument or a torn run file.
    """
    from rlr_keras.experiment import _report  # pylint: disable=all

    return _report.run(runs=runs, plot_dir=plot_dir, group_by=group_by,
                       title=title, equivalence_margin=equivalence_margin)
