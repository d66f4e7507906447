"""Step-time overhead of RandomLRSGD relative to keras.optimizers.SGD.

Same model, same data, compiled (XLA on TensorFlow and JAX; Keras-PyTorch
runs eagerly), Nesterov momentum 0.9, batch 256. KERAS_BACKEND picks the
backend. The two
optimizers are timed in interleaved rounds in one process (after a compile
warm-up) and the script prints the median ratio of their epoch times.
Target: ratio <= 1.02.

    python benchmarks/optimizer_overhead.py [--rounds 7] [--steps 200]
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import _synthetic  # noqa: E402
from rlr_keras import RandomLRSGD  # noqa: E402
from rlr_keras.models import build_model  # noqa: E402


def mlp():
    return build_model("mlp", (28, 28, 1), 10, seed=0)


def small_cnn():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(10)])


def make_optimizer(kind):
    if kind == "sgd":
        return keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True)
    return RandomLRSGD(0.005, delta=1.0, momentum=0.9, nesterov=True, seed=0)


def main():
    args = _synthetic.parse_args(__doc__.splitlines()[0], steps=200)
    x, y = _synthetic.mnist_like(args.steps, args.batch_size)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, "
          f"{args.steps} steps x batch {args.batch_size}, "
          f"{args.rounds} interleaved rounds")
    for name, builder in (("Model 1 (MLP)", mlp), ("small CNN", small_cnn)):
        models = {}
        for kind in ("sgd", "rlr"):
            keras.utils.set_random_seed(0)
            model = builder()
            model.compile(
                optimizer=make_optimizer(kind),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
                jit_compile=keras.backend.backend() != "torch")
            model.fit(x[:args.batch_size * 2], y[:args.batch_size * 2],
                      batch_size=args.batch_size, verbose=0)  # compile
            models[kind] = model
        times = {"sgd": [], "rlr": []}
        for _ in range(args.rounds):
            for kind in ("sgd", "rlr"):
                start = time.perf_counter()
                models[kind].fit(x, y, batch_size=args.batch_size, epochs=1,
                                 shuffle=False, verbose=0)
                times[kind].append(time.perf_counter() - start)
        sgd = statistics.median(times["sgd"]) / args.steps * 1e3
        rlr = statistics.median(times["rlr"]) / args.steps * 1e3
        print(f"{name:14s} SGD {sgd:.3f} ms/step  RandomLRSGD {rlr:.3f} "
              f"ms/step  ratio {rlr / sgd:.3f}")


if __name__ == "__main__":
    main()
