"""rlr_keras: stochastic gradient descent with random learning rate.

A Keras 3 implementation, on the TensorFlow, JAX and PyTorch backends, of
D. Musso, "Stochastic gradient descent with random learning rate"
(arXiv:2003.06926, 2020): the `RandomLRSGD` optimizer and the
`RandomLearningRate` schedule for any Keras optimizer, the paper's constant,
random and cyclic protocols (`protocols.build`), their monitoring callbacks,
and the effective temperature of eq. 20 with its measured diffusion.
"""

# The package's version, defined here only (setup.cfg reads it).
__version__ = "0.2.0"

# Where each public name lives. The package imports them on first use (PEP
# 562), so that the commands' flags (`rlr-train --helpfull`) load without
# Keras; `register_keras_objects` below says when they are imported anyway.
_LOCATIONS = {
    # Core (optimizer, random factor, random learning-rate schedule).
    # The alpha stream itself is `rlr_keras.random_factor.random_factor`.
    "alpha_second_moment": "rlr_keras.random_factor",
    "RandomLRSGD": "rlr_keras.optimizers",
    "RandomLearningRate": "rlr_keras.schedules",
    # Protocols and monitoring (callbacks, protocols).
    "CyclicCosine": "rlr_keras.callbacks",
    "EpochSummaries": "rlr_keras.callbacks",
    "LearningRateMonitor": "rlr_keras.callbacks",
    "PROTOCOLS": "rlr_keras.protocols",
    "Protocol": "rlr_keras.protocols",
    "CyclicCosineSchedule": "rlr_keras.schedules",
    "cyclic_cosine": "rlr_keras.schedules",
    # Effective temperature.
    "TemperatureMonitor": "rlr_keras.callbacks",
    "DiffusionEstimate": "rlr_keras.diffusion",
    "estimate_diffusion": "rlr_keras.diffusion",
    "Hyperparameters": "rlr_keras.temperature",
    "effective_temperature": "rlr_keras.temperature",
    "match_temperature": "rlr_keras.temperature",
    # Models and data.
    "ArrayBatches": "rlr_keras.data",
    "ImageDataset": "rlr_keras.data",
    "epoch_order": "rlr_keras.data",
    "eval_pipeline": "rlr_keras.data",
    "load_dataset": "rlr_keras.data",
    "parse_dataset_spec": "rlr_keras.data",
    "probe_subset": "rlr_keras.data",
    "steps_per_epoch": "rlr_keras.data",
    "train_pipeline": "rlr_keras.data",
    "MODEL_NAMES": "rlr_keras.models",
    "VGG16Preprocessing": "rlr_keras.models",
    "build_model": "rlr_keras.models",
}
_SUBMODULES = ("data", "models", "protocols")


def register_keras_objects():
    """Imports every module of the package, registering its Keras objects.

    `keras.saving.load_model` finds `rlr_keras>RandomLRSGD` and the other
    registered objects only once their modules are imported. `import
    rlr_keras` does this at once when Keras is already imported, and
    otherwise as soon as Keras is (or at the first use of a name of the
    package); calling it is never needed, and harmless.

    Keras imports its backend (TensorFlow by default), which writes start-up
    lines such as "oneDNN custom operations are on" to fd 2: those known
    lines are dropped, every other line kept (rlr_keras._quiet).
    """
    import importlib  # pylint: disable=g-import-not-at-top

    from rlr_keras import _quiet  # pylint: disable=g-import-not-at-top

    with _quiet.quiet_imports():
        for module in sorted(set(_LOCATIONS.values())):
            importlib.import_module(module)


def __getattr__(name):
    if name in _LOCATIONS or name in _SUBMODULES:
        register_keras_objects()
        import importlib  # pylint: disable=g-import-not-at-top

        if name in _SUBMODULES:
            value = importlib.import_module(f"rlr_keras.{name}")
        else:
            value = getattr(importlib.import_module(_LOCATIONS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


from rlr_keras import _keras_hook  # pylint: disable=all

_keras_hook.when_keras_imported(register_keras_objects)

__all__ = [
    "MODEL_NAMES",
    "PROTOCOLS",
    "ArrayBatches",
    "CyclicCosine",
    "CyclicCosineSchedule",
    "DiffusionEstimate",
    "EpochSummaries",
    "Hyperparameters",
    "ImageDataset",
    "LearningRateMonitor",
    "Protocol",
    "RandomLRSGD",
    "RandomLearningRate",
    "TemperatureMonitor",
    "VGG16Preprocessing",
    "__version__",
    "alpha_second_moment",
    "build_model",
    "cyclic_cosine",
    "data",
    "effective_temperature",
    "epoch_order",
    "estimate_diffusion",
    "eval_pipeline",
    "load_dataset",
    "match_temperature",
    "models",
    "parse_dataset_spec",
    "probe_subset",
    "protocols",
    "register_keras_objects",
    "steps_per_epoch",
    "train_pipeline",
]
