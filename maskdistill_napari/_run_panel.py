"""Run panel: pick an image folder and a project folder, choose the settings, run the engine.

The run goes through the widget's task queue like every other engine call, so a Retrain or an Export
clicked meanwhile waits for it; it runs in the engine process (_engine_process.py), so torch never loads in
napari's. Progress goes to napari's activity dock; Cancel sets a flag that the engine's progress callback
checks (once per image), raising ``engine.api.Cancelled``: the images finished so far stay in the project,
so the next run resumes from there.

The settings form is built with magicgui from the engine's description of a run (``engine.api.setting``, the
metadata of ``RunConfig``'s fields): each widget's tooltip is the engine's help, its choices and range the
engine's, the same text ``maskdistill run --help`` shows. That module needs no torch, so the form and the
RunConfig are built on the GUI thread.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, SpinBox
from napari.utils import progress as napari_progress
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from . import _engine_calls as engine_calls

FOLDER_TOOLTIPS = {  # the two folders are the run's arguments, not RunConfig settings
    "image_folder": "Folder of the images to annotate.",
    "project_folder": "Where the project is kept (created if missing): features, masks, your corrections.",
}
INPUT_SIZE_STEP = 32
FIRST_CLASS_COUNT = 2  # offered when "suggested" is unticked: the smallest clustering that separates anything


def choice_widget(info: dict, choices_key: str = "choices") -> ComboBox:
    """A drop-down of a setting's choices (or its usual values, ``examples``), set to its default."""
    return ComboBox(value=info["default"], choices=tuple(info[choices_key]), name=info["name"],
                    tooltip=info["help"])


def text_widget(info: dict, value: str | None, placeholder: str) -> LineEdit:
    """A free-text setting (None: empty)."""
    widget = LineEdit(value=value or "", name=info["name"], tooltip=info["help"])
    widget.native.setPlaceholderText(placeholder)
    return widget


class OptionalNumber(Container):
    """A whole-number setting the engine may choose itself (None): a check box naming the engine's choice
    ("suggested") beside a spin box with the setting's range. ``value`` is None while the box is ticked."""

    def __init__(self, info: dict, automatic_text: str, start: int, step: int = 1):
        limits = {key: info[key] for key in ("min", "max") if key in info}
        self.automatic = CheckBox(text=automatic_text, value=True, tooltip=info["help"])
        self.number = SpinBox(value=start, step=step, enabled=False, tooltip=info["help"], **limits)
        super().__init__(widgets=[self.automatic, self.number], layout="horizontal", labels=False,
                         name=info["name"], tooltip=info["help"])
        self.margins = (0, 0, 0, 0)
        self.automatic.changed.connect(self._on_automatic)

    def _on_automatic(self, automatic: bool) -> None:
        self.number.enabled = not automatic

    @property
    def value(self) -> int | None:
        return None if self.automatic.value else self.number.value

    @value.setter
    def value(self, value: int | None) -> None:
        if value is not None:
            self.number.value = value
        self.automatic.value = value is None


@dataclass
class RunCancelled:
    message: str

    def __str__(self) -> str:
        return self.message


class _ProgressSignal(QObject):
    """Carries the engine's progress(stage, done, total) from the worker thread to the GUI thread."""

    changed = Signal(str, int, int)


def run_with_cancel(folder, project_dir, config, cancel: threading.Event, signal: _ProgressSignal):
    """engine.api.run in the engine process, stopping at its next progress report once ``cancel`` is set
    (call this in a worker)."""
    from engine.api import Cancelled

    try:
        return engine_calls.run(folder, project_dir, config, progress=signal.changed.emit, cancel=cancel)
    except Cancelled as cancelled:  # not an error: returned (as text, not as an exception, which the worker
        return RunCancelled(str(cancelled))  # would re-raise), so napari shows no error notification


class RunPanel(QWidget):
    """Settings and the Run / Cancel buttons; ``on_finished(project_dir)`` is called after a successful run."""

    def __init__(self, tasks, on_finished, on_open, weights: str | None = None, parent=None):
        super().__init__(parent)
        self.tasks, self.on_finished, self.on_open = tasks, on_finished, on_open
        self._active, self._bar = False, None
        self._stage: str | None = None
        self.cancel_requested = threading.Event()
        self._signal = _ProgressSignal(self)
        self._signal.changed.connect(self._on_progress)

        from engine.api import BACKBONES, setting  # torch-free: engine.orchestration.config

        self._backbones = BACKBONES
        self.image_folder, self.project_folder = QLineEdit(), QLineEdit()
        self.image_folder.setPlaceholderText("folder of images to annotate")
        self.project_folder.setPlaceholderText("folder for the project (created if missing)")
        for name, tip in FOLDER_TOOLTIPS.items():
            getattr(self, name).setToolTip(tip)
        self.settings = {name: setting(name) for name in
                         ("backbone", "device", "num_classes", "proposals", "input_size", "second_scale", "mirror_view",
                          "weights")}
        self.backbone = choice_widget(self.settings["backbone"])
        self.device = choice_widget(self.settings["device"], "examples")
        self.num_classes = OptionalNumber(self.settings["num_classes"], "suggested", FIRST_CLASS_COUNT)
        self.proposals = choice_widget(self.settings["proposals"])
        self.input_size = OptionalNumber(self.settings["input_size"], "backbone default",
                                         self._backbone_input_size(), INPUT_SIZE_STEP)
        self.second_scale = OptionalNumber(self.settings["second_scale"], "off",  # 1.5x: measured at 672 for 448
                                           self._backbone_input_size() * 3 // 2, INPUT_SIZE_STEP)
        self.mirror_view = CheckBox(text="also on the images mirrored", value=False,
                                    tooltip=self.settings["mirror_view"]["help"])
        self.weights = text_widget(self.settings["weights"], weights,
                                   "automatic (hub cache, offline); a file, or 'random'")
        self.backbone.changed.connect(self._show_backbone_input_size)
        self.input_size.automatic.changed.connect(self._show_backbone_input_size)
        self.run_button, self.cancel_button = QPushButton("Run"), QPushButton("Cancel")
        self.open_button = QPushButton("Open project")
        self.cancel_button.setEnabled(False)
        self.run_button.setToolTip("Run the engine on the image folder into the project (resumes an unfinished run).")
        self.cancel_button.setToolTip("Stop after the current image; the finished images are kept.")
        self.open_button.setToolTip("Show the project folder's images and masks for review.")
        self.status = QLabel("Pick an image folder and a project folder, then Run.")
        self.status.setWordWrap(True)

        form = QFormLayout(self)
        form.addRow("Images", self._with_browse(self.image_folder, self.pick_image_folder))
        form.addRow("Project", self._with_browse(self.project_folder, self.pick_project_folder))
        for name, info in self.settings.items():
            label = info["label"]
            form.addRow(label[0].upper() + label[1:], getattr(self, name).native)
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

    def show_project(self, project_config: dict, clusters: dict) -> None:
        """The form shows an opened project's folders and run settings, so Run reruns it as it was made: its
        image folder (where none is chosen), backbone, input size, weights, proposals ("auto" when auto chose
        them) and number of classes (the K the run used beside a ticked "suggested")."""
        settings = project_config.get("config", {})
        if not self.image_folder.text().strip() and project_config.get("image_root"):
            self.image_folder.setText(str(project_config["image_root"]))
        if settings.get("backbone") in self._backbones:
            self.backbone.value = settings["backbone"]
        self.input_size.value = settings.get("input_size")
        self.second_scale.value = settings.get("second_scale")
        self.mirror_view.value = bool(settings.get("mirror_view"))
        self._show_backbone_input_size()
        self.weights.value = settings.get("weights") or ""
        proposals = "auto" if project_config.get("proposal_choice") else settings.get("proposals")
        if proposals in self.settings["proposals"]["choices"]:
            self.proposals.value = proposals
        self.num_classes.value = settings.get("num_classes")
        if settings.get("num_classes") is None and isinstance(clusters.get("k"), int):
            self.num_classes.number.value = clusters["k"]

    def _backbone_input_size(self) -> int:
        return self._backbones[self.backbone.value].default_input_size

    def _show_backbone_input_size(self) -> None:
        """While "backbone default" is ticked, the (disabled) number shows that default for the chosen backbone."""
        if self.input_size.value is None:
            self.input_size.number.value = self._backbone_input_size()

    def config(self):
        from engine.api import RunConfig

        return RunConfig(backbone=self.backbone.value, weights=self.weights.value.strip() or None,
                         device=self.device.value, input_size=self.input_size.value, proposals=self.proposals.value,
                         num_classes=self.num_classes.value, second_scale=self.second_scale.value,
                         mirror_view=self.mirror_view.value)

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
        self.status.setText(f"Waiting for {self.tasks.waiting_for}, then running…" if self.tasks.busy else "Running…")
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
        self._bar.n, self._bar.total = done, max(total, 1)  # the total shrinks when a file turns out unreadable
        self._bar.refresh()
        self.status.setText(f"Running: {stage} {done}/{total}")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._stage = None, None

    def _on_returned(self, result) -> None:
        if isinstance(result, RunCancelled):
            self.status.setText(f"Cancelled {result}. The finished images are kept; Run resumes from there.")
            return
        skipped = (f", {len(result.skipped)} file{'s' if len(result.skipped) > 1 else ''} skipped ("
                   + ", ".join(Path(s["relative_path"]).name for s in result.skipped[:3])
                   + (", ..." if len(result.skipped) > 3 else "") + "; why: report.json)" if result.skipped else "")
        self.status.setText(f"Done: {result.images} images, {result.masks} proposals -> {result.exported_words} in "
                            f"{result.clusters} classes ({result.suggestion_words}){skipped}."
                            + (f" {result.proposal_choice[0].upper()}{result.proposal_choice[1:]}."
                               if result.proposal_choice else ""))
        self.on_finished(str(result.project))

    def _on_error(self, message: str) -> None:  # the task queue also shows it as a notification
        self.status.setText(f"Run failed: {message}")

    def _on_worker_finished(self) -> None:
        self._close_bar()
        self._active = False
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
