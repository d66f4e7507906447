"""Calls a function once Keras is imported: the package's Keras objects.

`import rlr_keras` does not import Keras (the commands' `--helpfull` stays
fast), but `keras.saving.load_model` must find the package's registered
objects (`rlr_keras>RandomLRSGD`, ...) whichever of `import rlr_keras` and
`import keras` came first. `when_keras_imported(f)` calls `f` at once if
Keras is imported, else right after Keras' own import finishes (a one-shot
finder on `sys.meta_path` wraps the loader of the `keras` package).

When Keras is first imported by one of the package's own modules (say
`from rlr_keras.optimizers import RandomLRSGD`), `f` is not called: those
modules are half-imported at that moment, and they register their objects
themselves as their import finishes.
"""

import importlib.abc
import importlib.util
import sys


def _package_initializing():
    """Whether a module of rlr_keras is being imported right now.

    The package itself does not count: its `__init__` imports no Keras, and
    registers the objects when Keras is imported already.
    """
    for name, module in list(sys.modules.items()):
        if (name.startswith("rlr_keras.")
                and getattr(getattr(module, "__spec__", None),
                            "_initializing", False)):
            return True
    return False


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds `keras` with the other finders, then calls back after it runs."""

    def __init__(self, function):
        self._function = function

    def find_spec(self, fullname, path=None, target=None):
        del path, target
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # One shot; also ends the recursion.
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        loader, function = spec.loader, self._function
        exec_module = loader.exec_module

        def exec_then_call(module):
            exec_module(module)
            del loader.exec_module  # Back to the class's own method.
            if not _package_initializing():
                function()

        loader.exec_module = exec_then_call
        return spec


def when_keras_imported(function):
    """Calls `function()` now if Keras is imported, else once it is."""
    if "keras" in sys.modules:
        if not _package_initializing():
            function()
        return
    sys.meta_path.insert(0, _AfterKeras(function))
