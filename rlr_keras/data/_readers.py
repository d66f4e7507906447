"""Readers of the dataset files: IDX (MNIST format) and CIFAR-10 batches.

Each reader names the file and what was expected in every error; none
falls back to other data.
"""

import gzip
import io
import lzma
import math
import os
import pickle
import struct
import zlib

import numpy as np

IDX_IMAGES_MAGIC = 2051  # Unsigned bytes, 3 dimensions.
IDX_LABELS_MAGIC = 2049  # Unsigned bytes, 1 dimension.
_IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_CLASSES = 10
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
    check_labels(labels, CIFAR_CLASSES, f"file {path}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


class _CifarUnpickler(pickle.Unpickler):
    """Loads only NumPy arrays, lists and dicts: a pickle can run any code."""

    def find_class(self, module, name):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)



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
    return {IDX_IMAGES_MAGIC: "IDX unsigned-byte images, 3 dimensions",
            IDX_LABELS_MAGIC: "IDX unsigned-byte labels, 1 dimension"}.get(
                magic, "IDX")



def check_labels(labels, num_classes, source, hint=None):
    """Raises ValueError naming the first label outside [0, num_classes)."""
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        index = int(outside[0])
        raise ValueError(
            f"{source} has label {labels[index]} at index {index} "
            f"({outside.size} labels outside the range), expected labels in "
            f"[0, {num_classes - 1}] ({num_classes} classes"
            + (f": {hint})" if hint else ")"))


