"""Run panel: pick an image folder and a project folder, choose the settings, run the engine in a worker.

Progress goes to napari's activity dock; Cancel sets a flag that the engine's progress callback checks
(once per image), raising ``engine.pipeline.Cancelled``: the images finished so far stay in the project, so
the next run resumes from there.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from napari.qt.threading import create_worker
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

from engine.backbones import BACKBONES, DEFAULT_BACKBONE
from engine.pipeline import Cancelled, RunConfig, run
from engine.proposals import PROPOSAL_METHODS

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunCancelled:
    message: str

    def __str__(self) -> str:
        return self.message


class _ProgressSignal(QObject):
    """Carries the engine's progress(stage, done, total) from the worker thread to the GUI thread."""

    changed = Signal(str, int, int)


def run_with_cancel(folder, project_dir, config: RunConfig, cancel: threading.Event, signal: _ProgressSignal):
    """engine.pipeline.run, stopping at the next progress report once ``cancel`` is set (runs in a worker)."""
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

    def __init__(self, on_finished, on_open, weights: str | None = None, parent=None):
        super().__init__(parent)
        self.on_finished, self.on_open = on_finished, on_open
        self.worker, self._bar, self._stage = None, None, None
        self.cancel_requested = threading.Event()
        self._signal = _ProgressSignal(self)
        self._signal.changed.connect(self._on_progress)

        self.image_folder = QLineEdit(placeholderText="folder of images to annotate")
        self.project_folder = QLineEdit(placeholderText="folder for the project (created if missing)")
        self.backbone = QComboBox()
        self.backbone.addItems(list(BACKBONES))
        self.backbone.setCurrentText(DEFAULT_BACKBONE)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.num_classes = QSpinBox(minimum=0, maximum=200)
        self.num_classes.setSpecialValueText("suggested")
        self.proposals = QComboBox()
        self.proposals.addItems(PROPOSAL_METHODS)
        self.proposals.setCurrentText(RunConfig.proposals)
        self.input_size = QSpinBox(minimum=0, maximum=2048, singleStep=14)
        self.input_size.setSpecialValueText("backbone default")
        self.weights = QLineEdit(weights or "", placeholderText="automatic (hub cache, offline); a file, or 'random'")
        self.run_button, self.cancel_button = QPushButton("Run"), QPushButton("Cancel")
        self.open_button = QPushButton("Open project")
        self.cancel_button.setEnabled(False)
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

    def config(self) -> RunConfig:
        weights = self.weights.text().strip() or None
        return RunConfig(backbone=self.backbone.currentText(), weights=weights, device=self.device.currentText(),
                         input_size=self.input_size.value() or None, proposals=self.proposals.currentText(),
                         num_classes=self.num_classes.value() or None)

    @property
    def running(self) -> bool:
        return self.worker is not None

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
        self.worker = create_worker(run_with_cancel, folder, project, config, self.cancel_requested, self._signal,
                                    _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_worker_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Running…")
        self.worker.start()

    def cancel(self) -> None:
        if self.running:
            self.cancel_requested.set()
            self.status.setText("Cancelling after the current image…")

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self._close_bar()
            self._stage = stage
            self._bar = napari_progress(total=max(total, 1), desc=f"MaskDistill: {stage}")
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

    def _on_error(self, error: Exception) -> None:  # napari also shows it as a notification
        self.status.setText(f"Run failed: {type(error).__name__}: {error}")

    def _on_worker_finished(self) -> None:
        self._close_bar()
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
