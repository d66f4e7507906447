"""Cost of one diffusion estimate relative to one training epoch (Model 1).

Times, in one process and side by side, (a) one training epoch of Model 1
(Flatten -> Dense(100, relu) -> Dense(10), logits) on 60,000 synthetic
examples of MNIST shape, batch 256, SGD with momentum 0.9 and Nesterov,
`jit_compile=True`, and (b) one `rlr_keras.estimate_diffusion` call on 1,024
probe examples (chunks of 256), with the default `jit_compile=False` and
with XLA. `estimate_diffusion` picks the factored method for Model 1 (its
Dense layers' per-example gradients as outer products, never formed);
`--vectorized` also times the general path (the backend's vectorizing map
of per-example gradients of all weights) for comparison. The estimates run after each timed epoch,
from a callback, so all see the same weights and machine state; the first
epoch and the first estimate (compilation) are warm-up and not counted.
Prints the median times and their ratio; the target is a ratio <= 10 % for
the default call.

    python benchmarks/temperature_cost.py [--epochs=4] [--vectorized]

Synthetic data is enough: the cost does not depend on the pixel values.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import rlr_keras  # noqa: E402
from rlr_keras import diffusion  # noqa: E402

NUM_TRAIN = 60_000
NUM_PROBE = 1_024
BATCH_SIZE = 256


def _model_1():
    try:
        from rlr_keras.models import build_model
    except ImportError:
        build_model = None
    if build_model is not None:
        return build_model("mlp", (28, 28, 1), seed=0)
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10),
    ])


# Setting name -> (jit_compile, None for the public estimate_diffusion call
# or False to force the general path of the private _chunk_moments).
_SETTINGS = {
    "default (jit_compile=False)": (False, None),
    "jit_compile=True": (True, None),
    "general path, jit_compile=False": (False, False),
}


class _Timer(keras.callbacks.Callback):
    """Times each epoch, then one diffusion estimate per setting."""

    def __init__(self, probe_x, probe_y, loss, settings):
        super().__init__()
        self.probe_x, self.probe_y, self.loss = probe_x, probe_y, loss
        self.settings = settings
        self.epochs = []
        self.estimates = {name: [] for name in settings}

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self._start)
        for name, (jit_compile, factored) in self.settings.items():
            start = time.perf_counter()
            if factored is None:
                rlr_keras.estimate_diffusion(
                    self.model, self.loss, self.probe_x, self.probe_y,
                    delta=1.0, batch_size=256, jit_compile=jit_compile)
            else:
                diffusion._accumulate(
                    diffusion._chunk_moments(
                        self.model, self.loss, self.probe_x, jit_compile,
                        factored),
                    self.probe_x, self.probe_y, 256)
            self.estimates[name].append(time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4,
                        help="epochs in all; the first is warm-up")
    parser.add_argument("--vectorized", action="store_true",
                        help="also time the vectorized reference method")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((NUM_TRAIN, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, NUM_TRAIN)
    dataset = (tf.data.Dataset.from_tensor_slices((x, y))
               .batch(BATCH_SIZE).cache().prefetch(tf.data.AUTOTUNE))
    # A tf.data input is already "shuffled"; silence Keras' reminder.
    shuffle = False
    probe_x, probe_y = x[:NUM_PROBE], y[:NUM_PROBE]

    model = _model_1()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.005, momentum=0.9,
                                       nesterov=True),
        loss=loss, jit_compile=True)
    settings = {name: setting for name, setting in _SETTINGS.items()
                if args.vectorized or setting[1] is None}
    timer = _Timer(probe_x, probe_y, loss, settings)
    model.fit(dataset, epochs=args.epochs, callbacks=[timer],
              shuffle=shuffle, verbose=0)

    epoch = statistics.median(timer.epochs[1:])
    print(f"device: {tf.config.list_logical_devices()[0].device_type}, "
          f"{os.cpu_count()} CPU cores visible, load average "
          f"{os.getloadavg()[0]:.1f} (other processes skew the ratio)")
    print(f"epoch (60,000 examples, batch 256, XLA): median {epoch:.3f} s "
          f"over {len(timer.epochs) - 1} epochs "
          f"(warm-up epoch {timer.epochs[0]:.3f} s)")
    method = ("factored" if diffusion._dense_chain(model, probe_x)
              else "general")
    print(f"estimate_diffusion picks the {method} method for Model 1")
    for name, times in timer.estimates.items():
        estimate = statistics.median(times[1:])
        target = " (target <= 10 %)" if name.startswith("default") else ""
        print(f"diffusion estimate (1,024 examples, {name}): median "
              f"{estimate:.3f} s (first call {times[0]:.3f} s); ratio to "
              f"epoch {100 * estimate / epoch:.1f} %{target}")


if __name__ == "__main__":
    main()
