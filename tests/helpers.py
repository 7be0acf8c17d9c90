"""Small builders shared by the mechanics tests (imported as ``helpers``: pytest puts tests/ on sys.path)."""
from __future__ import annotations

import shutil
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


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def small_finished_project(tmp_path_factory, name: str) -> tuple:
    """(image folder, project) of three example photos run with random weights at 56 px and K = 2: the quick
    finished project the plugin tests open."""
    from engine.api import RunConfig, run

    images = tmp_path_factory.mktemp(f"{name}_images")
    for photo in ("person_01.jpg", "cup_01.jpg", "cat_01.jpg"):
        shutil.copy(EXAMPLES / photo, images / photo)
    project = tmp_path_factory.mktemp(f"{name}_project") / "project"
    run(images, project, RunConfig(weights="random", input_size=56, num_classes=2, device="cpu"))
    return images, project


def plant_tokens(project: Path, entry: dict, vectors, grid: tuple) -> None:
    """Replace an image's cached features by planted patch tokens on a ``grid`` (rows, cols) of 14-px patches:
    the click, tree and object-edit tests then know what the features say."""
    import numpy as np

    from engine.method.features import FeatureCache, ImageFeatures

    n, dim = len(vectors), vectors.shape[1]
    FeatureCache(Path(project) / "features").put(entry["feature_key"], ImageFeatures(
        grid, (grid[0] * 14, grid[1] * 14), vectors, vectors, np.zeros(dim, np.float32),
        np.full((1, n), 1 / n, np.float32)))


def docked_widget(viewer):
    """The plugin's widget docked in ``viewer``, with random weights (fast: no pretrained weights needed)."""
    from maskdistill_napari._widget import MaskDistillWidget

    widget = MaskDistillWidget(viewer, weights="random")
    viewer.window.add_dock_widget(widget)
    return widget


def wait_idle(qtbot, widget, timeout=120_000) -> None:
    """Until the widget's task queue is idle (a real Qt event loop runs meanwhile)."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def planted_copy(original: Path, tmp_path: Path, relative_path: str, vectors, grid: tuple) -> tuple:
    """(copy of the finished project ``original``, images.json entry of ``relative_path``) with that image's
    cached tokens replaced by planted ones (:func:`plant_tokens`)."""
    from engine.atomic import read_json

    project = Path(tmp_path) / "project"
    shutil.copytree(original, project)
    entry = next(e for e in read_json(project / "images.json") if e["relative_path"] == relative_path)
    plant_tokens(project, entry, vectors, grid)
    return project, entry
