"""Effective temperature of SGD with random learning rate.

The Fokker-Planck analysis of Musso (section 2.1) gives the stationary
distribution of the weights an effective temperature

    T = l D / (2 C (1 - mu))                                    (eq. 20)

with `l` the mean learning rate, `C` the mini-batch size, `mu` the momentum
and `D` the isotropic diffusion coefficient of the gradient noise. This module
holds that formula (`effective_temperature`), a planner that finds the
configuration with the same temperature (`match_temperature`, also a command
line), a measurement of `D` from per-example gradients (`estimate_diffusion`,
Appendix A) and a callback that logs `D` and `T` during training
(`TemperatureMonitor`).

Command line (prints both configurations and their T / D):

    python -m rlr_keras.temperature --learning_rate=2e-4 --batch_size=60 \
        --momentum=0 --match batch_size=30
"""

import argparse
import os
import sys
import typing
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from rlr_keras import _optimizer_utils
from rlr_keras import _validation
from rlr_keras.random_factor import alpha_second_moment
from rlr_keras.random_factor import validate_delta

_QUANTITIES = ("learning_rate", "batch_size", "momentum")


def _check_learning_rate(name, value):
    return _validation.check_range(name, value, 0.0, None, low_open=True)


def _check_batch_size(name, value):
    return _validation.check_int(name, value, 1)


def _check_momentum(name, value):
    return _validation.check_range(name, value, 0.0, 1.0, high_open=True)


def effective_temperature(learning_rate, batch_size, momentum=0.0,
                          diffusion=1.0):
    """Returns the effective temperature T of paper eq. 20.

    The stationary solution of the Fokker-Planck equation of SGD with
    momentum (and random learning rate) is a Boltzmann distribution at

        T = l * D / (2 * C * (1 - mu))

    where `l = learning_rate` is the mean learning rate (the mean of
    `l * alpha` for the random protocol), `C = batch_size`, `mu = momentum`
    and `D = diffusion`. With the default `diffusion=1.0` the result is T / D,
    the part of the temperature that the hyperparameters control.

    Args:
        learning_rate: float > 0, the mean learning rate `l`.
        batch_size: int >= 1, the mini-batch size `C`.
        momentum: float in [0, 1), the momentum `mu`. Defaults to `0.0`.
        diffusion: float >= 0, the diffusion coefficient `D` (see
            `estimate_diffusion`). Defaults to `1.0`.

    Returns:
        The temperature as a Python float.

    Raises:
        ValueError: if an argument is outside the range given above.

    Example:

    >>> effective_temperature(2e-4, 60) == effective_temperature(1e-4, 30)
    True

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        2020, eq. 20.
    """
    learning_rate = _check_learning_rate("learning_rate", learning_rate)
    batch_size = _check_batch_size("batch_size", batch_size)
    momentum = _check_momentum("momentum", momentum)
    diffusion = _validation.check_range("diffusion", diffusion, 0.0)
    return learning_rate * diffusion / (2.0 * batch_size * (1.0 - momentum))


class Hyperparameters(typing.NamedTuple):
    """The hyperparameters that set the effective temperature."""

    learning_rate: float
    batch_size: int
    momentum: float


def match_temperature(learning_rate, batch_size, momentum=0.0, *,
                      new_learning_rate=None, new_batch_size=None,
                      new_momentum=None, solve_for=None):
    """Returns a configuration with the same effective temperature.

    Given a reference configuration `(learning_rate, batch_size, momentum)`
    and some of the values of a new one, solves eq. 20 for the quantity
    `solve_for` so that both have the same T / D (hence the same T if they
    share the diffusion coefficient D). Values of the new configuration that
    are neither given nor solved for are copied from the reference. Because T
    is linear in `l`, `1 / C` and `1 / (1 - mu)`, each solution is a ratio of
    `effective_temperature` values.

    Args:
        learning_rate: float > 0, the reference mean learning rate.
        batch_size: int >= 1, the reference mini-batch size.
        momentum: float in [0, 1), the reference momentum. Defaults to `0.0`.
        new_learning_rate: float > 0 or `None`: the new learning rate.
        new_batch_size: int >= 1 or `None`: the new mini-batch size.
        new_momentum: float in [0, 1) or `None`: the new momentum.
        solve_for: one of `"learning_rate"`, `"batch_size"`, `"momentum"` or
            `None`. `None` picks the first of those (in that order) whose
            `new_*` value is not given. Defaults to `None`.

    Returns:
        A `Hyperparameters(learning_rate, batch_size, momentum)` tuple. A
        solved batch size is rounded to the nearest integer, so the match is
        then exact only when the ratio is an integer; compare the two
        `effective_temperature` values to see the difference.

    Raises:
        ValueError: if an argument is invalid, if a value is given for the
            quantity being solved for, if all three new values are given, or
            if the solution is not allowed (a momentum outside [0, 1), a batch
            size below 1).

    Example:

    >>> match_temperature(2e-4, 60, 0.0, new_batch_size=30)
    Hyperparameters(learning_rate=0.0001, batch_size=30, momentum=0.0)
    """
    target = effective_temperature(learning_rate, batch_size, momentum)
    new = {
        "learning_rate": new_learning_rate,
        "batch_size": new_batch_size,
        "momentum": new_momentum,
    }
    if solve_for is None:
        missing = [name for name in _QUANTITIES if new[name] is None]
        if not missing:
            raise ValueError(
                "match_temperature needs one of new_learning_rate, "
                "new_batch_size, new_momentum to be None (the quantity to "
                "solve for), got all three"
            )
        solve_for = missing[0]
    _validation.check_choice("solve_for", solve_for, _QUANTITIES)
    if new[solve_for] is not None:
        raise ValueError(
            f"new_{solve_for} must be None when solve_for={solve_for!r}, got "
            f"{new[solve_for]!r}"
        )
    reference = {
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "momentum": momentum,
    }
    for name in _QUANTITIES:
        if name != solve_for and new[name] is None:
            new[name] = reference[name]
    if solve_for != "learning_rate":
        new["learning_rate"] = _check_learning_rate(
            "new_learning_rate", new["learning_rate"])
    if solve_for != "batch_size":
        new["batch_size"] = _check_batch_size(
            "new_batch_size", new["batch_size"])
    if solve_for != "momentum":
        new["momentum"] = _check_momentum("new_momentum", new["momentum"])

    if solve_for == "learning_rate":
        # T is proportional to l.
        new["learning_rate"] = target / effective_temperature(
            1.0, new["batch_size"], new["momentum"])
    elif solve_for == "batch_size":
        # T is proportional to 1 / C.
        exact = effective_temperature(
            new["learning_rate"], 1, new["momentum"]) / target
        if exact < 0.5:
            raise ValueError(
                "no batch size >= 1 matches the reference temperature: the "
                f"solution is batch_size={exact!r}; lower new_learning_rate "
                "or new_momentum"
            )
        new["batch_size"] = max(1, int(round(exact)))
    else:
        # T is proportional to 1 / (1 - mu).
        one_minus = effective_temperature(
            new["learning_rate"], new["batch_size"], 0.0) / target
        solved = 1.0 - one_minus
        if not 0.0 <= solved < 1.0:
            raise ValueError(
                "no momentum in [0, 1) matches the reference temperature: the "
                f"solution is momentum={solved!r}; change new_learning_rate "
                "or new_batch_size"
            )
        new["momentum"] = solved
    return Hyperparameters(
        float(new["learning_rate"]), int(new["batch_size"]),
        float(new["momentum"]))


# Per-example gradient moments -------------------------------------------------

# model -> {(loss key, variable ids, jit_compile, method): traced function}.
# Weak keys, so that a cached function never keeps a model alive.
_MOMENT_FUNCTIONS = weakref.WeakKeyDictionary()

# How `_gradient_moments` obtains per-example gradients: "factored" writes
# those of eligible Dense layers as outer products (see `_layer_chain`),
# "vectorized" differentiates every example with `tf.vectorized_map` (the
# reference, valid for any model), "auto" takes "factored" where it applies.
_METHODS = ("auto", "factored", "vectorized")


class DiffusionEstimate(typing.NamedTuple):
    """The diffusion coefficient and the pieces it is computed from."""

    diffusion: float
    mean_squared_norm: float
    squared_mean_norm: float
    num_weights: int
    num_examples: int


def _resolve_loss(loss_fn):
    if isinstance(loss_fn, (str, dict)):
        return keras.losses.get(loss_fn)
    if not callable(loss_fn):
        raise ValueError(
            "loss_fn must be a Keras loss (object, function or name), got "
            f"{loss_fn!r}"
        )
    return loss_fn


def _example_loss(loss_fn, y, prediction):
    """f_j: the loss of a batch of one example, whatever its reduction."""
    return ops.mean(loss_fn(y, prediction))


def _expand_example(structure):
    return tf.nest.map_structure(lambda t: tf.expand_dims(t, 0), structure)


def _example_gradients_function(model, loss_fn, variables):
    """Returns example -> gradient of f_j with respect to `variables`."""

    def example_gradients(example):
        x, y = example
        with tf.GradientTape() as tape:
            prediction = model(_expand_example(x), training=False)
            loss = _example_loss(loss_fn, _expand_example(y), prediction)
        return tape.gradient(
            loss, variables,
            unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return example_gradients


def _vectorized_moments(example_gradients, x, y):
    """Per-variable sums of per-example gradients and their centred scatter.

    The scatter sum_j |g_j - m|^2 (m the chunk mean) is formed from the
    centred gradients, in float64 once reduced per variable.
    """
    gradients = tf.vectorized_map(example_gradients, (x, y))
    sums = [tf.reduce_sum(g, axis=0) for g in gradients]
    centred = tf.constant(0.0, tf.float64)
    for g, s in zip(gradients, sums):
        count = tf.cast(tf.shape(g)[0], g.dtype)
        centred += tf.cast(tf.reduce_sum(tf.square(g - s / count)),
                           tf.float64)
    return sums, centred


def _cache_key(loss_fn, variables, jit_compile, method):
    try:
        key = (loss_fn, tuple(id(v) for v in variables), bool(jit_compile),
               method)
        hash(key)
    except TypeError:
        return None
    return key


def _cached(model, key, build):
    cache = _MOMENT_FUNCTIONS.setdefault(model, {})
    if key is not None and key in cache:
        return cache[key]
    function = build()
    if key is not None:
        cache[key] = function
    return function


def _chunk_moments_function(model, loss_fn, jit_compile):
    """Returns a traced function giving one chunk's gradient moments.

    The reference method, valid for any model: for a chunk of b examples it
    returns the per-variable sums of the per-example gradients and the sum
    over examples of |g_j - m|^2, m being the chunk's mean gradient.
    Per-example gradients come from `tf.vectorized_map` (one pfor-vectorized
    backward pass for the chunk), never from a Python loop, so memory and
    time grow as b times the number of weights.
    """
    variables = list(model.trainable_variables)

    def build():
        example_gradients = _example_gradients_function(
            model, loss_fn, variables)

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def chunk_moments(x, y):
            return _vectorized_moments(example_gradients, x, y)

        return chunk_moments

    key = _cache_key(loss_fn, variables, jit_compile, "vectorized")
    return _cached(model, key, build)


class _ChainPlan(typing.NamedTuple):
    """How the factored method runs a model (see `_layer_chain`)."""

    layers: tuple  # the layers in call order
    factored: tuple  # per layer: True for a Dense handled as outer products
    input_dtype: str  # the dtype the model converts its input to


def _is_factorable_dense(layer, inputs, trainable_ids):
    # Exactly keras.layers.Dense (a subclass may change `call`), applied to a
    # rank-2 input without a mask, computing in its variables' dtype, with
    # the kernel and bias as its own trainable variables (no LoRA, no
    # quantization): then z = a W + b and dW_j = a_j delta_j^T.
    return (
        type(layer) is keras.layers.Dense
        and not getattr(layer, "lora_enabled", False)
        and getattr(layer, "quantization_mode", None) is None
        and layer.compute_dtype == layer.variable_dtype
        and len(inputs.shape) == 2
        and getattr(inputs, "_keras_mask", None) is None
        and any(id(v) in trainable_ids for v in layer.trainable_variables)
        and all(id(v) in (id(layer.kernel), id(layer.bias))
                for v in layer.trainable_variables)
    )


def _layer_chain(model, x):
    """Returns a `_ChainPlan` if the factored method applies, else None.

    It applies when `x` is a single array and `model` is a `keras.Sequential`
    or a functional `keras.Model` (neither with its own `call`) whose graph
    is a single chain: one input, one output, every layer called exactly
    once on the previous layer's output and nothing else, no Keras
    operations outside layers, each trainable variable owned by exactly one
    layer of the chain, and at least one `keras.layers.Dense` with trainable
    weights applied to a rank-2 input. Anything else (several inputs or
    outputs, branches, shared layers, subclassed models) returns None and
    uses the vectorized method.
    """
    if tf.nest.is_nested(x) or not _has_keras_call(model):
        return None
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
        layers = [layer for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer)]
    except (AttributeError, ValueError):
        return None  # Not built on symbolic inputs.
    if (len(inputs) != 1 or len(outputs) != 1 or inputs[0].sparse
            or len(x.shape) != len(inputs[0].shape)):
        return None  # The model would also adjust the input's rank.
    trainable_ids = {id(v) for v in model.trainable_variables}
    tensor = inputs[0]
    factored = []
    owned = []
    for layer in layers:
        nodes = [node for node in getattr(layer, "_inbound_nodes", ())
                 if len(node.input_tensors) == 1
                 and node.input_tensors[0] is tensor]
        if len(nodes) != 1:
            return None
        node = nodes[0]
        arguments = node.arguments
        if (len(arguments.args) != 1 or set(arguments.kwargs) - {"training"}
                or len(node.output_tensors) != 1):
            return None
        factored.append(_is_factorable_dense(layer, tensor, trainable_ids))
        owned.extend(id(v) for v in layer.trainable_variables)
        tensor = node.output_tensors[0]
    if (tensor is not outputs[0] or not any(factored)
            or getattr(tensor, "_keras_mask", None) is not None):
        return None
    if len(owned) != len(set(owned)) or set(owned) != trainable_ids:
        return None  # Shared or model-level variables.
    return _ChainPlan(tuple(layers), tuple(factored), inputs[0].dtype)


def _has_keras_call(model):
    """Whether `model` is a Sequential or functional model with Keras' call."""
    if type(model).call is keras.Sequential.call:
        return True
    # Keras exports no name for the class of `keras.Model(inputs, outputs)`.
    from keras.src.models.functional import Functional  # noqa: PLC0415
    return isinstance(model, Functional) and type(model).call is Functional.call


def _factored_moments_function(model, loss_fn, jit_compile, plan):
    """Returns a traced function giving one chunk's moments, Dense factored.

    Same results as `_chunk_moments_function`, without materializing the
    per-example gradients of the factored Dense layers (`plan.factored`).
    Running the chain one layer at a time exposes each such layer's input
    a_j and pre-activation z_j = a_j W + b; one backward pass of sum_j f_j
    gives the rows delta_j = df_j / dz_j (exact: with training=False every
    example's output depends on that example only). The example's gradient
    is then dW_j = a_j delta_j^T and db_j = delta_j, so that

        sum_j |dW_j - M|^2 = sum_j |a_j|^2 |delta_j|^2 - b |M|^2,
        M = (1/b) sum_j a_j delta_j^T = A^T Delta / b,

    computed in float64 so that the difference keeps the precision of a_j
    and delta_j (the bias term is centred directly). Variables of the other
    layers get per-example gradients from `tf.vectorized_map`, as in the
    vectorized method.
    """
    variables = list(model.trainable_variables)
    trainable_ids = {id(v) for v in variables}
    factored_ids = {
        id(v)
        for layer, factored in zip(plan.layers, plan.factored) if factored
        for v in layer.trainable_variables}
    other_variables = [v for v in variables if id(v) not in factored_ids]

    def example_loss_gradient(example):
        # df_j / d(prediction_j), differentiated inside the vectorized map:
        # XLA then compiles one program for all data (differentiating
        # through the map makes it fold the chunk in as a constant).
        y, prediction = example
        prediction = _expand_example(prediction)
        with tf.GradientTape() as tape:
            tape.watch(prediction)
            loss = _example_loss(loss_fn, _expand_example(y), prediction)
        return tape.gradient(
            loss, prediction,
            unconnected_gradients=tf.UnconnectedGradients.ZERO)[0]

    def build():
        example_gradients = _example_gradients_function(
            model, loss_fn, other_variables)

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def chunk_moments(x, y):
            x = ops.convert_to_tensor(x, dtype=plan.input_dtype)
            # Only the pre-activations are differentiated in this pass.
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                outputs = x
                dense = []
                for layer, factored in zip(plan.layers, plan.factored):
                    if not factored:
                        outputs = layer(outputs, training=False)
                        continue
                    inputs = ops.cast(outputs, layer.compute_dtype)
                    outputs = ops.matmul(inputs, layer.kernel)
                    if layer.bias is not None:
                        outputs = ops.add(outputs, layer.bias)
                    tape.watch(outputs)
                    dense.append((layer, inputs, outputs))
                    if layer.activation is not None:
                        outputs = layer.activation(outputs)
            # Per-example losses exactly as the vectorized method forms them;
            # back-propagating their gradients gives every delta_j.
            loss_gradients = tf.vectorized_map(
                example_loss_gradient, (y, outputs))
            deltas = tape.gradient(
                outputs, [z for _, _, z in dense],
                output_gradients=loss_gradients,
                unconnected_gradients=tf.UnconnectedGradients.ZERO)

            sums = {}
            centred = tf.constant(0.0, tf.float64)
            count = tf.cast(tf.shape(x)[0], tf.float64)
            for (layer, inputs, _), delta in zip(dense, deltas):
                delta = tf.cast(delta, tf.float64)
                if id(layer.kernel) in trainable_ids:
                    inputs = tf.cast(inputs, tf.float64)
                    kernel_sum = tf.matmul(inputs, delta, transpose_a=True)
                    squared_norms = (
                        tf.reduce_sum(tf.square(inputs), axis=1)
                        * tf.reduce_sum(tf.square(delta), axis=1))
                    # >= 0 exactly; clipped against rounding, e.g. b = 1.
                    centred += tf.maximum(
                        tf.reduce_sum(squared_norms)
                        - tf.reduce_sum(tf.square(kernel_sum)) / count, 0.0)
                    sums[id(layer.kernel)] = kernel_sum
                if layer.bias is not None and id(layer.bias) in trainable_ids:
                    bias_sum = tf.reduce_sum(delta, axis=0)
                    centred += tf.reduce_sum(
                        tf.square(delta - bias_sum / count))
                    sums[id(layer.bias)] = bias_sum
            if other_variables:
                other_sums, other_centred = _vectorized_moments(
                    example_gradients, x, y)
                sums.update(
                    (id(v), s) for v, s in zip(other_variables, other_sums))
                centred += other_centred
            return [sums[id(v)] for v in variables], centred

        return chunk_moments

    key = _cache_key(loss_fn, variables, jit_compile, "factored")
    return _cached(model, key, build)


def _num_examples(x):
    leaves = tf.nest.flatten(x)
    return int(leaves[0].shape[0])


def _gradient_moments(model, loss_fn, x, y, batch_size, jit_compile,
                      method="auto"):
    """Returns (N, mean gradient, sum_j |g_j - mean|^2) in float64.

    `method` is one of `_METHODS`. Chunks are merged with Chan et al.'s
    pairwise update, so across chunks the spread of the gradients is never
    obtained as a difference of two large numbers.
    """
    _validation.check_choice("method", method, _METHODS)
    plan = None if method == "vectorized" else _layer_chain(model, x)
    if method == "factored" and plan is None:
        raise ValueError(
            "method='factored' needs a chain of layers with a Dense layer "
            "(see _layer_chain), got a model without one")
    if plan is None:
        chunk_moments = _chunk_moments_function(model, loss_fn, jit_compile)
    else:
        chunk_moments = _factored_moments_function(
            model, loss_fn, jit_compile, plan)
    total = _num_examples(x)
    count = 0
    mean = None
    scatter = 0.0
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        x_chunk = tf.nest.map_structure(
            lambda t, a=start, b=stop: tf.convert_to_tensor(t[a:b]), x)
        y_chunk = tf.nest.map_structure(
            lambda t, a=start, b=stop: tf.convert_to_tensor(t[a:b]), y)
        sums, centred = chunk_moments(x_chunk, y_chunk)
        size = stop - start
        chunk_mean = np.concatenate(
            [np.asarray(s, dtype=np.float64).ravel() for s in sums]) / size
        centred = float(centred)
        if mean is None:
            mean, scatter = chunk_mean, centred
        else:
            shift = chunk_mean - mean
            mean = mean + shift * (size / (count + size))
            scatter += centred + float(shift @ shift) * count * size / (
                count + size)
        count += size
    return count, mean, scatter


def _diffusion(second_moment, mean_squared_norm, squared_mean_norm,
               num_weights):
    """D = (<alpha^2> mean_j |g_j|^2 - |g|^2) / n (Appendix A, eq. 31)."""
    return (second_moment * mean_squared_norm - squared_mean_norm) / num_weights


def estimate_diffusion(model, loss_fn, x, y, delta=0.0, batch_size=256,
                       return_pieces=False, jit_compile=False):
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
    automatically; both give the same result up to rounding:

    - Factored, when `model` is a `keras.Sequential` or functional model
      whose layers form a single chain (one input, one output, no branches
      or shared layers) with at least one `keras.layers.Dense` on rank-2
      inputs, as Model 1 and the heads of Models 2 and 3. Such a layer's
      per-example kernel gradient is the outer product a_j delta_j^T of its
      input and the gradient of f_j with respect to its pre-activation, so
      |g_j|^2 = |a_j|^2 |delta_j|^2 + |delta_j|^2 (bias) and the sum of
      those gradients is one matrix product; one batched forward and
      backward pass gives a_j and delta_j, and the outer products are never
      formed. The weights of the chain's other layers (convolutions, ...)
      get per-example gradients as below.
    - Vectorized, for every other model: `tf.vectorized_map` over the
      examples of a chunk, so memory grows as `batch_size` times the number
      of weights.

    The factored way assumes what `training=False` guarantees for Keras'
    layers: each example's output depends on that example only. The traced
    functions are cached per model and loss, so repeated calls (e.g. from
    `TemperatureMonitor`) do not retrace. Accumulation is in float64.

    Args:
        model: a built `keras.Model` (or layer) whose trainable weights are
            differentiated.
        loss_fn: a Keras loss: a `keras.losses.Loss`, a name such as
            `"mean_squared_error"`, or a callable `loss_fn(y_true, y_pred)`.
            It is called on batches of one example; the mean of its output
            is that example's loss f_j.
        x: array, tensor or nested structure of them: the probe inputs, with
            examples along the first axis.
        y: array or tensor (or nested structure): the probe targets.
        delta: float in [0, 1], the half-width of the random factor alpha.
            Enters only through `<alpha^2>`. Defaults to `0.0`.
        batch_size: int >= 1, the number of examples whose gradients are
            computed at once. Defaults to `256`.
        return_pieces: bool. If True, returns a `DiffusionEstimate` with the
            pieces of the formula. Defaults to `False`.
        jit_compile: bool, whether to compile the per-chunk computation with
            XLA. Defaults to `False`.

    Returns:
        D as a Python float, or a `DiffusionEstimate(diffusion,
        mean_squared_norm, squared_mean_norm, num_weights, num_examples)`
        if `return_pieces` is True.

    Raises:
        ValueError: if `delta` or `batch_size` is invalid, the probe set is
            empty, `x` and `y` differ in length or `model` has no trainable
            weights.

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
    batch_size = _check_batch_size("batch_size", batch_size)
    loss_fn = _resolve_loss(loss_fn)
    num_weights = int(sum(
        np.prod(v.shape, dtype=np.int64) for v in model.trainable_variables))
    if num_weights == 0:
        raise ValueError(
            "model must have trainable weights, got a model with none")
    if _num_examples(x) == 0:
        raise ValueError("x must hold at least one example, got none")
    if _num_examples(y) != _num_examples(x):
        raise ValueError(
            f"y must hold as many examples as x ({_num_examples(x)}), got "
            f"{_num_examples(y)}")
    count, mean, scatter = _gradient_moments(
        model, loss_fn, x, y, batch_size, jit_compile)
    squared_mean_norm = float(mean @ mean)
    mean_squared_norm = scatter / count + squared_mean_norm
    diffusion = _diffusion(
        second_moment, mean_squared_norm, squared_mean_norm, num_weights)
    if return_pieces:
        return DiffusionEstimate(
            diffusion, mean_squared_norm, squared_mean_norm, num_weights,
            count)
    return diffusion


# Monitor ---------------------------------------------------------------------


def _deserialize_arrays(value):
    # `serialize_keras_object` stores NumPy arrays nested in a config as
    # {"class_name": "__numpy__", ...}; `from_config` receives them so.
    if isinstance(value, dict):
        if value.get("class_name") == "__numpy__":
            return keras.saving.deserialize_keras_object(value)
        return {k: _deserialize_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_deserialize_arrays(v) for v in value)
    return value


def _mean_learning_rate(optimizer):
    """The optimizer's current mean learning rate l.

    For `RandomLRSGD` and Keras optimizers with a float learning rate this is
    `optimizer.learning_rate`. A schedule that multiplies a base learning rate
    by the random factor (`RandomLearningRate`: it has `delta` and
    `learning_rate` attributes) has the base rate as its mean.
    """
    schedule = _optimizer_utils.learning_rate_object(optimizer)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        base = getattr(schedule, "learning_rate", None)
        if base is not None and hasattr(schedule, "delta"):
            if isinstance(
                    base, keras.optimizers.schedules.LearningRateSchedule):
                base = base(optimizer.iterations)
            return float(ops.convert_to_numpy(base))
    return float(ops.convert_to_numpy(optimizer.learning_rate))


def _optimizer_delta(optimizer):
    delta = getattr(optimizer, "delta", None)
    if delta is None:
        schedule = _optimizer_utils.learning_rate_object(optimizer)
        delta = getattr(schedule, "delta", None)
    return 0.0 if delta is None else float(delta)


@keras.saving.register_keras_serializable(package="rlr_keras")
class TemperatureMonitor(keras.callbacks.Callback):
    """Measures the diffusion coefficient D and the temperature T in training.

    At the end of every `frequency`-th epoch (epochs 0, k, 2k, ... as in
    `keras.callbacks.TensorBoard(histogram_freq=k)`) the callback measures D
    on the fixed probe set `(x, y)` with `estimate_diffusion` and computes

        T = l * D / (2 * C * (1 - mu))                          (eq. 20)

    with `l` the optimizer's current mean learning rate, `mu` its `momentum`
    (0 for optimizers without one), `C = batch_size` and `D` the measured
    diffusion. Both are written into the epoch logs under `"diffusion"` and
    `"temperature"` (so `History`, `CSVLogger` and a later
    `keras.callbacks.TensorBoard` see them) and, if `log_dir` is given, as
    TensorBoard scalars `epoch_diffusion` and `epoch_temperature` at
    step = epoch in `<log_dir>/train`, the directory and tags that
    `keras.callbacks.TensorBoard(log_dir)` uses for epoch metrics. If you also
    use `keras.callbacks.TensorBoard`, list this callback before it and leave
    `log_dir=None`: TensorBoard then writes the two new log entries itself.

    Args:
        x: array (or nested structure of arrays): the probe inputs, held
            fixed for the whole training.
        y: array (or nested structure): the probe targets.
        batch_size: int >= 1, the training mini-batch size `C` (a callback
            cannot read it from `fit`).
        loss: the data loss used for D: a `keras.losses.Loss`, a loss name
            or a registered loss function, or `None` for the model's compiled
            loss. Defaults to `None`.
        delta: float in [0, 1], the random-factor half-width, or `None` to
            read the optimizer's `delta` (or its learning-rate schedule's;
            0 if neither has one). Defaults to `None`.
        frequency: int >= 1, measure every `frequency` epochs. Defaults to
            `1`.
        probe_batch_size: int >= 1, chunk size of the per-example gradient
            computation. Defaults to `256`.
        log_dir: str or `None`: TensorBoard log directory. Defaults to
            `None` (logs only).
        jit_compile: bool, compile the measurement with XLA. Defaults to
            `False`.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mean_squared_error")
    >>> x = np.ones((8, 3), "float32")
    >>> monitor = TemperatureMonitor(x, x[:, :1], batch_size=4)
    >>> history = model.fit(x, x[:, :1], batch_size=4, callbacks=[monitor],
    ...                     verbose=0)
    >>> "temperature" in history.history
    True

    References:
        D. Musso, "Stochastic gradient descent with random learning rate",
        2020, eq. 20 and Appendix A.
    """

    def __init__(self, x, y, batch_size, loss=None, delta=None, frequency=1,
                 probe_batch_size=256, log_dir=None, jit_compile=False):
        super().__init__()
        self.x = tf.nest.map_structure(np.asarray, x)
        self.y = tf.nest.map_structure(np.asarray, y)
        if _num_examples(self.x) == 0:
            raise ValueError("x must hold at least one example, got none")
        if _num_examples(self.y) != _num_examples(self.x):
            raise ValueError(
                "y must hold as many examples as x "
                f"({_num_examples(self.x)}), got {_num_examples(self.y)}")
        self.batch_size = _check_batch_size("batch_size", batch_size)
        if loss is not None and not isinstance(loss, (str, dict)):
            loss = _resolve_loss(loss)
        self.loss = loss
        self.delta = None if delta is None else validate_delta(delta)
        self.frequency = _validation.check_int("frequency", frequency, 1)
        self.probe_batch_size = _check_batch_size(
            "probe_batch_size", probe_batch_size)
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise ValueError(f"log_dir must be a path or None, got {log_dir!r}")
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.jit_compile = bool(jit_compile)
        self._writer = None

    def _loss(self):
        loss = self.loss if self.loss is not None else self.model.loss
        if loss is None or isinstance(loss, (list, tuple)) or (
                isinstance(loss, dict) and "class_name" not in loss):
            raise ValueError(
                "TemperatureMonitor needs a single loss: pass loss= or "
                f"compile the model with one, got {loss!r}")
        return _resolve_loss(loss)

    def measure(self):
        """Returns (D, T) for the model's current weights."""
        optimizer = _optimizer_utils.unwrap(self.model.optimizer)
        delta = (self.delta if self.delta is not None
                 else _optimizer_delta(optimizer))
        diffusion = estimate_diffusion(
            self.model, self._loss(), self.x, self.y, delta=delta,
            batch_size=self.probe_batch_size, jit_compile=self.jit_compile)
        temperature = effective_temperature(
            _mean_learning_rate(optimizer), self.batch_size,
            float(getattr(optimizer, "momentum", 0.0) or 0.0), diffusion)
        return diffusion, temperature

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.frequency:
            return
        diffusion, temperature = self.measure()
        if logs is not None:
            logs["diffusion"] = diffusion
            logs["temperature"] = temperature
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(
                    os.path.join(self.log_dir, "train"))
            with self._writer.as_default():
                tf.summary.scalar("epoch_diffusion", diffusion, step=epoch)
                tf.summary.scalar("epoch_temperature", temperature, step=epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        loss = self.loss
        if loss is not None and not isinstance(loss, (str, dict)):
            loss = keras.losses.serialize(loss)
        return {
            "x": self.x,
            "y": self.y,
            "batch_size": self.batch_size,
            "loss": loss,
            "delta": self.delta,
            "frequency": self.frequency,
            "probe_batch_size": self.probe_batch_size,
            "log_dir": self.log_dir,
            "jit_compile": self.jit_compile,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["x"] = _deserialize_arrays(config["x"])
        config["y"] = _deserialize_arrays(config["y"])
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)


# Command line ----------------------------------------------------------------


def _parse_match(items):
    parsers = {"learning_rate": float, "batch_size": int, "momentum": float}
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in parsers:
            raise ValueError(
                "--match entries must be NAME=VALUE with NAME one of "
                f"{', '.join(_QUANTITIES)}, got {item!r}")
        try:
            values[name] = parsers[name](text)
        except ValueError:
            raise ValueError(
                f"--match {name} must be a {parsers[name].__name__}, got "
                f"{text!r}") from None
    return values


def _describe(config):
    return (f"learning_rate={config.learning_rate:.6g} "
            f"batch_size={config.batch_size} momentum={config.momentum:.6g} "
            f"T/D={effective_temperature(*config):.6g}")


def main(argv=None):
    """Command line of the equal-temperature planner; returns an exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m rlr_keras.temperature",
        description="Find the training configuration with the same effective "
                    "temperature T = l D / (2 C (1 - mu)) (Musso, eq. 20).")
    parser.add_argument("--learning_rate", type=float, required=True,
                        help="reference mean learning rate l")
    parser.add_argument("--batch_size", type=int, required=True,
                        help="reference mini-batch size C")
    parser.add_argument("--momentum", type=float, default=0.0,
                        help="reference momentum mu (default 0)")
    parser.add_argument("--match", nargs="+", default=[],
                        metavar="NAME=VALUE",
                        help="values of the new configuration, e.g. "
                             "batch_size=30; the others are copied from the "
                             "reference except the one solved for")
    parser.add_argument("--solve_for", choices=_QUANTITIES, default=None,
                        help="quantity to solve for (default: the first of "
                             "learning_rate, batch_size, momentum not given "
                             "in --match)")
    args = parser.parse_args(argv)
    try:
        new = _parse_match(args.match)
        reference = Hyperparameters(
            args.learning_rate, args.batch_size, args.momentum)
        matched = match_temperature(
            *reference, solve_for=args.solve_for,
            **{f"new_{name}": value for name, value in new.items()})
    except ValueError as error:
        parser.error(str(error))
    print(f"reference: {_describe(reference)}")
    print(f"matched:   {_describe(matched)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
