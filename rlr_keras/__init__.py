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

# Keras imports its backend (TensorFlow by default), which writes start-up
# lines such as "oneDNN custom operations are on" to fd 2: those known lines
# are dropped, every other line kept, and TF_CPP_MIN_LOG_LEVEL is 3 unless
# the user set it (rlr_keras._quiet; the installed commands need it set
# before TensorFlow starts).
from rlr_keras import _quiet

with _quiet.quiet_imports():
    # Core (optimizer, random factor, random learning-rate schedule).
    # The alpha stream itself is `rlr_keras.random_factor.random_factor`.
    from rlr_keras.random_factor import alpha_second_moment
    from rlr_keras.optimizers import RandomLRSGD
    from rlr_keras.schedules import RandomLearningRate

    # Protocols and monitoring (callbacks, protocols).
    from rlr_keras import protocols
    from rlr_keras.callbacks import CyclicCosine
    from rlr_keras.callbacks import EpochSummaries
    from rlr_keras.callbacks import LearningRateMonitor
    from rlr_keras.protocols import PROTOCOLS
    from rlr_keras.protocols import Protocol
    from rlr_keras.schedules import CyclicCosineSchedule
    from rlr_keras.schedules import cyclic_cosine

    # Effective temperature.
    from rlr_keras.callbacks import TemperatureMonitor
    from rlr_keras.diffusion import DiffusionEstimate
    from rlr_keras.diffusion import estimate_diffusion
    from rlr_keras.temperature import Hyperparameters
    from rlr_keras.temperature import effective_temperature
    from rlr_keras.temperature import match_temperature

    # Models and data.
    from rlr_keras import data
    from rlr_keras import models
    from rlr_keras.data import ArrayBatches
    from rlr_keras.data import ImageDataset
    from rlr_keras.data import epoch_order
    from rlr_keras.data import eval_pipeline
    from rlr_keras.data import load_dataset
    from rlr_keras.data import parse_dataset_spec
    from rlr_keras.data import probe_subset
    from rlr_keras.data import steps_per_epoch
    from rlr_keras.data import train_pipeline
    from rlr_keras.models import MODEL_NAMES
    from rlr_keras.models import VGG16Preprocessing
    from rlr_keras.models import build_model

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
    "steps_per_epoch",
    "train_pipeline",
]
