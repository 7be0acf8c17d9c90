"""Reader: a MaskDistill project folder (has project.json) -> its images and a Labels layer of the current
masks per image; a plain folder of images -> one Image layer per image (stacked when all share a size)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._layers import category_table, features_table, label_colormap, load_image_data

MAX_LAYER_PAIRS = 20  # a project of differently sized images opens at most this many image/labels pairs


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
    from engine.api import discover_images  # only for folders: loads the engine (and torch)

    return read_image_folder if discover_images(folder).images else None


def read_project(path) -> list:
    from engine.api import ImageSource, open_project

    path = Path(path[0] if isinstance(path, (list, tuple)) else path)
    project, config, entries, clusters = open_project(path)
    table = category_table(project.root, clusters)
    images = ImageSource.of_project(config)
    items = [load_image_data(project.root, images, e) for e in entries[:MAX_LAYER_PAIRS]]
    if len({item["image"].shape for item in items}) == 1 and len(items) > 1:
        return _stacked(items, table)
    layers = []
    for item in items:
        rgb = item["image"].ndim == 3
        layers.append((item["image"], {"name": item["name"], "rgb": rgb, "contrast_limits": _limits(item["image"], rgb),
                                       "metadata": {"image_id": item["image_id"]}}, "image"))
        layers.append(_labels_layer(item, item["labels"], item["classes"], f"{item['name']} masks", table))
    return layers


def _labels_layer(item, labels, classes, name, table, scores=None, sources=None):
    reviewed = item["reviewed"] if sources is not None else item["reviewed_ids"]
    features = features_table(classes, scores or item["scores"], item["source"], reviewed, table)
    if sources is not None:
        features["source"] = [sources[k] for k in features["index"]]
    return (labels, {"name": name, "features": features, "colormap": label_colormap(classes, table),
                     "opacity": 0.55, "metadata": {"image_id": item["image_id"]}}, "labels")


def _stacked(items, table) -> list:
    """Same-size images: one stack; instance ids are made unique across the stack."""
    stack, offset = [], 0
    classes, scores, sources = {}, {}, {}
    for item in items:
        labels = item["labels"].astype(np.uint32)
        labels[labels > 0] += offset
        stack.append(labels)
        for k, c in item["classes"].items():
            classes[k + offset], scores[k + offset], sources[k + offset] = c, item["scores"][k], item["source"]
        offset += max(item["classes"], default=0)
    images = np.stack([item["image"] for item in items])
    first = dict(items[0], reviewed=all(i["reviewed"] for i in items), image_id=[i["image_id"] for i in items])
    rgb = images.ndim == 4
    return [(images, {"name": "images", "rgb": rgb, "contrast_limits": _limits(images, rgb)}, "image"),
            _labels_layer(first, np.stack(stack), classes, "masks", table, scores, sources)]


def read_image_folder(path) -> list:
    from engine.api import discover_images, load_image

    path = Path(path[0] if isinstance(path, (list, tuple)) else path)
    records = discover_images(path).images
    images = [(Path(r.relative_path).stem, load_image(r.path)) for r in records]
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
