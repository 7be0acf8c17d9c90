"""Issue 21 item 2 in a real napari window (Xvfb): an object selected by a click on its mask grows when the key
Up reaches the viewer, shrinks on Down, Undo gives back what it was; two objects shift-clicked are merged by the
Merge button. The layer follows each change without reading the image back, and the project agrees with it.

The first image's cached tokens are planted (tests/test_hierarchy.py's nested scene: an object of two parts on
a background), so the candidate tree, and so what Up and Down do, is known."""
from __future__ import annotations

import functools
import json
import os
import shutil
import threading

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from qtpy.QtCore import Qt
from test_hierarchy import GRID, PART_A, PART_B, nested_tokens
from test_napari_widget import click
from test_plugin_tasks import press as mouse_press

import engine.api
from helpers import docked_widget, plant_tokens, small_finished_project, wait_idle
from maskdistill_napari import _engine_calls


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple:
    return small_finished_project(tmp_path_factory, "object_edits")


def cells_to_pixels(region, height: int, width: int) -> np.ndarray:
    """The pixels of a region of the planted grid on an image of this size (the grid covers the image)."""
    rows = np.minimum((np.arange(height) * GRID[0]) // height, GRID[0] - 1)
    cols = np.minimum((np.arange(width) * GRID[1]) // width, GRID[1] - 1)
    cells = np.zeros(GRID, bool)
    cells[region] = True
    return cells[rows[:, None], cols[None, :]]


@pytest.fixture
def widget(make_napari_viewer, qtbot, finished, tmp_path):
    """The widget on a copy of the project whose first image holds one object (part A of the planted scene)
    and a second one (part B) beside it, neither reviewed."""
    project = tmp_path / "project"
    shutil.copytree(finished[1], project)
    entry = json.loads((project / "images.json").read_text())[0]
    plant_tokens(project, entry, nested_tokens(7), GRID)
    height, width = entry["height"], entry["width"]
    labels = np.zeros((height, width), np.uint16)
    labels[cells_to_pixels(PART_A, height, width)] = 1
    labels[cells_to_pixels(PART_B, height, width)] = 2
    category = engine.api.label_state(project).table.categories[0].id
    engine.api.set_image_labels(project, entry["image_id"], labels, {1: category, 2: category}, reviewed=False)
    viewer = make_napari_viewer(show=True)
    widget = docked_widget(viewer)
    widget.open_project(str(project))
    wait_idle(qtbot, widget)
    assert widget.view.current["image_id"] == entry["image_id"]
    return widget



def centre_of(mask: np.ndarray) -> tuple:
    rows, cols = np.nonzero(mask)
    return float(np.median(rows)), float(np.median(cols))


def press(qtbot, widget, key) -> None:
    """A key pressed on napari's canvas, as a user does (Qt's key event through napari's key bindings)."""
    qtbot.keyClick(widget.viewer.window._qt_viewer, key)
    wait_idle(qtbot, widget)


def test_up_grows_the_selected_object_down_shrinks_it_and_undo_goes_back(widget, qtbot):
    view, review = widget.view, widget.review
    project, image_id = view.project_dir, view.current["image_id"]
    layer = view.labels_layer
    before = np.asarray(layer.data).copy()
    part_a = before == 1
    click(layer, centre_of(part_a))
    assert view.selected == 1 and "Object 1" in review.selection.text()

    press(qtbot, widget, Qt.Key.Key_Up)
    grown = np.asarray(layer.data) == 1
    assert grown.sum() > part_a.sum() and grown[part_a].all(), review.status.text()
    assert not (np.asarray(layer.data) == 2).any()  # the other part was taken in: the whole object
    assert review.status.text().startswith("Grew object 1") and "took in object 2" in review.status.text()
    on_disk = engine.api.image_objects(project, image_id)
    assert np.array_equal(on_disk.labels, np.asarray(layer.data))  # the layer shows what was saved
    assert on_disk.as_dicts()[2] == {1: True} and view.current["reviewed_ids"] == {1}
    assert list(layer.features["index"]) == [1] and view.selected == 1 and not view.dirty

    review.undo_button.click()
    wait_idle(qtbot, widget)
    assert np.array_equal(np.asarray(layer.data), before)
    assert np.array_equal(engine.api.image_objects(project, image_id).labels, before)
    assert sorted(view.current["classes"]) == [1, 2] and view.current["reviewed_ids"] == set()

    # the whole (grown again) shrinks back to its larger part
    press(qtbot, widget, Qt.Key.Key_Up)
    press(qtbot, widget, Qt.Key.Key_Down)
    shrunk = np.asarray(layer.data) == 1
    assert review.status.text().startswith("Shrank object 1"), review.status.text()
    assert 0 < shrunk.sum() < grown.sum() and not (shrunk & ~grown).any()
    assert np.array_equal(engine.api.image_objects(project, image_id).labels, np.asarray(layer.data))


def test_merge_joins_the_shift_clicked_objects(widget, qtbot):
    view, review = widget.view, widget.review
    project, image_id = view.project_dir, view.current["image_id"]
    layer = view.labels_layer
    before = np.asarray(layer.data).copy()
    review.merge_button.click()
    assert "Select the objects to merge" in review.status.text()
    click(layer, centre_of(before == 2))
    event_position = centre_of(before == 1)
    shift_click(layer, event_position)
    assert view.selected_ids == [2, 1] and "with object 1" in review.selection.text()
    review.merge_button.click()
    assert review.status.text() == "Merging objects 2, 1..."  # under way, off the GUI thread
    wait_idle(qtbot, widget)
    merged = np.asarray(layer.data)
    assert set(np.unique(merged)) == {0, 1}  # the larger (part A, object 1) keeps its id
    assert np.array_equal(merged == 1, (before == 1) | (before == 2))
    assert np.array_equal(engine.api.image_objects(project, image_id).labels, merged)
    assert review.status.text().startswith("Merged into object 1"), review.status.text()
    review.undo_button.click()
    wait_idle(qtbot, widget)
    assert np.array_equal(np.asarray(layer.data), before)


def shift_click(layer, position) -> None:
    """A click with Shift held, through the layer's own mouse callbacks."""
    click(layer, position, ("Shift",))


def test_further_clicks_refine_the_object_just_added_and_undo_takes_one_back(widget, qtbot):
    """Issue 21 item 3 in the window: with Add object on, a click adds an object, a shift (or right) click on
    a region removes it from that object (a ctrl click would add one); each is saved, shown and undoable."""
    view, review = widget.view, widget.review
    project, image_id = view.project_dir, view.current["image_id"]
    layer = view.labels_layer
    before = np.asarray(layer.data)
    part_a, part_b = before == 1, before == 2
    engine.api.set_image_labels(project, image_id, np.zeros_like(before), {}, reviewed=False)
    review._reload(image_id)
    wait_idle(qtbot, widget)
    review.set_add_mode(True)
    review.add_object_at(centre_of(part_a))
    wait_idle(qtbot, widget)
    made = review.making["instance_id"]
    added = np.asarray(layer.data).copy()
    assert added[part_a].mean() > 0.5, review.status.text()
    row, col = (int(v) for v in centre_of(part_b))

    review.add_object_at(centre_of(part_b), None, "remove")  # what a shift or right click on the canvas sends
    wait_idle(qtbot, widget)
    refined = np.asarray(layer.data)
    assert refined[row, col] != made and (refined == made).any(), review.status.text()
    assert review.status.text().startswith("Removed a region from object")
    assert np.array_equal(engine.api.image_objects(project, image_id).labels, refined)
    assert review.making["negative"] and review.making["positive"]

    review.undo_button.click()
    wait_idle(qtbot, widget)
    assert np.array_equal(np.asarray(layer.data), added)
    assert review.making["negative"] == []  # the undone click is taken back too
    review.set_add_mode(False)
    assert review.making is None


def drag(layer, points) -> None:
    """A line dragged on the canvas (press, moves, release) through the layer's own mouse callbacks."""
    mouse_press(layer, *points)


def test_a_line_dragged_across_an_object_splits_it_at_once_and_undo_joins_it(widget, qtbot, monkeypatch):
    """Split by stroke in the window: the layer shows the two parts before the engine is done (its call is held
    back here), the project agrees once it is, and Undo joins them again; a line that cuts nothing in two is
    refused with the engine's message naming the image."""
    view, review = widget.view, widget.review
    project, image_id = view.project_dir, view.current["image_id"]
    layer = view.labels_layer
    before = np.asarray(layer.data).copy()
    part_a = before == 1
    rows, cols = np.nonzero(part_a)
    middle = int(np.median(cols))
    click(layer, centre_of(part_a))
    review.split_button.click()
    assert "stroke" in widget.viewer.layers and view.stroke is not None
    assert widget.viewer.layers.selection.active is layer  # the canvas's drags still reach the labels

    started, release, split_object = [], threading.Event(), _engine_calls.split_object

    @functools.wraps(split_object)  # the typed call forwards by its name
    def held(*args):  # the engine's split waits until the layer has been looked at
        release.wait(60)
        started.append(True)
        return split_object(*args)
    monkeypatch.setattr(_engine_calls, "split_object", held)
    line = [(rows.min() - 5.0, float(middle)), (float(np.median(rows)), middle + 0.4), (rows.max() + 5.0, middle)]
    drag(layer, line)
    shown = np.asarray(layer.data).copy()
    new = int(shown.max())
    assert new == 3 and set(np.unique(shown[part_a])) == {1, 3}, review.status.text()  # at once, in the layer
    assert ((shown == 1) | (shown == 3)).sum() == part_a.sum() and (shown[before == 2] == 2).all()
    assert review.status.text().startswith("Split object 1") and "new object 3" in review.status.text()
    assert sorted(view.current["classes"]) == [1, 2, 3] and view.current["classes"][3] == view.current["classes"][1]
    assert not started
    release.set()
    wait_idle(qtbot, widget)
    assert started and np.array_equal(engine.api.image_objects(project, image_id).labels, shown)
    assert np.array_equal(np.asarray(layer.data), shown) and not widget.viewer.layers["stroke"].data

    review.undo_button.click()
    wait_idle(qtbot, widget)
    assert np.array_equal(np.asarray(layer.data), before)
    assert np.array_equal(engine.api.image_objects(project, image_id).labels, before)
    assert sorted(view.current["classes"]) == [1, 2]

    drag(layer, [(rows.min() - 5.0, float(middle)), (float(np.median(rows)), float(middle))])  # into it, not across
    wait_idle(qtbot, widget)
    assert "does not cut object 1 of" in review.status.text() and ".jpg" in review.status.text()
    assert np.array_equal(np.asarray(layer.data), before)
    review.split_button.click()
    assert "stroke" not in widget.viewer.layers and view.stroke is None
