"""Writer: a Labels layer (instance ids) -> a COCO .json with compressed RLE, validated with pycocotools.

A mask's category comes from the layer's features table (``category_id`` column, rows matched to label
values through an ``index`` column when there is one), else category 1. A 3-D label stack is written as one
COCO image per plane.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _category_lookup(features) -> tuple:
    """({label value: category id}, {category id: name}) from a features table (DataFrame or dict)."""
    if features is None or "category_id" not in features or len(features["category_id"]) == 0:
        return {}, {}
    categories = [int(c) for c in features["category_id"]]
    index = [int(i) for i in features["index"]] if "index" in features else list(range(len(categories)))
    names = list(features["class_name"]) if "class_name" in features else [None] * len(categories)
    lookup = dict(zip(index, categories))
    named = {c: str(n) for c, n in zip(categories, names) if n is not None}
    return lookup, named


def write_labels_coco(path: str, data, attributes: dict) -> list:
    from engine.api import annotation_record, build_coco, write_coco

    labels = np.asarray(data)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise ValueError(f"COCO export needs a 2-D label image or a stack of them, not shape {labels.shape}")
    lookup, names = _category_lookup(attributes.get("features"))
    layer_name = attributes.get("name") or Path(path).stem
    images: list = []
    annotations: list = []
    used: set = set()
    for plane, label_map in enumerate(labels, start=1):
        file_name = layer_name if len(labels) == 1 else f"{layer_name}_{plane:04d}"
        images.append({"id": plane, "file_name": file_name, "width": int(label_map.shape[1]),
                       "height": int(label_map.shape[0])})
        for value in np.unique(label_map):
            if value == 0:
                continue
            category = lookup.get(int(value), 1)
            used.add(category)
            annotations.append(annotation_record(len(annotations) + 1, plane, category, label_map == value))
    categories = [{"id": c, "name": names.get(c, f"category_{c}"), "supercategory": "object"} for c in sorted(used)]
    document = build_coco(images, annotations, categories, "", f"napari Labels layer {layer_name!r}")
    write_coco(document, Path(path))
    return [str(path)]
