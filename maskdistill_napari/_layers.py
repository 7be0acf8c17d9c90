"""Engine results as layer data: an image's current masks as an instance label map, a per-label features
table and a colormap by category. Plain functions (no Qt): the widget, the reader and the tests share them.
They import ``engine.api`` when called (see _engine.py), not when this module is imported.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from napari.utils.colormaps import DirectLabelColormap

FEATURE_COLUMNS = ["index", "category_id", "class_name", "score", "source", "reviewed"]
DISCARDED_RGBA = (0.5, 0.5, 0.5, 0.35)  # masks of a discarded category stay visible, greyed out


def load_image_data(project_dir, images, entry: dict) -> dict:
    """Everything needed to show one image of a project (runs in a worker thread); ``images`` is the
    project's ``engine.api.ImageSource`` (folder, channels, normalisation).

    The label map's values are the engine's stable instance ids (``engine.api.image_objects``); ``original``
    and ``original_reviewed`` keep what is on disk, so an edit marks reviewed only the objects it changed.
    """
    from engine.api import display_name, image_objects, overlapping_labels

    image = images.load(entry)
    objects = image_objects(project_dir, entry["image_id"])
    classes, scores, reviewed, areas = objects.as_dicts()
    reviewed_ids = {k for k, r in reviewed.items() if r}
    overlapping, overlapping_classes = overlapping_labels(project_dir, entry["image_id"])
    return {"image_id": entry["image_id"], "name": display_name(entry), "image": image,
            "labels": objects.labels, "original": objects.labels, "classes": classes, "scores": scores,
            "areas": areas, "reviewed_ids": reviewed_ids, "original_reviewed": set(reviewed_ids),
            "source": objects.origin, "reviewed": bool(classes) and len(reviewed_ids) == len(classes),
            "overlapping": overlapping, "overlapping_classes": overlapping_classes}


def object_colour(instance_id: int) -> tuple:
    """RGB 0-255 of one object when colouring by object: well-spread hues (golden ratio), stable per id."""
    import colorsys

    hue = (int(instance_id) * 0.618033988749895) % 1.0
    return tuple(int(v * 255) for v in colorsys.hsv_to_rgb(hue, 0.75, 0.95))


def category_colour(category) -> tuple:
    """RGB 0-255: the user's colour, else the engine's default colour of that category id."""
    from engine.api import category_colour as engine_colour

    return engine_colour(category)


def category_label(table, raw: int) -> str:
    """The name an object of category ``raw`` shows: its category's after merges, marked when discarded."""
    resolved = table.resolve(raw)
    category = table.by_id().get(resolved if resolved is not None else raw)
    name = category.name if category is not None else f"category {raw}"
    return name + " (discarded)" if resolved is None else name


def features_table(classes: dict, scores: dict, source: str, reviewed, table) -> pd.DataFrame:
    """One row per instance id; category_id is the category the mask is exported under (merges applied).
    ``reviewed``: one flag for every object, or the set of reviewed ids."""
    rows = []
    for index in sorted(classes):
        raw = classes[index]
        resolved = table.resolve(raw)
        rows.append({"index": index, "category_id": resolved if resolved is not None else raw,
                     "class_name": category_label(table, raw),
                     "score": round(float(scores.get(index, 1.0)), 3), "source": source,
                     "reviewed": bool(index in reviewed) if isinstance(reviewed, (set, frozenset, dict))
                     else bool(reviewed)})
    return pd.DataFrame(rows, columns=FEATURE_COLUMNS)


def label_colormap(classes: dict, table, new_label_rgb=(255, 255, 255), by_object: bool = False
                   ) -> DirectLabelColormap:
    """Instance id -> its category's colour (``by_object``: a colour of its own, so touching objects of one
    category stay apart); ids not yet saved (just painted) get ``new_label_rgb``."""
    by_id = table.by_id()
    colours = {None: (*[v / 255 for v in new_label_rgb], 1.0), 0: (0.0, 0.0, 0.0, 0.0)}
    for index, raw in classes.items():
        resolved = table.resolve(raw)
        category = by_id.get(resolved)
        if by_object and category is not None:
            colours[index] = (*[v / 255 for v in object_colour(index)], 1.0)
        elif category is None:
            colours[index] = DISCARDED_RGBA
        else:
            colours[index] = (*[v / 255 for v in category_colour(category)], 1.0)
    return DirectLabelColormap(color_dict=colours)


def with_colour_table(colormap: DirectLabelColormap, dtype) -> DirectLabelColormap:
    """``colormap`` with napari's colour table for label maps of ``dtype`` already in its cache. napari 0.9
    builds it with a Python loop over every value of the texture type, 65,536 for uint16 label maps: 30-60 ms on
    the GUI thread each time an object action changes a colour; this builds the same table with numpy (about
    1 ms). It uses napari internals: when they are not there, napari builds the table itself (slower, same
    colours; tests/test_layers.py compares the two)."""
    try:
        from napari.utils.colormaps import _accelerated_cmap
        from napari.utils.colormaps.colormap import _texture_dtype

        dtype = np.dtype(dtype)
        texture = _texture_dtype(colormap._num_unique_colors, dtype)
        if dtype.itemsize > 2 or (dtype, texture) in colormap._cache_mapping:
            return colormap  # napari maps such label maps on the CPU and needs no table for them
        values = np.arange(np.iinfo(texture).max + 1, dtype=texture).astype(dtype)
        cast = _accelerated_cmap.labels_raw_to_texture_direct(values, colormap._cmap_without_selection())
        colours = colormap._values_mapping_to_minimum_values_set(False)[1]
        lookup = np.zeros((max(colours) + 1, 4), np.float32)
        for value, colour in colours.items():
            lookup[value] = colour
        colormap._cache_mapping[(dtype, texture)] = lookup[cast]
    except (AttributeError, ImportError, KeyError, TypeError, ValueError):
        pass
    return colormap


def legend_html(classes: dict, table) -> str:
    """Category names with their colours (those of the objects on screen first), as rich text for a QLabel."""
    from html import escape

    shown = {table.resolve(c) for c in classes.values()}
    rows = []
    for category in table.categories:
        if category.merged_into is not None or category.discarded:
            continue
        r, g, b = category_colour(category)
        weight = "bold" if category.id in shown else "normal"
        # one entry never wraps inside; the legend wraps between entries
        rows.append(f'<span style="white-space:nowrap"><span style="color:rgb({r},{g},{b})">&#9632;</span>&nbsp;'
                    f'<span style="font-weight:{weight}">{escape(category.name)}</span></span>')
    if any(r is None for r in shown):
        rows.append('<span style="white-space:nowrap"><span style="color:grey">&#9632;</span>&nbsp;discarded</span>')
    return "&nbsp;&nbsp; ".join(rows) or "no categories"


def object_legend_html(classes: dict, table) -> str:
    """What the colours mean when colouring by object (no category colours: none is drawn), and the categories
    of the objects on screen with their counts, as rich text for a QLabel."""
    from collections import Counter
    from html import escape

    counts = Counter(category_label(table, raw) for raw in classes.values())
    names = ", ".join(f"{escape(name)} ({count})" for name, count in sorted(counts.items()))
    discarded = any(table.resolve(raw) is None for raw in classes.values())
    return ("Each object has its own colour (the swatch beside its id in the table)"
            + ("; grey: discarded" if discarded else "") + f". Categories here: {names or 'none'}.")


def category_table(project_dir, clusters: dict):
    """The category table as the engine's label state resolves it (re-bound to the current clusters)."""
    from engine.api import label_state

    return label_state(Path(project_dir), clusters).table
