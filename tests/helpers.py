"""Small builders shared by the mechanics tests (imported as ``helpers``: pytest puts tests/ on sys.path)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image
from skimage import data

# A random-weight network at a tiny input size: for tests about mechanics, not quality.
MECHANICS = dict(weights="random", input_size=56, num_classes=2, batch_size=2)


def make_folder(folder: Path) -> Path:
    """Four small real-photo crops as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    crops = {"astronaut.png": data.astronaut()[60:156, 150:246], "chelsea.png": data.chelsea()[40:136, 100:196],
             "coffee.png": data.coffee()[100:180, 200:296], "rocket.png": data.rocket()[100:164, 200:280]}
    for name, pixels in crops.items():
        Image.fromarray(pixels).save(folder / name)
    return folder
