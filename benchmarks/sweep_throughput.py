r"""Sweep throughput: sequential vs --jobs vs Ray; runs per hour on a GPU.

CPU mode (the default): the wall time of one Model 1 sweep (`--model=mlp`,
`--protocols` x `--seeds`, `--epochs` each, `--deterministic`) made three
ways on this machine, side by side in one process:

- `sequential`: `rlr-sweep --launcher=subprocess` (one train child after
  the other, each with every core);
- `jobs`: `--launcher=subprocess --jobs=N` (N children at once, cores // N
  cores each);
- `ray`: `--launcher=ray` on a local Ray of the sweep's own (each run a task
  asking for `--run_cpus`; Ray's start-up included).

It prints each wall time (from the command's start to its end, Python
start-up and imports included) and the ratios sequential / jobs and
sequential / ray (> 1: faster than one at a time).

GPU mode (`--gpu`): Model 1 and Model 2 (`--model=cnn`) runs per hour on one
GPU for `--runs_per_gpu` 1, 2, 4 and 8: each point is one sweep with
`--jobs=K --runs_per_gpu=K` of 2K runs (K at once, twice), on synthetic
MNIST-shaped arrays (`npz:`, written to a temporary folder; no download).

    python benchmarks/sweep_throughput.py                 # CPU, 2 cores
    python benchmarks/sweep_throughput.py --gpu --epochs=3
"""

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from absl import app
from absl import flags
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_GPU = flags.DEFINE_bool(
    "gpu", False, "Runs per hour on one GPU instead of the CPU comparison.")
_PROTOCOLS = flags.DEFINE_string("protocols", "constant,random",
                                 "CPU mode: the sweep's protocols.")
_SEEDS = flags.DEFINE_string("seeds", "0,1", "CPU mode: the sweep's seeds.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs per run.", lower_bound=1)
_JOBS = flags.DEFINE_integer("jobs", 2, "CPU mode: --jobs of the `jobs` "
                             "sweep.", lower_bound=2)
_RUN_CPUS = flags.DEFINE_float("run_cpus", 1.0,
                               "CPU mode: --run_cpus of the `ray` sweep.")
_DATASET = flags.DEFINE_string("dataset", "digits",
                               "CPU mode: the sweep's dataset spec.")
_RUNS_PER_GPU = flags.DEFINE_list("runs_per_gpu", ["1", "2", "4", "8"],
                                  "GPU mode: the runs sharing the GPU.")
_MODELS = flags.DEFINE_list("models", ["mlp", "cnn"],
                            "GPU mode: Model 1 (mlp), Model 2 (cnn).")
_TRAIN_SIZE = flags.DEFINE_integer("train_size", 60000,
                                   "GPU mode: synthetic training images.")


def _sweep(root, *args):
    """Runs one sweep; returns its wall time in seconds."""
    command = [sys.executable, "-m", "rlr_keras.experiment.commands.sweep",
               f"--root={root}", "--noplot", "--deterministic", *args]
    start = time.monotonic()
    result = subprocess.run(command, cwd=_ROOT, capture_output=True,
                            text=True, check=False,
                            env=dict(os.environ, PYTHONPATH=_ROOT))
    seconds = time.monotonic() - start
    if result.returncode:
        sys.exit(f"sweep failed ({' '.join(command)}):\n"
                 f"{result.stderr[-3000:]}")
    return seconds


def _cpu(folder):
    common = ["--model=mlp", f"--dataset={_DATASET.value}",
              f"--protocols={_PROTOCOLS.value}", f"--seeds={_SEEDS.value}",
              f"--epochs={_EPOCHS.value}"]
    runs = len(_PROTOCOLS.value.split(",")) * len(_SEEDS.value.split(","))
    modes = {
        "sequential": ["--launcher=subprocess"],
        "jobs": ["--launcher=subprocess", f"--jobs={_JOBS.value}"],
        "ray": ["--launcher=ray", f"--run_cpus={_RUN_CPUS.value}"],
    }
    seconds = {}
    for mode, extra in modes.items():
        seconds[mode] = _sweep(os.path.join(folder, mode), *common, *extra)
        print(f"{mode:10s} {seconds[mode]:7.1f} s", flush=True)
    print(f"\nModel 1, {runs} runs of {_EPOCHS.value} epochs on "
          f"{_DATASET.value}, {os.cpu_count()} cores:")
    print("| launcher | wall time (s) |\n|---|---|")
    for mode, value in seconds.items():
        print(f"| {mode} | {value:.1f} |")
    for mode in ("jobs", "ray"):
        print(f"ratio sequential / {mode}: "
              f"{seconds['sequential'] / seconds[mode]:.2f}")


def _gpu(folder):
    rng = np.random.default_rng(0)
    test_size = max(1, _TRAIN_SIZE.value // 6)
    path = os.path.join(folder, "mnist_like.npz")
    np.savez(
        path,
        x_train=rng.random((_TRAIN_SIZE.value, 28, 28, 1), np.float32),
        y_train=rng.integers(0, 10, _TRAIN_SIZE.value).astype(np.int32),
        x_test=rng.random((test_size, 28, 28, 1), np.float32),
        y_test=rng.integers(0, 10, test_size).astype(np.int32))
    print("| model | runs per GPU | runs | wall time (s) | runs per hour |\n"
          "|---|---|---|---|---|", flush=True)
    for model in _MODELS.value:
        for text in _RUNS_PER_GPU.value:
            k = int(text)
            seeds = ",".join(str(s) for s in range(2 * k))
            seconds = _sweep(
                os.path.join(folder, f"{model}_{k}"), f"--model={model}",
                f"--dataset=npz:{path}", "--protocols=random",
                f"--seeds={seeds}", f"--epochs={_EPOCHS.value}",
                "--launcher=subprocess", f"--jobs={k}",
                f"--runs_per_gpu={k}")
            print(f"| {model} | {k} | {2 * k} | {seconds:.1f} | "
                  f"{2 * k * 3600 / seconds:.1f} |", flush=True)


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as folder:
        if _GPU.value:
            _gpu(folder)
        else:
            _cpu(folder)


if __name__ == "__main__":
    app.run(main)
