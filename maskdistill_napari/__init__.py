"""napari plugin for maskdistill: thin layers over the Qt-free ``engine`` package.

Each manifest contribution (napari.yaml) lives in its own module. Importing the package has no side effects
on napari's process (see ``_engine.without_triton`` for the one the engine's loading needs).
"""

__version__ = "0.1.0"
