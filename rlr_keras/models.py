"""The three networks of the paper's experiments (Musso, Appendix C).

`build_model(name, input_shape)` returns a `keras.Model` that maps images,
float32 in [0, 1] as produced by `rlr_keras.data`, to class logits (train
them with `from_logits=True`). ReLU everywhere, no dropout, as in the paper.

- `"mlp"` (Model 1, bi-layer perceptron): Flatten, Dense(100, relu),
  Dense(num_classes). 79,510 parameters on 28x28x1 inputs.
- `"cnn"` (Model 2, deep convolutional network): 3x3 valid convolutions
  1->64, 64->64, 2x2 max-pool, 64->128, 128->128, 128->128, 2x2 max-pool,
  Flatten (3x3x128 on 28x28 inputs), Dense(num_classes). 418,122
  parameters on 28x28x1 inputs. Its valid convolutions need inputs of at
  least 20x20 pixels; smaller inputs (the 8x8 `digits`) raise a ValueError
  rather than being silently resized: load such data with
  `rlr_keras.data.load_dataset(..., image_size=(28, 28))`.
- `"vgg16"` (Model 3): `keras.applications.VGG16(include_top=False)` on
  RGB inputs of at least 32x32, preceded by VGG's own `preprocess_input`
  (the `VGG16Preprocessing` layer) and followed by a Flatten and a
  Dense(num_classes) head. 14,719,818 parameters on 32x32x3 inputs.
"""

import inspect
import os

import keras
import numpy as np

from rlr_keras import _names
from rlr_keras import _specs
from rlr_keras import _validation
from rlr_keras import random_factor as _random_factor

# How a run records a model given as a Python callable (see `model_spec`).
CALLABLE_PREFIX = _specs.CALLABLE_PREFIX
# MODEL_NAMES (the built-in models) is `rlr_keras._names.MODEL_NAMES`, which
# the commands' flags read without Keras; `_BUILDERS` below has one builder
# per name.

# What `keras.applications.VGG16(weights="imagenet", include_top=False)`
# looks for in the Keras cache (and downloads when it is missing); named in
# the error so that it can be fetched by hand.
_VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
_VGG16_MIN_SIZE = 32


@keras.saving.register_keras_serializable(package="rlr_keras")
class VGG16Preprocessing(keras.layers.Layer):
    """VGG16's ImageNet input preprocessing as a layer.

    Scales the inputs to [0, 255] and applies
    `keras.applications.vgg16.preprocess_input` ("caffe" mode: RGB to BGR,
    then subtract the ImageNet channel means), so that a model fed with
    images in [0, 1] sees the inputs its pretrained weights expect.

    Args:
        scale: float. Multiplies the inputs before `preprocess_input`; `255.0`
            for inputs in [0, 1], `1.0` for inputs already in [0, 255].
            Defaults to `255.0`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    >>> layer = VGG16Preprocessing()
    >>> tuple(layer(np.ones((1, 2, 2, 3), "float32")).shape)
    (1, 2, 2, 3)
    """

    def __init__(self, scale=255.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _validation.check_range("scale", scale, 0.0,
                                             low_open=True)

    def call(self, inputs):
        return keras.applications.vgg16.preprocess_input(
            keras.ops.multiply(inputs, self.scale))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


def build_model(name, input_shape, num_classes=10, *, vgg_weights="none",
                seed=None):
    """Builds Model 1, 2 or 3 of the paper, outputting logits.

    The model takes images of shape `input_shape`, float32 in [0, 1] (the
    scale produced by `rlr_keras.data`), and returns `num_classes` logits.
    See the module docstring for the layers of each model.

    With an integer `seed` every layer this function creates (and, for
    `vgg16` with `vgg_weights="none"`, every kernel of the VGG16 base) gets a
    Glorot-uniform kernel initializer seeded from `seed`, so two calls with
    the same seed give identical weights; with `seed=None` Keras' default
    initializers draw from its global RNG. The library never sets a global
    seed. The logits layer computes in float32 even under a mixed-precision
    policy.

    Departures from the paper: the paper uses PyTorch's VGG16 with its
    ImageNet weights and classifier; here the Keras VGG16 convolutional base
    (the original VGG weights, "caffe" preprocessing) carries a single
    Dense head without dropout, and the final 2x2 max-pool of a 32x32 input
    leaves 1x1x512 features for it.

    Args:
        name: str or callable, the model: one of `MODEL_NAMES` (`"mlp"`,
            `"cnn"`, `"vgg16"`), or your own as `"MODULE:FUNCTION"`,
            `"path/to/file.py:FUNCTION"` or the function itself.
            `FUNCTION(input_shape, num_classes)` (plus `seed=seed` if it
            takes a `seed` keyword) must return an uncompiled `keras.Model`
            whose one output is `num_classes` logits; `input_shape` is then
            any shape (e.g. `(features,)` for tabular data) and
            `vgg_weights` is not used.
        input_shape: tuple of 3 ints, (height, width, channels) of one
            image, e.g. `(28, 28, 1)`. `"cnn"` needs height and width of at
            least 20; `"vgg16"` needs 3 channels and height and width of at
            least 32.
        num_classes: int >= 2, the number of logits. Defaults to `10`.
        vgg_weights: str, initial weights of the VGG16 base (`"vgg16"`
            only): `"none"` (random initialization), `"imagenet"`
            (`keras.applications.VGG16(weights="imagenet")`: Keras reads
            `~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`
            and downloads it first if it is missing) or the path of a local
            weights file, e.g. a copy of
            `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`. Defaults to
            `"none"`.
        seed: int in [0, 2**32 - 1] or None, seed of the initializers.
            Defaults to `None`.

    Returns:
        An uncompiled `keras.Model` named `name`.

    Raises:
        TypeError: if your model function returns no `keras.Model`.
        ValueError: for an unknown `name` or a spec that does not load, a
            model whose output is not `num_classes` logits, a bad
            `input_shape`,
            `num_classes`, `vgg_weights` or `seed`, an input too small for
            the model, or a weights file that is not VGG16 no-top weights.
        FileNotFoundError: if `vgg_weights` is a path that does not exist.
        RuntimeError: if Keras cannot provide the ImageNet weights (e.g.
            offline); the message names `vgg_weights`, the file Keras wanted
            and the alternatives.

    Example:

    >>> model = build_model("mlp", (28, 28, 1), seed=0)
    >>> model.count_params()
    79510

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        2020, Appendix C.
        K. Simonyan and A. Zisserman, "Very deep convolutional networks for
        large-scale image recognition", 2015.
    """
    if callable(name) or _specs.split_function_spec(name) is not None:
        return _build_user_model(name, input_shape, num_classes, seed)
    if isinstance(name, str) and name.startswith(_specs.CALLABLE_PREFIX):
        _specs.load_function(name, argument="model")  # Says why not.
    if not isinstance(name, str):
        raise TypeError(
            f"model must be one of {', '.join(MODEL_NAMES)}, "
            "MODULE:FUNCTION, file.py:FUNCTION or a callable, got "
            f"{type(name).__name__} {name!r}")
    if name not in MODEL_NAMES:
        raise ValueError(
            f"model must be one of {', '.join(MODEL_NAMES)}, "
            f"MODULE:FUNCTION or file.py:FUNCTION, got {name!r}")
    input_shape = _check_input_shape(input_shape)
    num_classes = _validation.check_int("num_classes", num_classes, 2)
    if not isinstance(vgg_weights, str) or not vgg_weights:
        raise ValueError(
            "vgg_weights must be 'none', 'imagenet' or the path of a weights "
            f"file, got {vgg_weights!r}")
    if name != "vgg16" and vgg_weights != "none":
        raise ValueError(
            f"vgg_weights applies only to model 'vgg16'; it must be 'none' "
            f"for model {name!r}, got {vgg_weights!r}")
    if seed is not None:
        seed = _random_factor.validate_seed(seed)
    if name == "vgg16":
        return _build_vgg16(input_shape, num_classes, vgg_weights, seed)
    return _BUILDERS[name](input_shape, num_classes, seed)


check_model_spec = _specs.check_model_spec


def model_spec(model):
    """How a run records `model`: its spec, or the name of a callable.

    A built-in name or a `MODULE:FUNCTION` / `file.py:FUNCTION` spec is
    recorded as given (a run replays from it); a callable as
    `callable:<module>.<qualified name>`, which names it but cannot be
    replayed from the command line.

    Args:
        model: str or callable, the first argument of `build_model`.

    Returns:
        A str.
    """
    if callable(model):
        return _specs.describe_callable(model)
    return model


def _build_user_model(model, input_shape, num_classes, seed):
    """`model(input_shape, num_classes[, seed=seed])`, checked."""
    spec = model_spec(model)
    function = (model if callable(model)
                else _specs.load_function(model, argument="model"))
    num_classes = _validation.check_int("num_classes", num_classes, 2)
    input_shape = tuple(int(d) for d in input_shape)
    try:
        accepts_seed = "seed" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # Builtins without a signature.
        accepts_seed = False
    keywords = {"seed": seed} if accepts_seed else {}
    network = function(input_shape, num_classes, **keywords)
    if not isinstance(network, keras.Model):
        raise TypeError(
            f"model={spec!r} must return a keras.Model (uncompiled, "
            f"outputting logits), got {type(network).__name__}")
    outputs = network.outputs if network.built else None
    if not outputs:
        raise ValueError(
            f"model={spec!r} returned a Model without a known output shape; "
            "build it on keras.Input(shape=input_shape)")
    if len(outputs) != 1 or tuple(outputs[0].shape)[-1] != num_classes:
        shapes = ", ".join(str(tuple(o.shape)) for o in outputs)
        raise ValueError(
            f"model={spec!r} must output {num_classes} logits (one per "
            f"class, shape (batch, {num_classes})), got output shape "
            f"{shapes}")
    return network


def _check_input_shape(input_shape):
    return _validation.check_positive_ints(
        "input_shape", input_shape, 3, "(height, width, channels)")


def _initializers(seed, count):
    """Returns `count` kernel initializers with independent seeds."""
    if seed is None:
        return ["glorot_uniform"] * count
    # SeedSequence spreads one seed into independent per-layer seeds; the
    # shift keeps them in the positive int32 range every backend accepts.
    states = np.random.SeedSequence(seed).generate_state(count)
    return [keras.initializers.GlorotUniform(seed=int(s) >> 1)
            for s in states]


def _logits(num_classes, kernel_initializer):
    # float32 even under a mixed-precision policy, as Keras' mixed-precision
    # guide advises, so the loss sees full-precision logits.
    return keras.layers.Dense(num_classes,
                              kernel_initializer=kernel_initializer,
                              dtype="float32", name="logits")


def _build_mlp(input_shape, num_classes, seed):
    init = _initializers(seed, 2)
    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(100, activation="relu", kernel_initializer=init[0],
                           name="hidden")(x)
    outputs = _logits(num_classes, init[1])(x)
    return keras.Model(inputs, outputs, name="mlp")


def _cnn_feature_size(size):
    """Spatial size after the cnn's conv/pool stack (< 1 means too small)."""
    size = (size - 4) // 2  # Two valid 3x3 convolutions, then a 2x2 pool.
    return (size - 6) // 2  # Three valid 3x3 convolutions, then a 2x2 pool.


def _build_cnn(input_shape, num_classes, seed):
    height, width, _ = input_shape
    if min(_cnn_feature_size(height), _cnn_feature_size(width)) < 1:
        raise ValueError(
            "model 'cnn' needs images of at least 20x20 pixels (its valid "
            f"convolutions shrink them), got input_shape={input_shape}; "
            "resize the data, e.g. rlr_keras.data.load_dataset(..., "
            "image_size=(28, 28)), or use model 'mlp'")
    init = _initializers(seed, 6)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    layers = [(64, "conv1"), (64, "conv2"), "pool1", (128, "conv3"),
              (128, "conv4"), (128, "conv5"), "pool2"]
    kernels = iter(init)
    for layer in layers:
        if isinstance(layer, str):
            x = keras.layers.MaxPooling2D(2, name=layer)(x)
        else:
            filters, layer_name = layer
            x = keras.layers.Conv2D(filters, 3, padding="valid",
                                    activation="relu",
                                    kernel_initializer=next(kernels),
                                    name=layer_name)(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = _logits(num_classes, next(kernels))(x)
    return keras.Model(inputs, outputs, name="cnn")


def _keras_cache_file():
    home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    return os.path.join(home, "models", _VGG16_NOTOP_FILE)


def _vgg16_base(input_shape, vgg_weights):
    """`keras.applications.VGG16` without top, with the requested weights."""
    offline = (
        "Alternatives: vgg_weights=PATH, the path of a local copy of "
        f"{_VGG16_NOTOP_FILE}, or vgg_weights='none' for random "
        "initialization.")
    if vgg_weights not in ("none", "imagenet"):
        path = os.path.expanduser(vgg_weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"vgg_weights must be 'none', 'imagenet' or the path of an "
                f"existing weights file, got {vgg_weights!r} (no such file). "
                + offline)
        vgg_weights = path
    weights = None if vgg_weights == "none" else vgg_weights
    try:
        return keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=input_shape,
            name="vgg16_base")
    except Exception as err:  # Keras' message alone does not name the way out.
        if weights is None:
            raise
        if weights == "imagenet":
            raise RuntimeError(
                "vgg_weights='imagenet': Keras could not provide "
                f"{_keras_cache_file()} (it downloads the file when it is "
                f"not there; {type(err).__name__}: {err}). " + offline
            ) from err
        raise ValueError(
            f"vgg_weights file {weights!r} could not be loaded as VGG16 "
            f"no-top weights (expected a file like {_VGG16_NOTOP_FILE}): "
            f"{type(err).__name__}: {err}") from err


def _build_vgg16(input_shape, num_classes, vgg_weights, seed):
    height, width, channels = input_shape
    if channels != 3 or min(height, width) < _VGG16_MIN_SIZE:
        raise ValueError(
            "model 'vgg16' needs RGB images of at least 32x32 pixels, i.e. "
            f"input_shape=(>=32, >=32, 3), got input_shape={input_shape}")
    base = _vgg16_base(input_shape, vgg_weights)
    init = _initializers(seed, 14)
    if vgg_weights == "none" and seed is not None:
        kernels = iter(init[1:])
        for layer in base.layers:
            if isinstance(layer, keras.layers.Conv2D):
                layer.kernel.assign(next(kernels)(layer.kernel.shape))
    inputs = keras.Input(shape=input_shape, name="images")
    x = VGG16Preprocessing(name="vgg16_preprocessing")(inputs)
    x = base(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = _logits(num_classes, init[0])(x)
    return keras.Model(inputs, outputs, name="vgg16")


# The built-in models: a new one is one builder `(input_shape, num_classes,
# seed) -> keras.Model` and one entry here (vgg16 also takes vgg_weights).
_BUILDERS = {"mlp": _build_mlp, "cnn": _build_cnn, "vgg16": _build_vgg16}
MODEL_NAMES = _names.MODEL_NAMES
