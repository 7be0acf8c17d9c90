"""How the plugin reaches the engine: ``engine.api``, imported on first use, in a worker.

Importing ``engine.api`` is instant and loads no torch; its names load their modules on first use. The run
settings (``RunConfig``, ``setting``) and the backbone registry need no torch, so the Run panel builds its form
from them on the GUI thread. The panels' engine calls are the typed functions of _engine_calls.py, run in the
widget's task queue: the torch-free ones (category table, project index, saving an edit) in the worker thread,
and those that load torch (``engine.api.LOADS_TORCH``: run, retrain, split, one-click object, export ...) in the
engine process (_engine_process.py, started and stopped by the functions below), so torch is never loaded in
napari's process: loading it holds the GIL long enough to freeze the window.

triton (imported by torchvision) bundles its own LLVM; loading it after napari's canvas has loaded an
LLVM-based OpenGL driver (Mesa llvmpipe, radeonsi) crashes the process with a segmentation fault. Should
anything load torch in napari's process all the same (a script calling the engine beside the widget),
:func:`without_triton` makes torch see triton as not installed while our tasks run: importing the plugin
changes nothing in napari's process, and the placeholder is gone again once the task ends.
"""
from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def without_triton():
    """Hide triton from imports until torchvision is loaded (then torch has decided it has no triton, and
    nothing of the engine imports it again); nothing to do once triton or torchvision is loaded."""
    if "triton" in sys.modules or "torchvision" in sys.modules:
        yield
        return
    # an import of triton raises ImportError, as if it were not installed (a None entry is documented Python
    # behaviour that typeshed's sys.modules type leaves out)
    sys.modules["triton"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if "triton" in sys.modules and sys.modules["triton"] is None:
            del sys.modules["triton"]


def use_engine() -> None:
    """A widget will use the engine process (counted: the last widget to close stops it)."""
    from ._engine_process import engine_process

    engine_process().acquire()


def start_engine() -> None:
    """Start the engine process and let it load torch, so the first Run, Retrain or click does not wait."""
    from ._engine_process import engine_process

    engine_process().start()


def done_with_engine() -> None:
    """A widget closes: the engine process stops if no other widget uses it."""
    from ._engine_process import engine_process

    engine_process().release()
