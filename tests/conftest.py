"""Test-session set-up: the Keras backend, quiet logs, two logical devices.

The backend is `KERAS_BACKEND` (TensorFlow when unset); the README's test
command runs the suite once per backend. Keras reads the variable when it is
first imported, so it is fixed for the whole session.

- Tests that only make sense on TensorFlow (tf.distribute, TFDS, tf.data)
  carry `@pytest.mark.tensorflow_only` and are skipped on the other backends.
- Modules whose code under test does not depend on the backend (plot.py and
  its statistics, the temperature formula and planner, train.py's argument
  errors) carry `pytestmark = pytest.mark.backend_independent` and run once,
  in the TensorFlow run, to keep the three runs short.
- Two logical CPU devices are configured before a backend initializes its
  runtime: `/cpu:0` and `/cpu:1` on TensorFlow (MirroredStrategy tests), two
  host devices on JAX (`keras.distribution.DataParallel` tests).
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
BACKEND = os.environ["KERAS_BACKEND"]

if BACKEND == "jax":
    _flag = "--xla_force_host_platform_device_count=2"
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

if BACKEND == "tensorflow":
    import tensorflow as tf  # noqa: E402

    _cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0],
            [tf.config.LogicalDeviceConfiguration(),
             tf.config.LogicalDeviceConfiguration()],
        )
    except RuntimeError:  # Already initialized (e.g. by a plugin).
        pass


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tensorflow_only: needs the TensorFlow backend (skipped on others)")
    config.addinivalue_line(
        "markers",
        "backend_independent: runs once, in the TensorFlow run")
    config.addinivalue_line(
        "markers",
        "slow: among the slowest tests; CI runs them, -m 'not slow' skips "
        "them for a quick check")


def pytest_report_header(config):
    del config
    return f"keras backend: {BACKEND}"


def pytest_collection_modifyitems(config, items):
    del config
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"TensorFlow backend only (this run: {BACKEND})")
    once = pytest.mark.skip(
        reason="backend-independent: runs once, in the TensorFlow run")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)
        elif "backend_independent" in item.keywords:
            item.add_marker(once)
