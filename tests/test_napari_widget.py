"""The MaskDistill dock widget end to end, headless under Xvfb, driven through its handlers (not the mouse):
run -> layers -> category review -> a painted correction saved to the project -> retrain -> COCO export;
Cancel stops a run quickly and the next run completes."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from qtpy.QtGui import QColor
from qtpy.QtWidgets import QColorDialog, QFileDialog

from engine.api import current_instances, label_state, low_confidence_masks
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
    widget = MaskDistillWidget(viewer, weights="random")  # fast: no pretrained weights needed
    viewer.window.add_dock_widget(widget)
    panel = widget.run_panel
    panel.image_folder.setText(str(images))
    panel.project_folder.setText(str(project))
    panel.input_size.setValue(56)
    panel.num_classes.setValue(2)
    panel.device.setCurrentText("cpu")
    return widget


def wait_idle(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def test_run_review_correct_retrain_export(make_napari_viewer, qtbot, three_images, tmp_path, monkeypatch):
    project = tmp_path / "project"
    widget = make_widget(make_napari_viewer, three_images, project)
    viewer, view = widget.viewer, widget.view
    widget.run_panel.start()
    wait_idle(qtbot, widget)
    assert widget.run_panel.status.text().startswith("Done: 3 images"), widget.run_panel.status.text()

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
    saved, classes, _, reviewed = current_instances(project, image_id)
    assert reviewed and any(m[30, 30] for m in saved)
    assert int(classes[[m[30, 30] for m in saved].index(True)]) == 1
    assert masks.features["source"].eq("correction").all()
    masks.undo()
    assert np.array_equal(masks.data, original)  # the stroke is gone from the layer ...
    qtbot.waitUntil(lambda: not view.unsaved and not widget.busy, timeout=10_000)
    saved = current_instances(project, image_id)[0]  # ... and from the project: back to the original masks
    assert len(saved) == len(np.setdiff1d(np.unique(original), [0]))
    assert np.array_equal(np.any(saved, axis=0) if len(saved) else np.zeros(original.shape, bool), original > 0)

    # reject the mask under the selected label: gone from the project and from the layer
    masks.selected_label = new_label
    masks.paint((40, 40), new_label)  # a mask of our own, so that there is always one to reject
    view.save()
    wait_idle(qtbot, widget)
    before = current_instances(project, image_id)[0]
    assert any(m[40, 40] for m in before)
    masks = viewer.layers["masks"]
    masks.selected_label = int(masks.data[40, 40])
    widget.review.reject_selected()
    wait_idle(qtbot, widget)
    after = current_instances(project, image_id)[0]
    assert len(after) == len(before) - 1 and not any(m[40, 40] for m in after)
    assert viewer.layers["masks"].data[40, 40] == 0
    assert widget.review.status.text().startswith("Rejected mask")

    # the least confident unreviewed mask: the engine's first, shown with its label selected
    expected_image, expected_index, _ = low_confidence_masks(project, 1)[0]
    widget.review.next_low_confidence()
    wait_idle(qtbot, widget)
    assert widget.review.status.text().startswith("Lowest confidence: mask"), widget.review.status.text()
    assert view.current["image_id"] == expected_image != image_id  # the corrected image counts as reviewed
    assert viewer.layers["masks"].selected_label == expected_index + 1

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
    start = time.perf_counter()
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=5_000)
    assert time.perf_counter() - start < 2.0
    assert panel.status.text().startswith("Cancelled"), panel.status.text()
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
