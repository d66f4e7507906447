"""The installed commands' start-up: flags without Keras, one-line errors.

`rlr-train --helpfull` must not start Keras (and its backend): the flag
modules import no framework, which a fresh interpreter shows in
`sys.modules`. Flag errors are checked on the real scripts, which fail
before any framework is imported (a fraction of a second each).
"""

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from rlr_keras import _quiet

pytestmark = pytest.mark.backend_independent

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENVIRONMENT = dict(os.environ, PYTHONPATH=_REPO)
_FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")


def test_command_flag_modules_import_no_framework():
    program = textwrap.dedent(f"""
        import sys
        import rlr_keras
        from rlr_keras.experiment.commands import plot, sweep, temperature
        from rlr_keras.experiment.commands import train
        from absl import flags
        assert "coupled_weight_decay" in flags.FLAGS
        print(sorted(m for m in {_FRAMEWORKS!r} if m in sys.modules))
    """)
    completed = subprocess.run([sys.executable, "-c", program],
                               env=_ENVIRONMENT, capture_output=True,
                               text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


@pytest.mark.parametrize("script, argv, fragments", [
    ("train.py", ["--output_dir=x", "--protocol=sometimes"],
     ["--protocol=sometimes", "constant|random|cyclic"]),
    ("train.py", ["--output_dir=x", "--epochs=many"], ["--epochs=many"]),
    ("train.py", ["--output_dir=x", "--learning_rate=fast"],
     ["--learning_rate=fast"]),
    ("train.py", ["--output_dir=x", "--distribution=all"], ["--distribution"]),
    ("train.py", ["--output_dir=x", "--train_subset=0"], ["--train_subset"]),
    ("train.py", ["--output_dir=x", "--no_such_flag"], ["no_such_flag"]),
    ("train.py", [], ["--output_dir"]),
    ("train.py", ["--output_dir=x", "--weight_decay=1e-3"],
     ["--weight_decay", "decoupled", "--coupled_weight_decay"]),
    ("sweep.py", ["--root=x", "--launcher=cloud"], ["--launcher=cloud"]),
    ("sweep.py", ["--root=x", "--jobs=two"], ["--jobs=two"]),
    ("plot.py", ["--runs=x", "--equivalence_margin=small"],
     ["--equivalence_margin=small"]),
    ("temperature.py", ["--learning_rate=1e-3", "--batch_size=60",
                        "--solve_for=speed"], ["--solve_for=speed"]),
    ("temperature.py", ["--learning_rate=high", "--batch_size=60"],
     ["--learning_rate=high"]),
])
def test_flag_errors_are_one_line_with_exit_status_2(script, argv,
                                                     fragments):
    completed = subprocess.run(
        [sys.executable, os.path.join(_REPO, "experiments", script), *argv],
        env=_ENVIRONMENT, capture_output=True, text=True, timeout=120,
        check=False)
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, completed.stderr
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"{script}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_jax_missing_backend_lines_are_filtered(caplog):
    _quiet.quiet_jax_backends()
    _quiet.quiet_jax_backends()  # Idempotent: one filter.
    logger = logging.getLogger("jax._src.xla_bridge")
    with caplog.at_level(logging.INFO, logger="jax._src.xla_bridge"):
        logger.info("Unable to initialize backend 'tpu': INTERNAL: Failed "
                    "to open libtpu.so")
        logger.info("Unable to initialize backend 'cuda': no CUDA")
        logger.warning("An NVIDIA GPU may be present on this machine")
    assert [record.getMessage() for record in caplog.records] == [
        "An NVIDIA GPU may be present on this machine"]
    assert len(logger.filters) == 1
