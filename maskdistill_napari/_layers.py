"""Engine results as layer data: an image's current masks as an instance label map, a per-label features
table and a colormap by category. Plain functions (no Qt): the widget, the reader and the tests share them.
They import ``engine.api`` when called (see _engine.py), not when this module is imported.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from napari.utils.colormaps import DirectLabelColormap

FEATURE_COLUMNS = ["index", "category_id", "class_name", "score", "source", "reviewed"]
DISCARDED_RGBA = (0.5, 0.5, 0.5, 0.35)  # masks of a discarded category stay visible, greyed out


def load_image_data(project_dir, images, entry: dict) -> dict:
    """Everything needed to show one image of a project (runs in a worker thread); ``images`` is the
    project's ``engine.api.ImageSource`` (folder, channels, normalisation).

    Instance k of the label map is mask k - 1 of ``engine.api.current_instances``.
    """
    from engine.api import ImageCorrection, current_instances, display_name, instance_source

    image = images.load(entry)
    masks, classes, scores, reviewed = current_instances(project_dir, entry["image_id"])
    labels = ImageCorrection.from_instances(image.shape[:2], masks, classes, reviewed).labels
    ids = range(1, len(masks) + 1)
    return {"image_id": entry["image_id"], "name": display_name(entry), "image": image,
            "labels": labels, "classes": {k: int(c) for k, c in zip(ids, classes)},
            "scores": {k: float(s) for k, s in zip(ids, scores)},
            "source": instance_source(project_dir, entry["image_id"]), "reviewed": reviewed}


def category_colour(category) -> tuple:
    """RGB 0-255: the user's colour, else the engine's default colour of that category id."""
    from engine.api import cluster_colour

    return tuple(category.colour) if category.colour else cluster_colour(category.id - 1)


def features_table(classes: dict, scores: dict, source: str, reviewed: bool, table) -> pd.DataFrame:
    """One row per instance id; category_id is the category the mask is exported under (merges applied)."""
    by_id = table.by_id()
    rows = []
    for index in sorted(classes):
        raw = classes[index]
        resolved = table.resolve(raw)
        category = by_id.get(resolved if resolved is not None else raw)
        name = category.name if category is not None else f"category {raw}"
        if resolved is None:
            name += " (discarded)"
        rows.append({"index": index, "category_id": resolved if resolved is not None else raw, "class_name": name,
                     "score": round(float(scores.get(index, 1.0)), 3), "source": source, "reviewed": bool(reviewed)})
    return pd.DataFrame(rows, columns=FEATURE_COLUMNS)


def label_colormap(classes: dict, table, new_label_rgb=(255, 255, 255)) -> DirectLabelColormap:
    """Instance id -> its category's colour; ids not yet saved (just painted) get ``new_label_rgb``."""
    by_id = table.by_id()
    colours = {None: (*[v / 255 for v in new_label_rgb], 1.0), 0: (0.0, 0.0, 0.0, 0.0)}
    for index, raw in classes.items():
        resolved = table.resolve(raw)
        category = by_id.get(resolved)
        if category is None:
            colours[index] = DISCARDED_RGBA
        else:
            colours[index] = (*[v / 255 for v in category_colour(category)], 1.0)
    return DirectLabelColormap(color_dict=colours)


def category_table(project_dir, clusters: dict):
    """The category table as the engine's label state resolves it (re-bound to the current clusters)."""
    from engine.api import label_state

    return label_state(Path(project_dir), clusters).table
