"""The plugin calls the engine through typed functions (maskdistill_napari/_engine_calls.py), one per engine.api
function, with the engine's signature; where each runs is still decided by engine.api.LOADS_TORCH."""
from __future__ import annotations

import ast
import inspect
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import engine.api
from helpers import small_finished_project
from maskdistill_napari import _engine_calls, _engine_process

PLUGIN = Path(__file__).resolve().parents[1] / "maskdistill_napari"
PROXIES = {name: function for name, function in vars(_engine_calls).items()
           if inspect.isfunction(function) and function.__module__ == _engine_calls.__name__
           and not name.startswith("_")}


def parameters(function) -> list:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_each_typed_call_has_the_signature_of_its_engine_function():
    assert {"run", "distill", "export_project", "rename_category", "split_category", "set_image_labels",
            "reject_object", "add_object", "restore_object", "low_confidence_objects"} <= set(PROXIES)
    for name, proxy in PROXIES.items():
        assert name in engine.api.__all__, f"_engine_calls.{name} is not a function of engine.api"
        own = [p for p in parameters(proxy) if p[0] != "cancel"]
        assert own == parameters(getattr(engine.api, name)), name
        if len(own) < len(parameters(proxy)):  # cancel crosses to the engine process only
            assert name in engine.api.LOADS_TORCH, name
        assert f"engine.api.{name}" in proxy.__doc__, name


def test_no_panel_names_an_engine_function_as_a_string():
    """A button's handler refers to the typed function (so "find usages" finds it), never to its name."""
    skipped = {"_engine_calls.py", "_engine_process.py", "_engine_child.py"}
    named = {}
    for path in sorted(PLUGIN.glob("*.py")):
        if path.name in skipped:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in PROXIES:
                named[f"{path.name}:{node.lineno}"] = node.value
    assert not named, f"call these through _engine_calls instead: {named}"
    assert not hasattr(__import__("maskdistill_napari._engine", fromlist=["x"]), "call")


class RecordingEngineProcess:
    def __init__(self):
        self.calls = []

    def call(self, name, *args, progress=None, cancel=None, **kwargs):
        self.calls.append((name, args, progress, cancel, kwargs))
        return f"{name} done in the engine process"


@pytest.fixture()
def engine_process(monkeypatch):
    recording = RecordingEngineProcess()
    monkeypatch.setattr(_engine_process, "engine_process", lambda: recording)
    return recording


def test_calls_that_load_torch_go_to_the_engine_process_with_progress_and_cancel(engine_process, tmp_path):
    progress, cancel = (lambda stage, done, total: None), threading.Event()
    assert _engine_calls.run(tmp_path / "images", tmp_path / "p", None, progress, cancel=cancel) == \
        "run done in the engine process"
    assert _engine_calls.split_category(tmp_path / "p", 3, 2) == "split_category done in the engine process"
    assert engine_process.calls == [
        ("run", (tmp_path / "images", tmp_path / "p", None), progress, cancel, {"ray_address": None}),
        ("split_category", (tmp_path / "p", 3, 2, 0), None, None, {})]


def test_torch_free_calls_run_in_this_thread_and_return_the_engines_result(engine_process, monkeypatch,
                                                                           tmp_path):
    seen = []

    def accept_object(*args):
        seen.append((threading.get_ident(), os.getpid(), args))
        return {"action": "accept", "reviewed": False}

    monkeypatch.setattr(engine.api, "accept_object", accept_object)
    assert _engine_calls.accept_object(tmp_path, "img", 4) == {"action": "accept", "reviewed": False}
    assert seen == [(threading.get_ident(), os.getpid(), (tmp_path, "img", 4))]
    assert not engine_process.calls


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return small_finished_project(tmp_path_factory, "engine_calls")[1]


def test_object_edits_return_the_undo_record_of_what_they_changed(project, engine_process):
    entries = engine.api.open_project(project)[2]
    image_id = next(e["image_id"] for e in entries if len(engine.api.image_objects(project, e["image_id"]).ids))
    before = engine.api.image_objects(project, image_id)
    instance_id = int(before.ids[0])
    undo = _engine_calls.reject_object(project, image_id, instance_id)
    assert undo["action"] == "reject" and undo["image_id"] == image_id and undo["instance_id"] == instance_id
    assert instance_id not in engine.api.image_objects(project, image_id).ids
    _engine_calls.restore_object(project, undo)
    after = engine.api.image_objects(project, image_id)
    assert instance_id in after.ids and np.array_equal(after.labels == instance_id, before.labels == instance_id)
    assert not engine_process.calls  # both are torch-free: they ran here
