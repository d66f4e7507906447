"""Tests for rlr_keras.temperature and experiments/temperature.py.

Against hand computations and the paper's equal-temperature pairs; the
command line through the real script in a subprocess.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from rlr_keras.temperature import Hyperparameters
from rlr_keras.temperature import effective_temperature
from rlr_keras.temperature import match_temperature

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from rlr_keras.experiment.commands import temperature as temperature_script  # noqa: E402  pylint: disable=g-import-not-at-top

pytestmark = pytest.mark.backend_independent


# effective_temperature --------------------------------------------------------


def test_effective_temperature_matches_hand_computation():
    # 3e-4 * 2.5 / (2 * 50 * (1 - 0.4)) = 7.5e-4 / 60 = 1.25e-5
    assert effective_temperature(3e-4, 50, 0.4, 2.5) == pytest.approx(
        1.25e-5, rel=1e-12)


def test_default_diffusion_gives_temperature_over_diffusion():
    assert effective_temperature(2e-4, 60) == pytest.approx(
        2e-4 / 120, rel=1e-12)
    assert effective_temperature(2e-4, 60, diffusion=7.0) == pytest.approx(
        7.0 * effective_temperature(2e-4, 60), rel=1e-12)


# The equal-temperature pairs of the paper's Figures 5 and 6; the learning rate
# of the Model 2 pair is the mean of the uniform interval [0, 0.005].
PAPER_PAIRS = [
    ((2e-4, 60, 0.0), (1e-4, 30, 0.0)),
    ((2.5e-3, 60, 0.75), (2.5e-3, 30, 0.5)),
    ((2.5e-4, 128, 0.9), (5e-4, 256, 0.9)),
]


@pytest.mark.parametrize("reference, partner", PAPER_PAIRS)
def test_paper_pairs_have_equal_temperature(reference, partner):
    assert effective_temperature(*partner) == pytest.approx(
        effective_temperature(*reference), rel=1e-12)


def test_paper_counter_check_has_different_temperature():
    # Figure 5, experiment III: C = 60 and l = 1e-4 is half as hot.
    assert effective_temperature(1e-4, 60) == pytest.approx(
        0.5 * effective_temperature(2e-4, 60), rel=1e-12)


def test_planner_solves_learning_rate_for_figure_5():
    matched = match_temperature(2e-4, 60, 0.0, new_batch_size=30)
    assert matched.batch_size == 30 and matched.momentum == 0.0
    assert matched.learning_rate == pytest.approx(1e-4, rel=1e-12)


def test_planner_solves_momentum_for_figure_6_left():
    matched = match_temperature(2.5e-3, 60, 0.75, new_batch_size=30,
                                solve_for="momentum")
    assert matched.learning_rate == 2.5e-3 and matched.batch_size == 30
    assert matched.momentum == pytest.approx(0.5, rel=1e-12)


def test_planner_solves_batch_size_for_figure_6_right():
    matched = match_temperature(2.5e-4, 128, 0.9, new_learning_rate=5e-4)
    assert matched == Hyperparameters(5e-4, 256, 0.9)


@pytest.mark.parametrize("reference, partner", PAPER_PAIRS)
@pytest.mark.parametrize("solve_for",
                         ["learning_rate", "batch_size", "momentum"])
def test_planner_recovers_every_value_of_the_paper_pairs(
        reference, partner, solve_for):
    given = {f"new_{name}": value for name, value in zip(
        ("learning_rate", "batch_size", "momentum"), partner)
        if name != solve_for}
    matched = match_temperature(*reference, solve_for=solve_for, **given)
    np.testing.assert_allclose(matched, partner, rtol=1e-12, atol=1e-12)


def test_planner_copies_unspecified_values_from_reference():
    matched = match_temperature(1e-3, 32, 0.9, new_batch_size=64)
    assert matched.momentum == 0.9
    assert matched.learning_rate == pytest.approx(2e-3, rel=1e-12)


def test_planner_rounds_batch_size():
    matched = match_temperature(1e-3, 10, 0.0, new_learning_rate=2.04e-3)
    assert matched.batch_size == 20


def test_planner_momentum_outside_range_raises():
    # Halving C at fixed l and mu = 0 needs mu = -1.
    with pytest.raises(ValueError, match=r"no momentum in \[0, 1\)"):
        match_temperature(1e-4, 60, 0.0, new_batch_size=30,
                          solve_for="momentum")


def test_planner_batch_size_below_one_raises():
    with pytest.raises(ValueError, match="no batch size"):
        match_temperature(1e-2, 2, 0.0, new_learning_rate=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(new_learning_rate=1e-4, new_batch_size=30, new_momentum=0.0),
     "got all three"),
    (dict(new_batch_size=30, new_learning_rate=1e-4,
          solve_for="learning_rate"), "new_learning_rate must be None"),
    (dict(new_batch_size=30, solve_for="temperature"), "solve_for must be"),
    (dict(new_batch_size=0), "new_batch_size must be an integer"),
    (dict(new_momentum=1.0), r"new_momentum must be in \[0, 1\)"),
    (dict(new_learning_rate=-1.0), "new_learning_rate must be in"),
])
def test_planner_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        match_temperature(2e-4, 60, 0.0, **kwargs)


@pytest.mark.parametrize("args, message", [
    ((0.0, 60), r"learning_rate must be in \(0, inf\), got 0.0"),
    ((-1e-3, 60), "learning_rate must be in"),
    ((float("nan"), 60), "learning_rate must be finite"),
    ((1e-3, 0), r"batch_size must be an integer in \[1, inf\], got 0"),
    ((1e-3, -5), "batch_size must be an integer"),
    ((1e-3, 60, 1.0), r"momentum must be in \[0, 1\), got 1.0"),
    ((1e-3, 60, -0.1), "momentum must be in"),
    ((1e-3, 60, 0.0, -1.0), "diffusion must be in"),
])
def test_effective_temperature_invalid_arguments_raise(args, message):
    with pytest.raises(ValueError, match=message):
        effective_temperature(*args)


@pytest.mark.parametrize("args, message", [
    ((1e-3, 2.5), "batch_size must be an integer, got 2.5"),
    ((None, 60), "learning_rate must be a finite real number, got None"),
    (("1e-3", 60), "learning_rate must be a finite real number"),
    ((1e-3, 60, "0.9"), "momentum must be a finite real number"),
])
def test_effective_temperature_wrong_types_raise_type_error(args, message):
    with pytest.raises(TypeError, match=message):
        effective_temperature(*args)


def test_all_temperatures_are_finite_at_momentum_near_one():
    assert math.isfinite(effective_temperature(1e-3, 1, 1 - 1e-12))


@pytest.mark.parametrize("args, message", [
    ((1e308, 1, 0.999999), "not a finite float"),
    ((2e-4, 10**400), "not a finite float"),
])
def test_effective_temperature_out_of_float_range_raises(args, message):
    with pytest.raises(ValueError, match=message):
        effective_temperature(*args)


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=1e-300, batch_size=60, new_learning_rate=3e38),
     "batch_size=inf is beyond the float range"),
    (dict(learning_rate=5e-324, batch_size=10**6, new_batch_size=2),
     "underflows to 0"),
])
def test_planner_out_of_float_range_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        match_temperature(**kwargs)


def test_moved_names_are_only_in_their_new_modules():
    # 0.2.0 removed the aliases (CHANGELOG.md): no callbacks <-> temperature
    # import circle.
    from rlr_keras import temperature  # noqa: PLC0415

    for name in ("TemperatureMonitor", "estimate_diffusion",
                 "DiffusionEstimate"):
        assert not hasattr(temperature, name)
    with open(temperature.__file__, encoding="utf-8") as source:
        assert "rlr_keras.callbacks" not in source.read().replace(
            "`rlr_keras.callbacks.TemperatureMonitor`", "")


def test_running_the_module_says_where_the_command_line_is():
    result = subprocess.run(
        [sys.executable, "-m", "rlr_keras.temperature"], capture_output=True,
        text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 2
    assert result.stdout == ""
    # runpy may warn first that the package imported the module already.
    assert result.stderr.strip().splitlines()[-1] == (
        "rlr_keras.temperature is the planner's library module, not a "
        "command; run `rlr-temperature --help` (installed with rlr_keras) "
        "or, in a checkout, `python experiments/temperature.py --help`")


@pytest.mark.parametrize("kwargs, message", [
    # C = l / (2 (1 - mu) T): a tiny new l needs a larger l or mu.
    (dict(new_learning_rate=1e-300),
     r"solution is batch_size=3e-295; raise new_learning_rate or "
     "new_momentum"),
    # l = 2 C (1 - mu) T: a huge C needs a smaller C or a larger mu.
    (dict(new_batch_size=10**55),
     r"solution learning_rate=3\.33333e\+49 is beyond float32 \(at most "
     r"3\.402823e\+38, the limit of RandomLRSGD and Keras optimizers\); "
     "lower new_batch_size or raise new_momentum"),
    (dict(new_batch_size=1, new_learning_rate=1.0, solve_for="momentum"),
     r"momentum=-299999\.0; lower new_learning_rate or raise new_batch_size"),
])
def test_planner_says_which_way_to_change_the_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        match_temperature(2e-4, 60, 0.0, **kwargs)


def test_planner_never_proposes_a_learning_rate_the_optimizer_refuses():
    from rlr_keras import RandomLRSGD  # noqa: PLC0415

    # Just below float32's limit, the proposal is accepted by the optimizer.
    matched = match_temperature(2e-4, 60, 0.0, new_batch_size=10**43)
    assert matched.learning_rate <= 3.4028234663852886e38
    RandomLRSGD(learning_rate=matched.learning_rate)
    with pytest.raises(ValueError, match="beyond float32"):
        match_temperature(2e-4, 60, 0.0, new_batch_size=10**45)
    with pytest.raises(ValueError, match="new_learning_rate must be finite "
                                         "in float32"):
        match_temperature(2e-4, 60, 0.0, new_learning_rate=1e39)


# Command line (experiments/temperature.py) ------------------------------------


def _run_script(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "temperature.py"),
         *args],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": REPO})


def test_command_line_prints_matching_configuration():
    result = _run_script("--learning_rate=2e-4", "--batch_size=60",
                         "--momentum=0", "--match", "batch_size=30")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "reference: learning_rate=0.0002 batch_size=60 momentum=0 "
        "T/D=1.66667e-06",
        "matched:   learning_rate=0.0001 batch_size=30 momentum=0 "
        "T/D=1.66667e-06",
    ]


@pytest.mark.parametrize("args, message", [
    (["--match", "batch_size=30", "--match", "batch_size=40"],
     "error: --match gives batch_size twice (30 and '40'); give each name "
     "at most once"),
    (["--match", "learning_rate=3e38", "--learning_rate=1e-300"],
     "error: no batch size matches the reference temperature: the solution "
     "batch_size=inf is beyond the float range; lower new_learning_rate or "
     "new_momentum"),
    (["--match", "learning_rate=1e-300"],
     "error: no batch size >= 1 matches the reference temperature: the "
     "solution is batch_size=3e-295; raise new_learning_rate or "
     "new_momentum"),
])
def test_command_line_errors_are_one_line_without_traceback(args, message):
    result = _run_script("--learning_rate=2e-4", "--batch_size=60", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == message


def test_run_solves_momentum():
    lines = temperature_script.run(learning_rate=2.5e-3, batch_size=60,
                                   momentum=0.75, match=["batch_size=30"],
                                   solve_for="momentum")
    assert "momentum=0.5 " in lines[1]


@pytest.mark.parametrize("match, message", [
    (["batch_size"], "must be NAME=VALUE"),
    (["size=3"], "must be NAME=VALUE"),
    (["batch_size=x"], "--match batch_size must be a int, got 'x'"),
    (["momentum=0.1", "momentum=0.2"], "gives momentum twice"),
])
def test_run_rejects_bad_match(match, message):
    with pytest.raises(ValueError, match=message):
        temperature_script.run(learning_rate=2e-4, batch_size=60, match=match)


def test_run_reports_unsolvable_request():
    # Halving C at fixed l needs a negative momentum.
    with pytest.raises(ValueError, match=r"no momentum in \[0, 1\)"):
        temperature_script.run(learning_rate=2e-4, batch_size=60,
                               match=["batch_size=30"], solve_for="momentum")


def test_run_turns_overflow_into_value_error():
    with pytest.raises(ValueError, match="float"):
        temperature_script.run(learning_rate=2e-4, batch_size=10**400,
                               match=["batch_size=2"])
