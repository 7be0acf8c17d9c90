"""Shared fixtures: small folders built from the shipped example photos."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """Three real photos (person, cup, a person+rocket pair) and one corrupt file."""
    folder = tmp_path_factory.mktemp("tiny_images")
    for name in ("person_01.jpg", "cup_01.jpg", "pair_person_rocket.jpg"):
        shutil.copy(EXAMPLES / name, folder / name)
    (folder / "broken.png").write_bytes(b"this is not a PNG file")
    return folder

