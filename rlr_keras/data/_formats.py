"""Dataset specs and formats: one table, one loader per format.

See `rlr_keras.data` for the specs. A new format is one loader in `_FORMATS`
below (and, for a path format, a line of `DATASET_SPEC_FORMS`).
"""

import dataclasses
import hashlib
import importlib
import math
import os
import re
import zipfile

import numpy as np

from rlr_keras import _specs
from rlr_keras import _validation
from rlr_keras.data import _readers
from rlr_keras.data._readers import read_cifar10_batch
from rlr_keras.data._readers import read_idx

SPLIT_TEST_FRACTION = 0.2
SPLIT_SEED = 0
DATASET_SPEC_FORMS = (
    "a TFDS name such as 'mnist', 'fashion_mnist' or 'cifar10'",
    "'idx:PATH' (folder of MNIST-format IDX files)",
    "'idx-split:PATH' (folder with only the t10k IDX files)",
    "'cifar10_batches:PATH' (folder of CIFAR-10 python batches)",
    "'npz:PATH' (a .npz file with x_train, y_train, x_test, y_test)",
    "'MODULE:FUNCTION' or 'path/to/file.py:FUNCTION' (your function "
    "returning ((x_train, y_train), (x_test, y_test)) or an ImageDataset)",
    "'digits' (scikit-learn's bundled 8x8 digits)",
)
# The keys of an 'npz:' file (the keras.datasets names).
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# How a run records a dataset given as arrays: this prefix and a digest of
# them (a resume with other arrays is then refused).
ARRAYS_PREFIX = "arrays:"

# What may follow a TFDS name's colon: a version such as "3.0.1" or "3.*.*".
# TFDS builder names: `name` or `name/config`.
_TFDS_NAME = re.compile(r"[a-z0-9_]+(/[\w.-]+)?")
_TFDS_VERSION = re.compile(r"[0-9*]+(\.[0-9*]+)*")
# MNIST, Fashion-MNIST and KMNIST: the classes of an IDX label file unless
# `load_dataset(num_classes=...)` says otherwise.
_IDX_CLASSES = 10
_DIGITS_MAX_VALUE = 16


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Train and test examples and labels of one dataset, as NumPy arrays.

    Despite the name, the examples may be any arrays: uint8 images (scaled
    to [0, 1] by the pipelines) or float features of any shape (passed
    unchanged), e.g. tabular rows or sequences.

    Attributes:
        name: str, the dataset spec it was loaded from.
        train_images: uint8 array (num_train, height, width, channels),
            values in [0, 255], or a float array (num_train, ...).
        train_labels: int64 array (num_train,), values in [0, num_classes).
        test_images: array (num_test, ...) of the same type and example
            shape.
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
        """The shape of one example, e.g. (height, width, channels)."""
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
        spec: str, a dataset spec (see `rlr_keras.data`).

    Returns:
        A tuple `(kind, argument)`: `("tfds", name)`, `("idx", path)`,
        `("idx-split", path)`, `("cifar10_batches", path)`, `("npz",
        path)`, `("function", spec)` or `("digits", None)`.

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
    if prefix in _PATH_FORMATS:
        if not colon or not argument:
            what = "file" if prefix == "npz" else "folder"
            raise ValueError(
                f"dataset {spec!r} needs a {what}: '{prefix}:PATH'")
        return prefix, argument
    if spec.startswith((_specs.CALLABLE_PREFIX, ARRAYS_PREFIX)):
        raise ValueError(
            f"dataset={spec!r} was given to the Python API as a callable or "
            "arrays: it cannot be loaded from its recorded name (replay it "
            "from Python, or give npz:PATH, MODULE:FUNCTION or "
            "file.py:FUNCTION)")
    if colon and not _TFDS_VERSION.fullmatch(argument):
        if _specs.split_function_spec(spec) is not None:
            return "function", spec
        raise ValueError(
            f"dataset {spec!r} has the unknown prefix '{prefix}:' (the "
            f"prefixes are {', '.join(k + ':' for k in _PATH_FORMATS)}, a "
            "TFDS name takes only a version after ':', e.g. 'mnist:3.0.1', "
            "and your own loader is MODULE:FUNCTION or file.py:FUNCTION); a "
            f"dataset must be one of: {allowed}")
    if spec.startswith(("/", ".", "~")):
        raise ValueError(
            f"dataset must be one of: {allowed}; got {spec!r} (a local "
            "folder needs a prefix such as 'idx:' or 'cifar10_batches:')")
    if not _TFDS_NAME.fullmatch(prefix):
        raise ValueError(
            f"dataset {spec!r} is not a TFDS name (lower-case letters, "
            "digits and '_', optionally '/config'); a dataset must be one "
            f"of: {allowed}")
    return "tfds", spec


def dataset_spec(dataset):
    """How a run records `dataset`: its spec, or a name for in-memory data.

    A spec string is recorded as given (a run replays from it); a callable as
    `callable:<module>.<qualified name>`; arrays or an `ImageDataset` as
    `arrays:<digest>`, a SHA-1 of their contents, so that a run resumed with
    other arrays is refused. Neither of the last two replays from the
    command line.

    Args:
        dataset: the first argument of `load_dataset`.

    Returns:
        A str.
    """
    if isinstance(dataset, str):
        return dataset
    if callable(dataset):
        return _specs.describe_callable(dataset)
    if isinstance(dataset, ImageDataset):
        arrays = (dataset.train_images, dataset.train_labels,
                  dataset.test_images, dataset.test_labels)
    else:
        arrays = _unpack_arrays(dataset, "dataset")
    digest = hashlib.sha1()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return ARRAYS_PREFIX + digest.hexdigest()[:16]


def load_dataset(spec, *, data_dir=None, image_size=None, num_classes=None):
    """Loads the train and test split of a dataset into memory.

    Args:
        spec: the dataset: a spec string (a TFDS name, `"idx:PATH"`,
            `"idx-split:PATH"`, `"cifar10_batches:PATH"`, `"npz:PATH"`,
            `"MODULE:FUNCTION"`, `"path/to/file.py:FUNCTION"` or
            `"digits"`; see `rlr_keras.data`), or, in Python, an
            `ImageDataset`, a function as in the spec, or the arrays
            `((x_train, y_train), (x_test, y_test))` themselves.
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
            Fashion-MNIST, KMNIST) when `None`; for arrays, `npz:` files and
            functions, 1 + the largest label when `None` (at least 2); for
            the other specs it must be `None` or the dataset's own number.
            Defaults to `None`.

    Returns:
        An `ImageDataset`.

    Raises:
        ValueError: for a malformed spec, an unknown TFDS name, a TFDS
            dataset without `image`/`label` features or `train`/`test`
            splits, a malformed or inconsistent file, a label out of range
            (the message names the file and the label's index), a class too
            small to split, or a bad `image_size` or `num_classes`; for
            arrays: x and y of different lengths, an empty split,
            non-integer labels, NaN or infinite features.
        TypeError: for arrays of another type than uint8 images or float
            features, or a function that returns something else.
        FileNotFoundError: for a missing folder or file; the message names
            the file names that were expected.
        RuntimeError: if TFDS cannot download or prepare the dataset (e.g. no
            internet); the message names the offline alternatives.

    Example:

    >>> data = load_dataset("digits")
    >>> data.num_train, data.num_test, data.input_shape
    (1437, 360, (8, 8, 1))
    """
    if image_size is not None:
        image_size = _check_image_size(image_size)
    if num_classes is not None:
        num_classes = _validation.check_int("num_classes", num_classes, 2)
    name = dataset_spec(spec)
    if isinstance(spec, str):
        kind, argument = parse_dataset_spec(spec)
        if kind == "tfds":
            arrays = _load_tfds(argument, data_dir)
        elif kind == "function":
            arrays = _call_loader(
                _specs.load_function(argument, argument="dataset"), name,
                num_classes)
        elif kind in ("idx", "idx-split"):
            arrays = _PATH_FORMATS[kind](argument,
                                         num_classes or _IDX_CLASSES)
        elif kind == "digits":
            arrays = _load_digits()
        else:
            arrays = _PATH_FORMATS[kind](argument, num_classes)
    elif callable(spec):
        arrays = _call_loader(spec, name, num_classes)
    else:
        arrays = _from_memory(spec, "dataset (arrays)", num_classes)
    train_images, train_labels, test_images, test_labels, found = arrays
    if num_classes is not None and num_classes != found:
        raise ValueError(
            f"num_classes must be None or {found} for dataset {name!r} (its "
            f"number of classes), got {num_classes}")
    num_classes = found
    if image_size is not None:
        train_images = _resize(train_images, image_size)
        test_images = _resize(test_images, image_size)
    return ImageDataset(
        name=name,
        train_images=train_images,
        train_labels=train_labels.astype(np.int64),
        test_images=test_images,
        test_labels=test_labels.astype(np.int64),
        num_classes=int(num_classes),
    )


# User data: arrays, npz files, functions. One set of checks for all three.


def _unpack_arrays(value, source):
    """`((x_train, y_train), (x_test, y_test))` as four arrays, or TypeError."""
    try:
        (x_train, y_train), (x_test, y_test) = value
    except (TypeError, ValueError):
        raise TypeError(
            f"{source} must give ((x_train, y_train), (x_test, y_test)) "
            f"NumPy arrays or an ImageDataset, got {type(value).__name__}"
        ) from None
    return tuple(np.asarray(a) for a in (x_train, y_train, x_test, y_test))


def _from_memory(value, source, num_classes):
    """Checked arrays of an `ImageDataset` or of the arrays tuple."""
    if isinstance(value, ImageDataset):
        if num_classes is None:
            num_classes = value.num_classes
        arrays = (value.train_images, value.train_labels, value.test_images,
                  value.test_labels)
    else:
        arrays = _unpack_arrays(value, source)
    return check_arrays(*arrays, num_classes=num_classes, source=source)


def _call_loader(function, name, num_classes):
    return _from_memory(function(), f"dataset={name!r}", num_classes)


def _load_npz(path, num_classes):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"dataset 'npz:{path}': no such file; expected a .npz file with "
            f"the arrays {', '.join(NPZ_KEYS)}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise ValueError(
                    f"dataset 'npz:{path}' lacks {', '.join(missing)}; it "
                    f"has {', '.join(archive.files) or 'no arrays'}, "
                    f"expected {', '.join(NPZ_KEYS)}")
            arrays = tuple(archive[key] for key in NPZ_KEYS)
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"dataset 'npz:{path}' is not a readable .npz file "
                         f"({type(error).__name__}: {error})") from None
    return check_arrays(*arrays, num_classes=num_classes,
                        source=f"dataset='npz:{path}'")


def check_arrays(x_train, y_train, x_test, y_test, *, num_classes=None,
                 source="dataset"):
    """Checks user arrays; returns them as the loaders do.

    Args:
        x_train, y_train, x_test, y_test: array-likes. x: uint8 images or
            float features, (N, ...) with the same example shape in both
            splits; y: N integer labels, shape (N,) or (N, 1).
        num_classes: int or None; None: 1 + the largest label (at least 2).
        source: str, named in every error.

    Returns:
        `(x_train, y_train, x_test, y_test, num_classes)`: float features as
        float32, labels as int64 of shape (N,).

    Raises:
        TypeError: for features other than uint8 or float, or non-numeric
            labels.
        ValueError: for x and y of different lengths, an empty split, a
            rank-1 x, different example shapes, labels that are not whole
            numbers or lie outside [0, num_classes), NaN or inf features.
    """
    checked = []
    for split, x, y in (("train", x_train, y_train),
                        ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise TypeError(
                f"{source}: x_{split} must be uint8 images (scaled to "
                f"[0, 1]) or float features (used as they are), got dtype "
                f"{x.dtype}")
        if x.ndim < 2:
            raise ValueError(
                f"{source}: x_{split} must have shape (N, ...) with at least "
                f"one feature per example, got shape {x.shape}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]  # keras.datasets' (N, 1) labels.
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"{source}: x_{split} holds {len(x)} examples but y_{split} "
                f"has shape {y.shape}; expected ({len(x)},) labels")
        if len(x) == 0:
            raise ValueError(f"{source}: the {split} split is empty")
        if np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32, copy=False)
            bad = ~np.isfinite(x)
            if bad.any():
                index = tuple(int(i) for i in np.unravel_index(
                    int(np.argmax(bad)), x.shape))
                raise ValueError(
                    f"{source}: x_{split} holds {int(bad.sum())} NaN or "
                    f"infinite values (the first at index {index}); "
                    "features must be finite")
        if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer)
                                   or np.issubdtype(y.dtype, np.floating)):
            raise TypeError(f"{source}: y_{split} must hold integer labels, "
                            f"got dtype {y.dtype}")
        if np.issubdtype(y.dtype, np.floating):
            whole = np.isfinite(y) & (y == np.round(y))
            if not whole.all():
                index = int(np.argmin(whole))
                raise ValueError(
                    f"{source}: y_{split} must hold integer labels, got "
                    f"{y[index].item()!r} at index {index}")
        checked.append((x, y.astype(np.int64)))
    (x_train, y_train), (x_test, y_test) = checked
    if x_train.dtype != x_test.dtype or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{source}: x_train ({x_train.dtype}, examples of shape "
            f"{x_train.shape[1:]}) and x_test ({x_test.dtype}, "
            f"{x_test.shape[1:]}) must have the same type and example shape")
    if num_classes is None:
        num_classes = max(2, int(max(y_train.max(), y_test.max())) + 1)
    for split, y in (("train", y_train), ("test", y_test)):
        _readers.check_labels(y, num_classes, f"{source} y_{split}")
    return x_train, y_train, x_test, y_test, num_classes


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
    images = read_idx(images_path, expected_magic=_readers.IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=_readers.IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"IDX files disagree: {images_path} holds {images.shape[0]} "
            f"images but {labels_path} holds {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError(f"IDX file {images_path} holds no images")
    _readers.check_labels(labels, num_classes, f"file {labels_path}",
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



def _load_cifar10_batches(folder):
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"CIFAR-10 batches folder {folder} does not exist; expected a "
            "folder with data_batch_1 ... data_batch_5 and test_batch")
    nested = os.path.join(folder, "cifar-10-batches-py")
    if (_cifar_file(folder, _readers.CIFAR_TEST_FILE) is None
            and os.path.isdir(nested)):
        folder = nested
    paths = []
    for name in _readers.CIFAR_TRAIN_FILES + (_readers.CIFAR_TEST_FILE,):
        path = _cifar_file(folder, name)
        if path is None:
            raise FileNotFoundError(
                f"CIFAR-10 batch file {os.path.join(folder, name)} (or "
                f"{name}.xz) does not exist; a 'cifar10_batches:' folder "
                "needs data_batch_1 ... data_batch_5 and test_batch (the "
                "python version), each optionally .xz")
        paths.append(path)
    batches = []
    for index, path in enumerate(paths):
        batch = read_cifar10_batch(path)
        if not len(batch[0]):  # An empty split fails later, far from here.
            split = "test" if index == len(paths) - 1 else "train"
            raise ValueError(
                f"CIFAR-10 batch file {path} ({split} split) holds 0 images; "
                "each batch file needs at least one")
        batches.append(batch)
    train, (test_images, test_labels) = batches[:-1], batches[-1]
    return (np.concatenate([b[0] for b in train]),
            np.concatenate([b[1] for b in train]),
            test_images, test_labels, _readers.CIFAR_CLASSES)


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



def _check_image_size(image_size):
    return _validation.check_positive_ints(
        "image_size", image_size, 2, "(height, width)", none_allowed=True)


def _physical_memory():
    """The machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _check_fits_in_memory(images, size):
    """Refuses a resize whose float32 work arrays exceed the memory.

    At the peak the resize holds about three float32 copies of the result;
    without this check a size such as (100000, 100000) fails with a
    MemoryError (or the OOM killer) minutes later.
    """
    memory = _physical_memory()
    needed = 3 * 4 * len(images) * size[0] * size[1] * int(
        np.prod(images.shape[3:]))
    if memory is not None and needed > memory:
        raise ValueError(
            f"image_size={size[0]},{size[1]} cannot fit: resizing "
            f"{len(images)} images needs about {needed / 2**30:.3g} GiB, "
            f"more than this machine's {memory / 2**30:.3g} GiB of memory; "
            "use a smaller image_size")


def _resize(images, size):
    """Bilinear resize of (N, H, W, C) images, rounded back to uint8.

    Half-pixel centers without antialiasing, the `tf.image.resize(...,
    "bilinear")` convention, in NumPy so that it needs no backend.
    """
    _check_fits_in_memory(images, size)
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


# The path formats: `PREFIX:PATH` -> loader(path, num_classes) returning
# (train_x, train_y, test_x, test_y, num_classes). A new format is one loader
# here and one line of DATASET_SPEC_FORMS.
_PATH_FORMATS = {
    "idx": _load_idx,
    "idx-split": _load_idx_split,
    "cifar10_batches": lambda folder, num_classes: _load_cifar10_batches(
        folder),
    "npz": _load_npz,
}
