"""The widget's task queue and autosave, headless under Xvfb: worker errors reach the user, a failed save is
retried and not taken as saved, Run / Retrain / Export run one after another in the order clicked, and
edits not yet on disk are written when napari closes (even while a retrain still runs)."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from napari.utils.notifications import notification_manager
from qtpy.QtWidgets import QFileDialog

import engine.api
from helpers import docked_widget, small_finished_project, wait_idle
from maskdistill_napari import _project_view
from maskdistill_napari._engine_process import EngineProcess
from maskdistill_napari._widget import MaskDistillWidget

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple:
    """(image folder, finished project) made once; each test works on its own copy of the project."""
    return small_finished_project(tmp_path_factory, "task")


@pytest.fixture
def widget(make_napari_viewer, qtbot, finished, tmp_path) -> MaskDistillWidget:
    images, original = finished
    project = tmp_path / "project"
    shutil.copytree(original, project)
    viewer = make_napari_viewer()
    widget = docked_widget(viewer)
    panel = widget.run_panel
    panel.image_folder.setText(str(images))
    panel.input_size.value = 56
    panel.num_classes.value = 2
    panel.device.value = "cpu"
    widget.open_project(str(project))
    wait_idle(qtbot, widget)
    assert widget.view.current is not None
    return widget



def paint_new_label(view, at=(30, 30)) -> int:
    masks = view.labels_layer
    label = int(masks.data.max()) + 1
    masks.selected_label = label
    masks.brush_size = 10
    masks.paint(at, label)
    return label


def corrected_at(project, image_id, at=(30, 30)) -> bool:
    """The project's saved correction of the image covers pixel ``at``."""
    if engine.api.instance_source(project, image_id) != "correction":
        return False
    return any(m[at] for m in engine.api.current_instances(project, image_id)[0])


def test_a_worker_error_reaches_the_status_line_and_a_notification(widget, qtbot, monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("the disk is on fire")

    seen = len(notification_manager.records)
    monkeypatch.setattr(engine.api, "accept_image", broken)
    widget.review.accept_image()
    wait_idle(qtbot, widget)
    assert widget.review.status.text() == "Accepting the image failed: the disk is on fire"  # no Python names
    assert any("the disk is on fire" in str(n.message) for n in notification_manager.records[seen:])

    # a run's error (raised in the engine process): in the Run panel and a notification
    empty = tmp_path / "no images here"
    empty.mkdir()
    widget.run_panel.image_folder.setText(str(empty))
    widget.run_panel.start()
    wait_idle(qtbot, widget)
    status = widget.run_panel.status.text()
    assert status.startswith("Run failed: ") and "no images here" in status, status
    message = status[len("Run failed: "):]
    assert any(message in str(n.message) for n in notification_manager.records[seen:])
    assert widget.run_panel.run_button.isEnabled() and not widget.run_panel.running


def test_an_edit_the_image_cannot_give_is_said_in_the_status_line_without_an_error(widget, qtbot, monkeypatch):
    """A refusal (engine EditRefused: nothing larger to grow into) is an answer: the status line says it, napari
    shows no error notification; a real failure still does (the test above)."""
    from engine.state.review import EditRefused

    def refuses(*args, **kwargs):
        raise EditRefused("Object 1 of cat.jpg cannot grow: nothing larger around it.")

    seen = len(notification_manager.records)
    monkeypatch.setattr(engine.api, "accept_image", refuses)
    widget.review.accept_image()
    wait_idle(qtbot, widget)
    assert widget.review.status.text().endswith("Object 1 of cat.jpg cannot grow: nothing larger around it.")
    assert not any("cannot grow" in str(n.message) for n in notification_manager.records[seen:])


def fail_first_save(monkeypatch, error: Exception) -> list:
    """engine.api.set_image_labels raises ``error`` on its first call only; returns the image ids it was called
    with, in order."""
    real, calls = engine.api.set_image_labels, []

    def fails_once(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.api, "set_image_labels", fails_once)
    return calls


def test_a_failed_save_is_shown_kept_pending_and_retried(widget, qtbot, monkeypatch):
    view, project = widget.view, widget.view.project_dir
    calls = fail_first_save(monkeypatch, OSError("No space left on device"))
    monkeypatch.setattr(_project_view, "RETRY_DELAYS_MS", (1_500, 1_500, 1_500))
    saved = []
    view.saved.connect(saved.append)
    image_id = view.current["image_id"]
    paint_new_label(view)
    view.save()
    qtbot.waitUntil(lambda: len(calls) == 1 and "No space left" in widget.review.status.text(), timeout=30_000)
    # not saved: still pending, nothing on disk, no "saved" signal; the user is told it will be retried
    assert image_id in view.pending and view.unsaved and not saved
    assert not corrected_at(project, image_id)
    assert "not saved yet: No space left on device" in widget.review.status.text()
    assert "Retrying in 1.5 s" in widget.review.status.text()
    qtbot.waitUntil(lambda: not view.pending, timeout=30_000)  # the timer's retry succeeds
    assert calls == [image_id, image_id] and saved == [image_id]
    assert corrected_at(project, image_id) and not view.unsaved


def test_a_failed_save_is_retried_on_the_next_edit(widget, qtbot, monkeypatch):
    view, project = widget.view, widget.view.project_dir
    calls = fail_first_save(monkeypatch, OSError("read-only file system"))
    monkeypatch.setattr(_project_view, "RETRY_DELAYS_MS", (60_000,))  # the timer would come too late
    image_id = view.current["image_id"]
    paint_new_label(view)
    view.save()
    qtbot.waitUntil(lambda: len(calls) == 1 and not widget.busy, timeout=30_000)
    assert image_id in view.pending
    widget.review.next.click()  # switching image writes the pending edit
    wait_idle(qtbot, widget)
    assert view.position == 1 and not view.pending and corrected_at(project, image_id)


def test_retrain_and_export_clicked_during_a_run_wait_for_it(widget, qtbot, monkeypatch, tmp_path):
    events = []
    real = EngineProcess.call

    def recorded(self, name, *args, **kwargs):  # at the plugin's side: the calls run in the engine process
        events.append(f"{name} start")
        try:
            return real(self, name, *args, **kwargs)
        finally:
            events.append(f"{name} end")

    monkeypatch.setattr(EngineProcess, "call", recorded)
    out = tmp_path / "coco.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    widget.run_panel.project_folder.setText(str(widget.view.project_dir))
    widget.run_panel.start()
    assert widget.run_panel.running
    widget.retrain_export.retrain()
    widget.retrain_export.export_coco()
    assert widget.retrain_export.retrain_result.text() == "Retraining after the task in progress…"
    wait_idle(qtbot, widget)
    assert events == ["run start", "run end", "distill start", "distill end", "export_project start",
                      "export_project end"]
    assert widget.run_panel.status.text().startswith("Done: 3 images"), widget.run_panel.status.text()
    assert widget.retrain_export.retrain_result.text().startswith("Retrained:"), \
        widget.retrain_export.retrain_result.text()
    assert widget.retrain_export.export_result.text().startswith("pycocotools validation passed: 3 images")
    assert out.exists()


def test_an_edit_not_yet_saved_is_written_when_napari_closes(widget, qtbot, monkeypatch):
    view, project = widget.view, widget.view.project_dir
    real, threads = engine.api.set_image_labels, []

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.api, "set_image_labels", recorded)
    image_id = view.current["image_id"]
    paint_new_label(view)
    assert view.dirty  # the debounce timer has not fired: nothing is queued yet
    widget.viewer.close()
    assert corrected_at(project, image_id) and not view.pending
    assert True in threads  # written by the close itself, not by a worker that happened to be quick


def test_edits_queued_behind_a_retrain_are_written_when_napari_closes(widget, qtbot, monkeypatch):
    view, project = widget.view, widget.view.project_dir
    real, started, release = EngineProcess.call, threading.Event(), threading.Event()

    def slow_distill(self, name, *args, **kwargs):  # the retrain, held at the plugin's side
        if name == "distill":
            started.set()
            release.wait(30)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(EngineProcess, "call", slow_distill)
    widget.retrain_export.retrain()
    qtbot.waitUntil(started.is_set, timeout=30_000)
    first = view.current["image_id"]
    paint_new_label(view)
    widget.review.next.click()  # the edit is queued behind the retrain, and so is the next image
    assert first in view.pending and not corrected_at(project, first)
    time.sleep(0.3)
    assert first in view.pending  # still waiting for the retrain
    start = time.perf_counter()
    widget.viewer.close()
    assert time.perf_counter() - start < 5
    assert corrected_at(project, first) and not view.pending
    release.set()  # let the retrain finish before the test ends; its result is ignored
    qtbot.waitUntil(lambda: widget.tasks._worker is None, timeout=60_000)
    assert not widget.tasks.busy  # the queued image load was dropped, not run on the closed viewer
    saved = engine.api.current_instances(project, first)[0]
    assert np.any([m[30, 30] for m in saved])
    objects = engine.api.image_objects(project, first)  # the painted object is reviewed
    assert objects.reviewed[list(objects.ids).index(int(objects.labels[30, 30]))]


def test_an_edit_is_written_when_the_widget_is_taken_out_of_napari(widget, qtbot):
    view, project = widget.view, widget.view.project_dir
    image_id = view.current["image_id"]
    paint_new_label(view)
    widget.viewer.window.remove_dock_widget(widget)
    assert corrected_at(project, image_id) and not view.pending


def test_the_run_form_is_the_engines_description_of_a_run(widget, tmp_path):
    """Each setting's widget carries the engine's help as its tooltip (the text `maskdistill run --help` shows),
    the engine's choices and range; K and the input size can be left to the engine."""
    panel = widget.run_panel
    for name in ("backbone", "device", "num_classes", "proposals", "input_size", "second_scale", "mirror_view",
                 "weights"):
        assert getattr(panel, name).tooltip == engine.api.setting(name)["help"], name
        assert getattr(panel, name).native.toolTip() == engine.api.setting(name)["help"], name
    for name in ("image_folder", "project_folder", "run_button", "cancel_button", "open_button"):
        assert getattr(panel, name).toolTip(), name
    assert panel.backbone.choices == tuple(engine.api.BACKBONES)
    assert panel.proposals.choices == engine.api.PROPOSAL_CHOICES
    assert (panel.input_size.number.min, panel.input_size.number.max) == (28, 2048)
    assert panel.num_classes.number.min == 1

    panel.input_size.value, panel.num_classes.value = None, None  # "backbone default", "suggested"
    assert (panel.config().input_size, panel.config().num_classes) == (None, None)
    assert not panel.input_size.number.enabled and panel.input_size.automatic.text == "backbone default"
    sizes = {name: spec.default_input_size for name, spec in engine.api.BACKBONES.items()}
    assert panel.input_size.number.value == sizes[panel.backbone.value]
    panel.backbone.value = "dino_vits16"  # the greyed number follows the backbone's own size
    assert panel.input_size.number.value == sizes["dino_vits16"] != sizes["dinov2_vits14"]
    panel.input_size.value, panel.num_classes.value = 56, 3
    assert panel.input_size.number.enabled and not panel.input_size.automatic.value
    config = panel.config()
    assert (config.backbone, config.input_size, config.num_classes, config.device) == ("dino_vits16", 56, 3, "cpu")
    assert config.second_scale is None and panel.second_scale.automatic.text == "off"  # off unless asked for
    panel.second_scale.value = 84
    assert panel.config().second_scale == 84
    panel.second_scale.value = None
    assert not config.mirror_view and not panel.mirror_view.value
    panel.mirror_view.value = True
    assert panel.config().mirror_view
    panel.mirror_view.value = False

    panel.weights.value = str(tmp_path / "missing.pth")  # the engine's own check, before anything is queued
    panel.start()
    assert panel.status.text().startswith("Settings: weights file") and not panel.running


def test_a_project_opens_above_the_layers_already_open(make_napari_viewer, qtbot, finished, tmp_path):
    _, original = finished
    project = tmp_path / "project"
    shutil.copytree(original, project)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8), np.uint8), name="sample")  # a sample or an image the user opened first
    widget = docked_widget(viewer)
    widget.open_project(str(project))
    wait_idle(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["sample", "image", "masks"]
    widget.view.show(1)  # the next image keeps their place
    wait_idle(qtbot, widget)
    assert [layer.name for layer in viewer.layers][-2:] == ["image", "masks"]


def test_no_button_is_squeezed_in_napari_s_default_window(make_napari_viewer, qtbot, finished, tmp_path):
    # napari opens at about 1089 x 633: a tab taller than its dock scrolls, its buttons keep their height
    from qtpy.QtWidgets import QPushButton

    _, original = finished
    project = tmp_path / "project"
    shutil.copytree(original, project)
    viewer = make_napari_viewer(show=True)
    widget = docked_widget(viewer)
    viewer.window._qt_window.resize(1089, 633)
    widget.open_project(str(project))
    wait_idle(qtbot, widget)
    for panel in (widget.run_panel, widget.review, widget.categories, widget.retrain_export):
        widget.show_tab(panel)
        qtbot.wait(50)
        squeezed = [b.text() for b in panel.findChildren(QPushButton)
                    if b.isVisible() and b.height() < b.sizeHint().height()]
        assert not squeezed, (type(panel).__name__, squeezed)
    table = widget.review.objects.table  # and the object table never shrinks below rows to read (the tab scrolls)
    rows = table.verticalHeader().defaultSectionSize()
    assert table.minimumHeight() >= 5 * rows
    assert table.height() >= table.minimumHeight()


def test_a_refused_rename_says_so_and_the_cell_shows_the_name_kept(widget, qtbot, monkeypatch):
    # a name already in use is refused by the project: the status says nothing was done, in words (once: no
    # error toast beside it, the answer is no fault), and the cell the user typed into shows the category's own
    # name again (not two rows of one name)
    from maskdistill_napari import _tasks

    toasts = []
    monkeypatch.setattr(_tasks, "show_error", toasts.append)
    categories = widget.categories
    categories._fill()
    by_id = widget.view.table.by_id()
    row = next(r for r in range(categories.table.rowCount()) if categories._row_category_id(r) == 2)
    categories.table.item(row, 1).setText(by_id[1].name)
    wait_idle(qtbot, widget)
    assert categories.status.text().startswith(f"Could not rename '{by_id[2].name}' to '{by_id[1].name}': ")
    assert "already named" in categories.status.text()
    assert toasts == []
    assert categories.table.item(row, 1).text() == by_id[2].name


def test_opening_a_project_shows_the_review_and_an_empty_field_asks_for_one(widget):
    assert widget.current_tab() is widget.review  # the fixture opened its project
    widget.show_tab(widget.run_panel)
    assert not widget.open_project("")
    assert widget.run_panel.status.text().startswith("Choose a project folder first")
    assert widget.current_tab() is widget.run_panel


def test_an_edit_names_the_category_an_object_shows_after_a_merge(widget, qtbot):
    categories = widget.categories
    categories._fill()
    categories.select(2)
    categories.merge_into.setCurrentIndex(categories.merge_into.findData(1))
    categories.merge()
    wait_idle(qtbot, widget)
    assert categories.status.text().startswith("Merged"), categories.status.text()
    into = widget.view.table.by_id()[1].name
    summary = widget.review._edit_summary("Grew", {"category": 2, "instance_id": 5, "area": 10, "removed": []})
    assert summary == f"Grew object 5: 10 pixels, {into}. Undo goes back."


def test_the_object_table_lists_the_largest_object_first(widget, qtbot):
    table = widget.review.objects.table
    assert table.rowCount() > 1
    areas = [int(table.item(row, 3).data(0)) for row in range(table.rowCount())]
    assert areas == sorted(areas, reverse=True)


def test_small_things_merge_choice_export_name_colours(widget, qtbot, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFileDialog

    # the merge target keeps its choice after an action; a category's colour is a decoration (kept on a
    # selected row)
    categories = widget.categories
    categories._fill()
    categories.merge_into.setCurrentIndex(categories.merge_into.findData(2))
    categories.select(1)
    categories.rename()
    wait_idle(qtbot, widget)
    assert categories.merge_into.currentData() == 2
    assert categories.table.item(0, 3).data(Qt.DecorationRole) is not None
    # export proposes a new file, never the project's own annotations.json
    proposed = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda parent, title, path, *a, **k: (proposed.append(path), ("", ""))[1]))
    widget.retrain_export.export_coco()
    assert proposed and Path(proposed[0]).name != "annotations.json"
    own = str(Path(widget.view.project_dir) / "annotations.json")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (own, "")))
    widget.retrain_export.export_coco()
    assert "project's own file" in widget.retrain_export.export_result.text() and not widget.tasks.busy


def test_undo_history_is_cleared_between_images_without_private_napari_access(widget, qtbot):
    source = "".join(p.read_text() for p in (Path(_project_view.__file__).parent).glob("*.py"))
    assert "_reset_history" not in source
    view = widget.view
    paint_new_label(view)
    view.show(1)
    wait_idle(qtbot, widget)
    shown = np.asarray(view.labels_layer.data).copy()
    view.labels_layer.undo()  # nothing of the previous image's strokes to replay
    assert np.array_equal(view.labels_layer.data, shown)


def test_split_changes_the_masks_on_screen(widget, qtbot):
    """Split works on the current masks (here the model's predictions), and the split part shows at once."""
    view, project = widget.view, widget.view.project_dir
    entries = view.entries
    counts = {}
    for entry in entries:
        for category in engine.api.current_instances(project, entry["image_id"])[1]:
            counts[int(category)] = counts.get(int(category), 0) + 1
    category_id = max(counts, key=counts.get)
    assert counts[category_id] >= 2, counts
    panel = widget.categories
    panel.select(category_id)
    panel.parts.setValue(2)
    panel.split()
    wait_idle(qtbot, widget)
    assert panel.status.text().startswith("Split"), panel.status.text()
    new_id = max(engine.api.label_state(project).table.by_id())
    after = [int(c) for e in entries for c in engine.api.current_instances(project, e["image_id"])[1]]
    assert new_id in after and category_id in after  # both parts have masks on screen, without retraining
    shown = [int(c) for e in entries[:1] for c in engine.api.current_instances(project, e["image_id"])[1]]
    assert set(view.current["classes"].values()) == set(shown)  # the layer was reloaded


def test_the_queue_zooms_to_and_highlights_the_object_it_shows(widget, qtbot):
    view, review = widget.view, widget.review
    review.zoom.setChecked(True)
    review.next_low_confidence()
    wait_idle(qtbot, widget)
    layer = view.labels_layer
    assert view.selected and layer.selected_label == view.selected and layer.show_selected_label
    ys, xs = np.nonzero(np.asarray(layer.data) == view.selected)
    camera = _project_view.camera_of(widget.viewer)
    center = np.asarray(camera.center)[-2:]
    assert np.allclose(center, ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2), atol=1)
    zoom = camera.zoom
    widget.viewer.reset_view()
    assert zoom >= camera.zoom
    review.highlight.setChecked(False)
    assert not layer.show_selected_label
    view.select_object(0)  # clicking the background clears the selection
    assert view.selected == 0 and review.objects.selected_id() == 0


def test_change_the_category_of_the_selected_object_and_undo(widget, qtbot):
    view, review, project = widget.view, widget.review, widget.view.project_dir
    image_id = view.current["image_id"]
    review.objects.table.selectRow(0)
    instance_id = view.selected
    assert instance_id and review.objects.selected_id() == instance_id
    before = view.current["classes"][instance_id]
    review.category.setCurrentIndex(review.category.findData(3 - before if before in (1, 2) else 1))
    target = review.category.currentData()
    review.set_category()
    wait_idle(qtbot, widget)
    classes, _, reviewed, _ = engine.api.image_objects(project, image_id).as_dicts()
    assert classes[instance_id] == target and reviewed[instance_id]
    assert view.current["classes"][instance_id] == target and view.selected == instance_id
    assert review.category.currentData() == target
    review.undo()
    wait_idle(qtbot, widget)
    classes, _, reviewed, _ = engine.api.image_objects(project, image_id).as_dicts()
    assert classes[instance_id] == before and not reviewed[instance_id]
    assert engine.api.instance_source(project, image_id) != "correction"  # nothing of the action is left


class _Mouse:
    """What napari hands a layer's mouse callback: a position and an event type."""

    def __init__(self, position):
        self.position, self.type = tuple(float(v) for v in position), "mouse_press"
        self.modifiers = ()  # no key held


def press(layer, *positions, before_release=None) -> None:
    """Mouse down at the first position, moved through the others, released: a click or a drag;
    ``before_release()`` is called while the button is still down."""
    event = _Mouse(positions[0])
    for callback in layer.mouse_drag_callbacks:
        generator = callback(layer, event)
        if generator is None:
            continue
        next(generator)
        for position in positions[1:]:
            event.type, event.position = "mouse_move", tuple(float(v) for v in position)
            next(generator)
        if before_release is not None:
            before_release()
        event.type = "mouse_release"
        next(generator, None)
        event.type, event.position = "mouse_press", tuple(float(v) for v in positions[0])


def free_spot(widget, qtbot) -> tuple:
    """(row, col) of the shown image farthest from every object (an object is rejected first if none is free)."""
    from scipy import ndimage

    view = widget.view
    if not (np.asarray(view.labels_layer.data) == 0).any():
        view.select_object(int(max(view.current["areas"], key=view.current["areas"].get)))
        widget.review.reject_selected()
        wait_idle(qtbot, widget)
    free = np.asarray(view.labels_layer.data) == 0
    return np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(free))), free.shape)


def test_a_click_adds_an_object_from_the_features_and_undo_removes_it(widget, qtbot):
    view, review, project = widget.view, widget.review, widget.view.project_dir
    image_id = view.current["image_id"]
    row, col = free_spot(widget, qtbot)
    before = np.asarray(view.labels_layer.data).copy()
    undo_depth = len(review.undo_stack)
    review.category.setCurrentIndex(review.category.findData(2))  # the new object's category: the Review box's
    review.add_object_button.click()
    assert review.add_object_button.isChecked() and view.prompt is not None
    assert not _project_view.camera_of(widget.viewer).mouse_pan  # a drag draws a box, it does not pan
    assert widget.viewer.layers.selection.active is view.labels_layer  # the canvas's clicks still reach it
    press(view.labels_layer, (row, col))
    wait_idle(qtbot, widget)
    assert review.status.text().startswith("Added object"), review.status.text()
    new_id = review.undo_stack[-1]["instance_id"]
    layer = view.labels_layer
    added = np.asarray(layer.data) == new_id
    assert layer.data[row, col] == new_id and view.selected == new_id
    assert 16 <= added.sum() <= 0.9 * added.size  # a plausible object, not a speck nor the whole image
    assert np.array_equal(np.asarray(layer.data)[~added], before[~added])  # it took no other object's pixels
    assert view.current["classes"][new_id] == 2 and new_id in view.current["reviewed_ids"]
    saved = engine.api.image_objects(project, image_id)  # the project's correction holds it
    assert saved.origin == "correction" and np.array_equal(saved.labels == new_id, added)
    assert saved.as_dicts()[0][new_id] == 2
    assert list(review.objects.table.item(r, 0).data(0) for r in range(review.objects.table.rowCount())
                ).count(new_id) == 1  # and the object table lists it
    review.undo()
    wait_idle(qtbot, widget)
    assert len(review.undo_stack) == undo_depth and np.array_equal(np.asarray(view.labels_layer.data), before)
    assert engine.api.image_objects(project, image_id).labels[row, col] == 0

    # a dragged box adds the object inside it
    top, left = max(0, row - 40), max(0, col - 40)
    bottom, right = min(before.shape[0] - 1, row + 40), min(before.shape[1] - 1, col + 40)
    drawn = []
    box_layer = widget.viewer.layers["box"]
    press(view.labels_layer, (top, left), (row, col), (bottom, right),
          before_release=lambda: drawn.append(np.asarray(box_layer.data[0]).copy()))
    assert sorted(map(tuple, drawn[0].round().astype(int))) == [(top, left), (top, right), (bottom, left),
                                                                (bottom, right)]  # seen while dragged
    assert not len(box_layer.data)  # gone once the mouse is released
    wait_idle(qtbot, widget)
    boxed = np.asarray(view.labels_layer.data) == review.undo_stack[-1]["instance_id"]
    assert boxed.any() and not boxed[:top].any() and not boxed[bottom + 1:].any()
    assert not boxed[:, :left].any() and not boxed[:, right + 1:].any()

    # a click on an object explains itself; off, clicks select again and a drag pans
    on_object = tuple(np.argwhere(boxed)[0])
    press(view.labels_layer, on_object)
    wait_idle(qtbot, widget)
    assert "is on object" in review.status.text(), review.status.text()
    review.add_object_button.click()
    assert view.prompt is None and _project_view.camera_of(widget.viewer).mouse_pan
    assert "box" not in widget.viewer.layers
    press(view.labels_layer, on_object)
    assert view.selected == review.undo_stack[-1]["instance_id"]


def test_a_run_queued_behind_another_task_says_what_it_waits_for(widget, qtbot, tmp_path):
    """The first Run of a session waits for the engine process to start; the status says so, not "the task in
    progress" (a new user saw that with nothing else running)."""
    wait_idle(qtbot, widget)
    release = threading.Event()
    widget.tasks.submit(release.wait, 30, what="the engine to start (it loads torch once per session)")
    assert widget.tasks.waiting_for.startswith("the engine to start")
    widget.run_panel.image_folder.setText(str(tmp_path / "no images here"))
    widget.run_panel.project_folder.setText(str(tmp_path / "p"))
    widget.run_panel.start()
    assert widget.run_panel.status.text().startswith("Waiting for the engine to start"), \
        widget.run_panel.status.text()
    release.set()
    wait_idle(qtbot, widget)
    assert widget.tasks.waiting_for == "the task in progress"
