"""GPU check of RandomLRSGD through Keras 3's JAX backend.

The lent GPU machines of our development set-up have JAX but no TensorFlow,
and no way to install it (no package registry there; the TensorFlow wheel is
far larger than what can be carried). `RandomLRSGD`, the alpha stream, the
cosine cycle, the protocols and the models are written with `keras.ops`
only, so they run on any Keras backend; this script loads those
TensorFlow-free modules without `rlr_keras/__init__.py` (which imports the
TensorFlow-based temperature tools and data pipelines) and measures, on
whatever accelerator JAX sees:

1. throughput (images/s) of Model 2 (cnn, 28x28x1) and Model 3 (VGG16,
   32x32x3, random init) with RandomLRSGD vs keras.optimizers.SGD, batch 256,
   XLA, interleaved rounds, and their ratio;
2. Model 2 on the 8,000 / 2,000 stratified split of the MNIST test set
   (`rlr_keras.data.load_dataset("idx-split:...")`, saved to an .npz by the
   caller) for the paper's five protocols at equal mean learning rate,
   writing per-epoch train/test curves to a JSON file.

The protocols come from `rlr_keras.protocols.build`, which (like the
optimizer, the models and the cosine) needs no TensorFlow.

    KERAS_BACKEND=jax python benchmarks/gpu_keras_jax.py \
        --data=split.npz --out=results.json --epochs=180 --seeds=3

`--to_run_folders=ROOT` turns such a results file (on any machine) into run
folders in the layout of `experiments/train.py` (config.json, metrics.jsonl,
summary.json, status.json), so that `experiments/plot.py` draws and tabulates
them like any other runs.
"""

import argparse
import json
import os
import statistics
import sys
import time
import types

os.environ.setdefault("KERAS_BACKEND", "jax")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "rlr_keras" not in sys.modules:
    _package = types.ModuleType("rlr_keras")
    _package.__path__ = [os.path.join(_ROOT, "rlr_keras")]
    sys.modules["rlr_keras"] = _package

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rlr_keras import models  # noqa: E402
from rlr_keras import protocols  # noqa: E402
from rlr_keras.optimizers import RandomLRSGD  # noqa: E402

def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def throughput(name, input_shape, rounds, steps, batch_size):
    rng = np.random.default_rng(0)
    n = steps * batch_size
    x = rng.random((n, *input_shape), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    compiled = {}
    for kind in ("sgd", "rlr"):
        model = models.build_model(name, input_shape, 10, seed=0)
        if kind == "sgd":
            opt = keras.optimizers.SGD(5e-4, momentum=0.9, nesterov=True)
        else:
            opt = RandomLRSGD(5e-4, delta=1.0, momentum=0.9, nesterov=True,
                              seed=0)
        model.compile(optimizer=opt, loss=_loss(), jit_compile=True)
        model.fit(x[: 2 * batch_size], y[: 2 * batch_size],
                  batch_size=batch_size, verbose=0)
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


def protocol_run(data, protocol, period, seed, *, epochs, learning_rate,
                 delta, weight_decay, batch_size, momentum):
    keras.utils.set_random_seed(seed)
    model = models.build_model("cnn", (28, 28, 1), 10, seed=seed)
    opt, callbacks = protocols.build(
        protocol, learning_rate=learning_rate,
        delta=delta if protocol == "random" else None, period=period,
        momentum=momentum, nesterov=momentum > 0, seed=seed,
        coupled_weight_decay=weight_decay)
    model.compile(optimizer=opt, loss=_loss(), metrics=["accuracy"],
                  jit_compile=True)
    x_train = data["x_train"].astype("float32") / 255.0
    x_test = data["x_test"].astype("float32") / 255.0
    start = time.perf_counter()
    history = model.fit(x_train, data["y_train"], batch_size=batch_size,
                        epochs=epochs, validation_data=(x_test, data["y_test"]),
                        validation_batch_size=1000, callbacks=callbacks,
                        verbose=0)
    wall = time.perf_counter() - start
    name = protocol if period is None else f"cyclic_P{period}"
    return {"protocol": name, "seed": seed, "batch_size": batch_size,
            "momentum": momentum, "learning_rate": learning_rate,
            "wall_time_s": wall,
            "images_per_s": epochs * len(x_train) / wall,
            "history": {k: [float(v) for v in vals]
                        for k, vals in history.history.items()}}


def to_run_folders(results_path, root, dataset):
    """Writes one train.py-style run folder per run of a results file."""
    sys.path.insert(0, os.path.join(_ROOT, "experiments"))
    import _rundir  # pylint: disable=g-import-not-at-top
    import train  # pylint: disable=g-import-not-at-top
    from rlr_keras import temperature  # pylint: disable=g-import-not-at-top

    with open(results_path) as f:
        results = json.load(f)
    config = results["config"]
    for run in results["runs"]:
        protocol, _, period = run["protocol"].partition("_P")
        batch_size = run.get("batch_size", config["batch_size"])
        momentum = run.get("momentum", config.get("momentum", 0.9))
        arguments = {
            "model": "cnn", "dataset": dataset, "protocol": protocol,
            "period": float(period) if period else None,
            "learning_rate": run.get("learning_rate",
                                     config["learning_rate"]),
            "delta": config["delta"] if protocol == "random" else 0.0,
            "momentum": momentum, "nesterov": momentum > 0,
            "weight_decay": config["weight_decay"], "batch_size": batch_size,
            "epochs": config["epochs"], "seed": run["seed"],
            "backend": f"keras-{results['backend']} on {results['devices']}",
        }
        history = run["history"]
        per_epoch = run["wall_time_s"] / len(history["loss"])
        rows = [{"epoch": i + 1, "train_loss": history["loss"][i],
                 "train_accuracy": history["accuracy"][i],
                 "test_loss": history["val_loss"][i],
                 "test_accuracy": history["val_accuracy"][i],
                 "learning_rate": history.get("learning_rate", [None] * (
                     i + 1))[i],
                 "wall_time_s": per_epoch * (i + 1)}
                for i in range(len(history["loss"]))]
        name = "_".join(f"{k}={v}" for k, v in (
            ("protocol", run["protocol"]), ("batch_size", batch_size),
            ("momentum", momentum), ("seed", run["seed"])))
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        _rundir.write_json(os.path.join(folder, _rundir.CONFIG_FILE),
                           {"arguments": arguments,
                            "versions": {"keras": results["keras"],
                                         "jax": results["jax"]}})
        _rundir.write_jsonl(os.path.join(folder, _rundir.METRICS_FILE), rows)
        _rundir.write_json(
            os.path.join(folder, _rundir.SUMMARY_FILE),
            train._summary(  # pylint: disable=protected-access
                rows, num_parameters=418122,
                temperature_over_d=temperature.effective_temperature(
                    arguments["learning_rate"], batch_size, momentum)))
        _rundir.write_status(folder, _rundir.DONE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--to_run_folders", metavar="ROOT",
                        help="convert the results file --out into run "
                        "folders under ROOT, then exit")
    parser.add_argument("--dataset_name", default="idx-split:mnist-t10k",
                        help="dataset label written into converted runs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=180)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--learning_rate", type=float, default=0.005)
    parser.add_argument("--delta", type=float, default=1.0)
    parser.add_argument("--weight_decay", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--protocols", default="constant,random,cyclic6,"
                        "cyclic18,cyclic30")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--skip_throughput", action="store_true")
    parser.add_argument("--train_subset", type=int, default=0,
                        help="use only this many training images (smoke "
                        "tests); 0 = all")
    args = parser.parse_args()
    if args.to_run_folders:
        to_run_folders(args.out, args.to_run_folders, args.dataset_name)
        return
    if not args.data:
        parser.error("--data is required")
    import jax

    results = {"backend": keras.backend.backend(),
               "devices": [str(d) for d in jax.devices()],
               "keras": keras.__version__, "jax": jax.__version__,
               "config": vars(args), "throughput": [], "runs": []}

    def save():
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f)
        os.replace(tmp, args.out)

    print(results["devices"], flush=True)
    if not args.skip_throughput:
        for name, shape in (("cnn", (28, 28, 1)), ("vgg16", (32, 32, 3))):
            row = throughput(name, shape, args.rounds, args.steps,
                             args.batch_size)
            results["throughput"].append(row)
            print(json.dumps(row), flush=True)
            save()
    data = dict(np.load(args.data))
    if args.train_subset:
        data["x_train"] = data["x_train"][: args.train_subset]
        data["y_train"] = data["y_train"][: args.train_subset]
    for seed in range(args.seeds):
        for name in args.protocols.split(","):
            protocol = "cyclic" if name.startswith("cyclic") else name
            period = int(name[len("cyclic"):]) if protocol == "cyclic" else None
            run = protocol_run(data, protocol, period, seed,
                               epochs=args.epochs,
                               learning_rate=args.learning_rate,
                               delta=args.delta,
                               weight_decay=args.weight_decay,
                               batch_size=args.batch_size,
                               momentum=args.momentum)
            results["runs"].append(run)
            h = run["history"]
            print(f"{run['protocol']:10s} seed {seed} final test "
                  f"{h['val_accuracy'][-1]:.4f} best "
                  f"{max(h['val_accuracy']):.4f} "
                  f"{run['wall_time_s']:.1f} s", flush=True)
            save()


if __name__ == "__main__":
    main()
