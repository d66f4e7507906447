"""Tests for the package itself: version, public names, typing, license."""

import configparser
import importlib
import os
import re
import subprocess
import sys

import pytest

import rlr_keras

pytestmark = pytest.mark.backend_independent

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLIC_MODULES = ("callbacks", "diffusion", "optimizers", "protocols",
                  "random_factor", "schedules", "temperature")


def _setup_cfg():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"), encoding="utf-8")
    return config


def test_version_is_defined_once_and_is_the_changelog_top_entry():
    assert rlr_keras.__version__ == "0.2.0"
    assert _setup_cfg()["metadata"]["version"] == (
        "attr: rlr_keras.__version__")
    with open(os.path.join(REPO, "CHANGELOG.md"), encoding="utf-8") as file:
        versions = re.findall(r"^## (\S+)", file.read(), re.M)
    assert versions[0] == rlr_keras.__version__
    assert versions[-1] == "0.1.0"


@pytest.mark.parametrize("module", [None, *PUBLIC_MODULES])
def test_every_name_in_all_exists(module):
    module = (rlr_keras if module is None
              else importlib.import_module(f"rlr_keras.{module}"))
    assert module.__all__
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing
    assert len(set(module.__all__)) == len(module.__all__)


def test_package_re_exports_the_public_classes():
    for name in ("RandomLRSGD", "RandomLearningRate", "CyclicCosine",
                 "LearningRateMonitor", "TemperatureMonitor",
                 "EpochSummaries", "match_temperature"):
        assert name in rlr_keras.__all__


def test_ships_py_typed_and_the_license_of_its_metadata():
    assert os.path.isfile(os.path.join(REPO, "rlr_keras", "py.typed"))
    config = _setup_cfg()
    assert "py.typed" in config["options.package_data"]["rlr_keras"]
    assert config["metadata"]["license"] == "Apache-2.0"
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as file:
        text = file.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_package_docstring_names_every_backend():
    for backend in ("TensorFlow", "JAX", "PyTorch"):
        assert backend in rlr_keras.__doc__


def test_public_names_are_imported_on_first_use():
    assert set(rlr_keras.__all__) <= set(dir(rlr_keras))
    assert rlr_keras.RandomLRSGD is importlib.import_module(
        "rlr_keras.optimizers").RandomLRSGD
    assert rlr_keras.models is importlib.import_module("rlr_keras.models")
    with pytest.raises(AttributeError, match="no attribute 'RandomSGD'"):
        rlr_keras.RandomSGD  # noqa: B018


def test_name_lists_are_defined_once():
    from rlr_keras import _names  # pylint: disable=g-import-not-at-top
    from rlr_keras import models  # pylint: disable=g-import-not-at-top

    assert tuple(models._BUILDERS) == _names.MODEL_NAMES
    assert rlr_keras.MODEL_NAMES is _names.MODEL_NAMES
    assert rlr_keras.PROTOCOLS is _names.PROTOCOLS


@pytest.mark.parametrize("first", ["rlr_keras", "keras"])
def test_keras_file_loads_whichever_is_imported_first(tmp_path, first):
    # `import rlr_keras` imports no Keras; its Keras objects must still be
    # registered before keras.saving.load_model, in either import order.
    import keras  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=rlr_keras.RandomLRSGD(
        rlr_keras.RandomLearningRate(0.1, seed=1)), loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    second = "keras" if first == "rlr_keras" else "rlr_keras"
    program = (
        f"import sys; import {first}; import {second}\n"
        f"model = keras.saving.load_model({path!r})\n"
        "print(type(model.optimizer).__name__,"
        " type(model.optimizer._learning_rate).__name__)\n")
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True,
        timeout=300, check=False, env=dict(os.environ, PYTHONPATH=REPO))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["RandomLRSGD", "RandomLearningRate"]
