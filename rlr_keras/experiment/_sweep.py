r"""Sweeps: a grid of trainings (protocols x seeds x hyperparameters), resumably.

`rlr_keras.experiment.sweep` (and `rlr-sweep`, experiments/sweep.py). Every
point of the grid is one run (`rlr_keras.experiment.train`) in its own
folder under `root`, named after what varies, e.g. `cyclic_period=6_seed=0`
or `random_batch_size=60_learning_rate=0.0002_seed=1`. The grid is

    variants x grid x protocols (cyclic: x periods) x seeds

A run whose status is `done` is skipped, so a sweep killed at any point and
started again with the same arguments finishes the interrupted run (which
resumes from its last completed epoch) and the runs not yet started.
Progress (runs done / total, ETA) is logged, and every event is appended to
`<root>/sweep_log.jsonl`; see the `rlr-sweep` command (`--helpfull`) for
the rest.
"""

import collections
import itertools
import json
import os
import sys
import time

from absl import logging

from rlr_keras import _names
from rlr_keras import _quiet
from rlr_keras.experiment import _jobs
from rlr_keras.experiment import _ray
from rlr_keras.experiment import _rundir
from rlr_keras.experiment import _train

PROTOCOLS = _names.PROTOCOLS  # Keras-free: the sweep command's flags use it.

_LOG_FILE = "sweep_log.jsonl"
_SPEC_FILE = "sweep.json"
# The output of the train children of a sweep with jobs > 1, one file each.
_LOGS_DIR = "logs"
# The child process of the subprocess launcher: the train command.
_TRAIN_COMMAND = ("-m", "rlr_keras.experiment.commands.train")

def _format(value):
    """A value as it appears in a run's folder name, exactly.

    A float is written `%g` when that reads back as the same float (0.005,
    2.5e-4 -> "0.00025", 6.0 -> "6": the names of existing run folders), and
    otherwise as its shortest round-trip `repr` (0.1234567), so that two
    different values never share a folder.
    """
    if isinstance(value, float):
        text = f"{value:g}"
        if float(text) != value:
            text = repr(value)
    else:
        text = str(value)
    return text.replace(os.sep, "-").replace(":", "-")


def expand(*, base_arguments, protocols, seeds, periods=None, grid=(),
           variants=()):
    """Returns the runs of a sweep: a list of (name, train.run arguments).

    Args:
        base_arguments: dict, train.run arguments common to all runs.
        protocols: list of str.
        seeds: list of int.
        periods: list of float or None, the cyclic protocol's periods.
        grid: list of (name, [values]).
        variants: list of dicts name -> value.

    Raises:
        ValueError: for an empty or inconsistent grid.
    """
    if not protocols or not seeds:
        raise ValueError("a sweep needs at least one protocol and one seed")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or len(set(protocols)) != len(protocols):
        raise ValueError(
            f"--protocols must list distinct names among "
            f"{', '.join(PROTOCOLS)}, got {','.join(map(str, protocols))}")
    if "cyclic" in protocols and not periods:
        raise ValueError(
            "--periods is required when --protocols has cyclic (one cyclic "
            "run per period P in epochs, e.g. --periods=6,18,30), got none")
    if periods and "cyclic" not in protocols:
        raise ValueError(
            "--periods applies only to the cyclic protocol, got --periods="
            f"{','.join(_format(p) for p in periods)} with --protocols="
            f"{','.join(protocols)}")
    if periods and len(set(periods)) != len(periods):
        raise ValueError(f"--periods repeats a period: "
                         f"{','.join(_format(p) for p in periods)}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {seeds}")
    variants = list(variants) or [{}]
    grid_names = [name for name, _ in grid]
    for variant in variants:
        overlap = set(variant) & set(grid_names)
        if overlap:
            raise ValueError(
                f"{sorted(overlap)} set by both --grid and --variant")
    sets_delta = "delta" in grid_names or any(
        "delta" in variant for variant in variants)
    if sets_delta and "random" not in protocols:
        raise ValueError(
            "delta applies only to the random protocol, but --grid/--variant "
            f"set it with --protocols={','.join(protocols)}; add random to "
            "--protocols or drop delta")
    protocol_points = []
    for protocol in protocols:
        for period in (periods if protocol == "cyclic" else [None]):
            protocol_points.append((protocol, period))

    runs = []
    for seed in seeds:
        for variant in variants:
            for values in itertools.product(*(v for _, v in grid)):
                point = dict(variant)
                point.update(zip(grid_names, values))
                for protocol, period in protocol_points:
                    run_point = dict(point)
                    if protocol != "random":
                        # Delta is the random factor's half-width: the other
                        # protocols have no delta, and train.py refuses one.
                        run_point.pop("delta", None)
                    parts = [protocol]
                    if period is not None:
                        parts.append(f"period={_format(period)}")
                    parts += [f"{name}={_format(run_point[name])}"
                              for name in sorted(run_point)]
                    parts.append(f"seed={seed}")
                    arguments = dict(base_arguments)
                    arguments.update(run_point)
                    arguments.update(protocol=protocol, period=period,
                                     seed=seed)
                    if protocol != "random":
                        arguments["delta"] = None
                    runs.append(("_".join(parts), arguments))
    counts = collections.Counter(name for name, _ in runs)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated and sets_delta and all(
            not name.startswith("random_") for name in repeated):
        raise ValueError(
            "--grid/--variant vary delta, which applies only to the random "
            f"protocol: the {', '.join(sorted(set(protocols) - {'random'}))} "
            f"runs would repeat (e.g. {repeated[0]}); sweep delta in a "
            "sweep of its own with --protocols=random")
    if repeated:
        raise ValueError(
            f"the grid repeats a point: {len(repeated)} run folders would "
            f"hold two runs each (e.g. {repeated[0]}); check --grid/--variant")
    return runs


class _Recorded:
    """`arguments` with the model and dataset as recorded specs (JSON).

    Arrays are hashed once per object (`rlr_keras.data.dataset_spec`).
    """

    def __init__(self):
        self._specs = {}

    def __call__(self, arguments):
        from rlr_keras import data as data_lib  # pylint: disable=all
        from rlr_keras import models  # pylint: disable=g-import-not-at-top

        specs = {}
        for key, spec_of in (("model", models.model_spec),
                             ("dataset", data_lib.dataset_spec)):
            value = arguments.get(key)
            if isinstance(value, str) or value is None:
                specs[key] = value
            else:
                if id(value) not in self._specs:
                    self._specs[id(value)] = (value, spec_of(value))
                specs[key] = self._specs[id(value)][1]
        return dict(arguments, **specs)


def _is_user_code(value, kind):
    """Whether a model or dataset is the user's (a callable, a spec of user
    code or file, or arrays), which the sweep checks before any run."""
    from rlr_keras import data as data_lib  # pylint: disable=all

    if not isinstance(value, str):
        return True
    if kind == "model":
        from rlr_keras import models  # pylint: disable=g-import-not-at-top

        return value not in models.MODEL_NAMES
    return data_lib.parse_dataset_spec(value)[0] in ("function", "npz")


def check_models_and_data(runs, recorded=None):
    """Loads each of the user's datasets and builds each user model once.

    So that a spec that does not import, a model that returns no Model or
    the wrong number of logits, or arrays that are not usable stop the
    sweep with one line before any run folder is touched. Built-in models
    and dataset formats are left to the runs (their specs were parsed).

    Raises:
        ValueError, TypeError: as `rlr_keras.data.load_dataset` and
            `rlr_keras.models.build_model` do.
    """
    recorded = recorded or _Recorded()
    checked = set()
    for _, arguments in runs:
        specs = recorded(arguments)
        key = (specs["model"], specs["dataset"], arguments.get("image_size"))
        user_model = _is_user_code(arguments["model"], "model")
        user_data = _is_user_code(arguments["dataset"], "dataset")
        if key in checked or not (user_model or user_data):
            continue
        checked.add(key)
        with _quiet.quiet_imports():
            from rlr_keras import data as data_lib  # pylint: disable=all
            from rlr_keras import models  # pylint: disable=all

            image_size = _train.parse_image_size(arguments.get("image_size"))
            data = data_lib.load_dataset(arguments["dataset"],
                                         data_dir=arguments.get("data_dir"),
                                         image_size=image_size)
            if user_model:
                models.build_model(arguments["model"], data.input_shape,
                                   data.num_classes, seed=arguments["seed"])


def _log_event(root, event, name=None, **extra):
    """Appends one event to the sweep log (an append-only JSON-lines log)."""
    record = {"time": time.time(), "event": event, "run": name, **extra}
    with open(os.path.join(root, _LOG_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_log(root):
    """Returns the sweep log's events; a line torn by a kill is skipped."""
    events = []
    try:
        with open(os.path.join(root, _LOG_FILE), encoding="utf-8") as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    except FileNotFoundError:
        pass
    return events


def _hparams(arguments, varying):
    """The run's grid coordinates, as HParams values (no None)."""
    names = ["protocol", "period", "seed"] + sorted(
        name for name in varying if name not in ("protocol", "period", "seed"))
    return {name: arguments[name] for name in names
            if arguments.get(name) is not None}


# The metrics of the HParams dashboard, as (run folder below a run's
# tensorboard/, tag, description): Keras' epoch logs, and summary.json's
# values that are no per-epoch scalars, which train.py writes at the end of a
# run into tensorboard/ itself. Listing them keeps TensorBoard from showing
# every scalar of every run (alpha, D, T, ...) as a metric.
HPARAMS_METRICS = (
    ("validation", "epoch_accuracy",
     "Test accuracy; its last value is final_test_accuracy."),
    ("validation", "epoch_loss", "Test loss."),
    ("train", "epoch_accuracy", "Training accuracy (running mean)."),
    ("train", "epoch_loss",
     "Training loss (running mean); its last value is final_train_loss."),
    ("", "summary/best_test_accuracy", "Best test accuracy of the run."),
    ("", "summary/generalization_gap",
     "Final training accuracy minus final test accuracy."),
)


def _hparams_domains(runs, varying):
    """{name: sorted distinct values} of the runs' HParams (see `_hparams`)."""
    domains = collections.defaultdict(set)
    for _, arguments in runs:
        for name, value in _hparams(arguments, varying).items():
            domains[name].add(value)
    return {name: sorted(values, key=lambda v: (str(type(v)), v))
            for name, values in domains.items()}


def _train_command(arguments):
    """The command line of a train child that trains `arguments`."""
    return [sys.executable, *_TRAIN_COMMAND] + [
        line for line in (_rundir.format_flag(name, value)
                          for name, value in arguments.items())
        if line is not None]


def _failure(output_dir, pid, returncode, log_path=None, lines=()):
    """Why the train child `pid` failed: the error its run recorded, else
    the last `train.py:` line of its log or of `lines` (its stderr: an error
    before the run folder was claimed), else its exit status."""
    record = _rundir.read_json(
        os.path.join(output_dir, _rundir.STATUS_FILE), {}) or {}
    if (record.get("status") == _rundir.FAILED and record.get("pid") == pid
            and record.get("error")):
        return record["error"]
    lines = list(lines)
    if log_path:
        try:
            with open(log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(log_path) - 65536))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            pass
    for line in reversed(lines):
        if line.startswith("train.py: "):
            return line[len("train.py: "):].removeprefix("error: ")
    return f"train.py exited with status {returncode}"


def _run_subprocess(arguments):
    """Runs train.py in a child process that cannot outlive this one.

    The child shares the sweep's process group (a Ctrl-C at the terminal
    reaches both) and its terminal (its stderr passes through the sweep,
    which keeps the child's one-line reason when it refuses its flags); a
    SIGINT or SIGTERM sent to the sweep alone is forwarded to it, the sweep
    waits for it to stop (it writes its status), then stops itself:
    KeyboardInterrupt for SIGINT, exit status 128 + signal for SIGTERM.
    """
    ended = []
    _jobs.run_processes(
        [(arguments["output_dir"], _train_command(arguments), None)],
        _jobs.plan(1, gpus=[]), on_start=lambda *_: None,
        on_end=lambda name, pid, returncode, *_, stderr_lines: ended.append(
            (pid, returncode, stderr_lines)), relay=True)
    (pid, returncode, lines), = ended
    if returncode:
        raise RuntimeError(_failure(arguments["output_dir"], pid, returncode,
                                    lines=lines))


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _Progress:
    """The sweep's bookkeeping: runs done and failed, events, progress, ETA.

    The ETA counts the runs in flight: the mean duration of the runs ended
    so far, times the runs not started, plus what the runs in flight have
    left of it, shared among the runs that can go at once.
    """

    def __init__(self, root, total, skipped, at_once):
        self.root, self.total, self.at_once = root, total, at_once
        self.done, self.failed, self.durations = list(skipped), {}, []

    def start(self, name, in_flight=0, **extra):
        _log_event(self.root, "start", name, **extra)
        where = f" ({extra['device']}, pid {extra['pid']})" if extra else ""
        logging.info("[%d/%d] Starting %s%s",
                     len(self.done) + len(self.failed) + in_flight + 1,
                     self.total, name, where)

    def end(self, name, seconds, error=None, running=()):
        if error is None:
            self.done.append(name)
            _log_event(self.root, "done", name)
        else:
            self.failed[name] = error
            _log_event(self.root, "failed", name, error=error)
            logging.error("Run %s failed: %s", name, error)
        self.durations.append(seconds)
        ended = len(self.done) + len(self.failed)
        remaining = self.total - ended
        mean = sum(self.durations) / len(self.durations)
        work = mean * (remaining - len(running)) + sum(
            max(0.0, mean - elapsed) for elapsed in running)
        eta = work / max(1, min(self.at_once, remaining))
        logging.info("[%d/%d] %s %s in %s; %d to go%s, ETA %s", ended,
                     self.total, name, "done" if error is None else "failed",
                     _duration(seconds), remaining,
                     f" ({len(running)} running)" if running else "",
                     _duration(eta))


def _run_one_at_a_time(todo, train, progress):
    for name, arguments in todo:
        progress.start(name)
        start = time.monotonic()
        error = None
        try:
            train(arguments)
        except Exception as exception:  # pylint: disable=broad-except
            error = f"{type(exception).__name__}: {exception}"
        except BaseException as exception:  # SIGINT, SIGTERM: record, stop.
            progress.end(name, time.monotonic() - start,
                         f"{type(exception).__name__}: {exception}")
            raise
        progress.end(name, time.monotonic() - start, error)


def _check_runs(root, runs, recorded):
    """Checks every run by train.py's rules, and that the runs already in
    `root` were made with the same arguments (a run counts as done only
    then), before anything runs or is written.

    Raises:
        ValueError, TypeError: naming the argument (and the run).
    """
    for name, arguments in runs:
        try:
            config = _train.Config(**arguments)
            _train.check_arguments(config)
        except (ValueError, TypeError) as error:
            raise type(error)(
                f"{_train.as_flag_message(error)} (run {name})") from None
        if not os.path.isfile(os.path.join(arguments["output_dir"],
                                           _rundir.CONFIG_FILE)):
            continue
        changes = _train.argument_changes(
            arguments["output_dir"], _train.recorded_arguments(
                _train.resolved(_train.Config(**recorded(arguments)))))
        if changes:
            raise ValueError(
                f"--root={root} holds runs made with other arguments "
                f"({', '.join(changes)}; e.g. {name}); rerun with the flags "
                "they were made with, or use another --root")


def _run_at_once(root, todo, slots, progress):
    """Trains `todo`, `len(slots)` runs at once, each in a train child whose
    output goes to `<root>/logs/<name>.log`."""
    output_dirs = {name: arguments["output_dir"] for name, arguments in todo}
    logs = {name: os.path.join(root, _LOGS_DIR, f"{name}.log")
            for name, _ in todo}

    def on_start(name, pid, slot, in_flight):
        progress.start(name, in_flight, pid=pid, device=slot.device,
                       log=os.path.relpath(logs[name], root))

    def on_end(name, pid, returncode, seconds, running):
        error = None
        if returncode:
            error = _failure(output_dirs[name], pid, returncode,
                             logs[name])
        progress.end(name, seconds, error, running)

    _jobs.run_processes(
        [(name, _train_command(arguments), logs[name])
         for name, arguments in todo],
        slots, on_start=on_start, on_end=on_end)


def _launch_inprocess(root, todo, progress, **unused):
    del root, unused
    _run_one_at_a_time(todo, lambda arguments: _train.run(**arguments),
                       progress)


def _launch_subprocess(root, todo, progress, *, slots, **unused):
    del unused
    if len(slots) == 1:
        _run_one_at_a_time(todo, _run_subprocess, progress)
    else:
        _run_at_once(root, todo, slots, progress)


def _launch_ray(root, todo, progress, **options):
    _ray.launch(root, todo, progress,
                train_argv=lambda arguments: _train_command(arguments)[1:],
                failure=_failure, **options)


# The launchers: name -> function(root, todo, progress, **options) that
# trains `todo` (a list of (name, train.run arguments)) and records each
# start and end in `progress`. A new launcher is one entry here.
LAUNCHERS = {
    "inprocess": _launch_inprocess,
    "subprocess": _launch_subprocess,
    "ray": _launch_ray,
}
# Launchers that start each run in a new process (which needs the model and
# dataset as specs).
_NEW_PROCESS = ("subprocess", "ray")


def run(*, root, base_arguments, protocols=PROTOCOLS,
        seeds=(0, 1, 2), periods=None, grid=(), variants=(),
        launcher=None, jobs=1, runs_per_gpu=1, ray_address=None,
        run_cpus=None, run_gpus=None, make_plots=True, title=None,
        group_by=None, equivalence_margin=0.005, dry_run=False):
    """Runs (or resumes) a sweep; returns {"done": [...], "failed": {...}}.

    Args:
        root: str, the sweep's folder.
        base_arguments: dict, train.run arguments common to all runs (its
            output_dir, protocol, period and seed are ignored).
        protocols, seeds, periods, grid, variants: the grid, see `expand`.
        launcher: "inprocess", "subprocess", "ray" (`_ray`), or None:
            "inprocess" for jobs=1 and "subprocess" otherwise.
        jobs: int >= 1, how many runs train at once, each in a train child
            of its own (`_jobs`: GPUs, cores); their output goes to
            `<root>/logs/<name>.log`. 1 trains one run after the other.
        runs_per_gpu: int >= 1, how many of the `jobs` runs may share a GPU.
        ray_address: str, launcher "ray" only: "local" (default: a Ray of
            this sweep's own), "auto" or "HOST:PORT" (a running cluster).
        run_cpus, run_gpus: numbers (fractions allowed), launcher "ray"
            only: what each run's task asks for. Default 1 and 0.
        make_plots: bool, run plot.py on the finished runs at the end.
        title, group_by, equivalence_margin: passed to `plot.run`.
        dry_run: bool, only list the runs.

    Returns:
        A dict with the names of the runs `done` (list), `failed` (dict
        name -> error) and `skipped` (done before this call).

    Raises:
        ValueError: for a bad grid or launcher, jobs > 1 with launcher
            "inprocess" or "ray", Ray options without launcher "ray", more
            jobs than the visible GPUs hold, or (Ray) a `root` that not
            every node sees.
        ImportError: launcher "ray" without Ray installed (one line).
    """
    if launcher is None:
        launcher = "inprocess" if jobs == 1 else "subprocess"
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of "
                         f"{', '.join(map(repr, LAUNCHERS))}, got {launcher!r}")
    ray_options = {"ray_address": ray_address, "run_cpus": run_cpus,
                   "run_gpus": run_gpus}
    if launcher != "ray":
        for name, value in ray_options.items():
            if value is not None:
                raise ValueError(f"{name} applies only to launcher='ray', got "
                                 f"{name}={value!r} with launcher={launcher!r}")
        ray_options = {}
    else:
        ray_options = {"ray_address": ("local" if ray_address is None
                                       else ray_address),
                       "run_cpus": 1 if run_cpus is None else run_cpus,
                       "run_gpus": 0 if run_gpus is None else run_gpus}
        _ray.check_options(**ray_options)
        if jobs != 1:
            raise ValueError(
                f"jobs={jobs} applies to launcher='subprocess'; with "
                "launcher='ray' Ray runs as many runs at once as the "
                "cluster has room for (run_cpus, run_gpus per run)")
        _ray.require()
        root = os.path.abspath(root)  # Every node reads the same path.
    slots = _jobs.plan(jobs, gpus=_jobs.visible_gpus() if jobs > 1 else [],
                       runs_per_gpu=runs_per_gpu)
    if jobs > 1 and launcher == "inprocess":
        raise ValueError(
            f"jobs={jobs} trains each run in a process of its own; use "
            "launcher='subprocess' (or leave launcher unset), got "
            "launcher='inprocess'")
    _train.check_folder("root", root)
    runs = expand(base_arguments=base_arguments, protocols=list(protocols),
                  seeds=list(seeds), periods=periods, grid=grid,
                  variants=variants)
    recorded = _Recorded()
    if launcher in _NEW_PROCESS:
        for name, arguments in runs:
            for key in ("model", "dataset"):
                spec = recorded(arguments)[key]
                if spec != arguments[key]:
                    raise ValueError(
                        f"launcher={launcher!r} (and jobs > 1) starts each "
                        f"run in a new "
                        f"process, which cannot receive {key}={spec} (a "
                        "Python object); use launcher='inprocess', or give "
                        f"the {key} as a spec (MODULE:FUNCTION, "
                        "file.py:FUNCTION" + (", npz:PATH" if key == "dataset"
                                              else "") + ")")
    if not dry_run:
        check_models_and_data(runs, recorded)
    varying = {name for name, _ in grid} | {
        name for variant in variants for name in variant}
    for name, arguments in runs:
        arguments["output_dir"] = os.path.join(root, name)
    _check_runs(root, runs, recorded)
    total = len(runs)
    status = {name: _rundir.read_status(arguments["output_dir"])
              for name, arguments in runs}
    skipped = [name for name in status if status[name] == _rundir.DONE]
    logging.info("Sweep %s: %d runs, %d done already.", root, total,
                 len(skipped))
    if dry_run:
        for name, _ in runs:
            print(f"{status[name] or 'not started':12s} {name}")
        return {"done": skipped, "failed": {}, "skipped": skipped}

    os.makedirs(root, exist_ok=True)
    _rundir.write_json(os.path.join(root, _SPEC_FILE), {
        "protocols": list(protocols), "seeds": list(seeds),
        "periods": periods, "grid": [list(g) for g in grid],
        "variants": list(variants),
        "base_arguments": recorded(base_arguments),
        "runs": {name: recorded(arguments) for name, arguments in runs},
    })
    _rundir.write_hparams_experiment(
        root, _hparams_domains(runs, varying), HPARAMS_METRICS)
    _log_event(root, "sweep_start", total=total, done=len(skipped),
               jobs=jobs, launcher=launcher, **ray_options)
    if jobs > 1:
        logging.info("%d runs at once, each in its own process: %s.", jobs,
                     "; ".join(slot.device for slot in slots))
    progress = _Progress(root, total, skipped, jobs)
    todo = []
    for name, arguments in runs:
        if name in skipped:
            _log_event(root, "skip", name)
        else:
            todo.append((name, arguments))
    try:
        LAUNCHERS[launcher](root, todo, progress, slots=slots, **ray_options)
    except BaseException as error:  # SIGINT, SIGTERM: the log says so.
        _log_event(root, "sweep_end", done=len(progress.done),
                   failed=len(progress.failed),
                   interrupted=f"{type(error).__name__}: {error}")
        raise
    done, failed = progress.done, progress.failed
    _log_event(root, "sweep_end", done=len(done), failed=len(failed))
    logging.info("Sweep %s: %d of %d runs done, %d failed.", root, len(done),
                 total, len(failed))
    for name, error in failed.items():
        logging.error("Failed: %s: %s", name, error)
    if make_plots and done:
        from rlr_keras.experiment import _report  # pylint: disable=all

        _report.run(runs=[root], group_by=group_by, title=title,
                 equivalence_margin=equivalence_margin)
    return {"done": done, "failed": failed, "skipped": skipped}

