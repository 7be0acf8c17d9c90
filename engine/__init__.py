"""maskdistill engine: unsupervised object masks and pseudo-classes from a self-supervised ViT.

No Qt and no napari in here. The folders are the layers: ``method`` (the algorithm), ``state`` (the project
folder and the user's label state), ``io`` (images in, COCO out) and ``orchestration`` (the steps and who runs
them). The napari plugin and scripts go through :mod:`engine.api`; the ``maskdistill`` CLI is :mod:`engine.cli`.
"""
import os

# OpenMP spin-waiting makes torch 10x slower on a 2-core machine as soon as another thread is busy
# (a GUI, a test runner). It must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
