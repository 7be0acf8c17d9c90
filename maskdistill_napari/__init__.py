"""napari plugin for maskdistill: thin layers over the Qt-free ``engine`` package.

Each manifest contribution (napari.yaml) lives in its own module.
"""
__version__ = "0.1.0"
