"""Step-time overhead of MirroredStrategy (2 logical CPUs) relative to none.

Model 1 (the MLP), RandomLRSGD with Nesterov momentum 0.9, global batch 256,
no XLA in either case (Keras turns it off under tf.distribute). One process
configures two logical CPU devices on the one physical CPU; the model
without strategy and the model mirrored over the two logical devices are
timed in interleaved rounds (after a warm-up epoch) and the script prints
the median time per step of each and their ratio. Both replicas share the
same cores, so this measures the cost of the strategy's machinery (input
splitting, all-reduce, mirrored updates), not scaling.

    PYTHONPATH=. python benchmarks/distribution_overhead.py \
        [--rounds 7] [--steps 100]

(It imports `rlr_keras.experiment._distribution`.)
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

# Logical devices must be configured before TensorFlow initializes.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(),
     tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402

from rlr_keras.experiment import _distribution  # noqa: E402

import _synthetic  # noqa: E402
from rlr_keras import RandomLRSGD  # noqa: E402
from rlr_keras.models import build_model  # noqa: E402


def make_model(strategy):
    with strategy.scope():
        model = build_model("mlp", (28, 28, 1), 10, seed=0)
        model.compile(
            optimizer=RandomLRSGD(0.005, delta=1.0, momentum=0.9,
                                  nesterov=True, seed=0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False)
    return model


def main():
    args = _synthetic.parse_args(__doc__.splitlines()[0], steps=100)
    images, labels = _synthetic.mnist_like(args.steps, args.batch_size)
    strategies = {
        "none": _distribution.make_strategy("none"),
        "mirrored": _distribution.make_strategy(
            "mirrored", devices=["/cpu:0", "/cpu:1"]),
    }
    runs = {}
    for name, strategy in strategies.items():
        _distribution.replica_batch_size(args.batch_size, strategy)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(
            args.batch_size).cache().prefetch(tf.data.AUTOTUNE)
        dataset = _distribution.distribute_dataset(dataset, strategy)
        model = make_model(strategy)
        model.fit(dataset, epochs=1, shuffle=False, verbose=0)  # Warm-up.
        runs[name] = (model, dataset)
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, "
          f"{os.cpu_count()} CPU cores, Model 1, global batch "
          f"{args.batch_size}, {args.steps} steps x {args.rounds} "
          "interleaved rounds")
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (model, dataset) in runs.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, shuffle=False, verbose=0)
            times[name].append(time.perf_counter() - start)
    per_step = {name: statistics.median(t) / args.steps * 1e3
                for name, t in times.items()}
    print(f"none {per_step['none']:.3f} ms/step  mirrored (2 logical CPUs) "
          f"{per_step['mirrored']:.3f} ms/step  ratio "
          f"{per_step['mirrored'] / per_step['none']:.2f}")


if __name__ == "__main__":
    main()
