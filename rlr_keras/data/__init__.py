"""Classification data: loading, and input pipelines for every backend.

`load_dataset(spec)` returns an `ImageDataset`: train and test images as
uint8 arrays of shape (N, height, width, channels) with values in [0, 255]
(or, for your own data, float features of any shape), int64 labels in
[0, num_classes). A dataset spec is one of:

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
- `"npz:PATH"`: a NumPy `.npz` file with the arrays `x_train`, `y_train`,
  `x_test`, `y_test` (the `keras.datasets` names).
- `"MODULE:FUNCTION"` or `"path/to/file.py:FUNCTION"`: your function, called
  with no arguments, returning `((x_train, y_train), (x_test, y_test))`
  NumPy arrays (the `keras.datasets` convention) or an `ImageDataset`. In
  Python, `load_dataset` also takes the function, the arrays or an
  `ImageDataset` themselves.
- `"digits"`: scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  10 classes, no download), split with the deterministic stratified split
  below (1,437 train / 360 test). Pixel values 0..16 are mapped to 0..255.

The deterministic stratified split (`"digits"`, `"idx-split:"`) is
`sklearn.model_selection.train_test_split(test_size=SPLIT_TEST_FRACTION,
stratify=labels, random_state=SPLIT_SEED)`, i.e. 80 % train / 20 % test with
every class in the same proportion in both parts.

Your arrays (npz, functions, arrays): x is uint8 images, scaled to [0, 1]
like every image here, or float features of any shape (tabular rows,
sequences), used unchanged; y holds integer labels in [0, num_classes),
shape (N,) or (N, 1). x and y of different lengths, an empty split,
non-integer or out-of-range labels and NaN or infinite features are refused
with one line naming the dataset and the array.

Errors are never papered over: a missing, truncated or malformed file raises
an error naming the file and what was expected, and no loader falls back to
other or synthetic data.

The offline specs need only NumPy (and scikit-learn for the split).

`train_pipeline` and `eval_pipeline` turn the arrays into `ArrayBatches`, a
`keras.utils.PyDataset` of NumPy batches that `Model.fit` reads on every
Keras backend, in the TFDS order: normalize to float32 once (the cache),
shuffle (training only: the order of epoch e is `epoch_order(N, seed=seed,
epoch=e)`, a pure function of (seed, e)), batch.

The package: `_formats` (the specs, one loader per format in one table),
`_readers` (the IDX and CIFAR-10 file readers), `_pipeline` (epoch order,
batches, probe subsets).
"""

from rlr_keras.data._formats import ARRAYS_PREFIX
from rlr_keras.data._formats import DATASET_SPEC_FORMS
from rlr_keras.data._formats import ImageDataset
from rlr_keras.data._formats import NPZ_KEYS
from rlr_keras.data._formats import SPLIT_SEED
from rlr_keras.data._formats import SPLIT_TEST_FRACTION
from rlr_keras.data._formats import check_arrays
from rlr_keras.data._formats import dataset_spec
from rlr_keras.data._formats import load_dataset
from rlr_keras.data._formats import parse_dataset_spec
from rlr_keras.data._pipeline import ArrayBatches
from rlr_keras.data._pipeline import epoch_order
from rlr_keras.data._pipeline import eval_pipeline
from rlr_keras.data._pipeline import normalize_images
from rlr_keras.data._pipeline import probe_subset
from rlr_keras.data._pipeline import steps_per_epoch
from rlr_keras.data._pipeline import train_pipeline
from rlr_keras.data._readers import read_cifar10_batch
from rlr_keras.data._readers import read_idx

__all__ = [
    "ARRAYS_PREFIX", "ArrayBatches", "DATASET_SPEC_FORMS", "ImageDataset", "NPZ_KEYS",
    "SPLIT_SEED", "SPLIT_TEST_FRACTION", "check_arrays", "dataset_spec",
    "epoch_order", "eval_pipeline", "load_dataset", "normalize_images",
    "parse_dataset_spec", "probe_subset", "read_cifar10_batch", "read_idx",
    "steps_per_epoch", "train_pipeline",
]
