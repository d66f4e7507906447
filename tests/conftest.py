"""Test-session set-up: quiet TensorFlow and two logical CPU devices.

Logical devices can only be configured before TensorFlow initializes its
runtime, so this happens once here for the whole session; tests that need a
`tf.distribute.MirroredStrategy` over two replicas use `/cpu:0` and `/cpu:1`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration(),
         tf.config.LogicalDeviceConfiguration()],
    )
except RuntimeError:  # Already initialized (e.g. by a plugin); keep going.
    pass
