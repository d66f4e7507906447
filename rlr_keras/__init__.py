"""rlr_keras: stochastic gradient descent with random learning rate.

Keras 3 / TensorFlow implementation of D. Musso, "Stochastic gradient descent
with random learning rate" (2020).
"""

__version__ = "0.1.0"

# Core (optimizer, random factor, random learning-rate schedule).
from rlr_keras.random_factor import alpha_second_moment
from rlr_keras.random_factor import random_factor
from rlr_keras.optimizers import RandomLRSGD
from rlr_keras.schedules import RandomLearningRate

# Protocols and monitoring (callbacks, protocols).

# Effective temperature.

# Models and data.
