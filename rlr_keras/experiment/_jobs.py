r"""Several runs at once on one machine: slots, GPUs, cores and the children.

`rlr_keras.experiment.sweep(..., jobs=N)` (`rlr-sweep --jobs=N`) trains N
runs at once, each in a `train` child process of its own. Each of the N
*slots* says what its children may use:

- GPUs visible (`CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`): one GPU per
  slot, the slots dealt round-robin over the GPUs, at most `runs_per_gpu` per
  GPU; the child sees only its GPU (`CUDA_VISIBLE_DEVICES`). With
  `runs_per_gpu > 1`, JAX does not preallocate (`XLA_PYTHON_CLIENT_
  PREALLOCATE=false`) and TensorFlow grows its memory
  (`TF_FORCE_GPU_ALLOW_GROWTH=true`), so that the runs sharing a GPU fit.
- No GPU: each slot gets its share of the cores, `max(1, cores // N)`. The
  child is pinned to them (`sched_setaffinity`, Linux), which is what
  TensorFlow, XLA (JAX) and PyTorch size their thread pools from, and
  `OMP_NUM_THREADS` and `TF_NUM_INTRAOP_THREADS` say the same count.

The sweep process imports no framework for this. Every child dies with the
sweep, even by SIGKILL (`PR_SET_PDEATHSIG`, Linux); SIGINT and SIGTERM sent
to the sweep are passed on to every child, which records its run as failed,
and the sweep waits for all of them before it stops.
"""

import collections
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

# prctl(2) option: the signal the kernel sends a process when its parent dies.
_PR_SET_PDEATHSIG = 1
# How often the sweep looks for children that ended.
_POLL_S = 0.1


def die_with_parent(parent_pid, cpus=None):
    """Returns a `preexec_fn` that ties a child's life to `parent_pid`'s.

    A sweep killed with SIGKILL cannot stop its train children, which would
    then race the restarted sweep's runs in the same folders; Linux's
    PR_SET_PDEATHSIG makes the kernel SIGKILL the child when the sweep dies.
    Elsewhere (no prctl) it does nothing. The signal comes when the thread
    that started the child ends, so children are started from the thread
    that waits for them.

    Args:
        parent_pid: int, the sweep's pid.
        cpus: None, or the cores the child may use (`os.sched_setaffinity`).
    """
    def preexec():
        if cpus is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # The sweep died before the prctl.
            os.kill(os.getpid(), signal.SIGKILL)
    return preexec


def visible_gpus(environ=None, nvidia_smi="nvidia-smi"):
    """The GPUs that children may be given, as `CUDA_VISIBLE_DEVICES` entries.

    `CUDA_VISIBLE_DEVICES` when it is set (its entries up to the first
    negative one, as CUDA reads it: empty or `-1` is no GPU); otherwise the
    GPUs that `nvidia-smi -L` lists, by index; none without `nvidia-smi`.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        gpus = []
        for entry in value.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):
                break
            gpus.append(entry)
        return gpus
    try:
        listing = subprocess.run([nvidia_smi, "-L"], capture_output=True,
                                 text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if listing.returncode:
        return []
    count = sum(line.startswith("GPU ")
                for line in listing.stdout.splitlines())
    return [str(i) for i in range(count)]


def available_cores():
    """The number of cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where one of the runs in flight trains: its environment and cores.

    Attributes:
        env: dict, variables set in the child's environment.
        cpus: None or a tuple of core ids the child is pinned to.
        device: str, "gpu <id>" or "cpu", for the log.
    """

    env: dict[str, str]
    cpus: tuple[int, ...] | None
    device: str


def plan(jobs, *, gpus, runs_per_gpu=1, cores=None):
    """Returns the `jobs` slots of a sweep that runs `jobs` runs at once.

    Args:
        jobs: int >= 1, the number of runs at once. With 1, one slot that
            changes nothing (the child inherits the sweep's environment).
        gpus: list of str, `CUDA_VISIBLE_DEVICES` entries (`visible_gpus`);
            empty for CPU.
        runs_per_gpu: int >= 1, how many runs may share one GPU.
        cores: list of int, the cores to share on CPU; defaults to those
            this process may use.

    Returns:
        A list of `jobs` `Slot`s.

    Raises:
        ValueError: for jobs or runs_per_gpu < 1, or more runs at once than
            the GPUs hold (`len(gpus) * runs_per_gpu`).
    """
    for name, value in (("jobs", jobs), ("runs_per_gpu", runs_per_gpu)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if jobs == 1:
        return [Slot(env={}, cpus=None, device="inherited")]
    if gpus:
        capacity = len(gpus) * runs_per_gpu
        if jobs > capacity:
            raise ValueError(
                f"jobs={jobs} runs at once need {jobs} GPU places, but "
                f"{len(gpus)} GPU(s) ({','.join(gpus)}) with runs_per_gpu="
                f"{runs_per_gpu} hold {capacity}; lower jobs or raise "
                "runs_per_gpu")
        shared = {}
        if runs_per_gpu > 1:
            shared = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                      "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
        return [Slot(env=dict(shared, CUDA_VISIBLE_DEVICES=gpu), cpus=None,
                     device=f"gpu {gpu}")
                for gpu in (gpus[i % len(gpus)] for i in range(jobs))]
    if cores is None:
        cores = (sorted(os.sched_getaffinity(0))
                 if hasattr(os, "sched_getaffinity")
                 else list(range(available_cores())))
    share = max(1, len(cores) // jobs)
    slots = []
    for i in range(jobs):
        first = (i * share) % len(cores)
        cpus = tuple(cores[first:first + share])
        slots.append(Slot(env={"OMP_NUM_THREADS": str(share),
                               "TF_NUM_INTRAOP_THREADS": str(share)},
                          cpus=cpus,
                          device="cpu " + ",".join(map(str, cpus))))
    return slots


# How much of a relayed child's stderr is kept for its caller.
_TAIL_BYTES = 65536


class _Relay(threading.Thread):
    """Copies a child's stderr to ours as it comes, keeping its tail."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.tail = b""

    def run(self):
        target = getattr(sys.stderr, "buffer", None)
        while chunk := os.read(self.stream.fileno(), 65536):
            self.tail = (self.tail + chunk)[-_TAIL_BYTES:]
            try:
                if target is not None:
                    target.write(chunk)
                else:
                    sys.stderr.write(chunk.decode("utf-8", "replace"))
                sys.stderr.flush()
            except (OSError, ValueError):  # Our stderr is closed: keep on.
                pass
        self.stream.close()

    def lines(self):
        self.join(timeout=5.0)
        return self.tail.decode("utf-8", "replace").splitlines()


@dataclasses.dataclass
class _Child:
    process: subprocess.Popen
    slot: int
    log: object
    start: float
    relay: object = None


def run_processes(tasks, slots, *, on_start, on_end, relay=False):
    """Runs `tasks` as child processes, `len(slots)` at a time.

    Args:
        tasks: iterable of (name, argv, log_path); each child writes its
            stdout and stderr to log_path (appended), or to the sweep's
            when log_path is None.
        slots: list of `Slot`.
        on_start: called as `on_start(name, pid, slot, in_flight)` after a
            child starts (in_flight: the other children running).
        on_end: called as `on_end(name, pid, returncode, seconds, running)`
            when a child ends; running: the seconds each child still in
            flight has run. With `relay`, also `stderr_lines=`: the last
            lines (up to 64 KiB) that a child without log_path wrote to
            stderr.
        relay: bool, whether the stderr of a child without log_path passes
            through this process (copied as it comes), so that `on_end`
            can read why it failed.

    Raises:
        KeyboardInterrupt: after a SIGINT, once every child has ended.
        SystemExit: 128 + signal number, after a SIGTERM, likewise.
    """
    pending = collections.deque(tasks)
    free = list(range(len(slots)))
    running = {}
    received = []

    def forward(signum, frame):
        del frame
        received.append(signum)
        for child in running.values():
            if child.process.poll() is None:
                child.process.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, forward)
                    for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while running or (pending and not received):
            while pending and free and not received:
                name, argv, log_path = pending.popleft()
                index = free.pop(0)
                slot = slots[index]
                log = None
                if log_path is not None:
                    os.makedirs(os.path.dirname(log_path) or ".",
                                exist_ok=True)
                    log = open(log_path, "ab")  # noqa: SIM115
                preexec = die_with_parent(os.getpid(), slot.cpus)
                piped = relay and log is None
                process = subprocess.Popen(  # pylint: disable=all
                    argv, env=dict(os.environ, **slot.env), stdout=log,
                    stderr=(subprocess.STDOUT if log is not None
                            else subprocess.PIPE if piped else None),
                    preexec_fn=preexec)  # noqa: PLW1509
                running[name] = _Child(process, index, log, time.monotonic(),
                                       _Relay(process.stderr) if piped
                                       else None)
                if running[name].relay is not None:
                    running[name].relay.start()
                if received:  # The signal came before the child was known.
                    process.send_signal(received[0])
                on_start(name, process.pid, slot, len(running) - 1)
            time.sleep(_POLL_S)
            for name, child in list(running.items()):
                returncode = child.process.poll()
                if returncode is None:
                    continue
                del running[name]
                if child.log is not None:
                    child.log.close()
                free.append(child.slot)
                free.sort()
                now = time.monotonic()
                extra = ({"stderr_lines": child.relay.lines()
                          if child.relay is not None else []}
                         if relay else {})
                on_end(name, child.process.pid, returncode,
                       now - child.start,
                       [now - other.start for other in running.values()],
                       **extra)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for child in running.values():  # An exception: none outlives us.
            child.process.kill()
        for child in running.values():
            child.process.wait()
            if child.log is not None:
                child.log.close()
    if received:
        if received[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + received[0])
