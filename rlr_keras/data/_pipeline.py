"""Input pipelines: the epoch order, NumPy batches for every backend, probes.

`train_pipeline` and `eval_pipeline` turn arrays into `ArrayBatches`, a
`keras.utils.PyDataset` of NumPy batches that `Model.fit` reads on every
Keras backend, in the TFDS order: normalize to float32 once (the cache),
shuffle (training only: the order of epoch e is `epoch_order(N, seed=seed,
epoch=e)`, a pure function of (seed, e)), batch.
"""

import math

import keras
import numpy as np

from rlr_keras import _validation
from rlr_keras.random_factor import SEED_MAX

# Tag mixed into the user's seed so the shuffle stream differs from every
# other stream drawn from the same seed (weights, the random factor).
_SHUFFLE_STREAM = 0x5D1


def normalize_images(images):
    """Maps uint8 images in [0, 255] to float32 in [0, 1] (divides by 255).

    The one normalization of the project: the pipelines and `probe_subset`
    call it. Float arrays (features of any kind) pass unchanged, as float32.

    Args:
        images: integer array of any shape (images), or a float array.

    Returns:
        A C-contiguous float32 NumPy array of the same shape.
    """
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.floating):
        return np.ascontiguousarray(images, np.float32)
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
        raise TypeError(f"seed must be an integer in [0, {SEED_MAX}], got "
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



def _check_arrays(images, labels):
    images_shape = np.shape(images)
    labels_shape = np.shape(labels)
    if len(images_shape) < 2:
        raise ValueError(
            "images must have shape (N, ...), e.g. (N, height, width, "
            f"channels) or (N, features), got shape {images_shape}")
    if labels_shape != images_shape[:1]:
        raise ValueError(
            f"labels must have shape ({images_shape[0]},) to match images, "
            f"got shape {labels_shape}")
    if images_shape[0] == 0:
        raise ValueError("images must hold at least one example, got 0")
    return int(images_shape[0])


