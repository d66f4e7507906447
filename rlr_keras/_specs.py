"""User code named by a spec: `MODULE:FUNCTION` or `path/to/file.py:FUNCTION`.

The one place that reads such specs, for models (`rlr_keras.models`) and
datasets (`rlr_keras.data`). A spec names a function by where it lives, so
that a run's recorded arguments replay it from the command line:

- `MODULE:FUNCTION`: `MODULE` is importable (installed, or on `PYTHONPATH`),
  e.g. `my_project.models:small_cnn`; `FUNCTION` may be dotted
  (`module:Class.method`).
- `path/to/file.py:FUNCTION`: a Python file, loaded as a module of its own
  (relative paths are relative to the working directory).

A Python callable passed directly (the Python API) has no spec; it is
recorded as `callable:<module>.<qualified name>`, which names it but cannot
be loaded again (`load_function` refuses it with that reason).
"""

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from typing import Any, Callable, Optional, Tuple

from rlr_keras import _names

# What a spec may hold: a module path and a (dotted) attribute path.
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
CALLABLE_PREFIX = "callable:"


def split_function_spec(spec: Any) -> Optional[Tuple[str, str]]:
    """Returns `(module_or_file, function)` if `spec` names user code.

    Pure: no import, no I/O. `None` for anything else (a built-in name, a
    TFDS name with a version such as `mnist:3.0.1`, a path format such as
    `idx:PATH`).

    Args:
        spec: any value.

    Returns:
        `("path/file.py", "fn")`, `("package.module", "fn")` or `None`.
    """
    if not isinstance(spec, str) or spec.startswith(CALLABLE_PREFIX):
        return None
    where, colon, function = spec.rpartition(":")
    if not colon or not where or not _IDENTIFIER_PATH.fullmatch(function):
        return None
    if where.endswith(".py") or _IDENTIFIER_PATH.fullmatch(where):
        return where, function
    return None


def check_model_spec(spec: Any) -> str:
    """Checks the form of a model spec (no import); returns it.

    Keras-free, so that the commands' flags can use it.

    Args:
        spec: str, a name of `MODEL_NAMES`, `"MODULE:FUNCTION"` or
            `"path/to/file.py:FUNCTION"`.

    Raises:
        ValueError: for any other string.
        TypeError: for a non-string.
    """
    if not isinstance(spec, str):
        raise TypeError(f"model must be a string, got {type(spec).__name__}")
    if spec in _names.MODEL_NAMES or split_function_spec(spec) is not None:
        return spec
    raise ValueError(
        f"model must be one of {', '.join(_names.MODEL_NAMES)}, "
        f"MODULE:FUNCTION or file.py:FUNCTION, got {spec!r}")


def describe_callable(function: Callable[..., Any]) -> str:
    """`callable:<module>.<qualified name>`: how a run records a callable."""
    module = getattr(function, "__module__", None) or "?"
    name = getattr(function, "__qualname__", None) or type(function).__name__
    return f"{CALLABLE_PREFIX}{module}.{name}"


def load_function(spec: str, *, argument: str) -> Callable[..., Any]:
    """Imports the function that `spec` names.

    Args:
        spec: str, `MODULE:FUNCTION` or `path/to/file.py:FUNCTION`.
        argument: str, the argument that holds the spec (`model`, `dataset`),
            named in every error.

    Returns:
        The callable.

    Raises:
        ValueError: for a spec of another form, a recorded Python callable,
            a missing file, a module that cannot be imported or a missing
            attribute; one line naming the spec.
        TypeError: if the attribute is not callable.
    """
    if isinstance(spec, str) and spec.startswith(CALLABLE_PREFIX):
        raise ValueError(
            f"{argument}={spec!r} was a Python callable passed to the Python "
            "API: it cannot be loaded from its recorded name (replay it from "
            "Python, or give MODULE:FUNCTION or file.py:FUNCTION)")
    parts = split_function_spec(spec)
    if parts is None:
        raise ValueError(f"{argument} must be MODULE:FUNCTION or "
                         f"path/to/file.py:FUNCTION, got {spec!r}")
    where, name = parts
    if where.endswith(".py"):
        module = _load_file(where, spec, argument)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as error:
            raise ValueError(
                f"{argument}={spec!r}: cannot import module {where!r} "
                f"({type(error).__name__}: {error}); is it installed or on "
                "PYTHONPATH?") from None
    target = module
    for attribute in name.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ValueError(
                f"{argument}={spec!r}: {where} has no {name!r}") from None
    if not callable(target):
        raise TypeError(f"{argument}={spec!r}: {name} is a "
                        f"{type(target).__name__}, not a function")
    return target


def _load_file(path, spec, argument):
    """Imports `path` as a module named after its absolute path (cached)."""
    absolute = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(absolute):
        raise ValueError(f"{argument}={spec!r}: no such file {path!r}")
    digest = hashlib.sha1(absolute.encode("utf-8")).hexdigest()[:12]
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    module_name = f"_rlr_keras_user_{stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name,
                                                         absolute)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ValueError(
            f"{argument}={spec!r}: importing {path} failed "
            f"({type(error).__name__}: {' '.join(str(error).split())})"
        ) from error
    return module
