"""The MaskDistill dock widget end to end, headless under Xvfb, driven through its handlers (not the mouse):
run -> layers -> category review -> a painted correction saved to the project -> retrain -> COCO export;
Cancel stops a run quickly and the next run completes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from qtpy.QtGui import QColor
from qtpy.QtWidgets import QColorDialog, QFileDialog

from engine.api import current_instances, image_objects, label_state, low_confidence_objects
from helpers import docked_widget, wait_idle
from maskdistill_napari._widget import MaskDistillWidget

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture
def three_images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("person_01.jpg", "cup_01.jpg", "cat_01.jpg"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def make_widget(make_napari_viewer, images: Path, project: Path) -> MaskDistillWidget:
    viewer = make_napari_viewer()
    widget = docked_widget(viewer)
    panel = widget.run_panel
    panel.image_folder.setText(str(images))
    panel.project_folder.setText(str(project))
    panel.input_size.value = 56
    panel.num_classes.value = 2
    panel.device.value = "cpu"
    return widget



class MouseEvent:
    """What napari hands a mouse callback, enough for a click: press then release at one position."""

    def __init__(self, position):
        self.position, self.type = position, "mouse_press"


def click(layer, position, modifiers: tuple = ()) -> None:
    """A click on the canvas (press + release without a drag) through the layer's own mouse callbacks, with
    ``modifiers`` (e.g. ("Shift",)) held."""
    event = MouseEvent(tuple(float(v) for v in position))
    event.modifiers = modifiers
    for callback in layer.mouse_drag_callbacks:
        generator = callback(layer, event)
        if generator is None:
            continue
        next(generator)
        event.type = "mouse_release"
        next(generator, None)
        event.type = "mouse_press"


def test_run_review_correct_retrain_export(make_napari_viewer, qtbot, three_images, tmp_path, monkeypatch):
    project = tmp_path / "project"
    widget = make_widget(make_napari_viewer, three_images, project)
    viewer, view = widget.viewer, widget.view
    widget.run_panel.start()
    wait_idle(qtbot, widget)
    status = widget.run_panel.status.text()
    assert status.startswith("Done: 3 images"), status
    exported = len(json.loads((project / "annotations.json").read_text())["annotations"])
    assert f"proposals -> {exported} masks in 2 classes" in status, status  # the masks the user gets
    report = json.loads((project / "report.json").read_text())
    assert f"suggested K {report['suggested_k']}" in status, status  # and whether a K stood out, in words
    assert ("no K stands out" in status) != report["k_stands_out"], status

    # layers: the current image and its masks, with a features table
    assert [layer.name for layer in viewer.layers] == ["image", "masks"]
    masks = viewer.layers["masks"]
    assert list(masks.features.columns) == ["index", "category_id", "class_name", "score", "source", "reviewed"]
    assert len(view.entries) == 3 and widget.categories.table.rowCount() == 2
    assert sum(widget.categories.sizes.values()) > 0

    # browsing: next / jump keep one image in the viewer
    widget.review.next.click()
    wait_idle(qtbot, widget)
    assert view.position == 1 and len(viewer.layers) == 2
    widget.review.jump.setValue(3)
    widget.review.jump.editingFinished.emit()
    wait_idle(qtbot, widget)
    assert view.position == 2

    # categories: rename, recolour, merge (through the engine, all images at once)
    panel = widget.categories
    panel.select(1)
    panel.name.setText("thing")
    panel.rename()
    wait_idle(qtbot, widget)
    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor(10, 200, 30)))
    panel.select(1)
    panel.recolour()
    wait_idle(qtbot, widget)
    panel.select(2)
    panel.merge_into.setCurrentIndex(panel.merge_into.findData(1))
    panel.merge()
    wait_idle(qtbot, widget)
    table = label_state(project).table
    assert table.by_id()[1].name == "thing" and table.by_id()[1].colour == [10, 200, 30]
    assert table.resolve(2) == 1
    assert set(viewer.layers["masks"].features["class_name"]) <= {"thing"}
    assert "merged into 1" in panel.table.item(1, 4).text()

    # a correction: paint a new label with napari's own tool, saved to the project, undo saved too
    view.show(0)
    wait_idle(qtbot, widget)
    masks = viewer.layers["masks"]
    image_id = view.current["image_id"]
    original = np.asarray(masks.data).copy()
    new_label = int(original.max()) + 1
    panel.select(1)
    masks.selected_label = new_label
    masks.brush_size = 20
    masks.paint((30, 30), new_label)
    assert masks.data[30, 30] == new_label
    view.save()
    wait_idle(qtbot, widget)
    saved, classes, scores, _ = current_instances(project, image_id)
    assert any(m[30, 30] for m in saved)
    objects = image_objects(project, image_id)  # the stroke marks only the painted object reviewed
    assert dict(zip(objects.ids, objects.reviewed)) == {k: k == new_label for k in objects.ids}
    generated = {k: s for k, s in view.current["scores"].items() if k != new_label}
    assert all(objects.as_dicts()[1][k] == pytest.approx(s, abs=1e-6) for k, s in generated.items())
    assert int(classes[[m[30, 30] for m in saved].index(True)]) == 1
    assert masks.features["source"].eq("correction").all()
    masks.undo()
    assert np.array_equal(masks.data, original)  # the stroke is gone from the layer ...
    qtbot.waitUntil(lambda: not view.unsaved and not widget.busy, timeout=10_000)
    saved = current_instances(project, image_id)[0]  # ... and from the project: back to the original masks
    assert len(saved) == len(np.setdiff1d(np.unique(original), [0]))
    assert np.array_equal(np.any(saved, axis=0) if len(saved) else np.zeros(original.shape, bool), original > 0)
    assert not image_objects(project, image_id).reviewed.any()  # undo also takes the reviewed flag back

    # reject the clicked object (not napari's brush label), then undo: the same id and pixels come back
    masks.selected_label = new_label
    masks.paint((40, 40), new_label)  # a mask of our own, so that there is always one to reject
    view.save()
    wait_idle(qtbot, widget)
    before = current_instances(project, image_id)[0]
    assert any(m[40, 40] for m in before)
    masks = viewer.layers["masks"]
    target = int(masks.data[40, 40])
    other_ids = sorted(set(np.unique(masks.data).tolist()) - {0, target})
    masks.mode = "pan_zoom"
    click(masks, (40, 40))
    assert view.selected == target and masks.show_selected_label
    assert widget.review.objects.selected_id() == target  # the object table follows the canvas
    masks.selected_label = other_ids[0] if other_ids else target + 7  # the brush label is not what is rejected
    labels_before = np.asarray(masks.data).copy()
    widget.review.reject_selected()
    wait_idle(qtbot, widget)
    after = current_instances(project, image_id)[0]
    assert len(after) == len(before) - 1 and not any(m[40, 40] for m in after)
    assert viewer.layers["masks"].data[40, 40] == 0
    assert sorted(set(np.unique(viewer.layers["masks"].data).tolist()) - {0}) == other_ids  # no renumbering
    assert widget.review.status.text().startswith("Rejected object")
    widget.review.undo()
    wait_idle(qtbot, widget)
    assert np.array_equal(viewer.layers["masks"].data, labels_before)
    assert view.selected == target

    # the object table selects on the canvas; colour by object; a legend of category names
    objects = widget.review.objects
    assert objects.table.rowCount() == len(other_ids) + 1
    objects.table.selectRow(0)
    first = objects.selected_id()
    assert view.selected == first and masks.selected_label == first
    objects.colour_by.setCurrentText("object")
    colours = viewer.layers["masks"].colormap.color_dict
    if len(other_ids) >= 1:
        assert not np.allclose(colours[target], colours[other_ids[0]])
    assert "thing" in objects.legend.text()
    objects.colour_by.setCurrentText("category")

    # the low-confidence queue walks forward and back over the project, selecting the object it shows
    queue = low_confidence_objects(project)
    widget.review.next_low_confidence()
    wait_idle(qtbot, widget)
    assert widget.review.status.text().startswith("Low confidence 1/"), widget.review.status.text()
    assert (view.current["image_id"], view.selected) == queue[0][:2]
    assert viewer.layers["masks"].selected_label == queue[0][1] and viewer.layers["masks"].show_selected_label
    widget.review.next_low_confidence()
    wait_idle(qtbot, widget)
    assert (view.current["image_id"], view.selected) == queue[1][:2]
    widget.review.previous_low_confidence()
    wait_idle(qtbot, widget)
    assert (view.current["image_id"], view.selected) == queue[0][:2]
    widget.review.accept_selected()  # reviewed: it leaves the queue
    wait_idle(qtbot, widget)
    assert queue[0][:2] not in {item[:2] for item in low_confidence_objects(project)}

    # retrain with the correction, then export COCO
    widget.retrain_export.retrain()
    wait_idle(qtbot, widget)
    assert widget.retrain_export.retrain_result.text().startswith("Retrained:"), \
        widget.retrain_export.retrain_result.text()
    out = tmp_path / "export" / "coco.json"
    out.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    widget.retrain_export.export_coco()
    wait_idle(qtbot, widget)
    assert widget.retrain_export.export_result.text().startswith("pycocotools validation passed: 3 images")
    from pycocotools.coco import COCO

    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 3 and {c["id"] for c in coco.dataset["categories"]} == {1}
    assert all(a["id"] >= 1 and a["iscrowd"] == 0 for a in coco.dataset["annotations"])


def test_cancel_stops_a_run_quickly_and_a_rerun_completes(make_napari_viewer, qtbot, three_images, tmp_path):
    project = tmp_path / "project"
    widget = make_widget(make_napari_viewer, three_images, project)
    panel = widget.run_panel
    panel.start()
    qtbot.waitUntil(lambda: panel.status.text().startswith("Running: images"), timeout=60_000)
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)  # at the next image (how fast: benchmarks)
    assert panel.status.text().startswith("Cancelled during images"), panel.status.text()
    assert not (project / "images.json").exists()
    panel.start()
    wait_idle(qtbot, widget)
    assert panel.status.text().startswith("Done: 3 images"), panel.status.text()
    assert len(json.loads((project / "images.json").read_text())) == 3
    assert "masks" in widget.viewer.layers


def test_open_project_button_and_bad_folder(make_napari_viewer, qtbot, three_images, tmp_path):
    widget = make_widget(make_napari_viewer, three_images, tmp_path / "nothing")
    widget.run_panel.open_button.click()
    assert "not a project folder" in widget.run_panel.status.text()
    widget.run_panel.image_folder.setText("")
    widget.run_panel.start()
    assert "Choose both" in widget.run_panel.status.text() and not widget.run_panel.running  # nothing queued


def test_the_retrain_message_says_where_corrections_were_carried():
    from maskdistill_napari._retrain_export_panel import describe_retrain
    result = {"before": 33, "after": 36, "changed": ["b.jpg", "c.jpg"],
              "summary": {"carried": {"b.jpg": 2, "c.jpg": 1}}}
    assert describe_retrain(result) == ("Retrained: 33 masks before, 36 after; 2 image(s) changed: b.jpg, c.jpg. Your "
                                        "corrected objects were carried to 2 image(s) of the same scene (3 object(s)).")
    assert "carried" not in describe_retrain({**result, "summary": {"carried": {}}})


def test_the_retrain_message_says_whether_groups_were_cut():
    from maskdistill_napari._retrain_export_panel import describe_retrain
    used = {"used": True, "lone_objects": 298, "alpha": 10000.0, "held_out_r2": 0.43, "objects_cut": 166,
            "images_changed": 110, "min_lone_objects": 50, "min_held_out_r2": 0.3}
    result = {"before": 842, "after": 1016, "changed": [], "summary": {"carried": {}, "group_cut": used}}
    assert describe_retrain(result).endswith(" Touching objects split apart, as 298 masks that are clearly single "
                                             "objects show where one object ends: 166 masks split in 110 images "
                                             "(checked on objects it did not learn from: R^2 0.43).")
    closed = {**used, "used": False, "held_out_r2": 0.01, "objects_cut": 0, "images_changed": 0}
    assert "Touching objects may still share a mask" in describe_retrain({**result, "summary": {"group_cut": closed}})


def test_the_retrain_message_says_whether_the_folder_ranked_its_objects():
    from maskdistill_napari._retrain_export_panel import describe_retrain
    used = {"used": True, "images": 195, "min_images": 50, "top_cosine": 0.83, "images_reordered": 24, "seconds": 8.5}
    result = {"before": 1600, "after": 1600, "changed": [], "summary": {"carried": {}, "typical": used}}
    assert describe_retrain(result).endswith(" Masks reordered so that each image's first is the most like the object "
                                             "the folder's 195 images share: a different first mask in 24 images.")
    crops = {**used, "crops": 780}
    assert describe_retrain({**result, "summary": {"typical": crops}}).endswith(
        "the folder's 195 images share, its first 780 masks looked at whole, alone and in their surroundings: a "
        "different first mask in 24 images.")
    small = {**used, "used": False, "images": 11, "top_cosine": None, "images_reordered": 0}
    message = describe_retrain({**result, "summary": {"typical": small}})
    assert "needs 50 images with masks (this folder has 11)" in message
