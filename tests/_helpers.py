"""Helpers shared by the test modules: processes, weight and data files.

Importable from every test module (`pythonpath` in pyproject.toml lists
`tests`). The processes are started in their own session by the tests, so
that `kill_group` ends them with everything they started.
"""

import contextlib
import gzip
import json
import lzma
import os
import pickle
import signal
import socket
import struct
import subprocess
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, "experiments")
PROCESS_TIMEOUT_S = 120


def free_ports(count):
    """Returns `count` TCP ports of 127.0.0.1 that were free just now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM)
               for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_env(cluster, index):
    """The environment of worker `index` of a TF_CONFIG `cluster` on CPU."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                "grpc_proxy")}
    env.update(
        TF_CONFIG=json.dumps({"cluster": cluster,
                              "task": {"type": "worker", "index": index}}),
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
        CUDA_VISIBLE_DEVICES="",
        # This checkout's rlr_keras and experiments, whatever is installed.
        PYTHONPATH=os.pathsep.join([REPO, EXPERIMENTS]))
    return env


def alive(pid):
    """Whether process `pid` runs (a zombie, not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout_s=10):
    """Waits up to `timeout_s` for every process of `pids` to end; returns
    whether none is alive then."""
    deadline = time.monotonic() + timeout_s
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(map(alive, pids))


def log_tail(path, chars=3000):
    with open(path, errors="replace") as f:
        return f.read()[-chars:]


def kill_group(process):
    """SIGKILLs the process group of `process` (started in its own session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def wait_all(started, timeout_s=PROCESS_TIMEOUT_S):
    """Waits for every (process, output, log); fails past `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    for index, (process, _, log) in enumerate(started):
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {index} still running after {timeout_s} s; "
                        f"log:\n{log_tail(log)}")
    for index, (process, _, log) in enumerate(started):
        assert process.returncode == 0, (
            f"worker {index} exited with {process.returncode}; "
            f"log:\n{log_tail(log)}")


def weights(path):
    """Returns {name: array} of every dataset in a .weights.h5 file."""
    import h5py  # pylint: disable=g-import-not-at-top

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


# Independent writers of the dataset file formats (IDX, CIFAR-10 batches).


def write_idx(path, array, *, gzipped=False, magic=None):
    """Writes `array` (uint8) in the IDX format described by LeCun et al."""
    array = np.asarray(array, np.uint8)
    if magic is None:
        magic = 0x0800 + array.ndim
    raw = struct.pack(">I", magic)
    raw += b"".join(struct.pack(">I", d) for d in array.shape)
    raw += array.tobytes()
    opener = gzip.open if gzipped else open
    with opener(path, "wb") as f:
        f.write(raw)
    return raw


def fake_images(count, height=5, width=4, seed=0):
    return np.random.default_rng(seed).integers(
        0, 256, (count, height, width), dtype=np.uint8)


def write_idx_folder(folder, *, num_train=12, num_test=6, gz_train=False,
                     gz_test=True, with_train=True):
    folder.mkdir(exist_ok=True)
    arrays = {}
    splits = [("t10k", num_test, gz_test)]
    if with_train:
        splits.insert(0, ("train", num_train, gz_train))
    for prefix, count, gzipped in splits:
        images = fake_images(count, seed=count)
        labels = np.arange(count) % 10
        suffix = ".gz" if gzipped else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images,
                  gzipped=gzipped)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels,
                  gzipped=gzipped)
        arrays[prefix] = (images, labels)
    return arrays


def write_cifar_folder(folder, per_batch=3, *, xz=False):
    """Writes the six CIFAR-10 python batches (`.xz`-compressed if `xz`)."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        rng = np.random.default_rng(index)
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"batch_label": name.encode()}
        raw = pickle.dumps(batch, protocol=2)  # As the official files.
        if xz:
            (folder / f"{name}.xz").write_bytes(lzma.compress(raw))
        else:
            (folder / name).write_bytes(raw)
        batches[name] = batch
    return batches


def snapshot(folder):
    """{relative path: bytes} of everything under `folder` (None: absent)."""
    if not os.path.exists(folder):
        return None
    if os.path.isfile(folder):
        with open(folder, "rb") as f:
            return f.read()
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files
