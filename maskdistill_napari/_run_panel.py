"""Run panel: pick an image folder and a project folder, choose the settings, run the engine in a worker.

The run goes through the widget's task queue like every other engine call, so a Retrain or an Export
clicked meanwhile waits for it. Progress goes to napari's activity dock; Cancel sets a flag that the engine's
progress callback checks (once per image), raising ``engine.api.Cancelled``: the images finished so far
stay in the project, so the next run resumes from there. The backbone and proposal choices come from the
engine, loaded in a worker (``set_options``) so that opening the widget does not wait for torch.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from napari.utils import progress as napari_progress
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ._engine import run_options

DEVICES = ("auto", "cpu", "cuda")
FIRST_INPUT_SIZE = 224  # the first step up from "backbone default"
TOOLTIPS = {
    "image_folder": "Folder of the images to annotate (sub-folders included).",
    "project_folder": "Where the project is kept (created if missing): features, masks, your corrections.",
    "backbone": "Self-supervised network whose features make the masks (DINO / DINOv2 variants).",
    "device": "auto: a GPU when there is one, else the CPU.",
    "num_classes": "Number of categories the masks are clustered into; 'suggested' lets the silhouette score "
                   "choose.",
    "proposals": "How masks are proposed on each image: segments (default: parts and whole objects), split, "
                 "ncut (MaskCut), seed (one mask, LOST) or dense (many small objects such as cells).",
    "input_size": "Shorter image side fed to the network, in pixels (28-2048, rounded to the patch size); "
                  "'backbone default' uses the backbone's own size.",
    "weights": "Backbone weights: empty for automatic (hub cache, offline), a file, or 'random' for tests.",
}


class InputSizeBox(QSpinBox):
    """Input size with "backbone default" at 0: stepping up from it goes to a usable size, not to 14."""

    def stepBy(self, steps: int) -> None:
        if self.value() == 0 and steps > 0:
            self.setValue(FIRST_INPUT_SIZE)
        elif self.value() + steps * self.singleStep() < 28 and steps < 0:
            self.setValue(0)
        else:
            super().stepBy(steps)


@dataclass
class RunCancelled:
    message: str

    def __str__(self) -> str:
        return self.message


class _ProgressSignal(QObject):
    """Carries the engine's progress(stage, done, total) from the worker thread to the GUI thread."""

    changed = Signal(str, int, int)


def run_with_cancel(folder, project_dir, config, cancel: threading.Event, signal: _ProgressSignal):
    """engine.api.run, stopping at the next progress report once ``cancel`` is set (runs in a worker)."""
    from engine.api import Cancelled, run

    def progress(stage: str, done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled(f"cancelled during {stage} ({done}/{total}); run again to resume")
        signal.changed.emit(stage, done, total)

    try:
        return run(folder, project_dir, config, progress)
    except Cancelled as cancelled:  # not an error: returned (as text, not as an exception, which the worker
        return RunCancelled(str(cancelled))  # would re-raise), so napari shows no error notification


class RunPanel(QWidget):
    """Settings and the Run / Cancel buttons; ``on_finished(project_dir)`` is called after a successful run."""

    def __init__(self, tasks, on_finished, on_open, weights: str | None = None, parent=None):
        super().__init__(parent)
        self.tasks, self.on_finished, self.on_open = tasks, on_finished, on_open
        self._active, self._bar, self._stage = False, None, None
        self.cancel_requested = threading.Event()
        self._signal = _ProgressSignal(self)
        self._signal.changed.connect(self._on_progress)

        self.image_folder = QLineEdit(placeholderText="folder of images to annotate")
        self.project_folder = QLineEdit(placeholderText="folder for the project (created if missing)")
        self.backbone = QComboBox()  # filled by set_options
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.num_classes = QSpinBox(minimum=0, maximum=200)
        self.num_classes.setSpecialValueText("suggested")
        self.proposals = QComboBox()
        self.input_size = InputSizeBox(minimum=0, maximum=2048, singleStep=32)
        self.input_size.setSpecialValueText("backbone default")
        self.weights = QLineEdit(weights or "", placeholderText="automatic (hub cache, offline); a file, or 'random'")
        self.run_button, self.cancel_button = QPushButton("Run"), QPushButton("Cancel")
        self.open_button = QPushButton("Open project")
        self.cancel_button.setEnabled(False)
        for name, tip in TOOLTIPS.items():
            getattr(self, name).setToolTip(tip)
        self.run_button.setToolTip("Run the engine on the image folder into the project (resumes an unfinished run).")
        self.cancel_button.setToolTip("Stop after the current image; the finished images are kept.")
        self.open_button.setToolTip("Show the project folder's images and masks for review.")
        self.status = QLabel("Pick an image folder and a project folder, then Run.")
        self.status.setWordWrap(True)

        form = QFormLayout(self)
        form.addRow("Images", self._with_browse(self.image_folder, self.pick_image_folder))
        form.addRow("Project", self._with_browse(self.project_folder, self.pick_project_folder))
        form.addRow("Backbone", self.backbone)
        form.addRow("Device", self.device)
        form.addRow("Classes", self.num_classes)
        form.addRow("Proposals", self.proposals)
        form.addRow("Input size", self.input_size)
        form.addRow("Weights", self.weights)
        buttons = QHBoxLayout()
        for button in (self.run_button, self.cancel_button, self.open_button):
            buttons.addWidget(button)
        form.addRow(buttons)
        form.addRow(self.status)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button.clicked.connect(lambda: self.on_open(self.project_folder.text().strip()))

    @staticmethod
    def _with_browse(line: QLineEdit, pick) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(line)
        button = QPushButton("…")
        button.setMaximumWidth(30)
        button.clicked.connect(pick)
        layout.addWidget(button)
        return row

    def pick_image_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.image_folder.setText(folder)

    def pick_project_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder")
        if folder:
            self.project_folder.setText(folder)
            if (Path(folder) / "project.json").exists():
                self.status.setText("Existing project: Open shows it; Run resumes or updates it.")

    def set_options(self, options: dict) -> None:
        """Fill in the engine's choices (from ``_engine.run_options``), once."""
        if self.backbone.count():
            return
        self.backbone.addItems(options["backbones"])
        self.backbone.setCurrentText(options["backbone"])
        self.proposals.addItems(options["proposals"])
        self.proposals.setCurrentText(options["proposal"])

    def config(self):
        from engine.api import RunConfig

        if not self.backbone.count():  # Run clicked before the worker loaded the engine
            self.set_options(run_options())
        weights = self.weights.text().strip() or None
        return RunConfig(backbone=self.backbone.currentText(), weights=weights, device=self.device.currentText(),
                         input_size=self.input_size.value() or None, proposals=self.proposals.currentText(),
                         num_classes=self.num_classes.value() or None)

    @property
    def running(self) -> bool:
        """A run is queued or in progress."""
        return self._active

    def start(self) -> None:
        folder, project = self.image_folder.text().strip(), self.project_folder.text().strip()
        if self.running:
            return
        if not folder or not project:
            self.status.setText("Choose both an image folder and a project folder first.")
            return
        try:
            config = self.config()
            config.check()
        except (ValueError, KeyError, FileNotFoundError) as error:
            self.status.setText(f"Settings: {error}")
            return
        self.cancel_requested.clear()
        self._active = True
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Running…" if not self.tasks.busy else "Waiting for the task in progress, then running…")
        self.tasks.submit(run_with_cancel, folder, project, config, self.cancel_requested, self._signal,
                          on_done=self._on_returned, on_error=self._on_error, on_finished=self._on_worker_finished)

    def cancel(self) -> None:
        if self.running:
            self.cancel_requested.set()
            self.status.setText("Cancelling after the current image…")

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self._close_bar()
            self._stage = stage
            # napari's activity dock processes events while it adds the bar: progress reports (or the run's
            # end) can arrive re-entrantly; they skip the bar, and a bar overtaken by them is closed at once
            bar = napari_progress(total=max(total, 1), desc=f"MaskDistill: {stage}")
            if self._stage != stage or not self._active:
                bar.close()
                return
            self._bar = bar
        if self._bar is None:
            return
        self._bar.n = done
        self._bar.refresh()
        self.status.setText(f"Running: {stage} {done}/{total}")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._stage = None, None

    def _on_returned(self, result) -> None:
        if isinstance(result, RunCancelled):
            self.status.setText(f"Cancelled: {result}. The finished images are kept; Run resumes.")
            return
        skipped = f", {len(result.skipped)} files skipped (see report.json)" if result.skipped else ""
        self.status.setText(f"Done: {result.images} images, {result.masks} masks in {result.clusters} classes "
                            f"(suggested {result.suggested_k}){skipped}.")
        self.on_finished(str(result.project))

    def _on_error(self, message: str) -> None:  # the task queue also shows it as a notification
        self.status.setText(f"Run failed: {message}")

    def _on_worker_finished(self) -> None:
        self._close_bar()
        self._active = False
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
