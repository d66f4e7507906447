r"""The Ray launcher: a sweep's runs as Ray tasks, on one machine or a cluster.

`rlr_keras.experiment.sweep(..., launcher="ray")` (`rlr-sweep
--launcher=ray`). Ray is imported here only, and only when this launcher is
used (`pip install "rlr_keras[ray]"`).

- `ray_address`: "local" (the default) starts a Ray of its own on this
  machine, stopped at the end; "auto" or "HOST:PORT" joins a running cluster
  (`ray start --head` / `ray start --address=HOST:PORT` on each node).
- Each run is one Ray task asking for `run_cpus` CPUs and `run_gpus` GPUs
  (fractions allowed: 0.25 lets four runs share one GPU). The task starts the
  `train` command in a child process on its node (that node's Python), which
  dies with the task (`_jobs.die_with_parent`); its output goes to
  `<root>/logs/<run>.log`, and `<root>/logs/<run>.task.json` says which
  node, host and worker hold the run's current attempt.
- `root` must be on storage that every node shares at the same path: the
  driver writes a marker file there and a task on every node must read it
  back, else the sweep stops before any run (`check_shared_root`).
- Node loss: Ray retries the task (`max_retries`) on a node that is alive;
  the run resumes from its last backup in its run folder. The run-folder
  lock (`_rundir.locked`) keeps two workers off one run and lets a retry
  take over from the attempt that was lost.
- SIGINT or SIGTERM of the sweep cancels every task: each train child gets
  SIGTERM and records its run `failed`, and the sweep stops once they have.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

from rlr_keras.experiment import _jobs
from rlr_keras.experiment import _rundir

INSTALL = 'pip install "rlr_keras[ray]"'
# Ray's retries of a run whose node (or worker) was lost.
MAX_RETRIES = 3
# How long the sweep waits, after SIGINT/SIGTERM, for the runs to record it.
_CANCEL_WAIT_S = 120.0
# How often the driver looks for runs that started.
_POLL_S = 1.0
# How often a task looks whether its train child ended.
_CHILD_POLL_S = 0.2


def require():
    """Returns the `ray` module, or raises ImportError saying what to install.

    Raises:
        ImportError: one line, when Ray is not installed.
    """
    try:
        import ray  # pylint: disable=g-import-not-at-top
    except ImportError:
        raise ImportError(
            f"launcher='ray' needs Ray, which is not installed: {INSTALL}"
        ) from None
    return ray


def check_options(ray_address, run_cpus, run_gpus):
    """Checks the Ray launcher's arguments; ValueError names the bad one."""
    if not isinstance(ray_address, str) or not ray_address.strip():
        raise ValueError(f"ray_address must be 'local', 'auto' or HOST:PORT, "
                         f"got {ray_address!r}")
    for name, value, low in (("run_cpus", run_cpus, "> 0"),
                             ("run_gpus", run_gpus, ">= 0")):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not value >= 0 or value == float("inf")
                or (low == "> 0" and value == 0)):
            raise ValueError(f"{name} must be a number {low} (fractions "
                             f"allowed), got {value!r}")


def _sees_marker(path, token):
    """On a node: whether `path` exists there and holds `token`."""
    try:
        with open(path, encoding="utf-8") as f:
            seen = f.read().strip() == token
    except OSError:
        seen = False
    return seen, socket.gethostname()


def check_shared_root(ray, root):
    """Stops the sweep unless a task on every alive node sees `root`.

    Raises:
        ValueError: one line naming the node that does not see the marker.
    """
    from ray.util import scheduling_strategies  # pylint: disable=all

    os.makedirs(root, exist_ok=True)
    token = uuid.uuid4().hex
    marker = os.path.join(root, f".ray-shared-check-{token}")
    _rundir.write_text(marker, token + "\n")
    try:
        sees = ray.remote(num_cpus=0, max_retries=0)(_sees_marker)
        nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
        refs = [sees.options(
            scheduling_strategy=scheduling_strategies
            .NodeAffinitySchedulingStrategy(node, soft=False)).remote(
                marker, token) for node in nodes]
        results = []
        for node, ref in zip(nodes, refs):
            try:
                results.append((node, *ray.get(ref)))
            except ray.exceptions.TaskUnschedulableError:
                pass  # The node died since `ray.nodes()`: no runs go there.
    finally:
        os.remove(marker)
    for node, seen, host in results:
        if not seen:
            raise ValueError(
                f"--root={root} must be on storage that every Ray node shares "
                f"at the same path: a task on node {node[:12]} ({host}) does "
                f"not see the marker file that this driver wrote there")


def _train_task(name, argv, log_path, attempt_path, env):
    """One run, as a Ray task: the train command in a child on this node.

    Returns {"node", "host", "pid", "returncode", "seconds"}. A cancel
    (KeyboardInterrupt) is passed on to the child as SIGTERM, and the task
    waits for the child to record its run failed.
    """
    import ray  # pylint: disable=g-import-not-at-top

    context = ray.get_runtime_context()
    node, task = context.get_node_id(), context.get_task_id()
    where = {"run": name, "node": node, "host": socket.gethostname(),
             "worker_pid": os.getpid(), "task": task, "time": time.time()}
    _rundir.write_json(attempt_path, where)
    env = dict(os.environ, **env)
    # The lock rule (`_rundir.locked`): an attempt may take over a lock that
    # an earlier attempt of the same task holds.
    env[_rundir.LOCK_OWNER_ENV] = f"ray task {task}"
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    start = time.monotonic()
    with open(log_path, "ab") as log:
        child = subprocess.Popen(  # pylint: disable=all
            [sys.executable, *argv], env=env, stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_preexec(os.getpid()))  # noqa: PLW1509
        try:
            # Polled, not child.wait(): ray.cancel's KeyboardInterrupt reaches
            # Python code only, not a thread blocked in waitpid.
            while child.poll() is None:
                time.sleep(_CHILD_POLL_S)
            returncode = child.returncode
        except KeyboardInterrupt:  # ray.cancel: the run records it.
            child.send_signal(signal.SIGTERM)
            child.wait()
            raise
    return dict(where, pid=child.pid, returncode=returncode,
                seconds=time.monotonic() - start)


def _child_preexec(worker_pid):
    """The train child dies with the worker and hears SIGINT and SIGTERM.

    Ray workers ignore or block SIGINT, which an exec keeps: the child
    restores and unblocks both, so that a cancel reaches the run.
    """
    die = _jobs.die_with_parent(worker_pid)

    def preexec():
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        die()
    return preexec


def _child_env(run_cpus, run_gpus):
    """The train child's thread counts and GPU memory settings."""
    threads = str(max(1, int(run_cpus)))
    env = {"OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads}
    if 0 < run_gpus < 1:  # Runs share a GPU: none may take all its memory.
        env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false",
                   TF_FORCE_GPU_ALLOW_GROWTH="true")
    return env


def _read_attempt(path):
    try:
        return _rundir.read_json(path)
    except ValueError:  # Being replaced: read it at the next poll.
        return None


def launch(root, todo, progress, *, train_argv, failure, ray_address="local",
           run_cpus=1.0, run_gpus=0.0, **unused):
    """Trains `todo` as Ray tasks; `progress` records starts and ends.

    Args:
        root: str, the sweep's folder (absolute: every node reads it).
        todo: list of (name, train.run arguments), output_dir absolute.
        progress: the sweep's `_Progress`.
        train_argv: callable, arguments -> the train command's argv after
            the Python executable.
        failure: callable (output_dir, pid, returncode, log_path) -> the
            one-line error of a failed run.
        ray_address: "local", "auto" or "HOST:PORT".
        run_cpus, run_gpus: what each task asks for.

    Raises:
        ImportError: without Ray.
        ValueError: if `root` is not shared by every node.
        KeyboardInterrupt: after SIGINT, once the runs recorded it.
        SystemExit: 128 + SIGTERM, likewise.
    """
    del unused
    if not todo:  # Every run is done: no need for Ray.
        return
    ray = require()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=ray_address, include_dashboard=False,
                 log_to_driver=False, logging_level="warning")
    try:
        check_shared_root(ray, root)
        cpus = ray.cluster_resources().get("CPU", 1.0)
        progress.at_once = max(1, int(cpus // run_cpus))
        task = ray.remote(_train_task).options(
            num_cpus=run_cpus, num_gpus=run_gpus, max_retries=MAX_RETRIES,
            retry_exceptions=False)
        env = _child_env(run_cpus, run_gpus)
        refs, paths = {}, {}
        for name, arguments in todo:
            logs = os.path.join(root, "logs")
            paths[name] = (os.path.join(logs, f"{name}.log"),
                           os.path.join(logs, f"{name}.task.json"))
            for path in paths[name][1:]:
                if os.path.exists(path):
                    os.remove(path)
            refs[task.remote(name, train_argv(arguments), *paths[name],
                             env)] = name
        _wait(ray, root, refs, paths, todo, progress, failure)
    finally:
        if started_ray:
            ray.shutdown()


def _wait(ray, root, refs, paths, todo, progress, failure):
    """Logs starts (new attempt files) and ends until every task ended."""
    output_dirs = dict(todo)
    seen, started = {}, {}

    def look_for_starts():
        for name in refs.values():
            attempt = _read_attempt(paths[name][1])
            if attempt and attempt != seen.get(name):
                seen[name] = attempt
                started[name] = time.monotonic()
                progress.start(
                    name, len(started) - 1, node=attempt["node"],
                    host=attempt["host"], pid=attempt["worker_pid"],
                    device=f"ray node {attempt['node'][:12]} on "
                    f"{attempt['host']}",
                    log=os.path.relpath(paths[name][0], root))

    def end(ref, error=None):
        name = refs.pop(ref)
        seconds = time.monotonic() - started.pop(name, time.monotonic())
        if error is None:
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exception:
                error = " ".join(f"{type(exception).__name__}: "
                                 f"{exception}".split())[:500]
            else:
                seconds = result["seconds"]
                if result["returncode"]:
                    error = failure(output_dirs[name]["output_dir"],
                                    result["pid"], result["returncode"],
                                    paths[name][0])
        now = time.monotonic()
        progress.end(name, seconds, error,
                     [now - t for n, t in started.items() if n in
                      refs.values()])

    terminated = []

    def on_sigterm(signum, frame):
        del frame
        terminated.append(signum)
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    previous = signal.getsignal(signal.SIGTERM)
    if _is_main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=_POLL_S)
            look_for_starts()
            for ref in ready:
                if ref in refs:
                    end(ref)
    except KeyboardInterrupt:
        # Ray turns a signal during ray.wait into a plain KeyboardInterrupt:
        # `terminated` says whether it was SIGTERM.
        for ref in refs:
            ray.cancel(ref)
        ray.wait(list(refs), num_returns=len(refs), timeout=_CANCEL_WAIT_S)
        look_for_starts()
        for ref in list(refs):
            if refs[ref] in started:
                end(ref, error=None if _ended(ray, ref) else
                    "KeyboardInterrupt: the sweep stopped; the run did not "
                    "end in time")
            else:
                refs.pop(ref)
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        if _is_main_thread():
            signal.signal(signal.SIGTERM, previous)


def _ended(ray, ref):
    """Whether the task `ref` ended (done, failed or cancelled)."""
    ready, _ = ray.wait([ref], timeout=0)
    return bool(ready)


def _is_main_thread():
    import threading  # pylint: disable=g-import-not-at-top

    return threading.current_thread() is threading.main_thread()
