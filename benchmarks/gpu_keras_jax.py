"""GPU check of RandomLRSGD through Keras 3's JAX backend.

The lent GPU machines of our development set-up have JAX but no TensorFlow.
The library and `experiments/train.py` run on any Keras backend, so this
script measures, on whatever accelerator JAX sees:

1. throughput (images/s) of RandomLRSGD vs `keras.optimizers.SGD` (same
   model, Nesterov momentum 0.9, XLA, interleaved rounds after a warm-up)
   for each model of `--throughput_models` (default: Model 2 on 28x28x1 and
   VGG16 on 32x32x3, random init), and their ratio;
2. accuracy: one `experiments/train.py` run per protocol and seed
   (`train.run`, the same code as the command line) into run folders under
   `--root`, which `experiments/plot.py --runs=ROOT` turns into figures and
   tables.

It writes `--out`, a JSON file with the devices, versions, the throughput
rows and every run's summary.

    KERAS_BACKEND=jax PYTHONPATH=. \
        python benchmarks/gpu_keras_jax.py \
        --dataset=idx-split:/data/mnist-t10k --root=runs/gpu --out=gpu.json

(It calls `rlr_keras.experiment` in this process.)

Smoke test on CPU (seconds):

    KERAS_BACKEND=jax PYTHONPATH=. \
        python benchmarks/gpu_keras_jax.py --model=mlp \
        --dataset=digits --epochs=1 --seeds=1 --protocols=constant,random \
        --throughput_models=mlp --rounds=1 --steps=5 --root=/tmp/gpu \
        --out=/tmp/gpu.json
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rlr_keras.experiment import _rundir  # noqa: E402
from rlr_keras.experiment import _train as train  # noqa: E402
from rlr_keras import RandomLRSGD  # noqa: E402
from rlr_keras import models  # noqa: E402

_INPUT_SHAPES = {"mlp": (28, 28, 1), "cnn": (28, 28, 1), "vgg16": (32, 32, 3)}


def throughput(name, *, rounds, steps, batch_size):
    """Images/s of RandomLRSGD and keras.optimizers.SGD on model `name`."""
    input_shape = _INPUT_SHAPES[name]
    rng = np.random.default_rng(0)
    n = steps * batch_size
    x = rng.random((n, *input_shape), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    compiled = {}
    for kind in ("sgd", "rlr"):
        model = models.build_model(name, input_shape, 10, seed=0)
        if kind == "sgd":
            optimizer = keras.optimizers.SGD(5e-4, momentum=0.9,
                                             nesterov=True)
        else:
            optimizer = RandomLRSGD(5e-4, delta=1.0, momentum=0.9,
                                    nesterov=True, seed=0)
        model.compile(optimizer=optimizer, jit_compile=True,
                      loss=keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True))
        model.fit(x[:2 * batch_size], y[:2 * batch_size],
                  batch_size=batch_size, verbose=0)  # Compiles.
        compiled[kind] = model
    times = {"sgd": [], "rlr": []}
    for _ in range(rounds):
        for kind, model in compiled.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False,
                      verbose=0)
            times[kind].append(time.perf_counter() - start)
    sgd = n / statistics.median(times["sgd"])
    rlr = n / statistics.median(times["rlr"])
    return {"model": name, "input_shape": list(input_shape),
            "sgd_images_per_s": sgd, "rlr_images_per_s": rlr,
            "step_time_ratio": sgd / rlr}


def _protocols(names):
    """'constant,random,cyclic6' -> [(protocol, period or None), ...]."""
    parsed = []
    for name in names.split(","):
        if name.startswith("cyclic"):
            parsed.append(("cyclic", float(name[len("cyclic"):])))
        else:
            parsed.append((name, None))
    return parsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the results JSON")
    parser.add_argument("--root", help="run folders of the accuracy runs "
                        "(required unless --skip_accuracy)")
    parser.add_argument("--dataset", default="digits",
                        help="train.py --dataset, e.g. idx-split:PATH")
    parser.add_argument("--model", default="cnn", choices=sorted(
        _INPUT_SHAPES))
    parser.add_argument("--epochs", type=int, default=180)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--protocols", default="constant,random,cyclic6,"
                        "cyclic18,cyclic30")
    parser.add_argument("--learning_rate", type=float, default=0.005)
    parser.add_argument("--delta", type=float, default=1.0)
    parser.add_argument("--weight_decay", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--throughput_models", default="cnn,vgg16")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--skip_throughput", action="store_true")
    parser.add_argument("--skip_accuracy", action="store_true")
    args = parser.parse_args()
    if not args.skip_accuracy and not args.root:
        parser.error("--root is required unless --skip_accuracy")
    import jax  # pylint: disable=g-import-not-at-top

    results = {"backend": keras.backend.backend(),
               "devices": [str(d) for d in jax.devices()],
               "keras": keras.__version__, "jax": jax.__version__,
               "config": vars(args), "throughput": [], "runs": []}

    def save():
        _rundir.write_json(args.out, results)

    print(results["devices"], flush=True)
    if not args.skip_throughput:
        for name in args.throughput_models.split(","):
            row = throughput(name, rounds=args.rounds, steps=args.steps,
                             batch_size=args.batch_size)
            results["throughput"].append(row)
            print(json.dumps(row), flush=True)
            save()
    if args.skip_accuracy:
        return
    for seed in range(args.seeds):
        for protocol, period in _protocols(args.protocols):
            name = protocol if period is None else f"cyclic_period={period:g}"
            output_dir = os.path.join(args.root, f"{name}_seed={seed}")
            summary = train.run(
                output_dir=output_dir, model=args.model,
                dataset=args.dataset, vgg_weights="none", protocol=protocol,
                period=period, learning_rate=args.learning_rate,
                delta=args.delta if protocol == "random" else None,
                momentum=args.momentum,
                nesterov=args.momentum > 0, weight_decay=args.weight_decay,
                batch_size=args.batch_size, epochs=args.epochs, seed=seed,
                jit_compile=True, verbose=0)
            results["runs"].append({"run_dir": output_dir, **summary})
            print(f"{name:20s} seed {seed} final test "
                  f"{summary['final_test_accuracy']:.4f} best "
                  f"{summary['best_test_accuracy']:.4f} "
                  f"{summary['wall_time_s']:.1f} s", flush=True)
            save()


if __name__ == "__main__":
    main()
