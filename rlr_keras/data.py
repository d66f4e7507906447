"""Image classification data: loading, and input pipelines for every backend.

`load_dataset(spec)` returns an `ImageDataset`: train and test images as
uint8 arrays of shape (N, height, width, channels) with values in [0, 255],
int64 labels in [0, num_classes). A dataset spec is one of:

- a TFDS name such as `"mnist"`, `"fashion_mnist"` or `"cifar10"` (any TFDS
  image classification dataset with `image` and `label` features of a fixed
  shape and `train`/`test` splits), loaded with TFDS into `data_dir`. Only
  these names need TensorFlow and TFDS (`pip install "rlr_keras[tensorflow]"`).
  Without internet TFDS can only use a dataset already prepared in
  `data_dir`; otherwise the error names the offline specs below.
- `"idx:PATH"`: a folder of MNIST-format IDX files (MNIST, Fashion-MNIST,
  KMNIST): `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
  `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally
  gzipped (`.gz`).
- `"idx-split:PATH"`: a folder holding only the two `t10k-*` IDX files (e.g.
  the 10,000-image MNIST test set), split into train and test with the
  deterministic stratified split below (8,000 / 2,000 for MNIST's t10k).
- `"cifar10_batches:PATH"`: a folder of the official CIFAR-10 python
  batches, `data_batch_1` ... `data_batch_5` and `test_batch` (the
  `cifar-10-batches-py` folder of `cifar-10-python.tar.gz`, or its parent),
  each file plain or xz-compressed (`data_batch_1.xz`, ...).
- `"digits"`: scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  10 classes, no download), split with the deterministic stratified split
  below (1,437 train / 360 test). Pixel values 0..16 are mapped to 0..255.

The deterministic stratified split (`"digits"`, `"idx-split:"`) is
`sklearn.model_selection.train_test_split(test_size=SPLIT_TEST_FRACTION,
stratify=labels, random_state=SPLIT_SEED)`, i.e. 80 % train / 20 % test with
every class in the same proportion in both parts.

Errors are never papered over: a missing, truncated or malformed file raises
an error naming the file and what was expected, and no loader falls back to
other or synthetic data.

The offline specs need only NumPy (and scikit-learn for the split).

`train_pipeline` and `eval_pipeline` turn the arrays into `ArrayBatches`, a
`keras.utils.PyDataset` of NumPy batches that `Model.fit` reads on every
Keras backend, in the TFDS order: normalize to float32 in [0, 1] once (the
cache), shuffle (training only: the order of epoch e is `epoch_order(N,
seed=seed, epoch=e)`, a pure function of (seed, e)), batch.
"""

import dataclasses
import gzip
import importlib
import io
import lzma
import math
import os
import pickle
import re
import struct
import zlib

import keras
import numpy as np

from rlr_keras import _validation
from rlr_keras.random_factor import SEED_MAX

SPLIT_TEST_FRACTION = 0.2
SPLIT_SEED = 0
DATASET_SPEC_FORMS = (
    "a TFDS name such as 'mnist', 'fashion_mnist' or 'cifar10'",
    "'idx:PATH' (folder of MNIST-format IDX files)",
    "'idx-split:PATH' (folder with only the t10k IDX files)",
    "'cifar10_batches:PATH' (folder of CIFAR-10 python batches)",
    "'digits' (scikit-learn's bundled 8x8 digits)",
)

_PATH_KINDS = ("idx", "idx-split", "cifar10_batches")
# What may follow a TFDS name's colon: a version such as "3.0.1" or "3.*.*".
# TFDS builder names: `name` or `name/config`.
_TFDS_NAME = re.compile(r"[a-z0-9_]+(/[\w.-]+)?")
_TFDS_VERSION = re.compile(r"[0-9*]+(\.[0-9*]+)*")
# MNIST, Fashion-MNIST and KMNIST: the classes of an IDX label file unless
# `load_dataset(num_classes=...)` says otherwise.
_IDX_CLASSES = 10
_IDX_IMAGES_MAGIC = 2051  # Unsigned bytes, 3 dimensions.
_IDX_LABELS_MAGIC = 2049  # Unsigned bytes, 1 dimension.
_IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_CIFAR_CLASSES = 10
_XZ_MAGIC = b"\xfd7zXZ\x00"
# What a CIFAR-10 python batch (a dict of a NumPy array and a list) may
# reference; any other global in the pickle is refused.
_CIFAR_PICKLE_GLOBALS = frozenset({
    ("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
})
_DIGITS_MAX_VALUE = 16
# Tag mixed into the user's seed so the shuffle stream differs from every
# other stream drawn from the same seed (weights, the random factor).
_SHUFFLE_STREAM = 0x5D1


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Train and test images and labels of one dataset, as NumPy arrays.

    Attributes:
        name: str, the dataset spec it was loaded from.
        train_images: uint8 array (num_train, height, width, channels),
            values in [0, 255].
        train_labels: int64 array (num_train,), values in [0, num_classes).
        test_images: uint8 array (num_test, height, width, channels).
        test_labels: int64 array (num_test,).
        num_classes: int, the number of classes.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def input_shape(self):
        """(height, width, channels) of one image."""
        return tuple(int(d) for d in self.train_images.shape[1:])

    @property
    def num_train(self):
        return int(self.train_images.shape[0])

    @property
    def num_test(self):
        return int(self.test_images.shape[0])


def parse_dataset_spec(spec):
    """Splits a dataset spec into its kind and argument, without any I/O.

    Args:
        spec: str, a dataset spec (see the module docstring).

    Returns:
        A tuple `(kind, argument)`: `("tfds", name)`, `("idx", path)`,
        `("idx-split", path)`, `("cifar10_batches", path)` or
        `("digits", None)`.

    Raises:
        ValueError: if `spec` is not a string of one of the allowed forms.

    Example:

    >>> parse_dataset_spec("idx:/data/mnist")
    ('idx', '/data/mnist')
    """
    allowed = "; ".join(DATASET_SPEC_FORMS)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset must be one of: {allowed}; got {spec!r}")
    if spec == "digits":
        return "digits", None
    prefix, colon, argument = spec.partition(":")
    if prefix in _PATH_KINDS:
        if not colon or not argument:
            raise ValueError(
                f"dataset {spec!r} needs a folder: '{prefix}:PATH'")
        return prefix, argument
    if spec.startswith(("/", ".", "~")):
        raise ValueError(
            f"dataset must be one of: {allowed}; got {spec!r} (a local "
            "folder needs a prefix such as 'idx:' or 'cifar10_batches:')")
    if colon and not _TFDS_VERSION.fullmatch(argument):
        raise ValueError(
            f"dataset {spec!r} has the unknown prefix '{prefix}:' (the "
            f"prefixes are {', '.join(k + ':' for k in _PATH_KINDS)}, and a "
            "TFDS name takes only a version after ':', e.g. 'mnist:3.0.1'); "
            f"a dataset must be one of: {allowed}")
    if not _TFDS_NAME.fullmatch(prefix):
        raise ValueError(
            f"dataset {spec!r} is not a TFDS name (lower-case letters, "
            "digits and '_', optionally '/config'); a dataset must be one "
            f"of: {allowed}")
    return "tfds", spec


def load_dataset(spec, *, data_dir=None, image_size=None, num_classes=None):
    """Loads the train and test split of a dataset into memory.

    Args:
        spec: str, the dataset spec: a TFDS name, `"idx:PATH"`,
            `"idx-split:PATH"`, `"cifar10_batches:PATH"` or `"digits"` (see
            the module docstring).
        data_dir: str or None, TFDS' data folder (TFDS names only; other
            specs ignore it). `None` is TFDS' default, `~/tensorflow_datasets`.
            Defaults to `None`.
        image_size: None or a pair of ints (height, width). If given, images
            are resized (bilinear) to this size and rounded back to uint8,
            e.g. `(28, 28)` to train model `"cnn"` on the 8x8 `"digits"`.
            Defaults to `None` (native size).
        num_classes: int >= 2 or None, the number of classes. For
            `"idx:"` and `"idx-split:"` files, whose format does not say,
            the labels must lie in [0, num_classes), 10 (MNIST,
            Fashion-MNIST, KMNIST) when `None`; for the other specs it must
            be `None` or the dataset's own number. Defaults to `None`.

    Returns:
        An `ImageDataset`.

    Raises:
        ValueError: for a malformed spec, an unknown TFDS name, a TFDS
            dataset without `image`/`label` features or `train`/`test`
            splits, a malformed or inconsistent file, a label out of range
            (the message names the file and the label's index), a class too
            small to split, or a bad `image_size` or `num_classes`.
        FileNotFoundError: for a missing folder or file; the message names
            the file names that were expected.
        RuntimeError: if TFDS cannot download or prepare the dataset (e.g. no
            internet); the message names the offline alternatives.

    Example:

    >>> data = load_dataset("digits")
    >>> data.num_train, data.num_test, data.input_shape
    (1437, 360, (8, 8, 1))
    """
    kind, argument = parse_dataset_spec(spec)
    if image_size is not None:
        image_size = _check_image_size(image_size)
    if num_classes is not None:
        num_classes = _validation.check_int("num_classes", num_classes, 2)
    if kind == "tfds":
        arrays = _load_tfds(argument, data_dir)
    elif kind == "idx":
        arrays = _load_idx(argument, num_classes or _IDX_CLASSES)
    elif kind == "idx-split":
        arrays = _load_idx_split(argument, num_classes or _IDX_CLASSES)
    elif kind == "cifar10_batches":
        arrays = _load_cifar10_batches(argument)
    else:
        arrays = _load_digits()
    train_images, train_labels, test_images, test_labels, found = arrays
    if num_classes is not None and num_classes != found:
        raise ValueError(
            f"num_classes must be None or {found} for dataset {spec!r} (its "
            f"number of classes), got {num_classes}")
    num_classes = found
    if image_size is not None:
        train_images = _resize(train_images, image_size)
        test_images = _resize(test_images, image_size)
    return ImageDataset(
        name=spec,
        train_images=train_images,
        train_labels=train_labels.astype(np.int64),
        test_images=test_images,
        test_labels=test_labels.astype(np.int64),
        num_classes=int(num_classes),
    )


def normalize_images(images):
    """Maps uint8 images in [0, 255] to float32 in [0, 1] (divides by 255).

    The one normalization of the project: the pipelines and `probe_subset`
    call it.

    Args:
        images: integer array of any shape.

    Returns:
        A C-contiguous float32 NumPy array of the same shape.
    """
    return np.asarray(images, np.float32) / np.float32(255.0)


def epoch_order(num_examples, *, seed, epoch):
    """Returns the order in which epoch `epoch` of `train_pipeline` visits data.

    A pure function of (`seed`, `epoch`): a uniform random permutation drawn
    with `numpy.random.default_rng` from the seed sequence (`seed`, a tag of
    this stream, `epoch`), so that it differs from every other stream drawn
    from the same seed (weights, the random factor), from epoch to epoch,
    and a run resumed at epoch e sees what an uninterrupted run sees, on
    every backend.

    Args:
        num_examples: int >= 1, N.
        seed: int in [0, 2**32 - 1].
        epoch: int >= 0, the 0-based epoch.

    Returns:
        An int64 array, a permutation of `range(num_examples)`.

    Example:

    >>> sorted(epoch_order(5, seed=0, epoch=3).tolist())
    [0, 1, 2, 3, 4]
    """
    num_examples = _validation.check_int("num_examples", num_examples, 1)
    seed = _validation.check_int("seed", seed, 0, SEED_MAX)
    epoch = _validation.check_int("epoch", epoch, 0)
    rng = np.random.default_rng([seed, _SHUFFLE_STREAM, epoch])
    return rng.permutation(num_examples)


class ArrayBatches(keras.utils.PyDataset):
    """In-memory images and labels as NumPy batches for `Model.fit`.

    A `keras.utils.PyDataset`: Keras turns it into `tf.data` on TensorFlow,
    JAX arrays on JAX and a `DataLoader` on PyTorch, with no TensorFlow
    needed on the latter two. The images are normalized to float32 in
    [0, 1] once, when it is made; a batch is then one gather (shuffled) or
    one slice (unshuffled) of that array.

    Unshuffled (`seed=None`) it is one pass over the data in array order.
    Shuffled it holds the epochs `initial_epoch, ..., epochs - 1` one after
    another, `steps_per_epoch(N, batch_size)` batches each, and epoch e
    visits the examples in `epoch_order(N, seed=seed, epoch=e)`. Give it to
    Keras once for all epochs, `model.fit(batches, epochs=epochs,
    initial_epoch=initial_epoch, steps_per_epoch=batches.steps_per_epoch,
    shuffle=False)` (Keras' `shuffle=True`, the default, would reorder the
    batches with Python's global random state): Keras then keeps one
    iterator across the epochs, so that batch i of
    the dataset is step i of the run. Index i is batch `i % steps` of epoch
    `initial_epoch + i // steps`, so the batches are a pure function of
    (seed, epoch, step).

    Args:
        images: uint8 array (N, height, width, channels), values in [0, 255].
        labels: int array (N,).
        batch_size: int >= 1, examples per batch.
        seed: int in [0, 2**32 - 1] or None: the seed of the shuffle; None
            means unshuffled, one pass. Defaults to `None`.
        epochs: int >= 1, the index one past the last epoch (as in
            `keras.Model.fit`); shuffled only. Defaults to `1`.
        initial_epoch: int in [0, epochs - 1], the first epoch; shuffled
            only. Defaults to `0`.
        drop_remainder: bool, drop each epoch's last partial batch.
            Defaults to `False`.
        pad_to_multiple: int >= 1. If > 1, every batch is
            `(images, labels, sample_weight)`, and a batch whose size is not
            a multiple of it is padded to the next multiple with copies of
            its first examples of weight 0 (real examples weigh 1), so that
            it splits evenly among that many devices. With a loss of
            reduction `"mean_with_sample_weight"` the padded batch gives the
            loss and gradient of the unpadded one. Defaults to `1`.

    Raises:
        ValueError: for mismatched arrays or a bad argument.
    """

    def __init__(self, images, labels, *, batch_size, seed=None, epochs=1,
                 initial_epoch=0, drop_remainder=False, pad_to_multiple=1):
        super().__init__()  # One worker: batches come in index order.
        num_examples = _check_arrays(images, labels)
        self.batch_size = _validation.check_int("batch_size", batch_size, 1)
        if seed is not None:
            seed = _validation.check_int("seed", seed, 0, SEED_MAX)
        self.seed = seed
        self.epochs = _validation.check_int("epochs", epochs, 1)
        self.initial_epoch = _validation.check_int(
            "initial_epoch", initial_epoch, 0, self.epochs - 1)
        if seed is None and (self.epochs, self.initial_epoch) != (1, 0):
            raise ValueError(
                "epochs and initial_epoch apply only to a shuffled pipeline "
                f"(a seed), got epochs={epochs}, initial_epoch="
                f"{initial_epoch} with seed=None")
        if not isinstance(drop_remainder, bool):
            raise ValueError(
                f"drop_remainder must be a bool, got {drop_remainder!r}")
        if drop_remainder and num_examples < self.batch_size:
            raise ValueError(
                f"batch_size must be <= the {num_examples} examples when "
                f"drop_remainder=True, got {batch_size}")
        self.pad_to_multiple = _validation.check_int(
            "pad_to_multiple", pad_to_multiple, 1)
        self.num_examples = num_examples
        self.steps_per_epoch = steps_per_epoch(
            num_examples, self.batch_size, drop_remainder=drop_remainder)
        self.images = normalize_images(images)
        # The uint8 images, kept (not copied) for `as_tf_dataset`.
        self._uint8_images = (images if isinstance(images, np.ndarray)
                              and images.dtype == np.uint8 else None)
        # int32: the one integer type every backend takes without a copy
        # or a warning (JAX runs without 64-bit types by default).
        self.labels = np.asarray(labels).astype(np.int32)
        self._order = (None, None)  # (epoch, its permutation).

    @property
    def num_batches(self):
        return (self.epochs - self.initial_epoch) * self.steps_per_epoch

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        if not 0 <= index < self.num_batches:
            raise IndexError(
                f"batch index must be in [0, {self.num_batches - 1}], got "
                f"{index}")
        epoch, step = divmod(index, self.steps_per_epoch)
        start = step * self.batch_size
        stop = min(start + self.batch_size, self.num_examples)
        if self.seed is None:
            indices = slice(start, stop)
        else:
            epoch += self.initial_epoch
            if self._order[0] != epoch:  # Drawn once per epoch.
                self._order = (epoch, epoch_order(
                    self.num_examples, seed=self.seed, epoch=epoch))
            indices = self._order[1][start:stop]
        padding = -(stop - start) % self.pad_to_multiple
        if self.pad_to_multiple > 1:
            indices = np.arange(self.num_examples)[indices]
            indices = np.concatenate([indices, np.resize(indices, padding)])
        elif self.seed is None:  # Slices of the arrays, no copy.
            return self.images[indices], self.labels[indices]
        images = np.take(self.images, indices, axis=0)
        labels = np.take(self.labels, indices, axis=0)
        if self.pad_to_multiple == 1:
            return images, labels
        weights = np.ones(len(indices), np.float32)
        weights[len(indices) - padding:] = 0.0
        return images, labels, weights

    def as_tf_dataset(self):
        """Returns the same batches, in the same order, as a `tf.data` pipeline.

        The fast path on the TensorFlow backend, where Keras would read this
        `PyDataset` through `tf.data.Dataset.from_generator`, one Python call
        per batch. Shuffled, the epoch orders `epoch_order(N, seed=seed,
        epoch=e)` are drawn once with NumPy and TensorFlow does the rest, one
        element per batch: batch i slices its indices out of the orders,
        `tf.gather`s the images (normalized there, from uint8) and the
        labels, pads as `pad_to_multiple` says, and is prefetched.
        Unshuffled (an evaluation set, read every epoch), the batches are
        made once and cached in memory, so a new pass costs no per-batch
        work. Batch i is `self[i]`, bit for bit (`benchmarks/tf_pipeline.py`
        measures what it saves).

        Give it to `model.fit` as the `PyDataset` itself (`epochs`,
        `initial_epoch`, `steps_per_epoch=self.steps_per_epoch`; Keras'
        `shuffle` does not apply to a `tf.data.Dataset`).

        Needs TensorFlow (on any Keras backend; use it with the TensorFlow
        backend). Holds a copy of the images as a tensor (uint8 images as
        uint8; others normalized), the epoch orders as int32 (4 N bytes per
        epoch) or, unshuffled, the cached normalized batches.

        Returns:
            A `tf.data.Dataset` of `num_batches` batches `(images, labels)`
            (float32, int32), or `(images, labels, sample_weight)` if
            `pad_to_multiple > 1`, with a known cardinality.

        Example:

        >>> x = np.zeros((10, 2, 2, 1), "uint8"); y = np.arange(10)
        >>> batches = train_pipeline(x, y, batch_size=4, seed=0, epochs=2)
        >>> [int(b[1].shape[0]) for b in batches.as_tf_dataset()]
        [4, 4, 2, 4, 4, 2]
        """
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        if self._uint8_images is not None:
            # A quarter of the memory and of the gather's traffic; each
            # batch is normalized as `normalize_images` does (a float32
            # division by 255, correctly rounded on both sides; a lookup in
            # its 256 values measured 4x slower).
            images = tf.constant(self._uint8_images)

            def normalize(batch):
                return (tf.cast(batch, tf.float32)
                        / tf.constant(255.0, tf.float32))
        else:
            images = tf.constant(self.images)

            def normalize(batch):
                return batch
        labels = tf.constant(self.labels)
        num_examples, batch_size = self.num_examples, self.batch_size
        steps, multiple = self.steps_per_epoch, self.pad_to_multiple
        if self.seed is not None:
            # All epochs' orders end to end: epoch e starts at e * N.
            orders = tf.constant(np.concatenate([
                epoch_order(num_examples, seed=self.seed, epoch=epoch)
                for epoch in range(self.initial_epoch, self.epochs)
            ]).astype(np.int32))

        def batch(index):
            epoch, step = index // steps, index % steps
            start = step * batch_size
            stop = tf.minimum(start + batch_size, num_examples)
            if self.seed is None:
                indices = tf.range(start, stop, dtype=tf.int32)
            else:
                indices = orders[epoch * num_examples + start:
                                 epoch * num_examples + stop]
            if multiple == 1:
                return (normalize(tf.gather(images, indices)),
                        tf.gather(labels, indices))
            size = stop - start
            padding = tf.math.floormod(-size, multiple)
            # np.resize's order: the batch's own indices, repeated.
            repeats = padding // size + 1
            indices = tf.concat(
                [indices, tf.tile(indices, [repeats])[:padding]], axis=0)
            weights = tf.concat([tf.ones([size], tf.float32),
                                 tf.zeros([padding], tf.float32)], axis=0)
            return (normalize(tf.gather(images, indices)),
                    tf.gather(labels, indices), weights)

        if self.seed is None and multiple == 1:
            # One pass in array order, read again at every evaluation:
            # plain batching (a new iterator with a per-batch function costs
            # milliseconds), normalized once and cached.
            dataset = tf.data.Dataset.from_tensor_slices(
                (images, labels)).batch(batch_size).take(self.num_batches)
            if self._uint8_images is not None:
                dataset = dataset.map(lambda x, y: (normalize(x), y))
            return dataset.cache()
        dataset = tf.data.Dataset.range(self.num_batches).map(
            batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)


def train_pipeline(images, labels, *, batch_size, seed, epochs,
                   initial_epoch=0, drop_remainder=False, pad_to_multiple=1):
    """Returns the training batches: all epochs, one after another.

    TFDS order: normalize (float32 in [0, 1]) and cache once, then per epoch
    shuffle and batch. The order of epoch `e` is `epoch_order(N, seed=seed,
    epoch=e)`, a function of (`seed`, `e`) alone, so every epoch is shuffled
    differently and a run resumed at epoch `e` (built with
    `initial_epoch=e`) sees exactly the batches an uninterrupted run would.
    Nothing global (NumPy's, TensorFlow's or Keras' seed) enters it.

    It yields `steps_per_epoch(len(images), batch_size,
    drop_remainder=drop_remainder)` batches for each of the epochs
    `initial_epoch, ..., epochs - 1`. Iterate it once across all epochs: in
    Keras, `model.fit(batches, epochs=epochs, initial_epoch=initial_epoch,
    steps_per_epoch=batches.steps_per_epoch, shuffle=False)`.

    Args:
        images: uint8 array (N, height, width, channels).
        labels: int array (N,).
        batch_size: int >= 1, examples per batch.
        seed: int in [0, 2**32 - 1], the seed of the shuffling.
        epochs: int >= 1, the index one past the last epoch (as in
            `keras.Model.fit`).
        initial_epoch: int in [0, epochs - 1], the first epoch to yield.
            Defaults to `0`.
        drop_remainder: bool, drop each epoch's last partial batch.
            Defaults to `False`.
        pad_to_multiple: int >= 1, see `ArrayBatches` (data parallelism
            over that many devices). Defaults to `1`.

    Returns:
        An `ArrayBatches` of `(images, labels)` NumPy batches, images
        float32 in [0, 1], labels int32.

    Raises:
        ValueError: for mismatched arrays or a bad argument.

    Example:

    >>> x = np.zeros((10, 2, 2, 1), "uint8"); y = np.arange(10)
    >>> batches = train_pipeline(x, y, batch_size=4, seed=0, epochs=2)
    >>> [len(batch[1]) for batch in batches]
    [4, 4, 2, 4, 4, 2]
    """
    if seed is None:
        raise ValueError("seed must be an integer in [0, 4294967295], got "
                         "None")
    return ArrayBatches(images, labels, batch_size=batch_size, seed=seed,
                        epochs=epochs, initial_epoch=initial_epoch,
                        drop_remainder=drop_remainder,
                        pad_to_multiple=pad_to_multiple)


def eval_pipeline(images, labels, *, batch_size, pad_to_multiple=1):
    """Returns evaluation batches: one pass, in array order.

    TFDS order without the shuffle: normalize (float32 in [0, 1]) once,
    batch (the last batch may be partial).

    Args:
        images: uint8 array (N, height, width, channels).
        labels: int array (N,).
        batch_size: int >= 1, examples per batch.
        pad_to_multiple: int >= 1, see `ArrayBatches`. Defaults to `1`.

    Returns:
        An `ArrayBatches` of `(images, labels)` NumPy batches.

    Example:

    >>> x = np.zeros((5, 2, 2, 1), "uint8"); y = np.arange(5)
    >>> [batch[1].tolist() for batch in eval_pipeline(x, y, batch_size=4)]
    [[0, 1, 2, 3], [4]]
    """
    return ArrayBatches(images, labels, batch_size=batch_size,
                        pad_to_multiple=pad_to_multiple)


def steps_per_epoch(num_examples, batch_size, *, drop_remainder=False):
    """Returns the number of batches in one epoch of `train_pipeline`.

    Args:
        num_examples: int >= 1, the number of training examples.
        batch_size: int >= 1.
        drop_remainder: bool, as in `train_pipeline`. Defaults to `False`.

    Example:

    >>> steps_per_epoch(1437, 256)
    6
    """
    num_examples = _validation.check_int("num_examples", num_examples, 1)
    batch_size = _validation.check_int("batch_size", batch_size, 1)
    if drop_remainder:
        return num_examples // batch_size
    return math.ceil(num_examples / batch_size)


def probe_subset(images, labels, size, *, seed=None):
    """Returns a fixed subset of examples, normalized like the pipelines.

    Meant as the probe set of the temperature monitor: the same examples at
    every epoch.

    Args:
        images: uint8 array (N, height, width, channels).
        labels: int array (N,).
        size: int in [1, N], the number of examples.
        seed: int in [0, 2**32 - 1] or None. `None` takes the first `size`
            examples; an int takes `size` distinct examples chosen with
            `numpy.random.default_rng(seed)`, kept in array order.
            Defaults to `None`.

    Returns:
        A tuple `(images, labels)` of NumPy arrays: float32 images in
        [0, 1] and the int64 labels.

    Example:

    >>> x = np.full((5, 2, 2, 1), 255, "uint8"); y = np.arange(5)
    >>> probe_x, probe_y = probe_subset(x, y, 2)
    >>> probe_x.shape, float(probe_x.max()), probe_y.tolist()
    ((2, 2, 2, 1), 1.0, [0, 1])
    """
    num_examples = _check_arrays(images, labels)
    size = _validation.check_int("size", size, 1, num_examples)
    if seed is None:
        indices = np.arange(size)
    else:
        seed = _validation.check_int("seed", seed, 0, SEED_MAX)
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(num_examples, size=size, replace=False))
    probe_images = normalize_images(np.asarray(images)[indices])
    return probe_images, np.asarray(labels)[indices].astype(np.int64)


def read_idx(path, *, expected_magic=None):
    """Reads one IDX file (the MNIST format), plain or gzipped.

    The file holds a 4-byte big-endian magic number (two zero bytes, a type
    code, the number of dimensions; 2051 for uint8 images of rank 3, 2049 for
    uint8 labels), one big-endian uint32 per dimension, then the values in
    row-major order.

    Args:
        path: str, the file; gzip is detected from its first bytes.
        expected_magic: int or None, the magic number the file must have.
            Defaults to `None` (any valid IDX magic number).

    Returns:
        A NumPy array with the file's shape and (native-endian) type.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not valid gzip, has a wrong magic number,
            or is truncated or longer than its header announces.
    """
    raw = _read_maybe_gzip(path)
    if len(raw) < 4:
        raise ValueError(
            f"IDX file {path} is truncated: {len(raw)} bytes, fewer than the "
            "4-byte magic number")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"IDX file {path} has magic number {magic}, expected "
            f"{expected_magic} ({_describe_magic(expected_magic)})")
    code, ndim = raw[2], raw[3]
    if raw[0] or raw[1] or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"file {path} is not an IDX file: magic number {magic} "
            "(expected 0x00 0x00, a type code in "
            f"{sorted(_IDX_DTYPES)}, a rank >= 1)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"IDX file {path} is truncated: {len(raw)} bytes, fewer than its "
            f"{header}-byte header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        problem = "is truncated" if found < expected else "is too long"
        raise ValueError(
            f"IDX file {path} {problem}: its header announces shape {shape} "
            f"({expected} data bytes), but it holds {found} data bytes")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_cifar10_batch(path):
    """Reads one official CIFAR-10 python batch (a pickled dict), plain or xz.

    The dict holds `data`, a uint8 array (N, 3072) whose rows are the red,
    green and blue 32x32 planes, and `labels`, N ints in [0, 10). The file
    may be xz-compressed (`data_batch_1.xz`); that is detected from its
    first bytes.

    Args:
        path: str, e.g. `.../cifar-10-batches-py/data_batch_1`.

    Returns:
        A tuple `(images, labels)`: uint8 (N, 32, 32, 3), int64 (N,).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not such a pickle (or references anything
            else than NumPy arrays, e.g. code to run).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 batch file {path} does not exist")
    expected = ("a pickled dict with 'data' (uint8, N x 3072) and 'labels' "
                "(N ints in [0, 10))")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw.startswith(_XZ_MAGIC):
            raw = lzma.decompress(raw)
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # Unpickling errors come in many types.
        raise ValueError(
            f"CIFAR-10 batch file {path} could not be read "
            f"({type(err).__name__}: {err}); expected {expected}") from err
    if not isinstance(batch, dict):
        raise ValueError(
            f"CIFAR-10 batch file {path} holds a {type(batch).__name__}, "
            f"expected {expected}")
    batch = {k.decode() if isinstance(k, bytes) else k: v
             for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(
            f"CIFAR-10 batch file {path} has keys {sorted(batch)}, expected "
            f"{expected}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"CIFAR-10 batch file {path} has data of type {data.dtype} and "
            f"shape {data.shape}, expected {expected}")
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"CIFAR-10 batch file {path} has {labels.size} labels for "
            f"{data.shape[0]} images, expected {expected}")
    _check_labels(labels, _CIFAR_CLASSES, path)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


class _CifarUnpickler(pickle.Unpickler):
    """Loads only NumPy arrays, lists and dicts: a pickle can run any code."""

    def find_class(self, module, name):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


# Loaders. Each returns (train_images, train_labels, test_images, test_labels,
# num_classes) with images of shape (N, height, width, channels).


def _load_tfds(name, data_dir):
    try:  # Slow to import, and only TFDS names need it.
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    except ImportError as err:
        raise ImportError(
            f"dataset {name!r} is a TFDS name, which needs TensorFlow and "
            "TensorFlow Datasets: pip install \"rlr_keras[tensorflow]\"; "
            "or use an offline dataset ('idx:PATH', 'idx-split:PATH', "
            "'cifar10_batches:PATH', 'digits')") from err

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ValueError(
            f"dataset {name!r} is not a TFDS dataset name; a dataset must be "
            f"one of: {'; '.join(DATASET_SPEC_FORMS)}") from err
    features = builder.info.features
    if ("image" not in features or "label" not in features
            or not isinstance(features["label"], tfds.features.ClassLabel)):
        raise ValueError(
            f"TFDS dataset {name!r} must have an 'image' feature and a "
            f"ClassLabel 'label' feature, got {features}")
    try:
        builder.download_and_prepare()
    except Exception as err:  # No internet shows up in many types.
        raise RuntimeError(
            f"could not download or prepare TFDS dataset {name!r} in "
            f"data_dir={data_dir!r} ({type(err).__name__}: {err}). Without "
            "internet, either put an already prepared TFDS copy "
            f"({name}/<version>/) in data_dir, or load local files instead: "
            "dataset 'idx:PATH' (a folder of MNIST-format IDX files "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz), "
            "'idx-split:PATH' (only the two t10k files, split 80/20), "
            "'cifar10_batches:PATH' (the CIFAR-10 python batches "
            "data_batch_1..5 and test_batch) or 'digits' (bundled with "
            "scikit-learn).") from err
    splits = set(builder.info.splits)
    if splits and not {"train", "test"} <= splits:
        raise ValueError(
            f"TFDS dataset {name!r} must have 'train' and 'test' splits, "
            f"got {sorted(splits)}")
    arrays = []
    for split in ("train", "test"):
        dataset = builder.as_dataset(split=split).map(
            lambda example: (example["image"], example["label"]))
        # Whole-split batches (batch_size=-1) break under tfds' mock_data.
        parts = list(tfds.as_numpy(dataset.batch(8192)))
        arrays.append(np.concatenate([p[0] for p in parts]))
        arrays.append(np.concatenate([p[1] for p in parts]))
    return (*arrays, features["label"].num_classes)


def _load_idx(folder, num_classes):
    train_images, train_labels = _read_idx_pair(folder, "train", num_classes)
    test_images, test_labels = _read_idx_pair(folder, "t10k", num_classes)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"IDX files in {folder}: train images have shape "
            f"{train_images.shape[1:]}, t10k images {test_images.shape[1:]}; "
            "expected the same image shape")
    return train_images, train_labels, test_images, test_labels, num_classes


def _load_idx_split(folder, num_classes):
    images, labels = _read_idx_pair(folder, "t10k", num_classes)
    source = _find_file(folder, "t10k-labels-idx1-ubyte")
    return (*_stratified_split(images, labels, source), num_classes)


def _read_idx_pair(folder, prefix, num_classes):
    """Reads `{prefix}-images-idx3-ubyte[.gz]` and its labels file."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"IDX dataset folder {folder} does not exist; expected a folder "
            "with train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz)")
    images_path = _find_file(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, expected_magic=_IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=_IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"IDX files disagree: {images_path} holds {images.shape[0]} "
            f"images but {labels_path} holds {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError(f"IDX file {images_path} holds no images")
    _check_labels(labels, num_classes, labels_path,
                  hint=f"{_IDX_CLASSES} for MNIST-format files unless "
                  "load_dataset(num_classes=...) says otherwise")
    return images[..., np.newaxis], labels.astype(np.int64)


def _find_file(folder, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"IDX file {os.path.join(folder, name)} (or {name}.gz) does not "
        f"exist; an 'idx:' folder needs train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte (each optionally .gz), an 'idx-split:' "
        "folder the two t10k files")


def _read_maybe_gzip(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file {path} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        if path.endswith(".gz"):
            raise ValueError(f"file {path} is named .gz but is not gzip data")
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:  # OSError: BadGzipFile.
        raise ValueError(
            f"gzip file {path} is truncated or corrupt ({err})") from err


def _describe_magic(magic):
    return {_IDX_IMAGES_MAGIC: "IDX unsigned-byte images, 3 dimensions",
            _IDX_LABELS_MAGIC: "IDX unsigned-byte labels, 1 dimension"}.get(
                magic, "IDX")


def _load_cifar10_batches(folder):
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"CIFAR-10 batches folder {folder} does not exist; expected a "
            "folder with data_batch_1 ... data_batch_5 and test_batch")
    nested = os.path.join(folder, "cifar-10-batches-py")
    if (_cifar_file(folder, _CIFAR_TEST_FILE) is None
            and os.path.isdir(nested)):
        folder = nested
    paths = []
    for name in _CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,):
        path = _cifar_file(folder, name)
        if path is None:
            raise FileNotFoundError(
                f"CIFAR-10 batch file {os.path.join(folder, name)} (or "
                f"{name}.xz) does not exist; a 'cifar10_batches:' folder "
                "needs data_batch_1 ... data_batch_5 and test_batch (the "
                "python version), each optionally .xz")
        paths.append(path)
    train = [read_cifar10_batch(path) for path in paths[:-1]]
    test_images, test_labels = read_cifar10_batch(paths[-1])
    return (np.concatenate([b[0] for b in train]),
            np.concatenate([b[1] for b in train]),
            test_images, test_labels, _CIFAR_CLASSES)


def _cifar_file(folder, name):
    for candidate in (name, name + ".xz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _load_digits():
    datasets = _import_sklearn("datasets")
    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / _DIGITS_MAX_VALUE))
    images = images.astype(np.uint8)[..., np.newaxis]
    labels = digits.target.astype(np.int64)
    return (*_stratified_split(images, labels, "scikit-learn's digits"), 10)


def _stratified_split(images, labels, source):
    """The deterministic stratified 80/20 split of the module docstring.

    Args:
        images, labels: the arrays to split.
        source: str, where the labels come from, for the error messages.
    """
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        small = classes[counts < 2].tolist()
        raise ValueError(
            f"{source}: class(es) {small} hold a single example; the "
            "stratified 80/20 split needs at least 2 examples of every "
            "class present (one for train, one for test)")
    num_test = math.ceil(SPLIT_TEST_FRACTION * len(labels))
    if not len(classes) <= num_test <= len(labels) - len(classes):
        raise ValueError(
            f"{source}: {len(labels)} examples of {len(classes)} classes "
            f"cannot be split 80/20 with every class in both parts (the "
            f"test part, {num_test} examples, and the training part must "
            f"each hold at least {len(classes)})")
    model_selection = _import_sklearn("model_selection")
    train_images, test_images, train_labels, test_labels = (
        model_selection.train_test_split(
            images, labels, test_size=SPLIT_TEST_FRACTION, stratify=labels,
            random_state=SPLIT_SEED))
    return train_images, train_labels, test_images, test_labels


def _import_sklearn(module):
    try:
        return importlib.import_module(f"sklearn.{module}")
    except ImportError as err:
        raise ImportError(
            "datasets 'digits' and 'idx-split:' need scikit-learn: "
            "pip install 'rlr_keras[experiments]'") from err


# Checks and small helpers.


def _check_labels(labels, num_classes, path, hint=None):
    """Raises ValueError naming the first label outside [0, num_classes)."""
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        index = int(outside[0])
        raise ValueError(
            f"file {path} has label {labels[index]} at index {index} "
            f"({outside.size} labels outside the range), expected labels in "
            f"[0, {num_classes - 1}] ({num_classes} classes"
            + (f": {hint})" if hint else ")"))


def _check_arrays(images, labels):
    images_shape = np.shape(images)
    labels_shape = np.shape(labels)
    if len(images_shape) != 4:
        raise ValueError(
            "images must have shape (N, height, width, channels), got "
            f"shape {images_shape}")
    if labels_shape != images_shape[:1]:
        raise ValueError(
            f"labels must have shape ({images_shape[0]},) to match images, "
            f"got shape {labels_shape}")
    if images_shape[0] == 0:
        raise ValueError("images must hold at least one example, got 0")
    return int(images_shape[0])


def _check_image_size(image_size):
    return _validation.check_positive_ints(
        "image_size", image_size, 2, "(height, width)", none_allowed=True)


def _resize(images, size):
    """Bilinear resize of (N, H, W, C) images, rounded back to uint8.

    Half-pixel centers without antialiasing, the `tf.image.resize(...,
    "bilinear")` convention, in NumPy so that it needs no backend.
    """
    resized = np.asarray(images, np.float32)
    # Width first, then height, each as a + (b - a) w: TensorFlow's order.
    for axis, new in ((2, size[1]), (1, size[0])):
        old = images.shape[axis]
        source = np.clip((np.arange(new) + 0.5) * (old / new) - 0.5, 0,
                         old - 1)
        lower = np.floor(source).astype(np.int64)
        upper = np.minimum(lower + 1, old - 1)
        weight = (source - lower).astype(np.float32)
        shape = [1] * resized.ndim
        shape[axis] = new
        weight = weight.reshape(shape)
        low = np.take(resized, lower, axis=axis)
        resized = low + (np.take(resized, upper, axis=axis) - low) * weight
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)
