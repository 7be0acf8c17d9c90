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
