"""Reading a compiled model's optimizer, shared by the callbacks."""


def unwrap(optimizer):
    """Returns the optimizer that owns the learning rate and the iterations.

    `keras.optimizers.LossScaleOptimizer` (mixed precision) delegates both to
    its `inner_optimizer`.
    """
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def learning_rate_object(optimizer):
    """Returns the learning rate as given: a variable, schedule or callable.

    Keras keeps the constructor's learning rate in `_learning_rate`; the
    public property evaluates it, which hides what kind it is.
    """
    return getattr(optimizer, "_learning_rate", None)
