"""The plugin's engine process: torch never loads in napari's process, progress and cancel cross over, and a
child that dies is reported and replaced."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]

SESSION = r"""
import shutil, sys, time
from pathlib import Path
import napari
from maskdistill_napari._widget import MaskDistillWidget

images, project = Path(sys.argv[1]), Path(sys.argv[2])
viewer = napari.Viewer(show=False)
widget = MaskDistillWidget(viewer, weights="random")
viewer.window.add_dock_widget(widget)
app = napari.qt.get_qapp()

def idle(timeout=300):
    start = time.time()
    while widget.busy or (widget.view.project_dir and widget.view.current is None):
        assert time.time() - start < timeout, "timed out"
        app.processEvents()
        time.sleep(0.005)

panel = widget.run_panel
panel.image_folder.setText(str(images)); panel.project_folder.setText(str(project))
panel.input_size.value = 56; panel.num_classes.value = 2; panel.device.value = "cpu"
panel.start(); idle()
assert panel.status.text().startswith("Done: 3 images"), panel.status.text()
widget.categories.select(1); widget.categories.name.setText("thing"); widget.categories.rename(); idle()
widget.review.next.click(); idle()
widget.review.add_object_button.setChecked(True)
before = len(widget.review.undo_stack)
widget.review.add_object_at((5, 5)); idle()
assert len(widget.review.undo_stack) == before + 1, widget.review.status.text()
widget.review.add_object_button.setChecked(False)
widget.categories.select(1); widget.categories.parts.setValue(2); widget.categories.split(); idle()
widget.retrain_export.retrain(); idle()
assert widget.retrain_export.retrain_result.text().startswith("Retrained:"), widget.retrain_export.retrain_result.text()
print("torch in napari's process:", "torch" in sys.modules)
viewer.close()
"""


@pytest.fixture
def images(tmp_path) -> Path:
    """Three example photos."""
    folder = tmp_path / "images"
    folder.mkdir()
    for photo in ("person_01.jpg", "cup_01.jpg", "cat_01.jpg"):
        (folder / photo).write_bytes((EXAMPLES / photo).read_bytes())
    return folder


@pytest.fixture
def config():
    from engine.api import RunConfig

    return RunConfig(weights="random", input_size=56, num_classes=2, device="cpu", batch_size=1)


@pytest.fixture
def engine():
    from maskdistill_napari._engine_process import EngineProcess

    process = EngineProcess()
    yield process
    process.close()


def test_a_whole_session_never_loads_torch_in_naparis_process(images, tmp_path):
    """Run, rename, browse, add an object by a click, split, retrain: all through the widget, and torch (which
    holds the GIL long enough to freeze the window while it loads) stays in the engine process."""
    script = tmp_path / "session.py"
    script.write_text(SESSION)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), str(images), str(tmp_path / "project")], env=env,
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "torch in napari's process: False" in done.stdout, done.stdout


def test_progress_and_cancel_cross_to_the_engine_process(images, config, engine, tmp_path):
    from engine.api import Cancelled

    reports, cancel = [], threading.Event()

    def progress(stage, done, total):
        reports.append((stage, done, total))
        if stage == "images" and done == 1:
            cancel.set()

    with pytest.raises(Cancelled, match=r"during images \([12]/3\)"):
        engine.call("run", images, tmp_path / "project", config, progress=progress, cancel=cancel)
    assert reports[0] == ("images", 0, 3) and ("images", 1, 3) in reports
    assert not (tmp_path / "project" / "images.json").exists()
    reports.clear()
    result = engine.call("run", images, tmp_path / "project", config, progress=lambda *r: reports.append(r))
    assert result.images == 3 and result.annotations.exists()  # a RunResult, unpickled here
    assert ("images", 3, 3) in reports
    with pytest.raises(Exception, match="nowhere") as error:  # the engine's own error, re-raised here
        engine.call("run", tmp_path / "nowhere", tmp_path / "other", config)
    assert isinstance(error.value, (FileNotFoundError, ValueError)), repr(error.value)


def test_a_child_that_dies_is_reported_and_replaced(images, config, engine, tmp_path):
    def kill_the_child(stage, done, total):
        if stage == "images" and done == 1:
            os.kill(engine._process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would

    with pytest.raises(RuntimeError, match="engine process stopped while running run"):
        engine.call("run", images, tmp_path / "project", config, progress=kill_the_child)
    result = engine.call("run", images, tmp_path / "project", config)  # a fresh child; resumes the run
    assert result.images == 3


def test_the_last_widget_to_close_stops_the_engine(engine):
    engine.acquire()
    engine.acquire()  # two widgets
    engine.wait_ready()
    child = engine._process
    engine.release()
    assert child.poll() is None  # the other widget still uses it
    engine.release()
    assert child.wait(10) is not None  # no engine outlives the windows that used it
