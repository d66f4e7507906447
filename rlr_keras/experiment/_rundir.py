"""The run folder: its layout, atomic writes, and the readers plots use.

A run folder describes itself (paths relative to the folder):

```
flags.cfg      the flags it ran with (replay: train.py --flagfile=flags.cfg)
config.json    the same arguments as JSON, plus library and framework versions
status.json    {"status": "running" | "done" | "failed", "error": ..., ...}
metrics.jsonl  one JSON object per completed epoch
summary.json   final numbers (see `SUMMARY_KEYS`), written when training ends
tensorboard/   TensorBoard event files (`tensorboard --logdir=...`)
backup/        keras.callbacks.BackupAndRestore state; removed once done
```

Every file is written whole to a temporary name in the same folder and then
renamed over the target (`os.replace` is atomic on POSIX and Windows), so a
run killed at any instant leaves each file either old or new, never torn.

This module needs only the standard library, so that `sweep.py` and `plot.py`
can read run folders without importing TensorFlow.
"""

import contextlib
import datetime
import itertools
import json
import math
import os
import socket
import tempfile
import time

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded.
    fcntl = None

FLAGS_FILE = "flags.cfg"
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TENSORBOARD_DIR = "tensorboard"
BACKUP_DIR = "backup"
LOCK_FILE = ".lock"

# Permissions of the files we write: mkstemp's 0600, widened as open() would.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

RUNNING = "running"
DONE = "done"
FAILED = "failed"

SUMMARY_KEYS = (
    "final_test_accuracy",
    "best_test_accuracy",
    "final_train_accuracy",
    "final_train_loss",
    "generalization_gap",
    "wall_time_s",
    "num_parameters",
    "temperature_over_d",
)


def write_text(path, text):
    """Writes `text` to `path` atomically (temporary file, fsync, rename)."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path, data):
    """Writes `data` to `path` atomically (temporary file, fsync, rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        os.chmod(temporary, _FILE_MODE)
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


class UserError(RuntimeError):
    """A problem with the user's input or files, reported as one line."""


def _jsonable(value):
    """Maps NaN/inf to None (JSON has no such numbers) and NumPy to Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars.
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, obj):
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True)
    write_text(path, text + "\n")


def write_jsonl(path, rows):
    write_text(path, "".join(
        json.dumps(_jsonable(row), sort_keys=True) + "\n" for row in rows))


def read_json(path, default=None):
    """Returns the parsed file, or `default` if it does not exist.

    Raises:
        ValueError: if the file is not JSON (the message names it).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); this tool writes it "
            "atomically, so something else changed it: restore or delete "
            "that file") from None


def read_jsonl(path):
    """Returns the list of objects in a JSON-lines file ([] if missing).

    Raises:
        ValueError: if a line is not JSON (the message names the file and
            the line).
    """
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    rows.append(json.loads(line))
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 ({error}); restore or delete that file"
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: line {number} is not valid JSON ({error}); this tool "
            "writes it atomically, so something else changed it: restore "
            "or delete that file") from None
    return rows


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")


def write_status(run_dir, status, *, error=None, **extra):
    """Records the run's status: `running`, `done` or `failed` (with error)."""
    if status not in (RUNNING, DONE, FAILED):
        raise ValueError(
            f"status must be one of {RUNNING!r}, {DONE!r}, {FAILED!r}, "
            f"got {status!r}")
    record = {"status": status, "error": error, "time": _now(),
              "host": socket.gethostname(), "pid": os.getpid()}
    record.update(extra)
    write_json(os.path.join(run_dir, STATUS_FILE), record)


def read_status(run_dir):
    """Returns the run's status string, or None if it never started."""
    record = read_json(os.path.join(run_dir, STATUS_FILE))
    return None if record is None else record.get("status")


# The environment variable that names who takes a run folder's lock on
# behalf of whom (`locked`), e.g. "ray task <id>"; set by the Ray launcher.
LOCK_OWNER_ENV = "RLR_KERAS_LOCK_OWNER"
# How long a retried attempt waits for its lost predecessor's lock to go: an
# NFS server releases a dead client's locks when its lease ends (90 s).
TAKEOVER_WAIT_S = 180.0
_TAKEOVER_POLL_S = 0.5


def _lock_file(path, run_dir, owner, deadline):
    """Opens and locks `path` (the rule of `locked`); None if the file was
    removed meanwhile (then take the new one)."""
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115  # Kept open.
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            f.seek(0)
            recorded = f.read().strip()
            # Empty: the holder is just taking or releasing the lock.
            if (owner and (not recorded or recorded.endswith(f"({owner})"))
                    and time.monotonic() < deadline):
                time.sleep(_TAKEOVER_POLL_S)
                continue
            f.close()
            raise UserError(
                f"{run_dir} is in use by {recorded or 'another process'}; "
                "wait for it to end or stop it (one trainer per run "
                "folder)") from None
    try:
        current = os.stat(path).st_ino
    except FileNotFoundError:
        current = None
    if current != os.fstat(f.fileno()).st_ino:
        f.close()  # Removed by the holder that just ended: lock the new one.
        return None
    return f


@contextlib.contextmanager
def locked(run_dir, owner=None, takeover_wait_s=TAKEOVER_WAIT_S):
    """Holds an exclusive lock on `run_dir` (created if needed) for the block.

    The lock is `fcntl.flock` on `<run_dir>/.lock` (on NFS, Linux maps it
    onto the server's locks, so it holds across nodes): the operating system
    (or the NFS server, once a dead node's lease ends) drops it when the
    process ends, however it ends, so a killed trainer never leaves a stale
    lock. The file records the holder: `pid PID on HOST`, and `(OWNER)`. It
    is removed when the block ends (a finished folder holds no `.lock`); a
    process that opened it just before sees, once it holds the lock, that it
    locked a removed file, and takes the new one.

    The rule for retries: a busy lock fails at once, except when its holder
    recorded the same `owner` as ours. Ray retries a task only once its
    previous attempt is lost (node or worker dead), so a lock held under the
    same task id belongs to an attempt that is gone but whose lock has not
    been released yet: we wait up to `takeover_wait_s` for it to go, never
    break it. Two different tasks (or a user's trainer) never share an
    owner, so they never wait for each other.

    Args:
        run_dir: str, the run folder.
        owner: str or None, who the lock is taken for (e.g. "ray task ID";
            see `LOCK_OWNER_ENV`).
        takeover_wait_s: float, how long to wait for a lock held under the
            same owner.

    Raises:
        UserError: if another process holds the lock.
    """
    os.makedirs(run_dir, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = os.path.join(run_dir, LOCK_FILE)
    deadline = time.monotonic() + takeover_wait_s
    f = None
    while f is None:
        f = _lock_file(path, run_dir, owner, deadline)
    with f:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}"
                + (f" ({owner})" if owner else "") + "\n")
        f.flush()
        try:
            yield
        finally:
            # Still locked: no one else holds this file.
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# TensorBoard HParams ---------------------------------------------------------
# TensorBoard's HParams dashboard reads three summaries: the experiment (the
# hparams and metrics to show; a sweep writes it at its root), and for each
# run a session start (its hparams) and a session end (its status). Written
# with tensorboardX, imported only here: reading run folders needs nothing.


# Writers opened within one second in one folder would share tensorboardX's
# file name (time stamp and host) and overwrite each other.
_FILE_NUMBERS = itertools.count()


def _file_writer(log_dir):
    from tensorboardX import FileWriter  # pylint: disable=g-import-not-at-top

    return FileWriter(
        log_dir, filename_suffix=f".{os.getpid()}.{next(_FILE_NUMBERS)}")


def _hparams_value(value):
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def write_hparams_experiment(log_dir, domains, metrics):
    """Writes the HParams experiment summary (a sweep's root).

    The experiment summary of TensorBoard's HParams plugin (what
    `tensorboard.plugins.hparams.api.hparams_config` writes): each
    hyperparameter with its discrete domain, and the metrics to show as
    columns. An earlier experiment summary in `log_dir` is replaced.

    Args:
        log_dir: str, the folder above the runs' TensorBoard folders.
        domains: dict name -> list of the values taken (bool, number or
            str; others as str).
        metrics: iterable of (group, tag) or (group, tag, description): the
            scalar tags shown as columns, the group being the run's
            TensorBoard subfolder that holds them, e.g.
            `("validation", "epoch_accuracy")` (test accuracy) or
            `("", "summary/best_test_accuracy")`.
    """
    # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import api_pb2
    from tensorboardX.proto import plugin_hparams_pb2
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.proto.summary_pb2 import SummaryMetadata
    # pylint: enable=g-import-not-at-top

    hparam_infos = []
    for name, values in domains.items():
        values = [_hparams_value(v) for v in values]
        info = api_pb2.HParamInfo(name=name)
        if all(isinstance(v, bool) for v in values):
            info.type = api_pb2.DATA_TYPE_BOOL
            info.domain_discrete.extend(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool)
                 for v in values):
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_discrete.extend(float(v) for v in values)
        else:
            info.type = api_pb2.DATA_TYPE_STRING
            info.domain_discrete.extend(str(v) for v in values)
        hparam_infos.append(info)
    metric_infos = []
    for metric in metrics:
        group, tag, *description = metric
        metric_infos.append(api_pb2.MetricInfo(
            name=api_pb2.MetricName(group=group, tag=tag),
            description=description[0] if description else ""))
    content = plugin_hparams_pb2.HParamsPluginData(
        version=0, experiment=api_pb2.Experiment(
            hparam_infos=hparam_infos, metric_infos=metric_infos))
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name="hparams", content=content.SerializeToString()))
    os.makedirs(log_dir, exist_ok=True)
    for entry in os.listdir(log_dir):
        if entry.startswith("events.out.tfevents"):
            os.remove(os.path.join(log_dir, entry))
    writer = _file_writer(log_dir)
    writer.add_summary(Summary(value=[Summary.Value(
        tag="_hparams_/experiment", metadata=metadata)]))
    writer.close()


def write_scalars(log_dir, values, step=0):
    """Writes scalars {tag: float} at `step` into `log_dir` (tensorboardX)."""
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top

    writer = _file_writer(log_dir)
    for tag, value in values.items():
        writer.add_summary(summary.scalar(tag, float(value)), step)
    writer.close()


def write_hparams_session_start(log_dir, hparams, group_name=None):
    """Writes a run's HParams session start: its hparams (and group name).

    Args:
        log_dir: str, the run's TensorBoard folder.
        hparams: dict name -> bool, int, float or str (others as str; None
            values are left out).
        group_name: str or None, the name the dashboard groups sessions by
            (e.g. the run folder's name).
    """
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import plugin_hparams_pb2  # pylint: disable=all

    hparams = {name: _hparams_value(value) for name, value in hparams.items()
               if value is not None}
    _, session_start, _ = summary.hparams(hparams, {})
    if group_name:
        value = session_start.value[0]
        content = plugin_hparams_pb2.HParamsPluginData.FromString(
            value.metadata.plugin_data.content)
        content.session_start_info.group_name = group_name
        value.metadata.plugin_data.content = content.SerializeToString()
    writer = _file_writer(log_dir)
    writer.add_summary(session_start)
    writer.close()


def write_hparams_session_end(log_dir, success):
    """Writes a run's HParams session end: STATUS_SUCCESS or STATUS_FAILURE."""
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top

    _, _, session_end = summary.hparams({}, {})
    if not success:
        # tensorboardX always writes STATUS_SUCCESS; the end is rebuilt.
        from tensorboardX.proto import api_pb2  # pylint: disable=all
        from tensorboardX.proto import plugin_hparams_pb2  # pylint: disable=all

        value = session_end.value[0]
        content = plugin_hparams_pb2.HParamsPluginData.FromString(
            value.metadata.plugin_data.content)
        content.session_end_info.status = api_pb2.Status.Value(
            "STATUS_FAILURE")
        value.metadata.plugin_data.content = content.SerializeToString()
    writer = _file_writer(log_dir)
    writer.add_summary(session_end)
    writer.close()


# absl's FLAGS.flags_into_string needs the values set in a FlagValues; `run`
# is called with plain arguments (sweeps in process, tests), hence our own.
def format_flag(name, value):
    """Returns `--name=value` as absl parses it back (None: no line)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return f"--{name}={'true' if value else 'false'}"
    if isinstance(value, float):
        return f"--{name}={value!r}"
    return f"--{name}={value}"


def flag_lines(arguments, header=None):
    """Returns a flagfile for `arguments` (a dict of flag name -> value)."""
    lines = [f"# {line}".rstrip() for line in (header or "").splitlines()]
    lines += [line for line in (format_flag(k, v) for k, v in arguments.items())
              if line is not None]
    return "\n".join(lines) + "\n"


def is_run_dir(path):
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def find_runs(root):
    """Returns the run folders at or below `root`, sorted by path."""
    found = []
    for folder, subfolders, _ in os.walk(root):
        if is_run_dir(folder):
            found.append(folder)
            subfolders[:] = []  # A run folder holds no runs.
        else:
            subfolders.sort()
    return sorted(found)


def load_run(run_dir):
    """Returns a dict with the run's config, status, metrics and summary."""
    status = read_json(os.path.join(run_dir, STATUS_FILE), default={})
    return {
        "path": run_dir,
        "config": read_json(os.path.join(run_dir, CONFIG_FILE), default={}),
        "status": status.get("status"),
        "error": status.get("error"),
        "metrics": read_jsonl(os.path.join(run_dir, METRICS_FILE)),
        "summary": read_json(os.path.join(run_dir, SUMMARY_FILE)),
    }
