r"""Seconds per epoch of `Model.fit` on the TensorFlow backend: the NumPy
`ArrayBatches` (a `keras.utils.PyDataset`, which Keras reads through
`tf.data.Dataset.from_generator`) vs its `as_tf_dataset()` form (the same
batches in the same order, gathered by TensorFlow).

Model 1 (the MLP of the paper) with `RandomLRSGD` (Nesterov momentum 0.9),
C = 256, on MNIST-shaped random images (60,000 / 10,000 by default; the
timing does not depend on the pixels), test evaluation after every epoch,
as `experiments/train.py` does. The two pipelines are timed in interleaved
rounds of `--epochs` epochs each, the first epoch of a round dropped
(tracing, warm-up) and the median of the rest kept; the script prints the
best round of each and the ratio as_tf_dataset / ArrayBatches, measured in
this one run (the CPU may be shared: compare only numbers of one run).

    python benchmarks/tf_pipeline.py [--rounds=3] [--epochs=4]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rlr_keras import RandomLRSGD  # noqa: E402
from rlr_keras import data  # noqa: E402
from rlr_keras.models import build_model  # noqa: E402


class _EpochTimes(keras.callbacks.Callback):

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def time_fit(form, arrays, *, epochs, batch_size):
    train_images, train_labels, test_images, test_labels = arrays
    train = data.train_pipeline(train_images, train_labels,
                                batch_size=batch_size, seed=0, epochs=epochs)
    test = data.eval_pipeline(test_images, test_labels, batch_size=1024)
    steps = train.steps_per_epoch
    if form == "as_tf_dataset":
        train, test = train.as_tf_dataset(), test.as_tf_dataset()
    model = build_model("mlp", train_images.shape[1:], 10, seed=0)
    model.compile(
        optimizer=RandomLRSGD(learning_rate=5e-3, momentum=0.9,
                              nesterov=True, seed=0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    times = _EpochTimes()
    model.fit(train, epochs=epochs, steps_per_epoch=steps,
              validation_data=test, shuffle=False, verbose=0,
              callbacks=[times])
    return statistics.median(times.seconds[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train_size", type=int, default=60000)
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    if args.epochs < 2 or args.rounds < 1:
        parser.error("--epochs must be >= 2 and --rounds >= 1")
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (args.train_size, 28, 28, 1), np.uint8),
              rng.integers(0, 10, args.train_size),
              rng.integers(0, 256, (10000, 28, 28, 1), np.uint8),
              rng.integers(0, 10, 10000))
    forms = ("ArrayBatches", "as_tf_dataset")
    best = {form: float("inf") for form in forms}
    for index in range(args.rounds):
        for form in forms:
            seconds = time_fit(form, arrays, epochs=args.epochs,
                               batch_size=args.batch_size)
            best[form] = min(best[form], seconds)
            print(f"round {index + 1}: {form:14s} {seconds:.3f} s/epoch",
                  flush=True)
    print(f"Model 1, {args.train_size} training images, C = "
          f"{args.batch_size}, best of {args.rounds} rounds (median of "
          f"epochs 2-{args.epochs}):")
    print("| pipeline | seconds per epoch |\n|---|---|")
    for form in forms:
        print(f"| {form} | {best[form]:.3f} |")
    print(f"ratio as_tf_dataset / ArrayBatches: "
          f"{best['as_tf_dataset'] / best['ArrayBatches']:.2f}")


if __name__ == "__main__":
    main()
