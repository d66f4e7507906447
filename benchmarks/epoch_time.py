r"""Seconds per epoch: experiments/train.py vs plain `fit` vs a PyTorch loop.

Three ways to train the same model on the same data, timed side by side in
interleaved rounds on this machine:

- `train.py`: `experiments/train.py` run as a separate process (its real
  command line, with the run folder, metrics, backups and monitoring), on
  the Keras backend of this process (`KERAS_BACKEND`). Its per-epoch time is
  read from the run's `metrics.jsonl` (`wall_time_s`, measured from the
  start to the end of each epoch, the test evaluation included).
- `fit`: plain Keras `model.fit` on NumPy arrays with the same optimizer
  (`RandomLRSGD`, Nesterov, `--jit_compile` as train.py), test evaluation
  after every epoch (`validation_data`), timed from epoch start to end.
- `torch`: a plain PyTorch eager loop a researcher would write: the same
  architecture, `torch.optim.SGD(momentum, nesterov=True)` with the gradient
  scaled by a random alpha drawn every step, a `torch.randperm` shuffle per
  epoch, test evaluation after every epoch.

Every method uses batch C = 256, evaluates the whole test split after every
epoch (fit and torch in batches of 1024; train.py in batches of C, as its
runs always have, so that no recorded test loss changes) and runs
`--epochs` epochs per round; the
first epoch of each round (compilation, warm-up) is dropped and the median
of the rest kept; the script prints the best of `--rounds` rounds for each
method and the ratios train.py / torch (goal <= 0.8 for Model 1) and
train.py / fit.

The data are MNIST-shaped (28x28x1, 10 classes): `--dataset` takes any
`rlr_keras.data.load_dataset` spec, e.g. `idx:/usr/share/datasets/fashion-mnist`;
by default a synthetic 60,000 / 10,000 set of random images is written to a
temporary IDX folder (timing does not depend on the pixels).

    python benchmarks/epoch_time.py                       # Model 1
    python benchmarks/epoch_time.py --model=cnn --train_size=6000 \
        --test_size=1000 --epochs=3 --nojit_compile       # Model 2
    KERAS_BACKEND=jax python benchmarks/epoch_time.py     # train.py on JAX
"""

import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_MODEL = flags.DEFINE_enum("model", "mlp", ["mlp", "cnn"],
                           "Model 1 (mlp) or Model 2 (cnn).")
_DATASET = flags.DEFINE_string(
    "dataset", None,
    "A load_dataset spec of 28x28x1 images; default: synthetic, written to "
    "a temporary IDX folder.")
_TRAIN_SIZE = flags.DEFINE_integer(
    "train_size", 60000, "Synthetic data: training examples.", lower_bound=1)
_TEST_SIZE = flags.DEFINE_integer(
    "test_size", 10000, "Synthetic data: test examples.", lower_bound=1)
_EPOCHS = flags.DEFINE_integer(
    "epochs", 6, "Epochs per round (the first is dropped).", lower_bound=2)
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Interleaved rounds.",
                               lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "C.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 5e-3, "l.")
_JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", True,
    "XLA for train.py and fit. On the TensorFlow CPU backend XLA is faster "
    "for Model 1 and slower for Model 2 (TensorFlow's oneDNN convolutions), "
    "so time Model 2 with --nojit_compile there; on JAX keep it (without "
    "it Keras runs JAX eagerly).")
_METHODS = flags.DEFINE_list("methods", ["train.py", "fit", "torch"],
                             "Methods to time, in this order.")
_EVAL_BATCH_SIZE = 1024


def _write_idx(folder, prefix, images, labels):
    count, rows, cols = images.shape
    with gzip.open(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"),
                   "wb", compresslevel=1) as f:
        f.write(np.array([0x803, count, rows, cols], ">i4").tobytes())
        f.write(images.tobytes())
    with gzip.open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"),
                   "wb", compresslevel=1) as f:
        f.write(np.array([0x801, count], ">i4").tobytes())
        f.write(labels.tobytes())


def _synthetic_dataset(folder, train_size, test_size):
    rng = np.random.default_rng(0)
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        _write_idx(folder, prefix,
                   rng.integers(0, 256, (size, 28, 28), dtype=np.uint8),
                   rng.integers(0, 10, size, dtype=np.uint8))
    return "idx:" + folder


def _steady(epoch_seconds):
    """The median epoch time after the first (warm-up) epoch."""
    return statistics.median(epoch_seconds[1:])


def time_train_py(dataset, work_dir, round_index):
    output_dir = os.path.join(work_dir, f"train_py_{round_index}")
    command = [
        sys.executable, os.path.join(_ROOT, "experiments", "train.py"),
        f"--model={_MODEL.value}", f"--dataset={dataset}",
        "--protocol=random", f"--learning_rate={_LEARNING_RATE.value}",
        f"--batch_size={_BATCH_SIZE.value}", f"--epochs={_EPOCHS.value}",
        f"--jit_compile={str(_JIT_COMPILE.value).lower()}", "--verbose=0",
        "--noevaluate_train",
        f"--output_dir={output_dir}"]
    subprocess.run(command, check=True, env=dict(os.environ))
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        walls = [json.loads(line)["wall_time_s"] for line in f if line.strip()]
    return list(np.diff([0.0] + walls))


def time_fit(data):
    import keras  # pylint: disable=g-import-not-at-top

    from rlr_keras import RandomLRSGD  # pylint: disable=g-import-not-at-top
    from rlr_keras import build_model  # pylint: disable=g-import-not-at-top

    keras.utils.set_random_seed(0)
    model = build_model(_MODEL.value, data.input_shape, data.num_classes,
                        seed=0)
    model.compile(
        optimizer=RandomLRSGD(_LEARNING_RATE.value, delta=1.0, momentum=0.9,
                              nesterov=True, seed=0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], jit_compile=_JIT_COMPILE.value)
    seconds = []

    class Timer(keras.callbacks.Callback):

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    x = (data.train_images.astype(np.float32) / 255.0)
    x_test = (data.test_images.astype(np.float32) / 255.0)
    model.fit(x, data.train_labels, batch_size=_BATCH_SIZE.value,
              epochs=_EPOCHS.value, verbose=0, callbacks=[Timer()],
              validation_data=(x_test, data.test_labels),
              validation_batch_size=_EVAL_BATCH_SIZE)
    return seconds


def _torch_model(torch, channels, num_classes):
    nn = torch.nn
    if _MODEL.value == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28 * channels, 100),
                             nn.ReLU(), nn.Linear(100, num_classes))
    layers, in_channels = [], channels
    for spec in (64, 64, "pool", 128, 128, 128, "pool"):
        if spec == "pool":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(in_channels, spec, 3), nn.ReLU()]
            in_channels = spec
    return nn.Sequential(*layers, nn.Flatten(),
                         nn.Linear(3 * 3 * 128, num_classes))


def time_torch(data):
    import torch  # pylint: disable=g-import-not-at-top

    torch.manual_seed(0)
    channels = data.input_shape[-1]
    model = _torch_model(torch, channels, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=_LEARNING_RATE.value,
                                momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def as_tensor(images):
        x = torch.from_numpy(images.astype(np.float32) / 255.0)
        return x.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW.

    x, y = as_tensor(data.train_images), torch.from_numpy(
        data.train_labels.astype(np.int64))
    x_test, y_test = as_tensor(data.test_images), torch.from_numpy(
        data.test_labels.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(_EPOCHS.value):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), _BATCH_SIZE.value):
            index = order[i:i + _BATCH_SIZE.value]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            alpha = 2.0 * torch.rand((), generator=generator)  # Delta = 1.
            for parameter in model.parameters():
                parameter.grad.mul_(alpha)
            optimizer.step()
        model.eval()
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(x_test), _EVAL_BATCH_SIZE):
                logits = model(x_test[i:i + _EVAL_BATCH_SIZE])
                labels = y_test[i:i + _EVAL_BATCH_SIZE]
                total_loss += float(loss_fn(logits, labels)) * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
        seconds.append(time.perf_counter() - start)
    return seconds


def main(argv):
    del argv
    import keras  # pylint: disable=g-import-not-at-top

    from rlr_keras import load_dataset  # pylint: disable=g-import-not-at-top

    with tempfile.TemporaryDirectory() as work_dir:
        dataset = _DATASET.value
        if dataset is None:
            data_dir = os.path.join(work_dir, "data")
            os.makedirs(data_dir)
            dataset = _synthetic_dataset(data_dir, _TRAIN_SIZE.value,
                                         _TEST_SIZE.value)
        data = load_dataset(dataset)
        timers = {"train.py": lambda r: time_train_py(dataset, work_dir, r),
                  "fit": lambda r: time_fit(data),
                  "torch": lambda r: time_torch(data)}
        for method in _METHODS.value:
            if method not in timers:
                raise app.UsageError(
                    f"--methods: unknown method {method!r}; allowed: "
                    f"{', '.join(timers)}")
        best = {}
        for round_index in range(_ROUNDS.value):
            for method in _METHODS.value:
                seconds = _steady(timers[method](round_index))
                best[method] = min(best.get(method, float("inf")), seconds)
                print(f"round {round_index + 1}: {method:9s} "
                      f"{seconds:.3f} s/epoch", flush=True)
    print(f"\nModel {_MODEL.value}, {data.num_train} training / "
          f"{data.num_test} test images, C = {_BATCH_SIZE.value}, Keras "
          f"backend {keras.backend.backend()}, jit_compile="
          f"{_JIT_COMPILE.value}, best of {_ROUNDS.value} rounds (median of "
          f"epochs 2-{_EPOCHS.value}):")
    print("| method | seconds per epoch |\n|---|---|")
    for method, seconds in best.items():
        print(f"| {method} | {seconds:.3f} |")
    for numerator, denominator in (("train.py", "torch"), ("train.py", "fit"),
                                   ("fit", "torch")):
        if numerator in best and denominator in best:
            print(f"ratio {numerator} / {denominator}: "
                  f"{best[numerator] / best[denominator]:.2f}")


if __name__ == "__main__":
    app.run(main)
