"""napari plugin for maskdistill: thin layers over the Qt-free ``engine`` package.

Each manifest contribution (napari.yaml) lives in its own module.
"""
import sys

__version__ = "0.1.0"

# triton (imported by torchvision -> torch._dynamo when the engine builds a backbone) bundles its own LLVM;
# loading it after napari's canvas has loaded an LLVM-based OpenGL driver (Mesa llvmpipe, radeonsi) crashes
# the process with a segmentation fault. The engine never compiles kernels, so inside napari torch does
# without triton (torch treats it as not installed). Loaded before the canvas, triton is harmless: keep it.
sys.modules.setdefault("triton", None)
