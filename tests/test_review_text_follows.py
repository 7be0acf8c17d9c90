"""Issue 21 item 6 in a real napari window (Xvfb): the Review tab's text follows every change. The selection
line names the selected object's category as it is now (after a rename or a merge of categories, a reject, an
undo, a set category, a grow, a shrink, a merge of objects); the status line drops a message about another
image when the user switches images; in colour-by-object mode the legend says what the colours mean instead of
showing category colours; colour by object is a visible toggle above the object table and the key K.

The window is that of tests/test_napari_object_edits.py: its first image holds two planted objects (parts A
and B of one whole, one category, not reviewed) whose cached tokens make Up / Down / Merge predictable."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from qtpy.QtCore import Qt
from test_napari_object_edits import centre_of, finished, press, widget  # noqa: F401 - fixtures
from test_napari_widget import click

from helpers import wait_idle
from maskdistill_napari._layers import category_colour


def select(window, instance_id: int) -> None:
    """Select an object as a user does (``window``: the MaskDistill widget): a click on its mask in pan/zoom
    mode."""
    layer = window.view.labels_layer
    layer.mode = "pan_zoom"
    click(layer, centre_of(np.asarray(layer.data) == instance_id))
    assert window.view.selected == instance_id


def category_name_now(view, instance_id: int) -> str:
    """The name the selected object's category has now (merges resolved), from the view's table."""
    table = view.table
    return table.by_id()[table.resolve(view.current["classes"][instance_id])].name


def other_category(view, instance_id: int) -> int:
    own = view.table.resolve(view.current["classes"][instance_id])
    return next(c.id for c in view.table.categories if c.id != own and view.table.resolve(c.id) is not None)


def test_the_selection_line_follows_a_rename_of_the_objects_category(widget, qtbot):  # noqa: F811
    view, review, categories = widget.view, widget.review, widget.categories
    select(widget, 1)
    category_id = view.current["classes"][1]
    categories.select(category_id)
    categories.name.setText("bus")
    categories.rename()
    wait_idle(qtbot, widget)
    assert "Object 1: bus," in review.selection.text(), review.selection.text()


def test_the_selection_line_follows_a_merge_of_the_objects_category(widget, qtbot):  # noqa: F811
    view, review, categories = widget.view, widget.review, widget.categories
    select(widget, 1)
    old = view.table.by_id()[view.current["classes"][1]]
    into = other_category(view, 1)
    categories.select(old.id)
    categories.merge_into.setCurrentIndex(categories.merge_into.findData(into))
    categories.merge()
    wait_idle(qtbot, widget)
    new_name = view.table.by_id()[into].name
    assert f"Object 1: {new_name}," in review.selection.text(), review.selection.text()
    assert old.name not in review.selection.text()
    assert review.category.currentData() == into  # the box shows the category the object is now in


def test_the_selection_line_follows_reject_and_its_undo(widget, qtbot):  # noqa: F811
    review = widget.review
    select(widget, 1)
    review.reject.click()
    assert review.selection.text().startswith("No object selected"), review.selection.text()
    wait_idle(qtbot, widget)
    review.undo_button.click()
    wait_idle(qtbot, widget)
    assert review.selection.text().startswith("Object 1: "), review.selection.text()


def test_the_selection_line_follows_set_category_and_its_undo(widget, qtbot):  # noqa: F811
    view, review = widget.view, widget.review
    select(widget, 1)
    old_name, new = category_name_now(view, 1), other_category(view, 1)
    review.category.setCurrentIndex(review.category.findData(new))
    review.set_category_button.click()
    wait_idle(qtbot, widget)
    assert f"Object 1: {view.table.by_id()[new].name}," in review.selection.text(), review.selection.text()
    assert "reviewed" in review.selection.text()
    review.undo_button.click()
    wait_idle(qtbot, widget)
    assert f"Object 1: {old_name}," in review.selection.text() and "reviewed" not in review.selection.text()


@pytest.mark.parametrize("key", [Qt.Key.Key_Up, Qt.Key.Key_Down])
def test_the_selection_line_follows_grow_and_shrink_and_their_undo(widget, qtbot, key):  # noqa: F811
    view, review = widget.view, widget.review
    select(widget, 1)
    assert "reviewed" not in review.selection.text()
    if key == Qt.Key.Key_Down:
        press(qtbot, widget, Qt.Key.Key_Up)  # the whole first, so that there is a part to shrink to
    press(qtbot, widget, key)
    assert review.status.text().startswith("Shrank" if key == Qt.Key.Key_Down else "Grew"), review.status.text()
    assert view.selected == 1
    assert review.selection.text() == f"Object 1: {category_name_now(view, 1)}, score " \
        f"{view.current['scores'].get(1, 1.0):.2f}, reviewed", review.selection.text()
    review.undo_button.click()
    wait_idle(qtbot, widget)
    if key == Qt.Key.Key_Up:  # back to the part, not reviewed
        assert review.selection.text().startswith("Object 1: ") and "reviewed" not in review.selection.text()


def test_the_selection_line_follows_a_merge_of_objects(widget, qtbot):  # noqa: F811
    view, review = widget.view, widget.review
    select(widget, 2)
    click(view.labels_layer, centre_of(np.asarray(view.labels_layer.data) == 1), ("Shift",))
    assert "with object 1" in review.selection.text()
    assert ": 2 objects from the " in review.info.text() and review.info.text().endswith(", 0 reviewed")
    review.merge_button.click()
    wait_idle(qtbot, widget)
    assert view.selected == 1
    assert review.selection.text().startswith("Object 1: ") and "with object" not in review.selection.text()
    assert ": 1 objects from the correction, 1 reviewed" in review.info.text()  # the info line follows too
    review.undo_button.click()
    wait_idle(qtbot, widget)
    assert "with object" not in review.selection.text()
    assert ": 2 objects from the" in review.info.text()


def test_the_status_of_a_previous_image_goes_when_another_image_is_shown(widget, qtbot):  # noqa: F811
    view, review = widget.view, widget.review
    select(widget, 1)
    review.reject.click()
    wait_idle(qtbot, widget)
    assert review.status.text().startswith("Rejected object 1")
    review.next.click()
    wait_idle(qtbot, widget)
    assert view.position == 1
    assert "Rejected" not in review.status.text(), review.status.text()
    # a message about the image being shown stays: the queue's, which names the object it shows
    review.low_confidence.click()
    wait_idle(qtbot, widget)
    assert review.status.text().startswith("Low confidence 1/"), review.status.text()


def test_the_legend_shows_no_category_colours_when_colouring_by_object(widget, qtbot):  # noqa: F811
    view, objects = widget.view, widget.review.objects
    objects.colour_by.setCurrentText("object")
    legend = objects.legend.text()
    for category in view.table.categories:
        assert "rgb({},{},{})".format(*category_colour(category)) not in legend, legend
    assert "own colour" in legend
    objects.colour_by.setCurrentText("category")
    shown = view.table.resolve(view.current["classes"][1])
    assert "rgb({},{},{})".format(*category_colour(view.table.by_id()[shown])) in objects.legend.text()


def test_colour_by_object_is_a_toggle_above_the_table_and_the_key_k(widget, qtbot):  # noqa: F811
    view, objects = widget.view, widget.review.objects
    widget.show_tab(widget.review)
    assert objects.colour_by.isVisible()
    above = objects.colour_by.mapTo(objects, objects.colour_by.rect().bottomLeft()).y()
    assert above <= objects.table.mapTo(objects, objects.table.rect().topLeft()).y()
    assert "K" in objects.colour_by.toolTip()
    colours = view.labels_layer.colormap.color_dict
    assert np.allclose(colours[1], colours[2])  # one category: one colour
    press(qtbot, widget, Qt.Key.Key_K)
    assert view.by_object and objects.colour_by.currentText() == "object"
    colours = view.labels_layer.colormap.color_dict
    assert not np.allclose(colours[1], colours[2])
    press(qtbot, widget, Qt.Key.Key_K)
    assert not view.by_object and objects.colour_by.currentText() == "category"
