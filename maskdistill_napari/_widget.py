"""The MaskDistill dock widget: tabs for Run, Review (browse and correct), Categories, and Retrain & export.

It holds no global state: the project folder on disk holds the work, this widget instance holds what is on
screen. Each tab is its own module; engine calls run in workers through one serial TaskQueue.
"""
from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from ._categories_panel import CategoriesPanel
from ._project_view import ProjectView
from ._retrain_export_panel import RetrainExportPanel
from ._review_panel import ReviewPanel
from ._run_panel import RunPanel
from ._tasks import TaskQueue


class MaskDistillWidget(QWidget):
    def __init__(self, napari_viewer, weights: str | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.tasks = TaskQueue(self)
        self.view = ProjectView(napari_viewer, self.tasks,
                                new_label_category=lambda: self.categories.current_category(), parent=self)
        self.run_panel = RunPanel(on_finished=self.open_project, on_open=self.open_project, weights=weights)
        self.review = ReviewPanel(self.view, self.tasks)
        self.categories = CategoriesPanel(self.view, self.tasks)
        self.retrain_export = RetrainExportPanel(self.view, self.tasks, after_retrain=self._after_retrain)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.run_panel, "Run")
        self.tabs.addTab(self.review, "Review")
        self.tabs.addTab(self.categories, "Categories")
        self.tabs.addTab(self.retrain_export, "Retrain && export")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self._first_show = True
        self.view.image_shown.connect(self._on_first_image)

    @property
    def busy(self) -> bool:
        """True while a run or an engine call is in progress (tests wait on this)."""
        return self.run_panel.running or self.tasks.busy

    def open_project(self, project_dir: str) -> None:
        if not project_dir or not (Path(project_dir) / "project.json").exists():
            self.run_panel.status.setText(f"{project_dir or 'No folder'} is not a project folder (no project.json); "
                                          "run one first.")
            return
        self.run_panel.project_folder.setText(str(project_dir))
        self._first_show = True
        self.view.open(project_dir)

    def _on_first_image(self, _position: int) -> None:
        if self._first_show:
            self._first_show = False
            self.categories.refresh()

    def _after_retrain(self) -> None:
        self.view.reload()
        self.categories.refresh()
