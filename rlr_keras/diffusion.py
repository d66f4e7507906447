"""The diffusion coefficient D of the gradient noise, on every Keras backend.

`estimate_diffusion` measures the isotropic diffusion coefficient D of
Musso's Appendix A from per-example gradients of the data loss on a probe
set; `rlr_keras.callbacks.TemperatureMonitor` calls it during training and
`rlr_keras.temperature.effective_temperature` turns it into T.

Per-example gradients come from one of two paths, chosen automatically:

- factored, for a `keras.Sequential` or functional chain of
  `keras.layers.Dense` and parameter-free layers (Model 1): written in `keras.ops`, with each Dense
  layer's per-example kernel gradient a_j delta_j^T never formed;
- general, for any other model: the backend's own vectorizing map of the
  gradient of one example's loss through `model.stateless_call`
  (`tf.vectorized_map` with `tf.GradientTape` on TensorFlow,
  `jax.vmap(jax.grad)` on JAX, `torch.func.vmap(torch.func.grad)` on
  PyTorch).

Only public Keras APIs are used; TensorFlow is imported only on its backend.
"""

from __future__ import annotations

import functools
import inspect
import typing
import weakref
from typing import Any

import keras
import numpy as np
from keras import ops

from rlr_keras import _validation
from rlr_keras.random_factor import alpha_second_moment

__all__ = ["DiffusionEstimate", "diffusion_from_moments",
           "estimate_diffusion"]


class DiffusionEstimate(typing.NamedTuple):
    """The diffusion coefficient and the pieces it is computed from."""

    diffusion: float
    mean_squared_norm: float
    squared_mean_norm: float
    num_weights: int
    num_examples: int


# Backend transforms ------------------------------------------------------------
# `_grad(fn)` differentiates a scalar fn with respect to its first argument (a
# list of tensors); `_vmap(fn, in_axes)` maps fn over axis 0 of the arguments
# whose entry in `in_axes` is 0 and passes those with None unchanged;
# `_compile(fn, jit_compile)` traces fn once per input signature.


def _tf():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf


def _grad(fn):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax  # pylint: disable=g-import-not-at-top

        return jax.grad(fn)
    if backend == "torch":
        import torch  # pylint: disable=g-import-not-at-top

        return torch.func.grad(fn)
    if backend == "tensorflow":
        tf = _tf()

        def gradient(first, *rest):
            with tf.GradientTape() as tape:
                tape.watch(first)
                value = fn(first, *rest)
            return tape.gradient(
                value, first,
                unconnected_gradients=tf.UnconnectedGradients.ZERO)

        return gradient
    raise ValueError(
        "estimate_diffusion supports the tensorflow, jax and torch Keras "
        f"backends, got {backend!r}")


def _vmap(fn, in_axes):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax  # pylint: disable=g-import-not-at-top

        return jax.vmap(fn, in_axes=in_axes)
    if backend == "torch":
        import torch  # pylint: disable=g-import-not-at-top

        vectorized = torch.func.vmap(fn, in_dims=in_axes)

        def mapped_or_looped(*args):
            try:
                return vectorized(*args)
            except RuntimeError as error:
                # Some Keras layers use operations that torch.func.vmap does
                # not batch (Conv2D's channels-last copy): loop instead.
                if "vmap" not in str(error):
                    raise
            size = next(len(a) for a, axis in zip(args, in_axes) if axis == 0)
            rows = [fn(*(a[i] if axis == 0 else a
                         for a, axis in zip(args, in_axes)))
                    for i in range(size)]
            return keras.tree.map_structure(
                lambda *values: torch.stack(values), *rows)

        return mapped_or_looped
    tf = _tf()

    def mapped(*args):
        batched = tuple(a for a, axis in zip(args, in_axes) if axis == 0)

        def one(example):
            example = iter(example)
            return fn(*(next(example) if axis == 0 else a
                        for a, axis in zip(args, in_axes)))

        return tf.vectorized_map(one, batched)

    return mapped


def _compile(fn, jit_compile):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # One function per model, by design. TensorFlow counts traces per
        # code object, so a sweep's fresh models (each traced once) would
        # read as one function retraced and warn; a partial has no code
        # object and is counted alone.
        return _tf().function(functools.partial(fn), jit_compile=jit_compile,
                              reduce_retracing=True)
    if backend == "jax" and jit_compile:
        import jax  # pylint: disable=g-import-not-at-top

        return jax.jit(fn)
    return fn  # PyTorch runs eagerly; jit_compile does not apply.


# Per-example losses ------------------------------------------------------------


def _expand(structure):
    return keras.tree.map_structure(lambda t: ops.expand_dims(t, 0),
                                    structure)


def _example_loss(loss_fn, y, prediction):
    """f_j: the mean of the loss of a batch of one example (unbatched args)."""
    return ops.mean(loss_fn(_expand(y), _expand(prediction)))


def _to_numpy(values):
    return [np.asarray(ops.convert_to_numpy(v), dtype=np.float64)
            for v in values]


# General path: per-example gradients of all weights ----------------------------


def _general_chunk_function(model, loss_fn, jit_compile):
    """Returns (trainable, non_trainable, x, y) -> (sums, centred).

    Per variable: the sum over the chunk's examples of their gradients and
    sum_j |g_j - m|^2 (m the chunk's mean gradient), reduced where the
    per-example gradients are, so that only these leave the device.
    """
    # `stateless_call` passes keyword arguments on to `call` as given, while
    # `__call__` drops a `training` that `call` does not take.
    parameters = inspect.signature(model.call).parameters
    options = {"training": False} if "training" in parameters or any(
        p.kind is p.VAR_KEYWORD for p in parameters.values()) else {}

    def example_loss(trainable, non_trainable, x, y):
        prediction, _ = model.stateless_call(
            trainable, non_trainable, _expand(x), **options)
        return _example_loss(loss_fn, y, keras.tree.map_structure(
            lambda t: t[0], prediction))

    per_example = _vmap(_grad(example_loss), (None, None, 0, 0))

    def chunk(trainable, non_trainable, x, y):
        gradients = per_example(trainable, non_trainable, x, y)
        sums = [ops.sum(g, axis=0) for g in gradients]
        centred = [
            ops.sum(ops.square(ops.subtract(g, ops.divide(
                s, ops.cast(ops.shape(g)[0], g.dtype)))))
            for g, s in zip(gradients, sums)]
        return sums, centred

    return _compile(chunk, jit_compile)


def _general_moments(function, model, x, y):
    """Per-variable gradient sums and sum_j |g_j - m|^2 of one chunk."""
    sums, centred = function(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], x, y)
    return _to_numpy(sums), float(np.sum(_to_numpy(centred)))


# Factored path: chains of Dense layers -----------------------------------------


class _DenseChain(typing.NamedTuple):
    """How the factored path runs a chain of layers (see `_dense_chain`)."""

    layers: tuple  # the layers in call order
    dense: tuple  # per layer: True for a Dense handled as outer products
    input_dtype: str  # the dtype the model converts its input to


def _is_plain_dense(layer, input_shape):
    # Exactly keras.layers.Dense (a subclass may change `call`), on a rank-2
    # input, computing in its variables' dtype, without LoRA or quantization:
    # then z = a W + b and dW_j = a_j delta_j^T.
    return (
        type(layer) is keras.layers.Dense
        and not getattr(layer, "lora_enabled", False)
        and getattr(layer, "quantization_mode", None) is None
        and layer.compute_dtype == layer.variable_dtype
        and len(input_shape) == 2
    )


def _dense_chain(model, x):
    """Returns a `_DenseChain` if the factored path applies, else None.

    It applies when `x` is a single array and `model` is one of Keras' own
    model classes (a `keras.Sequential`, or a functional `keras.Model`;
    not a subclass with its own `call`) whose layers form one chain: with
    one input and one output of the rank of `x`, each layer was first called
    on the previous layer's output, the last one gives the model's output,
    and each layer is a `keras.layers.Dense` on a rank-2 input or a layer
    without weights (Flatten, Dropout, Activation, ...), with at least one
    Dense layer with trainable weights. Only public API is read: the model's
    `inputs`, `outputs` and `layers` and each layer's `input` and `output`.
    Anything else (branches, shared layers, several inputs, other layers
    with weights) takes the general path.
    """
    if (type(model).__module__.partition(".")[0] != "keras"
            or not isinstance(model, keras.Model)
            or isinstance(x, (dict, list, tuple)) or not hasattr(x, "shape")):
        return None
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
        layers = [layer for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer)]
        if (len(inputs) != 1 or len(outputs) != 1 or not layers
                or len(x.shape) != len(inputs[0].shape)):
            return None
        tensor = inputs[0]
        dense = []
        owned = []
        for layer in layers:
            if layer.input is not tensor:
                return None
            is_dense = _is_plain_dense(layer, tensor.shape)
            if not is_dense and layer.weights:
                return None
            dense.append(is_dense)
            owned.extend(id(v) for v in layer.trainable_variables)
            tensor = layer.output
    except (AttributeError, ValueError):
        return None  # Not built on symbolic inputs.
    trainable = {id(v) for v in model.trainable_variables}
    if (tensor is not outputs[0] or not owned
            or len(owned) != len(set(owned)) or set(owned) != trainable):
        return None
    return _DenseChain(tuple(layers), tuple(dense), inputs[0].dtype)


def _factored_chunk_function(model, loss_fn, plan, jit_compile):
    """Returns (weights, x, y) -> (Dense inputs a, pre-activation grads delta).

    `weights` holds (kernel, bias or None) per Dense layer. Running the chain
    one layer at a time exposes each Dense layer's input a_j; adding a zero
    offset e to each pre-activation z = a W + b, the gradient of
    sum_j <p_j, G_j> with respect to e (p_j the prediction, G_j = df_j/dp_j
    from the per-example map) has rows delta_j = df_j / dz_j: exact, since
    with training=False every example's output depends on that example only.
    """

    def forward(offsets, weights, x):
        outputs = ops.convert_to_tensor(x, dtype=plan.input_dtype)
        inputs = []
        index = 0
        for layer, is_dense in zip(plan.layers, plan.dense):
            if not is_dense:
                outputs = layer(outputs, training=False)
                continue
            kernel, bias = weights[index]
            activations = ops.cast(outputs, layer.compute_dtype)
            outputs = ops.matmul(activations, kernel)
            if bias is not None:
                outputs = ops.add(outputs, bias)
            outputs = ops.add(outputs, offsets[index])
            if layer.activation is not None:
                outputs = layer.activation(outputs)
            inputs.append(activations)
            index += 1
        return outputs, inputs

    def projected(offsets, weights, x, loss_gradients):
        outputs, _ = forward(offsets, weights, x)
        return ops.sum(ops.multiply(outputs, loss_gradients))

    loss_gradient = _vmap(_grad(lambda p, y: _example_loss(loss_fn, y, p)),
                          (0, 0))
    offset_gradient = _grad(projected)
    units = [layer.units for layer, d in zip(plan.layers, plan.dense) if d]
    dtypes = [layer.compute_dtype
              for layer, d in zip(plan.layers, plan.dense) if d]

    def chunk(weights, x, y):
        size = ops.shape(x)[0]
        offsets = [ops.zeros((size, u), dtype) for u, dtype in zip(units,
                                                                  dtypes)]
        outputs, inputs = forward(offsets, weights, x)
        loss_gradients = loss_gradient(outputs, y)
        deltas = offset_gradient(offsets, weights, x, loss_gradients)
        return inputs, deltas

    return _compile(chunk, jit_compile)


def _factored_moments(function, model, plan, x, y):
    """Per-variable gradient sums and sum_j |g_j - m|^2, Dense factored.

    With a_j a Dense layer's input and delta_j its pre-activation gradient,
    the example's gradients are dW_j = a_j delta_j^T and db_j = delta_j, so

        sum_j |dW_j - M|^2 = sum_j |a_j|^2 |delta_j|^2 - b |M|^2,
        M = (1/b) sum_j a_j delta_j^T = A^T Delta / b,

    computed in float64 (NumPy) so that the difference keeps the precision
    of a_j and delta_j; the bias term is centred directly.
    """
    layers = [layer for layer, d in zip(plan.layers, plan.dense) if d]
    weights = [(layer.kernel.value,
                None if layer.bias is None else layer.bias.value)
               for layer in layers]
    inputs, deltas = function(weights, x, y)
    trainable = {id(v) for v in model.trainable_variables}
    sums = {}
    centred = 0.0
    for layer, a, delta in zip(layers, _to_numpy(inputs), _to_numpy(deltas)):
        count = len(a)
        if id(layer.kernel) in trainable:
            kernel_sum = a.T @ delta
            squared_norms = np.sum(a**2, axis=1) @ np.sum(delta**2, axis=1)
            # >= 0 exactly; clipped against rounding, e.g. for b = 1.
            centred += max(
                squared_norms - np.sum(kernel_sum**2) / count, 0.0)
            sums[id(layer.kernel)] = kernel_sum
        if layer.bias is not None and id(layer.bias) in trainable:
            bias_sum = delta.sum(axis=0)
            centred += float(np.sum((delta - bias_sum / count)**2))
            sums[id(layer.bias)] = bias_sum
    return [sums[id(v)] for v in model.trainable_variables], centred


# Accumulation over chunks ------------------------------------------------------

# model -> {key: compiled chunk function}. Weak keys, so that a cached
# function never keeps a model alive.
_CHUNK_FUNCTIONS = weakref.WeakKeyDictionary()


def _cached(model, key, build):
    try:
        hash(key)
    except TypeError:
        return build()  # An unhashable loss: no cache.
    cache = _CHUNK_FUNCTIONS.setdefault(model, {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _chunk_moments(model, loss_fn, x, jit_compile, factored=None):
    """Returns chunk (x, y) -> (per-variable sums, centred scatter).

    `factored=None` picks the factored path where `_dense_chain` applies;
    True or False forces it (tests compare both paths).
    """
    plan = _dense_chain(model, x) if factored is not False else None
    if factored and plan is None:
        raise ValueError("the factored path needs a Sequential chain of "
                         "Dense and parameter-free layers")
    variables = tuple(id(v) for v in model.trainable_variables)
    if plan is None:
        function = _cached(
            model, ("general", loss_fn, variables, jit_compile),
            lambda: _general_chunk_function(model, loss_fn, jit_compile))
        return lambda xs, ys: _general_moments(function, model, xs, ys)
    function = _cached(
        model, ("factored", loss_fn, variables, jit_compile),
        lambda: _factored_chunk_function(model, loss_fn, plan, jit_compile))
    return lambda xs, ys: _factored_moments(function, model, plan, xs, ys)


def _num_examples(structure):
    return int(keras.tree.flatten(structure)[0].shape[0])


def _slice(structure, start, stop):
    # The array's own dtype: PyTorch would otherwise make float64 float32.
    return keras.tree.map_structure(
        lambda t: ops.convert_to_tensor(
            t[start:stop], dtype=keras.backend.standardize_dtype(t.dtype)),
        structure)


def _accumulate(chunk_moments, x, y, batch_size):
    """Returns (N, mean gradient, sum_j |g_j - mean|^2) in float64.

    Chunks are merged with Chan et al.'s pairwise update, so across chunks
    the spread of the gradients is never a difference of two large numbers.
    """
    total = _num_examples(x)
    count, mean, scatter = 0, None, 0.0
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        sums, centred = chunk_moments(_slice(x, start, stop),
                                      _slice(y, start, stop))
        size = stop - start
        chunk_mean = np.concatenate([s.ravel() for s in sums]) / size
        if mean is None:
            mean, scatter = chunk_mean, centred
        else:
            shift = chunk_mean - mean
            mean = mean + shift * (size / (count + size))
            scatter += centred + float(shift @ shift) * count * size / (
                count + size)
        count += size
    return count, mean, scatter


# Input checks ------------------------------------------------------------------


def resolve_loss(loss_fn, name="loss_fn"):
    """Returns a callable loss from a Keras loss, name or config dict."""
    if isinstance(loss_fn, (str, dict)):
        return keras.losses.get(loss_fn)
    if not callable(loss_fn):
        raise TypeError(
            f"{name} must be a Keras loss (object, function or name), got "
            f"{loss_fn!r}")
    return loss_fn


def _as_numpy(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)  # Kept as is: PyTorch would make float64
    return np.asarray(ops.convert_to_numpy(value))  # float32.


def as_arrays(structure, name):
    """Returns `structure` with NumPy arrays as leaves, or raises.

    Every leaf must be an array or tensor with examples along axis 0 and
    finite where it is floating point; a list of lists of numbers (a
    `TypeError`), a scalar or NaN/inf (a `ValueError`) is an error that says
    what is expected.
    """
    leaves = keras.tree.flatten(structure)
    not_arrays = not leaves or any(not hasattr(leaf, "shape")
                                   for leaf in leaves)
    if not_arrays or any(len(leaf.shape) == 0 for leaf in leaves):
        kind = (f"a {type(structure).__name__} of "
                f"{type(leaves[0]).__name__ if leaves else 'nothing'}")
        raise (TypeError if not_arrays else ValueError)(
            f"{name} must be an array (or a dict/tuple of arrays) with the "
            f"examples along the first axis, got {kind}; convert it with "
            "np.asarray")
    arrays = keras.tree.map_structure(_as_numpy, structure)
    for leaf in keras.tree.flatten(arrays):
        if np.issubdtype(leaf.dtype, np.floating) and not np.all(
                np.isfinite(leaf)):
            bad = int(np.argwhere(~np.isfinite(leaf))[0][0])
            raise ValueError(
                f"{name} must be finite, got a NaN or inf in example {bad}")
    sizes = {int(leaf.shape[0]) for leaf in keras.tree.flatten(arrays)}
    if len(sizes) != 1:
        raise ValueError(
            f"{name} must hold the same number of examples in every array, "
            f"got sizes {sorted(sizes)}")
    return arrays


def check_probe(x, y):
    """Checks a probe set (x, y) of arrays: non-empty, equal lengths."""
    if _num_examples(x) == 0:
        raise ValueError("x must hold at least one example, got none")
    if _num_examples(y) != _num_examples(x):
        raise ValueError(
            f"y must hold as many examples as x ({_num_examples(x)}), got "
            f"{_num_examples(y)}")


def _check_input_shape(model, x):
    # Only a model built on symbolic inputs says what it expects; x of
    # another rank is left to the model (Keras adjusts a rank by one).
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        return
    leaves = keras.tree.flatten(x)
    if len(inputs) != len(leaves):
        return
    for expected, leaf in zip(inputs, leaves):
        expected = tuple(expected.shape)[1:]
        got = tuple(leaf.shape)[1:]
        if len(expected) == len(got) and any(
                e is not None and e != g for e, g in zip(expected, got)):
            wanted = ", ".join("?" if e is None else str(e) for e in expected)
            raise ValueError(
                f"x must have shape (N, {wanted}) to match the model's input, "
                f"got {tuple(leaf.shape)}")


def _is_sparse_categorical(loss_fn):
    sparse = (keras.losses.SparseCategoricalCrossentropy,)
    if isinstance(loss_fn, sparse):
        return True
    function = getattr(loss_fn, "fn", loss_fn)  # LossFunctionWrapper.
    return function is keras.losses.sparse_categorical_crossentropy


def _check_labels(loss_fn, y):
    if not _is_sparse_categorical(loss_fn) or not hasattr(y, "ndim"):
        return
    if y.ndim >= 2 and y.shape[-1] != 1:
        raise ValueError(
            "y must hold integer class labels of shape (N,) for a sparse "
            f"categorical crossentropy loss, got shape {y.shape} (one-hot "
            "labels?); pass np.argmax(y, axis=-1) or use "
            "categorical_crossentropy")


# Public API --------------------------------------------------------------------


def diffusion_from_moments(second_moment: float, mean_squared_norm: float,
                           squared_mean_norm: float,
                           num_weights: int) -> float:
    """D = (<alpha^2> mean_j |g_j|^2 - |g|^2) / n (Appendix A, eq. 31)."""
    return (second_moment * mean_squared_norm - squared_mean_norm) / num_weights


def estimate_diffusion(model: keras.Model, loss_fn: Any, x: Any, y: Any,
                       delta: float = 0.0, batch_size: int = 256,
                       return_pieces: bool = False,
                       jit_compile: bool = False
                       ) -> float | DiffusionEstimate:
    """Measures the isotropic diffusion coefficient D of the gradient noise.

    Following the paper's Appendix A, with g_j the gradient of the loss of
    example j of the probe set (N examples), g their mean and <alpha^2> the
    second moment of the random factor,

        D_hat = (1/N) sum_j <alpha^2> g_j g_j^T - g g^T
        D     = tr(D_hat) / n = (<alpha^2> mean_j |g_j|^2 - |g|^2) / n

    where n is the number of trainable weights of `model` and
    `<alpha^2> = 1 + delta^2 / 3` (`alpha_second_moment`). The paper's eq. 27
    and 29-31 print `1 + delta / 3`; for alpha uniform on
    [1 - delta, 1 + delta] the variance is delta^2 / 3, so this function uses
    `1 + delta^2 / 3`. The probe set plays the role of the training set of
    eq. 31.

    What the estimate includes: the gradient of the data loss `loss_fn` only,
    with the model called with `training=False` (dropout off, batch
    normalization in inference mode). Regularization penalties
    (`model.losses`) and weight decay are not included; being the same for
    every example they cancel from the spread of the gradients but would
    change the `<alpha^2>` term when `delta > 0`.

    Per-example gradients are computed for chunks of `batch_size` examples
    at once, never in a Python loop, in one of two ways chosen
    automatically; both give the same result up to rounding, on every
    backend:

    - Factored, when `model` is a `keras.Sequential` or functional model
      whose layers form a single chain of `keras.layers.Dense` layers (on
      rank-2 inputs) and layers without weights (Flatten, Dropout,
      Activation, ...), as Model 1. A Dense layer's per-example
      kernel gradient is the outer product a_j delta_j^T of its input and the
      gradient of f_j with respect to its pre-activation, so
      |g_j|^2 = |a_j|^2 |delta_j|^2 + |delta_j|^2 (bias) and the sum of those
      gradients is one matrix product; one batched forward and backward pass
      gives a_j and delta_j, and the outer products are never formed.
    - General, for every other model: the backend's vectorizing map of one
      example's gradient through `model.stateless_call`
      (`tf.vectorized_map`, `jax.vmap(jax.grad)`,
      `torch.func.vmap(torch.func.grad)`), so memory grows as `batch_size`
      times the number of weights.

    The compiled chunk functions are cached per model and loss, so repeated
    calls (e.g. from `TemperatureMonitor`) do not retrace. Chunks are merged
    in float64.

    Args:
        model: a built `keras.Model` (or layer) whose trainable weights are
            differentiated.
        loss_fn: a Keras loss: a `keras.losses.Loss`, a name such as
            `"mean_squared_error"`, or a callable `loss_fn(y_true, y_pred)`.
            It is called on batches of one example; the mean of its output
            is that example's loss f_j.
        x: array or nested structure (dict, tuple) of arrays: the probe
            inputs, with examples along the first axis; finite.
        y: array (or nested structure of arrays): the probe targets; integer
            class labels for a sparse categorical loss.
        delta: float in [0, 1], the half-width of the random factor alpha.
            Enters only through `<alpha^2>`. Defaults to `0.0`.
        batch_size: int >= 1, the number of examples whose gradients are
            computed at once. Defaults to `256`.
        return_pieces: bool. If True, returns a `DiffusionEstimate` with the
            pieces of the formula. Defaults to `False`.
        jit_compile: bool, whether to compile the per-chunk computation with
            XLA (TensorFlow, JAX; PyTorch runs eagerly). Defaults to `False`.

    Returns:
        D as a Python float, or a `DiffusionEstimate(diffusion,
        mean_squared_norm, squared_mean_norm, num_weights, num_examples)`
        if `return_pieces` is True.

    Raises:
        ValueError: if `delta` or `batch_size` is invalid; if `x` or `y` is
            not an array (or structure of arrays), is empty, holds NaN or
            inf, or they differ in length; if `x` does not have the feature
            shape of the model's input; if `y` holds one-hot rows for a
            sparse categorical loss; if `model` has no trainable weights.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    >>> d = estimate_diffusion(model, "mean_squared_error", x, x[:, :1])
    >>> d >= 0
    True

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        2020, Appendix A.
    """
    second_moment = alpha_second_moment(delta)
    batch_size = _validation.check_int("batch_size", batch_size, 1)
    loss_fn = resolve_loss(loss_fn)
    x = as_arrays(x, "x")
    y = as_arrays(y, "y")
    check_probe(x, y)
    num_weights = int(sum(
        np.prod(v.shape, dtype=np.int64) for v in model.trainable_variables))
    if num_weights == 0:
        raise ValueError(
            "model must have trainable weights, got a model with none")
    _check_input_shape(model, x)
    _check_labels(loss_fn, y)
    count, mean, scatter = _accumulate(
        _chunk_moments(model, loss_fn, x, bool(jit_compile)), x, y,
        batch_size)
    squared_mean_norm = float(mean @ mean)
    mean_squared_norm = float(scatter / count + squared_mean_norm)
    diffusion = diffusion_from_moments(
        second_moment, mean_squared_norm, squared_mean_norm, num_weights)
    if return_pieces:
        return DiffusionEstimate(
            diffusion, mean_squared_norm, squared_mean_norm, num_weights,
            int(count))
    return diffusion
