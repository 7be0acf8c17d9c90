"""maskdistill engine: unsupervised object masks and pseudo-classes from a self-supervised ViT.

No Qt and no napari in here. The folders are the layers, each importing only the ones below it (lowest
first; tests/test_layers.py checks it): the shared helpers at the top level (``atomic``, ``masks``,
``device``), ``io`` (file formats: images, COCO read, checked and written), ``method`` (the algorithm),
``state`` (the project folder and the user's label state), ``output`` (exports, the overview, evaluation),
``orchestration`` (the steps and who runs them), and the two faces: :mod:`engine.api` (the plugin and scripts
go through it) and :mod:`engine.cli` (the ``maskdistill`` command).
"""
import os

# OpenMP spin-waiting makes torch 10x slower on a 2-core machine as soon as another thread is busy
# (a GUI, a test runner). It must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
