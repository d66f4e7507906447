"""A two-node Ray cluster on loopback, a sweep on it, and a lost node.

Run by tests/experiments_ray_test.py inside a fresh network and PID
namespace (`unshare --net --pid --fork --mount-proc`), so that only
127.0.0.1 exists and every process started here ends with the namespace.
Usage: python _ray_cluster_script.py WORK_DIR RESULT_JSON -- SWEEP_FLAGS...

1. Starts a head node and a second node (1 CPU each; the second carries the
   custom resource `lost_node` so that its raylet can be found).
2. Runs the sweep on the cluster (--launcher=ray --ray_address=...), and
   kills the second node's raylet and its workers by PID (a lost node) once
   the run there has backed up an epoch: Ray retries it on the head node.
3. Runs the same sweep again (it must skip every run).
Writes what it saw (return codes, the lost node's id and run) to
RESULT_JSON; the test checks the run folders.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

_PORT = 6379  # Free: the namespace is ours.
_TIMEOUT_S = 600


def _ray(*args, env, log):
    with open(log, "ab") as f:
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"),
                        *args], env=env, check=True, stdout=f,
                       stderr=subprocess.STDOUT, timeout=180)


def _raylet_pids(marker):
    """The pids of the raylets whose command line holds `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"/raylet") and any(
                marker.encode() in arg for arg in argv):
            pids.append(int(entry))
    return pids


def _descendants(pid):
    """The pids of the processes that `pid` started, and theirs."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(
                        f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        found += children
        frontier = children
    return found


def _wait(condition, what, timeout=_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _metrics_rows(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _backed_up_epoch(run_dir):
    """The epoch of the run's backup (Keras' BackupAndRestore), else 0.

    The metrics row of an epoch is written before its backup: a kill in
    between would restart the run rather than resume it.
    """
    metadata = _read_json(os.path.join(run_dir, "backup",
                                       "training_metadata.json")) or {}
    return metadata.get("epoch", 0) or 0


def main(work, result_path, sweep_flags):
    env = dict(os.environ, HOME=os.path.join(work, "home"),
               RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    os.makedirs(env["HOME"], exist_ok=True)
    os.environ.update(env)  # This script joins the cluster too.
    root = os.path.join(work, "sweep")
    address = f"127.0.0.1:{_PORT}"
    log = os.path.join(work, "ray.log")
    # Ray's sockets live in its temporary folder, whose path must stay short
    # (AF_UNIX paths: 107 bytes).
    ray_dir = tempfile.mkdtemp(prefix="rlr-ray-")
    result = {}
    try:
        _ray("get-auth-token", "--generate", env=env, log=log)
        _ray("start", "--head", "--node-ip-address=127.0.0.1",
             f"--port={_PORT}", "--num-cpus=1", "--include-dashboard=false",
             f"--temp-dir={ray_dir}", "--disable-usage-stats", env=env,
             log=log)
        _ray("start", f"--address={address}", "--node-ip-address=127.0.0.1",
             "--num-cpus=1", '--resources={"lost_node": 1}', env=env, log=log)
        raylets = _raylet_pids("lost_node")
        result["lost_raylets"] = raylets
        command = [sys.executable, "-m", "rlr_keras.experiment.commands.sweep",
                   f"--root={root}", "--launcher=ray",
                   f"--ray_address={address}", "--noplot", *sweep_flags]
        with open(os.path.join(work, "sweep1.log"), "wb") as log:
            sweep = subprocess.Popen(command, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
            node_ids = {}

            def started_on_two_nodes():
                # The attempt files say where each run went.
                for name in os.listdir(os.path.join(root, "logs")) if \
                        os.path.isdir(os.path.join(root, "logs")) else []:
                    if name.endswith(".task.json"):
                        attempt = _read_json(os.path.join(root, "logs", name))
                        if attempt:
                            node_ids[attempt["run"]] = attempt["node"]
                return len(set(node_ids.values())) == 2

            _wait(started_on_two_nodes, "runs on both nodes")
            # Which node is the second one: ask Ray.
            import ray  # pylint: disable=g-import-not-at-top

            ray.init(address=address, logging_level="error")
            lost = next(n["NodeID"] for n in ray.nodes()
                        if n["Alive"] and "lost_node" in n["Resources"])
            ray.shutdown()
            run = next(name for name, node in node_ids.items()
                       if node == lost)
            _wait(lambda: _backed_up_epoch(os.path.join(root, run)) >= 1
                  or sweep.poll() is not None, "a backed-up epoch of the run")
            status = _read_json(os.path.join(root, run, "status.json")) or {}
            result.update(lost_node=lost, lost_run=run,
                          rows_at_kill=_metrics_rows(os.path.join(root, run)),
                          status_at_kill=status.get("status"))
            # A lost node: its raylet and every process it started (the
            # workers; their train children die with them) end at once.
            for pid in raylets:
                for process in [pid, *_descendants(pid)]:
                    os.kill(process, 9)
            result["first"] = sweep.wait(timeout=_TIMEOUT_S)
        with open(os.path.join(work, "sweep2.log"), "wb") as log:
            result["second"] = subprocess.run(
                command, env=env, stdout=log, stderr=subprocess.STDOUT,
                timeout=_TIMEOUT_S, check=False).returncode
    finally:
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"),
                        "stop", "--force"], env=env, capture_output=True,
                       timeout=120, check=False)
        shutil.rmtree(ray_dir, ignore_errors=True)
        with open(result_path, "w", encoding="utf-8") as f:
            json.dump(result, f)


if __name__ == "__main__":
    separator = sys.argv.index("--")
    main(sys.argv[1], sys.argv[2], sys.argv[separator + 1:])
