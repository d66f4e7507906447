"""Tests for the package itself: version, public names, typing, license."""

import configparser
import importlib
import os
import re

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
