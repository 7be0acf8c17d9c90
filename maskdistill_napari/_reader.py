"""Reader: a MaskDistill project folder (has project.json) opens the MaskDistill dock widget bound to it, which
shows the first image as one Image layer and one Labels layer of its current masks (loaded in the widget's
worker, so napari's window stays responsive), saves edits to the project, and moves between the images. A
plain folder of images -> one Image layer per image (stacked when all share a size)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._engine import without_triton
from ._layers import category_table, features_table, label_colormap, load_image_data

PLUGIN, WIDGET = "maskdistill-napari", "MaskDistill"  # napari.yaml's name and the widget's display_name


def get_reader(path):
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(path)
    if not folder.is_dir():
        return None
    if (folder / "project.json").is_file():
        return read_project
    from engine.api import discover_images  # header checks only; engine.io loads no torch

    return read_image_folder if discover_images(folder).images else None


def read_project(path) -> list:
    """Open the project in the MaskDistill widget of the current viewer (added to it if missing) and return
    napari's "no layers" sentinel: the widget adds its own two layers once its worker has read the first
    image. Without a viewer (a script), the first image's Image and Labels layers are returned instead."""
    import napari

    path = Path(path[0] if isinstance(path, (list, tuple)) else path)
    viewer = napari.current_viewer()
    if viewer is None:
        return first_image_layers(path)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)  # the docked one, if already open
    widget.open_project(str(path))
    return [(None,)]


def first_image_layers(path) -> list:
    """(image, labels) layer data of the project's first image, read on the calling thread."""
    with without_triton():
        from engine.api import ImageSource, open_project

        project, config, entries, clusters = open_project(Path(path))
    if not entries:
        raise ValueError(f"{path}: the project has no images yet; run it first")
    table = category_table(project.root, clusters)
    item = load_image_data(project.root, ImageSource.of_project(config), entries[0])
    rgb = item["image"].ndim == 3
    features = features_table(item["classes"], item["scores"], item["source"], item["reviewed_ids"], table)
    return [(item["image"], {"name": "image", "rgb": rgb, "contrast_limits": _limits(item["image"], rgb),
                             "metadata": {"image_id": item["image_id"], "name": item["name"]}}, "image"),
            (item["labels"], {"name": "masks", "features": features, "opacity": 0.55,
                              "colormap": label_colormap(item["classes"], table),
                              "metadata": {"image_id": item["image_id"]}}, "labels")]


def read_image_folder(path) -> list:
    """One Image layer per readable image of the folder (one stack when all share a size); a file that cannot be
    read is passed over, as a run passes it over, and named in a warning (napari shows it as a notification)."""
    from engine.api import ImageError, discover_images, load_image

    path = Path(path[0] if isinstance(path, (list, tuple)) else path)
    discovery = discover_images(path)
    images, unreadable = [], [f"{skipped.relative_path}: {skipped.reason}" for skipped in discovery.skipped]
    for record in discovery.images:
        try:
            images.append((Path(record.relative_path).stem, load_image(record.path)))
        except ImageError as error:
            unreadable.append(f"{record.relative_path}: {error.reason}")
    if unreadable:
        message = (f"{path}: {len(unreadable)} file(s) could not be read and were left out: "
                   + "; ".join(unreadable[:3]) + ("; ..." if len(unreadable) > 3 else ""))
        if not images:
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    if len(images) > 1 and len({image.shape for _, image in images}) == 1:
        stack = np.stack([image for _, image in images])
        rgb = stack.ndim == 4
        return [(stack, {"name": path.name, "rgb": rgb, "contrast_limits": _limits(stack, rgb)}, "image")]
    return [(image, {"name": name, "rgb": image.ndim == 3, "contrast_limits": _limits(image, image.ndim == 3)},
             "image") for name, image in images]


def _limits(data: np.ndarray, rgb: bool) -> list:
    """Contrast limits of an image layer. engine.api.load_image gives RGB uint8 already stretched by the
    engine's percentiles (1-99.8 by default), shown as 0-255; raw pixels (one channel, 16-bit, float) get
    limits from the same percentiles, estimated on a strided sample of what is already in memory."""
    if rgb and data.dtype == np.uint8:
        return [0, 255]
    from engine.api import contrast_limits

    return list(contrast_limits(np.moveaxis(data, -1, 0) if rgb else data))
