"""Tests for the paper's models: sizes against closed forms, shapes, seeds."""

import keras
import numpy as np
import pytest

from rlr_keras import models


def dense_params(fan_in, units):
    return fan_in * units + units


def conv_params(channels_in, filters, kernel=3):
    return kernel * kernel * channels_in * filters + filters


def test_mlp_matches_paper_parameter_count_and_outputs_logits():
    model = models.build_model("mlp", (28, 28, 1), seed=0)
    # Appendix C.1: Linear(28^2, 100), Linear(100, 10).
    assert model.count_params() == dense_params(28 * 28, 100) + dense_params(
        100, 10) == 79_510
    logits = model(np.random.default_rng(0).random((3, 28, 28, 1), "float32"))
    assert tuple(logits.shape) == (3, 10)
    assert model.layers[-1].activation is keras.activations.linear
    assert model.get_layer("hidden").activation is keras.activations.relu


def test_cnn_matches_paper_parameter_count_and_feature_map():
    model = models.build_model("cnn", (28, 28, 1), seed=0)
    # Appendix C.2: five 3x3 convolutions, then Linear(128 * 3 * 3, 10).
    expected = (conv_params(1, 64) + conv_params(64, 64) + conv_params(64, 128)
                + 2 * conv_params(128, 128) + dense_params(128 * 3 * 3, 10))
    assert model.count_params() == expected == 418_122
    assert tuple(model.get_layer("flatten").output.shape) == (None, 3 * 3 * 128)
    assert tuple(model(np.zeros((2, 28, 28, 1), "float32")).shape) == (2, 10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.padding == "valid"
            assert layer.activation is keras.activations.relu
    assert not any(isinstance(layer, keras.layers.Dropout)
                   for layer in model.layers)


def test_cnn_smallest_input_is_20_pixels():
    model = models.build_model("cnn", (20, 20, 1))
    assert tuple(model.get_layer("flatten").output.shape) == (None, 128)
    for shape in [(19, 28, 1), (28, 19, 1), (8, 8, 1)]:
        with pytest.raises(ValueError, match="at least 20x20.*image_size"):
            models.build_model("cnn", shape)


def test_models_follow_num_classes_and_other_input_sizes():
    mlp = models.build_model("mlp", (8, 8, 1), num_classes=7)
    assert mlp.count_params() == dense_params(64, 100) + dense_params(100, 7)
    cnn = models.build_model("cnn", (32, 32, 3), num_classes=4)
    assert tuple(cnn(np.zeros((1, 32, 32, 3), "float32")).shape) == (1, 4)


def test_vgg16_without_weights_on_32x32_rgb():
    model = models.build_model("vgg16", (32, 32, 3), vgg_weights="none")
    base = keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(32, 32, 3))
    assert model.count_params() == base.count_params() + dense_params(512, 10)
    assert model.count_params() == 14_719_818
    assert tuple(model(np.zeros((2, 32, 32, 3), "float32")).shape) == (2, 10)
    assert isinstance(model.layers[1], models.VGG16Preprocessing)
    assert model.layers[-1].activation is keras.activations.linear


def test_vgg16_preprocessing_matches_caffe_reference():
    images = np.random.default_rng(1).random((2, 4, 4, 3)).astype("float32")
    # Keras' VGG16 "caffe" mode: to [0, 255], RGB -> BGR, minus ImageNet means.
    expected = images[..., ::-1] * 255.0 - np.array(
        [103.939, 116.779, 123.68], "float32")
    got = keras.ops.convert_to_numpy(models.VGG16Preprocessing()(images))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)
    got = models.VGG16Preprocessing(scale=1.0)(images * 255.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected,
                               rtol=1e-6, atol=1e-4)


def test_vgg16_preprocessing_config_serialization_and_saving(tmp_path):
    layer = models.VGG16Preprocessing(scale=2.0, name="pre")
    config = layer.get_config()
    assert config["scale"] == 2.0
    assert models.VGG16Preprocessing.from_config(config).scale == 2.0
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, models.VGG16Preprocessing)
    assert restored.scale == 2.0

    inputs = keras.Input((2, 2, 3))
    outputs = keras.layers.Dense(1)(models.VGG16Preprocessing()(inputs))
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(2).random((1, 2, 2, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)),
                               rtol=1e-6)


def test_vgg16_preprocessing_rejects_non_positive_scale():
    with pytest.raises(ValueError, match="scale.*got 0.0"):
        models.VGG16Preprocessing(scale=0.0)


@pytest.mark.parametrize("name, shape", [("mlp", (28, 28, 1)),
                                         ("cnn", (28, 28, 1))])
def test_same_seed_same_weights_and_different_seed_different(name, shape):
    first = models.build_model(name, shape, seed=7).get_weights()
    second = models.build_model(name, shape, seed=7).get_weights()
    other = models.build_model(name, shape, seed=8).get_weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    kernels = [w for w in first if w.ndim > 1]
    assert all(not np.array_equal(a, b) for a, b in zip(
        kernels, [w for w in other if w.ndim > 1]))
    if name == "cnn":  # conv4 and conv5 share a shape, not their values.
        assert not np.array_equal(kernels[3], kernels[4])


def test_vgg16_seed_covers_the_base():
    first = models.build_model("vgg16", (32, 32, 3), seed=3).get_weights()
    second = models.build_model("vgg16", (32, 32, 3), seed=3).get_weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_vgg16_loads_base_weights_from_a_local_file(tmp_path):
    base = keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(32, 32, 3))
    path = str(tmp_path / "vgg16_notop.weights.h5")
    base.save_weights(path)
    model = models.build_model("vgg16", (32, 32, 3), vgg_weights=path)
    for a, b in zip(model.get_layer("vgg16_base").get_weights(),
                    base.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_vgg16_bad_weights_file_names_the_file(tmp_path):
    path = tmp_path / "not_weights.h5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="not_weights.h5.*VGG16 no-top"):
        models.build_model("vgg16", (32, 32, 3), vgg_weights=str(path))
    missing = str(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5.*'none'"):
        models.build_model("vgg16", (32, 32, 3), vgg_weights=missing)


def test_vgg16_failed_download_names_the_file_and_alternatives(monkeypatch):
    calls = []
    real_vgg16 = keras.applications.VGG16

    def offline_vgg16(*args, **kwargs):
        calls.append(kwargs.get("weights"))
        if kwargs.get("weights") == "imagenet":
            raise Exception("URL fetch failure: [Errno -3] name resolution")
        return real_vgg16(*args, **kwargs)

    monkeypatch.setattr(keras.applications, "VGG16", offline_vgg16)
    with pytest.raises(RuntimeError) as info:
        models.build_model("vgg16", (32, 32, 3), vgg_weights="imagenet")
    message = str(info.value)
    assert calls == ["imagenet"]  # One attempt, through Keras.
    assert "vgg_weights='imagenet'" in message
    assert ".keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" \
        in message
    assert "vgg_weights=PATH" in message and "'none'" in message
    assert "URL fetch failure" in message


def test_models_module_has_no_copied_download_url():
    import inspect  # pylint: disable=g-import-not-at-top

    source = inspect.getsource(models)
    assert "storage.googleapis.com" not in source
    assert "get_file" not in source


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="resnet", input_shape=(28, 28, 1)),
     "model must be one of mlp, cnn, vgg16, MODULE:FUNCTION or "
     "file.py:FUNCTION, got 'resnet'"),
    (dict(name="mlp", input_shape=(28, 28)), "input_shape must be 3"),
    (dict(name="mlp", input_shape=(28, 0, 1)), "input_shape must be 3"),
    (dict(name="mlp", input_shape=(28, 28, 1), num_classes=1),
     "num_classes must be an integer in \\[2, inf\\], got 1"),
    (dict(name="mlp", input_shape=(28, 28, 1), vgg_weights="imagenet"),
     "vgg_weights applies only to model 'vgg16'"),
    (dict(name="vgg16", input_shape=(32, 32, 3), vgg_weights=None),
     "vgg_weights must be 'none', 'imagenet' or the path"),
    (dict(name="mlp", input_shape=(28, 28, 1), seed=-1),
     "seed must be an integer in \\[0, 4294967295\\], got -1"),
    (dict(name="vgg16", input_shape=(28, 28, 1)),
     "needs RGB images of at least 32x32"),
    (dict(name="vgg16", input_shape=(32, 32, 1)),
     "needs RGB images of at least 32x32"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build_model(**kwargs)


def test_logits_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = models.build_model("cnn", (28, 28, 1), seed=0)
        logits = model(np.zeros((1, 28, 28, 1), "float32"))
        assert model.get_layer("conv1").compute_dtype == "float16"
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
