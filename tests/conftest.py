"""Shared fixtures: small folders built from the shipped example photos."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from maskdistill_napari._engine import without_triton

# This process opens napari viewers (OpenGL: llvmpipe under Xvfb) and runs the engine in-process too (fixtures,
# engine tests). torchvision imports triton, whose own LLVM crashes the process when it loads after the OpenGL
# driver's. The plugin never loads torch in napari's process; here, load it once, first, with triton hidden.
with without_triton():
    import torchvision  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """Three real photos (person, cup, a person+rocket pair) and one corrupt file."""
    folder = tmp_path_factory.mktemp("tiny_images")
    for name in ("person_01.jpg", "cup_01.jpg", "pair_person_rocket.jpg"):
        shutil.copy(EXAMPLES / name, folder / name)
    (folder / "broken.png").write_bytes(b"this is not a PNG file")
    return folder

