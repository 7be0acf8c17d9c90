"""Issue 21 item 5: an object action redraws the Labels layer no more than its change needs. Each new colormap
makes napari rebuild its colour table (65,536 entries for a uint16 label map: about 60 ms on the GUI thread)
and each set of ``show_selected_label`` refreshes the layer and rebuilds its shader colours, so a reject or
undo that changes no object's colour keeps the colormap, and the highlight is set only when it changes."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from test_plugin_tasks import finished, widget  # noqa: F401 - fixtures

from helpers import wait_idle


def count_events(emitter) -> list:
    """A list that grows by one at each emission of the napari event ``emitter``."""
    seen: list = []
    emitter.connect(lambda event: seen.append(event))
    return seen


def largest_object(view) -> int:
    instance_id = int(max(view.current["areas"], key=view.current["areas"].get))
    view.select_object(instance_id)
    return instance_id


def test_reject_and_undo_keep_the_colormap_and_set_the_highlight_once(widget, qtbot):  # noqa: F811
    view, review = widget.view, widget.review
    target = largest_object(view)
    layer = view.labels_layer
    assert layer.show_selected_label  # one object selected and shown alone
    colormaps, highlights = count_events(layer.events.colormap), count_events(layer.events.show_selected_label)
    review.reject_selected()
    assert (layer.data == target).sum() == 0 and not layer.show_selected_label
    assert (len(colormaps), len(highlights)) == (0, 1)
    wait_idle(qtbot, widget)
    review.undo()
    assert (layer.data == target).any() and layer.show_selected_label
    assert (len(colormaps), len(highlights)) == (0, 2)
    wait_idle(qtbot, widget)


def test_set_category_sets_one_colormap_with_the_new_colour(widget, qtbot):  # noqa: F811
    view, review = widget.view, widget.review
    target = largest_object(view)
    layer = view.labels_layer
    new = next(c.id for c in view.table.categories
               if c.id != view.current["classes"][target] and view.table.resolve(c.id) is not None)
    review.category.setCurrentIndex(review.category.findData(new))
    colormaps, highlights = count_events(layer.events.colormap), count_events(layer.events.show_selected_label)
    review.set_category()
    assert len(colormaps) == 1 and not highlights  # the object stays selected: the highlight does not change
    assert layer.colormap.use_selection and layer.colormap.selection == target  # the new colormap shows it alone
    expected = view.table.by_id()[new]
    from maskdistill_napari._layers import category_colour

    assert tuple(round(v * 255) for v in layer.colormap.color_dict[target][:3]) == category_colour(expected)
    wait_idle(qtbot, widget)


def test_the_colour_table_built_ahead_is_napari_s_own():
    """with_colour_table fills napari's cache with the table napari would build (a uint16 label map's 65,536
    entries, colours shared by several objects, the colour of labels not saved yet, a discarded grey)."""
    import numpy as np
    from napari.utils.colormaps import DirectLabelColormap

    from maskdistill_napari._layers import DISCARDED_RGBA, with_colour_table

    colours = {None: (1.0, 1.0, 1.0, 1.0), 0: (0.0, 0.0, 0.0, 0.0), 3: DISCARDED_RGBA, 60000: (0, 1, 0, 1)}
    colours.update({k: (k % 7 / 7, 0.5, 1 - k % 5 / 5, 1.0) for k in range(4, 300)})
    for dtype in (np.uint8, np.uint16):
        fast = with_colour_table(DirectLabelColormap(color_dict=colours), dtype)
        slow = DirectLabelColormap(color_dict=colours)
        assert len(fast._cache_mapping) == 1  # built ahead: napari takes it from there
        built = next(iter(fast._cache_mapping.values()))
        expected = slow._get_mapping_from_cache(np.dtype(dtype))
        assert built.shape == expected.shape and np.array_equal(built, expected)
