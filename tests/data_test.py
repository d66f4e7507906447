"""Tests for dataset loading and the tf.data pipelines.

Every file read here is written by the test itself (IDX files, CIFAR-10
pickles); TFDS runs under `tfds.testing.mock_data`.
"""

import collections
import gzip
import pickle
import struct

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rlr_keras import data


# ---------------------------------------------------------------------------
# Independent writers of the file formats.


def write_idx(path, array, *, gzipped=False, magic=None):
    """Writes `array` (uint8) in the IDX format described by LeCun et al."""
    array = np.asarray(array, np.uint8)
    if magic is None:
        magic = 0x0800 + array.ndim
    raw = struct.pack(">I", magic)
    raw += b"".join(struct.pack(">I", d) for d in array.shape)
    raw += array.tobytes()
    opener = gzip.open if gzipped else open
    with opener(path, "wb") as f:
        f.write(raw)
    return raw


def fake_images(count, height=5, width=4, seed=0):
    return np.random.default_rng(seed).integers(
        0, 256, (count, height, width), dtype=np.uint8)


def write_idx_folder(folder, *, num_train=12, num_test=6, gz_train=False,
                     gz_test=True, with_train=True):
    folder.mkdir(exist_ok=True)
    arrays = {}
    splits = [("t10k", num_test, gz_test)]
    if with_train:
        splits.insert(0, ("train", num_train, gz_train))
    for prefix, count, gzipped in splits:
        images = fake_images(count, seed=count)
        labels = np.arange(count) % 10
        suffix = ".gz" if gzipped else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images,
                  gzipped=gzipped)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels,
                  gzipped=gzipped)
        arrays[prefix] = (images, labels)
    return arrays


def write_cifar_folder(folder, per_batch=3):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        rng = np.random.default_rng(index)
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        batches[name] = batch
    return batches


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
    with pytest.raises(FileNotFoundError, match="test_batch does not exist"):
        data.load_dataset(f"cifar10_batches:{tmp_path}")
    (tmp_path / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="test_batch could not be read"):
        data.load_dataset(f"cifar10_batches:{tmp_path}")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8),
                     b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"test_batch has data .* shape "
                                         r"\(2, 100\)"):
        data.load_dataset(f"cifar10_batches:{tmp_path}")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8),
                     b"labels": [0, 10]}, f)
    with pytest.raises(ValueError, match=r"test_batch has labels in \[0, 10\]"):
        data.load_dataset(f"cifar10_batches:{tmp_path}")


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


def test_image_size_resizes_digits_for_the_cnn():
    dataset = data.load_dataset("digits", image_size=(28, 28))
    assert dataset.input_shape == (28, 28, 1)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.num_train == 1437
    with pytest.raises(ValueError, match="image_size must be None or 2"):
        data.load_dataset("digits", image_size=(28,))


# ---------------------------------------------------------------------------
# TFDS.


def test_tfds_name_loads_train_and_test_under_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        dataset = data.load_dataset("mnist", data_dir=str(tmp_path))
    assert dataset.input_shape == (28, 28, 1)
    assert (dataset.num_train, dataset.num_test) == (6, 6)
    assert dataset.num_classes == 10
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64
    assert set(dataset.train_labels.tolist()) <= set(range(10))


def test_tfds_without_internet_names_the_offline_alternatives(
        tmp_path, monkeypatch):
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
])
def test_parse_dataset_spec(spec, expected):
    assert data.parse_dataset_spec(spec) == expected


@pytest.mark.parametrize("spec, match", [
    ("", "dataset must be one of"), (None, "dataset must be one of"),
    ("idx", "needs a folder: 'idx:PATH'"), ("idx:", "needs a folder"),
    ("/data/mnist", "needs a prefix"),
])
def test_parse_dataset_spec_rejects_malformed_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        data.parse_dataset_spec(spec)


# ---------------------------------------------------------------------------
# Pipelines.


def small_arrays(count=10):
    images = np.random.default_rng(3).integers(0, 256, (count, 2, 3, 1),
                                               dtype=np.uint8)
    return images, np.arange(count, dtype=np.int64)


def epochs_of(dataset, steps):
    labels = [batch[1].numpy().tolist() for batch in dataset]
    return [sum(labels[i:i + steps], []) for i in range(0, len(labels), steps)]


def test_train_pipeline_shuffles_every_epoch_into_a_permutation():
    images, labels = small_arrays(10)
    dataset = data.train_pipeline(images, labels, batch_size=4, seed=1,
                                  epochs=4)
    steps = data.steps_per_epoch(10, 4)
    batch_sizes = [int(batch[1].shape[0]) for batch in dataset]
    assert batch_sizes == [4, 4, 2] * 4 and steps == 3
    epochs = epochs_of(dataset, steps)
    assert len(epochs) == 4
    for order in epochs:
        assert sorted(order) == list(range(10))
    assert len({tuple(order) for order in epochs}) == 4


def test_train_pipeline_normalizes_to_unit_interval():
    images, labels = small_arrays(10)
    dataset = data.train_pipeline(images, labels, batch_size=10, seed=0,
                                  epochs=1)
    batch_images, batch_labels = next(iter(dataset))
    assert batch_images.dtype == tf.float32
    expected = images[batch_labels.numpy()].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(batch_images.numpy(), expected)


def test_train_pipeline_is_a_function_of_seed_and_epoch():
    images, labels = small_arrays(10)

    def orders(seed, initial_epoch=0):
        return epochs_of(data.train_pipeline(
            images, labels, batch_size=3, seed=seed, epochs=5,
            initial_epoch=initial_epoch), data.steps_per_epoch(10, 3))

    full = orders(seed=5)
    assert orders(seed=5) == full
    assert orders(seed=6) != full
    # A run resumed at epoch 3 sees what an uninterrupted run sees.
    assert orders(seed=5, initial_epoch=3) == full[3:]


def test_train_pipeline_normalizes_once_then_caches(monkeypatch):
    calls = tf.Variable(0)
    normalize = data._normalize_example

    def counting(image, label):
        calls.assign_add(1)
        return normalize(image, label)

    monkeypatch.setattr(data, "_normalize_example", counting)
    images, labels = small_arrays(10)
    dataset = data.train_pipeline(images, labels, batch_size=4, seed=0,
                                  epochs=3)
    for _ in dataset:
        pass
    assert int(calls.numpy()) == 10  # Once per example, not once per epoch.


def test_train_pipeline_drop_remainder_and_small_buffer():
    images, labels = small_arrays(10)
    dataset = data.train_pipeline(images, labels, batch_size=4, seed=0,
                                  epochs=2, drop_remainder=True,
                                  shuffle_buffer=2)
    assert [int(b[1].shape[0]) for b in dataset] == [4, 4, 4, 4]
    assert data.steps_per_epoch(10, 4, drop_remainder=True) == 2


def test_eval_pipeline_is_unshuffled_and_repeatable():
    images, labels = small_arrays(7)
    dataset = data.eval_pipeline(images, labels, batch_size=3)
    first = [b[1].numpy().tolist() for b in dataset]
    assert first == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b[1].numpy().tolist() for b in dataset] == first
    batch_images = next(iter(dataset))[0].numpy()
    np.testing.assert_array_equal(
        batch_images, images[:3].astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be an integer in \\[1, inf\\]"),
    (dict(seed=None), "seed must be an integer"),
    (dict(epochs=0), "epochs must be an integer in \\[1, inf\\], got 0"),
    (dict(initial_epoch=3), "initial_epoch must be an integer in \\[0, 2\\]"),
    (dict(shuffle_buffer=0), "shuffle_buffer must be"),
    (dict(drop_remainder=1), "drop_remainder must be a bool"),
    (dict(batch_size=20, drop_remainder=True), "batch_size must be <= the 10"),
])
def test_train_pipeline_rejects_bad_arguments(kwargs, match):
    images, labels = small_arrays(10)
    arguments = dict(batch_size=4, seed=0, epochs=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        data.train_pipeline(images, labels, **arguments)


def test_pipelines_reject_mismatched_arrays():
    images, labels = small_arrays(10)
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        data.eval_pipeline(images, labels[:9], batch_size=2)
    with pytest.raises(ValueError, match="images must have shape"):
        data.eval_pipeline(images[..., 0], labels, batch_size=2)


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


def test_train_pipeline_builds_and_is_reproducible_with_a_global_seed():
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1)
    labels = np.arange(12)

    def epochs_order():
        tf.random.set_seed(5)
        ds = data.train_pipeline(images, labels, batch_size=12, seed=3,
                                 epochs=3)
        return [batch[1].numpy().tolist() for batch in ds]

    try:
        first, second = epochs_order(), epochs_order()
    finally:
        tf.random.set_seed(None)
    assert first == second
    assert all(sorted(order) == list(range(12)) for order in first)
    assert first[0] != first[1]
