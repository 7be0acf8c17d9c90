"""The plugin's only way into the engine: ``engine.api``, imported on first use, in a worker.

Most of ``engine.api`` loads torch (1.5-3 s). Importing it at the top of a plugin module would make napari pay
that on its GUI thread whenever it opens the widget or asks the reader about a folder, so every plugin module
imports ``engine.api`` inside the functions that need it, and calls that load torch run in a worker. The
facade itself loads its names on first use; the run settings (``RunConfig``, ``setting``) and the backbone
registry need no torch, so the Run panel builds its form from them on the GUI thread.

triton (imported by torchvision, which the engine loads when it first builds a backbone) bundles its own
LLVM; loading it after napari's canvas has loaded an LLVM-based OpenGL driver (Mesa llvmpipe, radeonsi)
crashes the process with a segmentation fault. The engine never compiles kernels, so while it loads,
:func:`without_triton` makes torch see triton as not installed. That applies only to our loading (every task
of the widget's queue, and the calls below, until torchvision is loaded): importing the plugin changes
nothing in napari's process, and the placeholder is gone again once the task ends.
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
    sys.modules["triton"] = None  # an import of triton raises ImportError, as if it were not installed
    try:
        yield
    finally:
        if "triton" in sys.modules and sys.modules["triton"] is None:
            del sys.modules["triton"]


def call(name: str, *args, **kwargs):
    """``engine.api.<name>(*args, **kwargs)``, looked up when it runs: submit this to a worker, not the function
    itself, so that resolving the function does not import the engine on the GUI thread."""
    with without_triton():
        import engine.api

        return getattr(engine.api, name)(*args, **kwargs)

