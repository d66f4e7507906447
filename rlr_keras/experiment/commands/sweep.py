r"""`rlr-sweep` (and experiments/sweep.py): a grid of trainings (protocols x seeds x hyperparameters), resumably.

Every point of the grid is one `train.py` run in its own folder under
`--root`, named after what varies, e.g. `cyclic_period=6_seed=0` or
`random_batch_size=60_learning_rate=0.0002_seed=1`. The grid is

    variants x grid x protocols (cyclic: x periods) x seeds

* `--protocols`: constant, random, cyclic; the cyclic protocol is repeated
  for each of `--periods` (the only protocol with a period).
* `--seeds`: one run per seed for every other point.
* `--grid=NAME=V1,V2,...` (repeatable): a train.py flag and its values;
  the grid takes the product of all of them.
* `--variant=NAME=V,NAME=V,...` (repeatable): a named configuration of
  several flags at once, for sets of points that are not a product (Figure 5:
  (C=60, l=2e-4), (C=30, l=1e-4), (C=60, l=1e-4)).
* Every other train.py flag (`--model`, `--dataset`, `--epochs`,
  `--learning_rate`, ...) sets the value common to all runs.
* `delta` (the random factor's half-width) goes to the random runs only:
  `--delta` without the random protocol, or a delta grid/variant that would
  make two constant or cyclic runs identical, is refused.

Folder names hold every value exactly: a float is written `%g` when that
reads back as the same float (0.005, 2.5e-4 -> `0.00025`: the names of
existing run folders) and as its shortest round-trip `repr` otherwise
(0.1234567), so two different values never share a folder, and a value given
twice (`--grid=learning_rate=1e-3,0.001`) is refused.

A run whose status is `done` is skipped, so a sweep killed at any point and
started again with the same command finishes the interrupted run (which
resumes from its last completed epoch) and the runs not yet started; no run
is repeated or lost. Progress (runs done / total, ETA) is logged, and every
event is appended to `<root>/sweep_log.jsonl`. `<root>` holds the HParams
experiment (the hyperparameters that vary, with their values, and the
metrics of `HPARAMS_METRICS`) and each run's TensorBoard folder an HParams
summary of its grid coordinates, so `tensorboard --logdir=<root>` compares
the runs in the HParams dashboard. At the end, `plot.py` draws the figures
and the table into `<root>/plots` (`--noplot` to skip; `--title`,
`--group_by` and `--equivalence_margin` are plot.py's).

The runs are made in this process (`--launcher=inprocess`, no start-up cost
per run) or each in a fresh `python experiments/train.py` process
(`--launcher=subprocess`, isolated: use it for long GPU sweeps). A child
never outlives the sweep: it is killed with it even by SIGKILL (Linux), and
SIGINT/SIGTERM are passed on to it and waited for.

`--jobs=N` trains N runs at once, each in a train.py process of its own
(so `--launcher=subprocess` is implied, and `--launcher=inprocess` refused),
whose output goes to `<root>/logs/<run>.log`. With GPUs visible
(`CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`) each run sees one GPU, dealt
round-robin; `--runs_per_gpu=K` lets K runs share one (JAX then does not
preallocate, TensorFlow grows its memory), and N may not exceed GPUs x K. On
CPU each run is pinned to cores // N cores (and OMP_NUM_THREADS and
TF_NUM_INTRAOP_THREADS say so). A failed run does not stop the others;
SIGINT/SIGTERM reach every child, and the sweep waits for all of them to
record their status. With `--deterministic` on CPU the runs' metrics are
the same bit for bit as one at a time.

`--launcher=ray` makes each run one Ray task asking for `--run_cpus` and
`--run_gpus` (fractions allowed), on a Ray of its own (`--ray_address=local`,
the default) or a running cluster (`auto` or HOST:PORT); `--root` must be on
storage every node shares (checked at start). A run whose node is lost is
retried elsewhere and resumes from its last backup; see
`rlr_keras.experiment._ray`. Needs `pip install "rlr_keras[ray]"`.

A bad flag or grid ends the script before anything runs, with one line on
stderr naming the flag, the value and what is allowed (exit status 2).

Example (the README's main job, about a minute on a laptop CPU):

```
python experiments/sweep.py --flagfile=experiments/configs/demo.cfg \
    --root=runs/demo
```
"""


import signal
import sys

from absl import app
from absl import flags
from absl import logging

from rlr_keras import _names
from rlr_keras import _quiet
from rlr_keras.experiment import _sweep
from rlr_keras.experiment import _train
# The train command's flags (the runs' arguments) and the plot command's
# (the report at the end) are this command's too.
from rlr_keras.experiment.commands import _parsing
from rlr_keras.experiment.commands import plot as plot_command  # noqa: F401
from rlr_keras.experiment.commands import train as train_command

# Keras-free (`--helpfull` starts no framework).
PROTOCOLS = _names.PROTOCOLS
SEED_MAX = _names.SEED_MAX

_ROOT = flags.DEFINE_string(
    "root", None, "Folder holding one run folder per grid point. Required.")
_PROTOCOLS = flags.DEFINE_list(
    "protocols", list(PROTOCOLS),
    f"Protocols to compare, among {', '.join(PROTOCOLS)}.")
_PERIODS = flags.DEFINE_list(
    "periods", None,
    "Periods P (epochs) of the cyclic protocol; one cyclic run per period. "
    "Required if --protocols has cyclic.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds, one run each.")
_GRID = flags.DEFINE_multi_string(
    "grid", [],
    "NAME=V1,V2,...: a train.py flag and the values to sweep (repeatable; "
    "the product of all is taken).")
_VARIANT = flags.DEFINE_multi_string(
    "variant", [],
    "NAME=V,NAME=V,...: one configuration of several train.py flags "
    "(repeatable; each variant is crossed with the rest of the grid).")
_LAUNCHER = flags.DEFINE_enum(
    "launcher", None, list(_sweep.LAUNCHERS),
    "Run each training in this process, in a fresh train.py process, or as "
    "a Ray task (pip install \"rlr_keras[ray]\"). Default: inprocess, or "
    "subprocess with --jobs > 1.")
_JOBS = flags.DEFINE_integer(
    "jobs", 1,
    "How many runs train at once, each in a train.py process of its own "
    "(its output in <root>/logs/<run>.log). With GPUs visible "
    "(CUDA_VISIBLE_DEVICES, else nvidia-smi) each run gets one, round-robin; "
    "on CPU each gets cores // jobs cores.", lower_bound=1)
_RUNS_PER_GPU = flags.DEFINE_integer(
    "runs_per_gpu", 1,
    "With --jobs > 1 and GPUs: how many runs may share one GPU (then JAX "
    "does not preallocate and TensorFlow grows its memory).", lower_bound=1)
_RAY_ADDRESS = flags.DEFINE_string(
    "ray_address", None,
    "With --launcher=ray: 'local' (default) starts a Ray on this machine; "
    "'auto' or HOST:PORT joins a running cluster. --root must be on storage "
    "every node shares.")
_RUN_CPUS = flags.DEFINE_float(
    "run_cpus", None,
    "With --launcher=ray: CPUs each run's task asks for (default 1; "
    "fractions allowed).")
_RUN_GPUS = flags.DEFINE_float(
    "run_gpus", None,
    "With --launcher=ray: GPUs each run's task asks for (default 0; "
    "fractions allowed: 0.25 lets four runs share a GPU).")
_PLOT = flags.DEFINE_bool(
    "plot", True, "Draw figures and tables into <root>/plots at the end.")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "List the runs and their status, then stop.")

flags.register_validator(
    "protocols",
    lambda values: bool(values) and set(values) <= set(PROTOCOLS)
    and len(set(values)) == len(values),
    message=f"--protocols must list distinct names among "
    f"{', '.join(PROTOCOLS)}")
flags.register_validator(
    "seeds",
    lambda values: bool(values) and all(
        value.isdigit() and int(value) <= SEED_MAX for value in values)
    and len(set(map(int, values))) == len(values),
    message=f"--seeds must list distinct integers in [0, {SEED_MAX}]")


def _positive_numbers(values):
    try:
        return values is None or all(float(value) > 0 for value in values)
    except ValueError:
        return False


flags.register_validator("periods", _positive_numbers,
                         message="--periods must list numbers > 0")

# train.py flags that the sweep sets per run.
_PER_RUN = ("output_dir", "protocol", "period", "seed")


def _parse_value(name, text, flag_values):
    """Parses `text` as the train.py flag `name` would (with its checks)."""
    if name not in _train.ARGUMENT_NAMES:
        raise ValueError(f"{name!r} is not a train.py flag; expected one of "
                         f"{', '.join(_train.ARGUMENT_NAMES)}")
    if name in _PER_RUN:
        raise ValueError(
            f"{name!r} is set per run by the sweep; use --protocols, "
            "--periods and --seeds instead")
    try:
        return flag_values[name].parser.parse(text)
    except (ValueError, TypeError) as error:
        raise ValueError(f"bad value {text!r} for {name}: {error}") from None


def parse_grid(entries, flag_values=flags.FLAGS):
    """Parses `NAME=V1,V2` entries into a list of (name, [values])."""
    grid = []
    for entry in entries:
        name, equals, values = entry.partition("=")
        if not equals or not values:
            raise ValueError(f"--grid must read NAME=V1,V2,..., got {entry!r}")
        texts = values.split(",")
        parsed = [_parse_value(name, value, flag_values) for value in texts]
        for i, value in enumerate(parsed):
            if value in parsed[:i]:
                first = texts[parsed.index(value)]
                raise ValueError(
                    f"--grid={entry} repeats the value {value!r} of {name} "
                    f"({first!r} and {texts[i]!r}); list each value once")
        grid.append((name, parsed))
    names = [name for name, _ in grid]
    if len(set(names)) != len(names):
        raise ValueError(f"--grid names a flag twice: {names}")
    return grid


def parse_variant(entry, flag_values=flags.FLAGS):
    """Parses `NAME=V,NAME=V` into a dict name -> value."""
    variant = {}
    for assignment in entry.split(","):
        name, equals, value = assignment.partition("=")
        if not equals or not value:
            raise ValueError(
                f"--variant must read NAME=V,NAME=V,..., got {entry!r}")
        if name in variant:
            raise ValueError(f"--variant {entry!r} sets {name} twice")
        variant[name] = _parse_value(name, value, flag_values)
    return variant

def _fail(message):
    """Ends the script with one line on stderr (exit status 2)."""
    _parsing.fail("sweep.py", message)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every option is a --flag")
    for name in _PER_RUN:
        if flags.FLAGS[name].present:
            _fail(f"--{name} is set per run by the sweep; use --root, "
                  "--protocols, --periods and --seeds")
    if flags.FLAGS["delta"].present and "random" not in _PROTOCOLS.value:
        _fail(f"--delta applies only to the random protocol, got --delta="
              f"{flags.FLAGS.delta!r} with --protocols="
              f"{','.join(_PROTOCOLS.value)}")
    for flag in (_RAY_ADDRESS, _RUN_CPUS, _RUN_GPUS):
        if flag.present and _LAUNCHER.value != "ray":
            _fail(f"--{flag.name} applies only to --launcher=ray, got "
                  f"--{flag.name}={flag.value} with --launcher="
                  f"{_LAUNCHER.value or 'inprocess'}")
    if _LAUNCHER.value == "ray" and _JOBS.value > 1:
        _fail(f"--jobs={_JOBS.value} applies to --launcher=subprocess; with "
              "--launcher=ray each run asks for --run_cpus and --run_gpus")
    if _LAUNCHER.value == "inprocess" and _JOBS.value > 1:
        _fail(f"--jobs={_JOBS.value} trains each run in a process of its own; "
              "drop --launcher=inprocess (or use --launcher=subprocess)")
    _quiet.quiet_jax_backends()
    logging.set_verbosity(logging.INFO)
    # The in-process run records `failed` and the log `sweep_end`, as for
    # SIGINT (the subprocess launcher forwards the signal to its child).
    _train.handle_interrupts()
    try:
        arguments = dict(
            base_arguments=train_command.arguments_from_flags(),
            protocols=_PROTOCOLS.value,
            seeds=[int(seed) for seed in _SEEDS.value],
            periods=([float(p) for p in _PERIODS.value] if _PERIODS.value
                     else None),
            grid=parse_grid(_GRID.value),
            variants=[parse_variant(entry) for entry in _VARIANT.value])
        _sweep.expand(**arguments)  # Checks the grid before anything runs.
    except ValueError as error:
        _fail(error)
    try:
        result = _sweep.run(
            root=_ROOT.value,
            **arguments,
            launcher=_LAUNCHER.value,
            jobs=_JOBS.value,
            runs_per_gpu=_RUNS_PER_GPU.value,
            ray_address=_RAY_ADDRESS.value,
            run_cpus=_RUN_CPUS.value,
            run_gpus=_RUN_GPUS.value,
            make_plots=_PLOT.value,
            title=flags.FLAGS.title,
            group_by=flags.FLAGS.group_by,
            equivalence_margin=flags.FLAGS.equivalence_margin,
            dry_run=_DRY_RUN.value,
        )
    except (ValueError, TypeError, FileNotFoundError,  # Model, data.
            ImportError) as error:  # Ray not installed.
        _fail(error)
    except _train.Terminated as error:
        sys.stderr.write(f"sweep.py: {_train.one_line(error)}; the run's "
                         "status is failed, rerun the same command to "
                         "resume\n")
        sys.exit(128 + signal.SIGTERM)
    if result["failed"]:
        sys.exit(1)


def run_main():
    """The console script `rlr-sweep`."""
    flags.mark_flag_as_required("root")
    app.run(main, flags_parser=_parsing.flags_parser("sweep.py"))


if __name__ == "__main__":
    run_main()
