"""Issue 21 item 5: reject, set category and their undo show in the Labels layer at once, on the GUI thread,
while the engine confirms them in the task queue (held back here until the layer has been checked); the project
agrees once the queue is done, and an engine error reads the image back and says so."""
from __future__ import annotations

import functools
import os
import threading

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from test_plugin_tasks import finished, widget  # noqa: F401 - fixtures

import engine.api
from helpers import wait_idle
from maskdistill_napari import _engine_calls


def hold(monkeypatch, name: str, error: Exception | None = None) -> threading.Event:
    """The engine call ``name`` waits in its worker until the returned event is set (then fails with ``error``)."""
    release, call = threading.Event(), getattr(_engine_calls, name)

    @functools.wraps(call)  # the engine call is found by its name
    def held(*args, **kwargs):
        assert release.wait(60), "the test never released the engine call"
        if error is not None:
            raise error
        return call(*args, **kwargs)
    monkeypatch.setattr(_engine_calls, name, held)
    return release


def largest_object(view) -> int:
    instance_id = int(max(view.current["areas"], key=view.current["areas"].get))
    view.select_object(instance_id)
    return instance_id


def test_reject_and_undo_show_in_the_layer_before_the_engine_is_done(widget, qtbot, monkeypatch):  # noqa: F811
    view, review, project = widget.view, widget.review, widget.view.project_dir
    image_id = view.current["image_id"]
    target = largest_object(view)
    pixels = np.asarray(view.labels_layer.data) == target
    before = np.asarray(view.labels_layer.data).copy()
    release = hold(monkeypatch, "reject_object")
    review.reject_selected()
    assert widget.busy  # the engine has not confirmed yet ...
    assert not np.asarray(view.labels_layer.data)[pixels].any()  # ... and the layer shows it already
    assert target not in view.current["classes"] and view.selected == 0 and not view.dirty
    assert target in engine.api.image_objects(project, image_id).ids  # the project does not have it yet
    release.set()
    wait_idle(qtbot, widget)
    assert target not in engine.api.image_objects(project, image_id).ids
    assert not view.unsaved  # the layer's change is the engine's, not an edit of the user's to save

    release = hold(monkeypatch, "restore_object")
    review.undo()
    assert widget.busy and np.array_equal(np.asarray(view.labels_layer.data), before)
    assert view.selected == target
    release.set()
    wait_idle(qtbot, widget)
    objects = engine.api.image_objects(project, image_id)
    assert np.array_equal(objects.labels == target, pixels) and not view.unsaved


def test_set_category_shows_at_once_and_the_project_agrees(widget, qtbot, monkeypatch):  # noqa: F811
    view, review, project = widget.view, widget.review, widget.view.project_dir
    image_id = view.current["image_id"]
    target = largest_object(view)
    old = view.current["classes"][target]
    new = next(c.id for c in view.table.categories if c.id != old and view.table.resolve(c.id) is not None)
    review.category.setCurrentIndex(review.category.findData(new))
    release = hold(monkeypatch, "set_object_category")
    review.set_category()
    assert widget.busy and view.current["classes"][target] == new and target in view.current["reviewed_ids"]
    release.set()
    wait_idle(qtbot, widget)
    classes, _, reviewed, _ = engine.api.image_objects(project, image_id).as_dicts()
    assert classes[target] == new and reviewed[target]
    review.undo()  # not held: the layer and the project both go back
    assert view.current["classes"][target] == old
    wait_idle(qtbot, widget)
    assert engine.api.image_objects(project, image_id).as_dicts()[0][target] == old


@pytest.mark.parametrize("action", ["reject_object", "set_object_category"])
def test_an_engine_error_reads_the_image_back_and_says_so(widget, qtbot, monkeypatch, action):  # noqa: F811
    view, review = widget.view, widget.review
    target = largest_object(view)
    labels, classes = np.asarray(view.labels_layer.data).copy(), dict(view.current["classes"])
    hold(monkeypatch, action, OSError("the disk is full")).set()
    if action == "reject_object":
        review.reject_selected()
    else:
        review.category.setCurrentIndex(review.category.findData(
            next(c.id for c in view.table.categories if c.id != classes[target])))
        review.set_category()
    wait_idle(qtbot, widget)
    assert "failed: the disk is full" in review.status.text() and "shown as saved" in review.status.text()
    assert np.array_equal(np.asarray(view.labels_layer.data), labels) and view.current["classes"] == classes
    assert not review.undo_stack  # nothing to undo
