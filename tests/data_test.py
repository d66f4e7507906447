"""Tests for dataset loading and the input pipelines, on every backend.

Every file read here is written by the test itself (IDX files, CIFAR-10
pickles); TFDS runs under `tfds.testing.mock_data` (TensorFlow backend only).
"""

import collections
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from _helpers import fake_images
from _helpers import write_cifar_folder
from _helpers import write_idx
from _helpers import write_idx_folder
from rlr_keras import data
from rlr_keras.data import _formats as data_formats
from rlr_keras.data import _pipeline as data_pipeline

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# IDX.


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_round_trips_images_and_labels(tmp_path, gzipped):
    images = fake_images(7)
    labels = np.array([3, 1, 4, 1, 5, 9, 2], np.uint8)
    write_idx(tmp_path / "images", images, gzipped=gzipped)
    write_idx(tmp_path / "labels", labels, gzipped=gzipped)
    got = data.read_idx(str(tmp_path / "images"), expected_magic=2051)
    np.testing.assert_array_equal(got, images)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(
        data.read_idx(str(tmp_path / "labels"), expected_magic=2049), labels)


def test_read_idx_reads_big_endian_wider_types(tmp_path):
    values = np.array([[1, -2], [300, 70000]], ">i4")
    raw = struct.pack(">I", 0x0C02) + struct.pack(">II", 2, 2)
    (tmp_path / "ints").write_bytes(raw + values.tobytes())
    got = data.read_idx(str(tmp_path / "ints"))
    np.testing.assert_array_equal(got, values.astype(np.int32))


def test_read_idx_truncated_file_names_the_file(tmp_path):
    raw = write_idx(tmp_path / "full", fake_images(4))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(raw[:-5])
    with pytest.raises(ValueError,
                       match=r"train-images-idx3-ubyte is truncated.*"
                             r"\(4, 5, 4\).*80 data bytes.*75"):
        data.read_idx(str(path))
    path.write_bytes(raw[:6])
    with pytest.raises(ValueError, match="truncated.*16-byte header"):
        data.read_idx(str(path))


def test_read_idx_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(100) % 10, gzipped=True)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="labels.gz is truncated or corrupt"):
        data.read_idx(str(path))


def test_read_idx_too_long_file_is_rejected(tmp_path):
    path = tmp_path / "labels"
    raw = write_idx(path, np.arange(3))
    path.write_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match="labels is too long"):
        data.read_idx(str(path))


def test_read_idx_wrong_magic_names_file_and_expected_magic(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, np.arange(5) % 10)  # A labels file under an images name.
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte has magic "
                                         r"number 2049, expected 2051"):
        data.read_idx(str(path), expected_magic=2051)
    write_idx(path, fake_images(2), magic=0x12345678)
    with pytest.raises(ValueError, match="is not an IDX file"):
        data.read_idx(str(path))


def test_load_idx_folder_plain_and_gzip(tmp_path):
    arrays = write_idx_folder(tmp_path / "mnist")
    dataset = data.load_dataset(f"idx:{tmp_path / 'mnist'}")
    train_images, train_labels = arrays["train"]
    test_images, test_labels = arrays["t10k"]
    np.testing.assert_array_equal(dataset.train_images[..., 0], train_images)
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    np.testing.assert_array_equal(dataset.test_images[..., 0], test_images)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert dataset.input_shape == (5, 4, 1)
    assert dataset.num_classes == 10
    assert dataset.train_labels.dtype == np.int64
    assert (dataset.num_train, dataset.num_test) == (12, 6)


def test_load_idx_missing_file_names_expected_files(tmp_path):
    write_idx_folder(tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"train-labels-idx1-ubyte \(or "
                             r"train-labels-idx1-ubyte.gz\) does not exist"):
        data.load_dataset(f"idx:{tmp_path / 'mnist'}")
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        data.load_dataset(f"idx:{tmp_path / 'nowhere'}")


def test_load_idx_count_mismatch_names_both_files(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_folder(folder)
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(11) % 10)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds 12 "
                                         r"images but .*train-labels-idx1-"
                                         r"ubyte holds 11 labels"):
        data.load_dataset(f"idx:{folder}")


def test_idx_split_is_stratified_and_deterministic(tmp_path):
    folder = tmp_path / "t10k_only"
    images, labels = write_idx_folder(folder, num_test=50,
                                      with_train=False)["t10k"]
    first = data.load_dataset(f"idx-split:{folder}")
    second = data.load_dataset(f"idx-split:{folder}")
    assert (first.num_train, first.num_test) == (40, 10)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    # 5 examples of each class: exactly one of each lands in the test part.
    assert sorted(first.test_labels.tolist()) == list(range(10))
    # The split is a partition of the file's examples, images kept with labels.
    by_image = {img.tobytes(): lab for img, lab in zip(images, labels)}
    all_images = np.concatenate([first.train_images, first.test_images])
    all_labels = np.concatenate([first.train_labels, first.test_labels])
    assert len({img.tobytes() for img in all_images}) == 50
    for img, lab in zip(all_images[..., 0], all_labels):
        assert by_image[img.tobytes()] == lab


@pytest.mark.parametrize("spec", ["idx", "idx-split"])
def test_idx_label_out_of_range_names_file_and_index(tmp_path, spec):
    folder = tmp_path / "mnist"
    write_idx_folder(folder, num_test=60, gz_test=False)
    labels = np.arange(60) % 10
    labels[[7, 17]] = 200  # Twice: idx-split needs two of every class.
    write_idx(folder / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError,
                       match=r"t10k-labels-idx1-ubyte has label 200 at index "
                             r"7 .*\[0, 9\] \(10 classes"):
        data.load_dataset(f"{spec}:{folder}")
    # Told otherwise, the same file is a 201-class dataset.
    dataset = data.load_dataset(f"{spec}:{folder}", num_classes=201)
    assert dataset.num_classes == 201


def test_idx_num_classes_is_ten_unless_told_otherwise(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_folder(folder, num_train=6, num_test=6)  # Labels 0..5 only.
    assert data.load_dataset(f"idx:{folder}").num_classes == 10
    assert data.load_dataset(f"idx:{folder}", num_classes=6).num_classes == 6
    with pytest.raises(ValueError, match="num_classes must be None or 10"):
        data.load_dataset("digits", num_classes=26)


def test_corrupt_gzip_bytes_name_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(1000) % 10, gzipped=True)
    raw = bytearray(path.read_bytes())
    raw[20:40] = b"\xff" * 20  # Inside the deflate stream: a zlib.error.
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"gzip file .*t10k-labels-idx1-ubyte"
                                         r"\.gz is truncated or corrupt"):
        data.read_idx(str(path))


def test_idx_split_with_a_single_example_class_is_a_clear_error(tmp_path):
    folder = tmp_path / "t10k_only"
    write_idx_folder(folder, num_test=30, with_train=False)
    labels = np.arange(30) % 9  # Classes 0..8, 3 or 4 examples each...
    labels[0] = 9  # ...and class 9 once.
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels, gzipped=True)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: "
                                         r"class\(es\) \[9\] hold a single"):
        data.load_dataset(f"idx-split:{folder}")


# ---------------------------------------------------------------------------
# CIFAR-10 python batches.


def test_read_cifar10_batch_puts_rgb_planes_last(tmp_path):
    batch = write_cifar_folder(tmp_path)["data_batch_2"]
    images, labels = data.read_cifar10_batch(str(tmp_path / "data_batch_2"))
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, batch[b"labels"])
    raw = batch[b"data"]
    for n, row, col in [(0, 0, 0), (1, 5, 31), (2, 31, 7)]:
        for channel in range(3):
            assert images[n, row, col, channel] == raw[
                n, channel * 1024 + row * 32 + col]


def test_load_cifar10_batches_folder_and_parent_folder(tmp_path):
    batches = write_cifar_folder(tmp_path / "cifar-10-batches-py")
    for folder in [tmp_path / "cifar-10-batches-py", tmp_path]:
        dataset = data.load_dataset(f"cifar10_batches:{folder}")
        assert (dataset.num_train, dataset.num_test) == (15, 3)
        assert dataset.input_shape == (32, 32, 3)
        assert dataset.num_classes == 10
        expected = sum((batches[f"data_batch_{i}"][b"labels"]
                        for i in range(1, 6)), [])
        np.testing.assert_array_equal(dataset.train_labels, expected)
        np.testing.assert_array_equal(dataset.test_labels,
                                      batches["test_batch"][b"labels"])


def test_cifar10_batches_errors_name_the_file(tmp_path):
    write_cifar_folder(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"test_batch \(or test_batch.xz\) does not exist"):
        data.load_dataset(f"cifar10_batches:{tmp_path}")
    (tmp_path / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="test_batch could not be read"):
        data.load_dataset(f"cifar10_batches:{tmp_path}")
    for pixels, labels, message in [
            (100, [0, 1], r"test_batch has data .* shape \(2, 100\)"),
            (3072, [0, 10], r"test_batch has label 10 at index 1 .*expected "
                            r"labels in \[0, 9\]")]:
        with open(tmp_path / "test_batch", "wb") as f:
            pickle.dump({b"data": np.zeros((2, pixels), np.uint8),
                         b"labels": labels}, f)
        with pytest.raises(ValueError, match=message):
            data.load_dataset(f"cifar10_batches:{tmp_path}")


@pytest.mark.backend_independent
def test_cifar10_batch_with_no_images_names_the_file_and_split(tmp_path):
    for name, split in [("test_batch", "test"), ("data_batch_3", "train")]:
        write_cifar_folder(tmp_path)
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": np.zeros((0, 3072), np.uint8),
                         b"labels": []}, f)
        with pytest.raises(ValueError, match=(
                re.escape(f"{tmp_path / name} ({split} split) holds 0 "
                          "images"))):
            data.load_dataset(f"cifar10_batches:{tmp_path}")


@pytest.mark.backend_independent
def test_resize_that_cannot_fit_in_memory_is_refused_up_front():
    with pytest.raises(ValueError, match=r"image_size=100000,100000 cannot "
                       r"fit: resizing 1437 images needs about .* GiB"):
        data.load_dataset("digits", image_size=(100000, 100000))


def test_cifar10_batches_read_xz_files_like_plain_ones(tmp_path):
    batches = write_cifar_folder(tmp_path / "xz", xz=True)
    write_cifar_folder(tmp_path / "plain")
    from_xz = data.load_dataset(f"cifar10_batches:{tmp_path / 'xz'}")
    plain = data.load_dataset(f"cifar10_batches:{tmp_path / 'plain'}")
    np.testing.assert_array_equal(from_xz.train_images, plain.train_images)
    np.testing.assert_array_equal(from_xz.test_labels,
                                  batches["test_batch"][b"labels"])
    (tmp_path / "xz" / "data_batch_3.xz").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3 \(or "
                                                r"data_batch_3.xz\)"):
        data.load_dataset(f"cifar10_batches:{tmp_path / 'xz'}")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_batch_refuses_pickles_that_run_code(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _RunsCode(), b"labels": [0]}))
    with pytest.raises(ValueError, match=r"could not be read .*"
                                         r"system is not allowed"):
        data.read_cifar10_batch(str(path))


# ---------------------------------------------------------------------------
# Digits.


def test_digits_split_is_deterministic_stratified_and_complete():
    from sklearn.datasets import load_digits

    first = data.load_dataset("digits")
    second = data.load_dataset("digits")
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    assert (first.num_train, first.num_test) == (1437, 360)
    assert first.input_shape == (8, 8, 1) and first.num_classes == 10
    assert first.train_images.dtype == np.uint8
    assert first.train_images.max() == 255

    reference = load_digits()
    counts = collections.Counter(reference.target.tolist())
    test_counts = collections.Counter(first.test_labels.tolist())
    for label, count in counts.items():
        assert abs(test_counts[label] - data.SPLIT_TEST_FRACTION * count) <= 1
    # Together the two parts are the 1,797 images, pixel values 0..16 -> 0..255.
    expected = np.round(reference.images * 255 / 16).astype(np.uint8)
    got = np.concatenate([first.train_images, first.test_images])
    assert sorted(map(bytes, got.reshape(1797, -1))) == sorted(
        map(bytes, expected.reshape(1797, -1)))


def test_resize_is_bilinear_with_half_pixel_centers():
    images = np.array([0, 100, 200, 250], np.uint8).reshape(1, 1, 4, 1)
    # Output pixel j samples input x = (j + 0.5) / 2 - 0.5, clamped to
    # [0, 3]; 212.5 and 237.5 round half to even.
    np.testing.assert_array_equal(
        data_formats._resize(images, (1, 8))[0, 0, :, 0],
        [0, 25, 75, 125, 175, 212, 238, 250])
    constant = np.full((2, 3, 5, 2), 7, np.uint8)
    np.testing.assert_array_equal(data_formats._resize(constant, (6, 4)),
                                  np.full((2, 6, 4, 2), 7, np.uint8))


@pytest.mark.tensorflow_only
def test_resize_is_within_one_of_tensorflow():
    import tensorflow as tf

    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3),
                                               dtype=np.uint8)
    for size in [(28, 28), (5, 3), (16, 9)]:
        expected = np.round(tf.image.resize(images, size).numpy())
        # Rounding ties may break the other way (float32 order of terms).
        assert np.abs(data_formats._resize(images, size) - expected).max() <= 1


def test_image_size_resizes_digits_for_the_cnn():
    dataset = data.load_dataset("digits", image_size=(28, 28))
    assert dataset.input_shape == (28, 28, 1)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.num_train == 1437
    with pytest.raises(ValueError, match="image_size must be None or 2"):
        data.load_dataset("digits", image_size=(28,))


# ---------------------------------------------------------------------------
# TFDS.


@pytest.mark.tensorflow_only
def test_tfds_name_loads_train_and_test_under_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        dataset = data.load_dataset("mnist", data_dir=str(tmp_path))
    assert dataset.input_shape == (28, 28, 1)
    assert (dataset.num_train, dataset.num_test) == (6, 6)
    assert dataset.num_classes == 10
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64
    assert set(dataset.train_labels.tolist()) <= set(range(10))


@pytest.mark.tensorflow_only
def test_tfds_without_internet_names_the_offline_alternatives(
        tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def no_internet(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        no_internet)
    with pytest.raises(RuntimeError) as info:
        data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "'fashion_mnist'" in message and "Failed to resolve" in message
    for offline in ["'idx:PATH'", "train-images-idx3-ubyte",
                    "'cifar10_batches:PATH'", "'digits'"]:
        assert offline in message
    assert isinstance(info.value.__cause__, ConnectionError)


@pytest.mark.tensorflow_only
def test_unknown_tfds_name_is_a_value_error():
    with pytest.raises(ValueError, match="'no_such_set' is not a TFDS"):
        data.load_dataset("no_such_set")


@pytest.mark.parametrize("spec, expected", [
    ("mnist", ("tfds", "mnist")),
    ("mnist:3.0.1", ("tfds", "mnist:3.0.1")),
    ("idx:/data/mnist", ("idx", "/data/mnist")),
    ("idx-split:rel/path", ("idx-split", "rel/path")),
    ("cifar10_batches:/d", ("cifar10_batches", "/d")),
    ("digits", ("digits", None)),
    ("mnist:3.0.1", ("tfds", "mnist:3.0.1")),
    ("cifar10:3.*.*", ("tfds", "cifar10:3.*.*")),
])
def test_parse_dataset_spec(spec, expected):
    assert data.parse_dataset_spec(spec) == expected


@pytest.mark.parametrize("spec, match", [
    ("", "dataset must be one of"), (None, "dataset must be one of"),
    ("idx", "needs a folder: 'idx:PATH'"), ("idx:", "needs a folder"),
    ("/data/mnist", "needs a prefix"),
    ("Bad Name", r"'Bad Name' is not a TFDS name"),
    ("idxx:/data/mnist", r"unknown prefix 'idxx:'.*idx:, idx-split:, "
                         r"cifar10_batches:.*must be one of"),
    ("mnist:/data", "unknown prefix 'mnist:'"),
])
def test_parse_dataset_spec_rejects_malformed_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        data.parse_dataset_spec(spec)


# ---------------------------------------------------------------------------
# Pipelines: NumPy batches on every backend.


def small_arrays(count=10):
    images = np.random.default_rng(3).integers(0, 256, (count, 2, 3, 1),
                                               dtype=np.uint8)
    return images, np.arange(count, dtype=np.int64)


def epochs_of(batches):
    labels = [batch[1].tolist() for batch in batches]
    steps = batches.steps_per_epoch
    return [sum(labels[i:i + steps], []) for i in range(0, len(labels), steps)]


def test_train_pipeline_shuffles_every_epoch_into_a_permutation():
    images, labels = small_arrays(10)
    batches = data.train_pipeline(images, labels, batch_size=4, seed=1,
                                  epochs=4)
    assert [len(batch[1]) for batch in batches] == [4, 4, 2] * 4
    assert batches.steps_per_epoch == data.steps_per_epoch(10, 4) == 3
    epochs = epochs_of(batches)
    assert len(epochs) == 4
    for order in epochs:
        assert sorted(order) == list(range(10))
    assert len({tuple(order) for order in epochs}) == 4


def test_train_pipeline_normalizes_to_unit_interval():
    images, labels = small_arrays(10)
    batch_images, batch_labels = data.train_pipeline(
        images, labels, batch_size=10, seed=0, epochs=1)[0]
    assert batch_images.dtype == np.float32 and batch_labels.dtype == np.int32
    expected = images[batch_labels].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(batch_images, expected)


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    images, labels = small_arrays(10)
    first = [data.epoch_order(10, seed=5, epoch=e).tolist() for e in range(3)]
    np.random.seed(123)  # No global state enters it.
    keras.utils.set_random_seed(7)
    assert [data.epoch_order(10, seed=5, epoch=e).tolist()
            for e in range(3)] == first
    assert data.epoch_order(10, seed=6, epoch=0).tolist() != first[0]
    assert len({tuple(order) for order in first}) == 3
    # The pipeline visits each epoch in exactly that order.
    batches = data.train_pipeline(images, labels, batch_size=3, seed=5,
                                  epochs=3)
    assert epochs_of(batches) == first


def test_resumed_pipeline_sees_what_an_uninterrupted_one_sees():
    images, labels = small_arrays(10)

    def epochs(initial_epoch):
        return epochs_of(data.train_pipeline(
            images, labels, batch_size=3, seed=5, epochs=5,
            initial_epoch=initial_epoch))

    assert epochs(3) == epochs(0)[3:]


class _LabelRecorder(keras.metrics.Metric):
    """Records the labels of every batch the model is trained on (eagerly)."""

    def __init__(self):
        super().__init__(name="labels_seen")
        self.seen = []

    def update_state(self, y_true, y_pred, sample_weight=None):
        try:
            self.seen.append(keras.ops.convert_to_numpy(y_true).tolist())
        except Exception:  # pylint: disable=broad-except
            pass  # A symbolic value (JAX traces the step once for shapes).

    def result(self):
        return 0.0

    def reset_state(self):
        pass


def _fit_and_record(batches, *, epochs, initial_epoch):
    model = keras.Sequential([keras.Input((2, 3, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    recorder = _LabelRecorder()
    model.compile(optimizer="sgd", run_eagerly=True, metrics=[recorder],
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    model.fit(getattr(batches, "dataset", batches), epochs=epochs,
              initial_epoch=initial_epoch,
              steps_per_epoch=batches.steps_per_epoch, verbose=0,
              shuffle=False)
    steps = batches.steps_per_epoch
    return [sum(recorder.seen[i:i + steps], [])
            for i in range(0, len(recorder.seen), steps)]


def test_keras_fit_trains_on_each_epoch_order_and_resumes_in_place():
    images, labels = small_arrays(10)
    orders = [data.epoch_order(10, seed=2, epoch=e).tolist()
              for e in range(3)]
    full = _fit_and_record(data.train_pipeline(
        images, labels, batch_size=4, seed=2, epochs=3),
        epochs=3, initial_epoch=0)
    assert full == orders
    resumed = _fit_and_record(data.train_pipeline(
        images, labels, batch_size=4, seed=2, epochs=3, initial_epoch=1),
        epochs=3, initial_epoch=1)
    assert resumed == orders[1:]


@pytest.mark.parametrize("kwargs", [
    dict(batch_size=4, seed=2, epochs=3),
    dict(batch_size=4, seed=2, epochs=5, initial_epoch=3),
    dict(batch_size=3, seed=7, epochs=2, drop_remainder=True),
    dict(batch_size=4, seed=1, epochs=2, pad_to_multiple=3),
    dict(batch_size=5, seed=1, epochs=1, pad_to_multiple=4),
    dict(batch_size=1, seed=0, epochs=1, pad_to_multiple=2),
    dict(batch_size=4),  # Unshuffled: evaluation.
    dict(batch_size=4, pad_to_multiple=3),
])
def test_tf_dataset_yields_the_same_batches_in_the_same_order(kwargs):
    pytest.importorskip("tensorflow")
    images, labels = small_arrays(10)
    batches = data.ArrayBatches(images, labels, **kwargs)
    expected = [batches[i] for i in range(len(batches))]
    got = [tuple(part.numpy() for part in batch)
           for batch in batches.as_tf_dataset()]
    assert len(got) == len(expected) == batches.num_batches
    for mine, theirs in zip(got, expected):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    assert int(batches.as_tf_dataset().cardinality()) == batches.num_batches


@pytest.mark.parametrize("seed", [None, 4])
def test_tf_dataset_normalizes_every_uint8_value_as_numpy_does(seed):
    # uint8 batches are normalized inside tf.data: bit-identical to
    # normalize_images for each of the 256 values; float images (features)
    # pass unchanged in both.
    pytest.importorskip("tensorflow")
    images = np.arange(256, dtype=np.uint8).reshape(16, 4, 4, 1)
    labels = np.arange(16) % 10
    floats = data.normalize_images(images) * 255.0
    for given, values in ((images, data.normalize_images(np.arange(256))),
                          (floats, np.sort(floats.ravel()))):
        batches = data.ArrayBatches(given, labels, batch_size=5, seed=seed)
        got = np.concatenate([batch[0].numpy()
                              for batch in batches.as_tf_dataset()])
        expected = np.concatenate([batches[i][0]
                                   for i in range(len(batches))])
        assert got.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32),
                                      expected.view(np.uint32))
        assert sorted(expected.ravel().tolist()) == values.tolist()


@pytest.mark.tensorflow_only
def test_keras_fit_on_the_tf_dataset_trains_on_each_epoch_order():
    images, labels = small_arrays(10)
    orders = [data.epoch_order(10, seed=2, epoch=e).tolist()
              for e in range(3)]

    class Batches:  # What `_fit_and_record` needs of the pipeline.
        def __init__(self, batches):
            self.dataset = batches.as_tf_dataset()
            self.steps_per_epoch = batches.steps_per_epoch

    for initial_epoch in (0, 1):
        pipeline = Batches(data.train_pipeline(
            images, labels, batch_size=4, seed=2, epochs=3,
            initial_epoch=initial_epoch))
        assert _fit_and_record(pipeline, epochs=3,
                               initial_epoch=initial_epoch) == (
                                   orders[initial_epoch:])


def test_train_pipeline_normalizes_once(monkeypatch):
    calls = []
    normalize = data.normalize_images

    def counting(images):
        calls.append(len(images))
        return normalize(images)

    monkeypatch.setattr(data_pipeline, "normalize_images", counting)
    images, labels = small_arrays(10)
    for _ in data.train_pipeline(images, labels, batch_size=4, seed=0,
                                 epochs=3):
        pass
    assert calls == [10]  # The whole array once, not once per batch.


def test_train_pipeline_drop_remainder():
    images, labels = small_arrays(10)
    batches = data.train_pipeline(images, labels, batch_size=4, seed=0,
                                  epochs=2, drop_remainder=True)
    assert [len(b[1]) for b in batches] == [4, 4, 4, 4]
    assert data.steps_per_epoch(10, 4, drop_remainder=True) == 2


def test_eval_pipeline_is_unshuffled_and_repeatable():
    images, labels = small_arrays(7)
    batches = data.eval_pipeline(images, labels, batch_size=3)
    first = [b[1].tolist() for b in batches]
    assert first == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b[1].tolist() for b in batches] == first
    np.testing.assert_array_equal(
        batches[0][0], images[:3].astype(np.float32) / np.float32(255))


def test_padded_batches_split_evenly_with_zero_weight_padding():
    images, labels = small_arrays(7)
    batches = data.eval_pipeline(images, labels, batch_size=4,
                                 pad_to_multiple=2)
    (_, y0, w0), (x1, y1, w1) = batches[0], batches[1]
    assert y0.tolist() == [0, 1, 2, 3] and w0.tolist() == [1, 1, 1, 1]
    # 3 left: padded to 4 with a copy of the batch's first example.
    assert y1.tolist() == [4, 5, 6, 4] and w1.tolist() == [1, 1, 1, 0]
    np.testing.assert_array_equal(x1[3], x1[0])
    shuffled = data.train_pipeline(images, labels, batch_size=4, seed=1,
                                   epochs=1, pad_to_multiple=4)
    order = data.epoch_order(7, seed=1, epoch=0).tolist()
    assert shuffled[1][1].tolist() == order[4:] + order[4:5]
    assert shuffled[1][2].tolist() == [1, 1, 1, 0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be an integer in \\[1, inf\\]"),
    (dict(epochs=0), "epochs must be an integer in \\[1, inf\\], got 0"),
    (dict(initial_epoch=3), "initial_epoch must be an integer in \\[0, 2\\]"),
    (dict(drop_remainder=1), "drop_remainder must be a bool"),
    (dict(batch_size=20, drop_remainder=True), "batch_size must be <= the 10"),
    (dict(pad_to_multiple=0), "pad_to_multiple must be an integer"),
])
def test_train_pipeline_rejects_bad_arguments(kwargs, match):
    images, labels = small_arrays(10)
    arguments = dict(batch_size=4, seed=0, epochs=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        data.train_pipeline(images, labels, **arguments)


def test_train_pipeline_needs_a_seed():
    images, labels = small_arrays(10)
    with pytest.raises(TypeError, match=r"seed must be an integer in "
                       r"\[0, 4294967295\], got None"):
        data.train_pipeline(images, labels, batch_size=4, seed=None,
                            epochs=1)


def test_pipelines_reject_mismatched_arrays():
    images, labels = small_arrays(10)
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        data.eval_pipeline(images, labels[:9], batch_size=2)
    with pytest.raises(ValueError, match="images must have shape"):
        data.eval_pipeline(images[:, 0, 0, 0], labels, batch_size=2)


def _run_without(blocked, code):
    """Runs `code` in a fresh process in which importing `blocked` fails."""
    backend = keras.backend.backend()
    if backend == "tensorflow":  # Keras itself would need TensorFlow.
        backend = "jax"
    program = "import sys\n" + "".join(
        f"sys.modules[{name!r}] = None\n" for name in blocked) + code
    return subprocess.run(
        [sys.executable, "-c", program], cwd=_REPO, capture_output=True,
        text=True, timeout=120, check=False,
        env=dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=_REPO))


def test_offline_data_and_pipelines_need_no_tensorflow(tmp_path):
    write_idx_folder(tmp_path / "mnist")
    completed = _run_without(["tensorflow", "tensorflow_datasets"],
                             textwrap.dedent(f"""
        from rlr_keras import data
        digits = data.load_dataset("digits", image_size=(4, 4))
        mnist = data.load_dataset("idx:{tmp_path / 'mnist'}")
        batches = data.train_pipeline(digits.train_images,
                                      digits.train_labels, batch_size=64,
                                      seed=0, epochs=2)
        print(len(batches), mnist.num_train, "tensorflow" in sys.modules
              and sys.modules["tensorflow"] is not None)
        try:
            data.load_dataset("mnist")
        except ImportError as error:
            print(error)
    """))
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[0] == "46 12 False"
    assert 'pip install "rlr_keras[tensorflow]"' in lines[1]


# ---------------------------------------------------------------------------
# Probe subset.


def test_probe_subset_first_examples_or_seeded_selection():
    images, labels = small_arrays(10)
    probe_images, probe_labels = data.probe_subset(images, labels, 4)
    assert probe_labels.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(
        probe_images, images[:4].astype(np.float32) / np.float32(255))
    assert probe_images.dtype == np.float32

    first = data.probe_subset(images, labels, 4, seed=3)[1]
    assert data.probe_subset(images, labels, 4, seed=3)[1].tolist() == (
        first.tolist())
    assert len(set(first.tolist())) == 4
    assert first.tolist() == sorted(first.tolist())
    others = {tuple(data.probe_subset(images, labels, 4, seed=s)[1])
              for s in range(10)}
    assert len(others) > 1
    with pytest.raises(ValueError, match=r"size must be an integer in "
                                         r"\[1, 10\], got 11"):
        data.probe_subset(images, labels, 11)
