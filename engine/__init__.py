"""maskdistill engine: unsupervised object masks and pseudo-classes from a self-supervised ViT.

No Qt and no napari in here; the napari plugin and the ``maskdistill`` CLI are both thin layers over
:mod:`engine.orchestration.pipeline`.
"""
import os

# OpenMP spin-waiting makes torch 10x slower on a 2-core machine as soon as another thread is busy
# (a GUI, a test runner). It must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
