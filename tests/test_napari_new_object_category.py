"""Issue 21 item 1 in a real napari window (Xvfb), driven through the widget's handlers: with a discarded
category selected in the Categories tab, an object added by a click, one added by a box and one painted each take
the Review tab's category and are found in the exported COCO file under a visible category; picking a discarded
category in the Review tab asks first. Also: the Run tab names the opened project, an image without objects says
so, and exporting label images writes only label images."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from qtpy.QtWidgets import QFileDialog

import engine.api
from helpers import docked_widget, small_finished_project, wait_idle
from maskdistill_napari import _review_panel
from maskdistill_napari._widget import MaskDistillWidget


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple:
    return small_finished_project(tmp_path_factory, "new_object_category")


@pytest.fixture
def widget(make_napari_viewer, qtbot, finished, tmp_path) -> MaskDistillWidget:
    _, original = finished
    project = tmp_path / "project"
    shutil.copytree(original, project)
    for entry in json.loads((project / "images.json").read_text()):  # every pixel free for a new object
        engine.api.set_image_labels(project, entry["image_id"],
                                    np.zeros((entry["height"], entry["width"]), np.uint16), {})
    viewer = make_napari_viewer()
    widget = docked_widget(viewer)
    widget.open_project(str(project))
    wait_idle(qtbot, widget)
    assert widget.view.current is not None
    return widget



def show(widget, qtbot, position: int) -> None:
    widget.view.show(position)
    wait_idle(qtbot, widget)
    assert widget.view.position == position


def test_new_objects_take_the_review_category_never_a_discarded_one(widget, qtbot, monkeypatch, tmp_path, finished):
    view, review, categories = widget.view, widget.review, widget.categories
    project = view.project_dir
    assert widget.run_panel.status.text().startswith(f"Opened {project}"), widget.run_panel.status.text()
    run_panel, images = widget.run_panel, finished[0]
    # the Run tab shows how the project was made: Run reruns it as it was
    assert run_panel.image_folder.text() == str(images.resolve())
    assert (run_panel.weights.value, run_panel.input_size.value, run_panel.num_classes.value) == ("random", 56, 2)
    assert run_panel.proposals.value == "auto"  # auto chose segments for these photos
    assert run_panel.config().num_classes == 2 and run_panel.config().proposals == "auto"
    assert "no objects on this image" in review.info.text(), review.info.text()

    # discard category 1 in the Categories tab and leave it selected there
    categories.select(1)
    name = view.table.by_id()[1].name
    categories.discard()
    wait_idle(qtbot, widget)
    assert categories.status.text().startswith(f"Discarded '{name}' (")  # by its name, not its id
    categories.select(1)
    assert categories.current_category() == 1 and view.table.by_id()[1].discarded
    labels = [review.category.itemText(i) for i in range(review.category.count())]
    assert any(text.endswith("(discarded)") for text in labels), labels
    assert review.category.currentData() == 2 and review.new_object_category() == 2

    # picking the discarded category in the Review box asks; "Choose another" goes back
    asked = []
    monkeypatch.setattr(_review_panel, "use_discarded_anyway", lambda parent, name: asked.append(name) or False)
    index = review.category.findData(1)
    review.category.setCurrentIndex(index)
    review.category.activated.emit(index)
    assert asked == [view.table.by_id()[1].name] and review.category.currentData() == 2

    added = {}  # image id -> a pixel of the object made there
    # a click
    show(widget, qtbot, 0)
    height, width = np.asarray(view.labels_layer.data).shape
    review.add_object_button.click()
    review.add_object_at((height / 2 + 0.37, width / 2 + 0.81))
    wait_idle(qtbot, widget)
    assert review.status.text().startswith("Added object"), review.status.text()
    new_id = review.undo_stack[-1]["instance_id"]
    assert review.undo_stack[-1]["category"] == 2
    added[view.current["image_id"]] = tuple(np.argwhere(np.asarray(view.labels_layer.data) == new_id)[0])
    # a click on it again: the message names the image and rounds the click, with no Python in it
    review.add_object_at(tuple(float(v) + 0.123456 for v in added[view.current["image_id"]]))
    wait_idle(qtbot, widget)
    message = review.status.text()
    assert "is on object" in message and view.current["name"] in message, message
    assert "Error" not in message and "np." not in message and ".123" not in message, message
    assert view.current["image_id"] not in message, message

    # a box
    show(widget, qtbot, 1)
    height, width = np.asarray(view.labels_layer.data).shape
    review.add_object_at((2.5, 2.5), (height - 3.5, width - 3.5))
    wait_idle(qtbot, widget)
    assert review.status.text().startswith("Added object"), review.status.text()
    new_id = review.undo_stack[-1]["instance_id"]
    assert review.undo_stack[-1]["category"] == 2
    added[view.current["image_id"]] = tuple(np.argwhere(np.asarray(view.labels_layer.data) == new_id)[0])
    review.add_object_button.click()

    # painting a new label with napari's brush
    show(widget, qtbot, 2)
    masks = view.labels_layer
    masks.selected_label = 5
    masks.brush_size = 10
    masks.paint((20, 20), 5)
    view.save()
    wait_idle(qtbot, widget)
    assert engine.api.image_objects(project, view.current["image_id"]).as_dicts()[0] == {5: 2}
    added[view.current["image_id"]] = (20, 20)

    # every object is in the export, under a visible category
    out = tmp_path / "export.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    widget.retrain_export.export_coco()
    wait_idle(qtbot, widget)
    coco = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert view.table.by_id()[1].name not in names.values()
    entries = {e["image_id"]: e for e in view.entries}
    for image_id, (row, col) in added.items():
        image = next(i for i in coco["images"] if i["file_name"] == entries[image_id]["relative_path"])
        found = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert len(found) == 1, (image_id, found)
        from pycocotools import mask as mask_utils

        assert mask_utils.decode(found[0]["segmentation"])[row, col]
        assert names[found[0]["category_id"]] == view.table.by_id()[2].name

    # "Use it anyway": the confirmed discarded category goes with the edit to the engine
    monkeypatch.setattr(_review_panel, "use_discarded_anyway", lambda parent, name: True)
    review.category.setCurrentIndex(index)
    review.category.activated.emit(index)
    assert review.category.currentData() == 1 and review.new_object_category() == 1
    masks = view.labels_layer
    masks.selected_label = 6
    masks.paint((60, 60), 6)
    view.save()
    wait_idle(qtbot, widget)
    assert engine.api.image_objects(project, view.current["image_id"]).as_dicts()[0] == {5: 2, 6: 1}


def test_label_images_alone_leave_the_project_coco_file_and_say_where(widget, qtbot, monkeypatch, tmp_path):
    project = widget.view.project_dir
    before = (project / "annotations.json").read_bytes()
    folder = tmp_path / "labels"
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    widget.retrain_export.export_labels()
    wait_idle(qtbot, widget)
    text = widget.retrain_export.export_result.text()
    assert str(folder) in text and "label images" in text and "pycocotools" not in text, text
    assert (project / "annotations.json").read_bytes() == before
    assert (folder / "instances.json").exists()


def test_error_messages_carry_no_python_names_or_long_decimals():
    from maskdistill_napari._tasks import error_message

    assert error_message(ValueError("The point (np.float64(203.77758516523846), np.float64(7.0)) is off")) == \
        "The point (203.8, 7.0) is off"
    assert error_message(KeyError("No category 9")) == "No category 9"  # not "'No category 9'"
    assert error_message(OSError("No space left on device")) == "No space left on device"
    assert error_message(TypeError("bad")) == "unexpected TypeError: bad"  # a fault says what kind it is
    assert error_message(ValueError("photo_1.2345.png is 12.5 px")) == "photo_1.2345.png is 12.5 px"
