"""The plugin's only way into the engine: ``engine.api``, imported on first use.

``engine.api`` loads torch (1.5-3 s). Importing it at the top of a plugin module would make napari pay that
on its GUI thread whenever it opens the widget or asks the reader about a folder, so every plugin module
imports ``engine.api`` inside the functions that need it, and the widget first loads it in a worker.
"""
from __future__ import annotations


def call(name: str, *args, **kwargs):
    """``engine.api.<name>(*args, **kwargs)``, looked up when it runs: submit this to a worker, not the function
    itself, so that resolving the function does not import the engine on the GUI thread."""
    import engine.api

    return getattr(engine.api, name)(*args, **kwargs)


def run_options() -> dict:
    """The choices the Run panel offers (runs in a worker: this is the widget's first engine import)."""
    from engine.api import BACKBONES, DEFAULT_BACKBONE, PROPOSAL_METHODS, RunConfig

    return {"backbones": list(BACKBONES), "backbone": DEFAULT_BACKBONE, "proposals": list(PROPOSAL_METHODS),
            "proposal": RunConfig.proposals}
