"""Keeps TensorFlow's start-up noise off the user's terminal.

Importing TensorFlow 2.21 writes lines such as `oneDNN custom operations are
on`, `Could not find cuda drivers` and `cpu_feature_guard` straight to file
descriptor 2, before `absl::InitializeLog` runs, so `TF_CPP_MIN_LOG_LEVEL`
alone does not hide them. `quiet_imports()` sets `TF_CPP_MIN_LOG_LEVEL=3`
(unless the user set it) and runs the imports with descriptor 2 sent to a
temporary file, then writes back every line that is not known start-up noise
(a real warning or error still shows). A user who sets
`TF_CPP_MIN_LOG_LEVEL=0` gets everything untouched.

Standard library only: `rlr_keras/__init__.py` imports Keras (and so the
backend) inside `quiet_imports()`, as
the installed commands do for their late imports:

```
with _quiet.quiet_imports():
    import keras
```
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

# Lines TensorFlow (and its CUDA stubs) print while it is imported.
_NOISE = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers",
    r"cpu_feature_guard",
    r"To enable the following instructions: .* rebuild TensorFlow",
    r"This TensorFlow binary is optimized to use available CPU",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
    r"failed call to cuInit",
]))


# What JAX logs (at INFO, which the commands' --verbose=1 shows) for every
# platform plugin it tries and does not find, on every machine without one:
# "Unable to initialize backend 'tpu': ..." (also 'cuda', 'rocm').
_JAX_LOGGER = "jax._src.xla_bridge"
_JAX_NOISE = re.compile(r"Unable to initialize backend '\w+'")

_we_set_level = False  # Whether TF_CPP_MIN_LOG_LEVEL is ours, not the user's.


def is_noise(line):
    """Whether `line` is one of TensorFlow's known start-up messages."""
    return _NOISE.search(line) is not None


@contextlib.contextmanager
def quiet_imports(stream=None, set_level=True):
    """Runs the block with start-up noise on fd 2 filtered out.

    Args:
        stream: where the kept lines go; defaults to `sys.stderr`.
        set_level: bool, also set `TF_CPP_MIN_LOG_LEVEL=3` (the commands);
            False only filters the known lines (the library's own import).
    """
    global _we_set_level
    user_level = (None if _we_set_level
                  else os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
    if user_level in ("", "0"):
        yield  # The user asked for every line; touch nothing.
        return
    # TensorFlow 2.21 writes its start-up lines before absl::InitializeLog,
    # whatever the level: a user who asked for fewer lines gets them
    # filtered too (and their level kept).
    if set_level and user_level is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        _we_set_level = True
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # No descriptor 2 (a daemon): nothing to keep clean.
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(
                "utf-8", "replace").splitlines(keepends=True)
                    if not is_noise(line)]
            if kept:
                stream = stream or sys.stderr
                stream.write("".join(kept))
                stream.flush()


class _JaxBackendNoise(logging.Filter):
    """Drops JAX's "Unable to initialize backend" lines (a missing TPU)."""

    def filter(self, record):
        return _JAX_NOISE.match(record.getMessage()) is None


def quiet_jax_backends():
    """Filters JAX's lines about backends it cannot start (the commands).

    Only those lines: JAX's other messages, and its errors when the
    platform that was asked for (`JAX_PLATFORMS`) fails, still show.
    Idempotent; needs no JAX import.
    """
    logger = logging.getLogger(_JAX_LOGGER)
    if not any(isinstance(f, _JaxBackendNoise) for f in logger.filters):
        logger.addFilter(_JaxBackendNoise())
