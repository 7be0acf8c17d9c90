"""The MaskDistill dock widget: tabs for Run, Review (browse and correct), Categories, and Retrain & export.

It holds no global state: the project folder on disk holds the work, this widget instance holds what is on
screen. Each tab is its own module; every engine call (runs, retrains and exports included) runs in a worker
through one serial TaskQueue, and those that need torch in the engine process (_engine_process.py), which
starts loading it when the widget opens. The run settings (engine.orchestration.config) are torch-free and
read here.

When napari's window closes, a run in progress is cancelled (it resumes next time), queued tasks are
dropped, the edits not yet on disk are written at once, even while a retrain still holds the project, and the
engine process stops once no widget uses it.
"""
from __future__ import annotations

import weakref
from pathlib import Path

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QFrame, QMainWindow, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._categories_panel import CategoriesPanel
from ._engine import done_with_engine, start_engine, use_engine
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
        self.review: ReviewPanel  # made below: it needs the view
        # a painted label takes the category chosen where the user works (the Review tab's box), never the
        # Categories tab's selection, which may be a discarded category
        self.view = ProjectView(napari_viewer, self.tasks,
                                new_label_category=lambda: self.review.new_object_category(), parent=self)
        self.run_panel = RunPanel(self.tasks, on_finished=self._run_finished, on_open=self._open_clicked,
                                  weights=weights)
        self.review = ReviewPanel(self.view, self.tasks)
        self.categories = CategoriesPanel(self.view, self.tasks)
        self.retrain_export = RetrainExportPanel(self.view, self.tasks, after_retrain=self._after_retrain)
        self.tabs = QTabWidget()
        self._tab_of: dict[QWidget, QScrollArea] = {}  # each panel's page: the area it scrolls in
        for panel, title in ((self.run_panel, "Run"), (self.review, "Review"), (self.categories, "Categories"),
                             (self.retrain_export, "Retrain && export")):
            self._tab_of[panel] = scrolling(panel)
            self.tabs.addTab(self._tab_of[panel], title)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self._first_show = True
        self._closed = False
        self.view.image_shown.connect(self._on_first_image)
        self.view.project_read.connect(self.run_panel.show_project)  # Run reruns the open project as it was made
        self._watched: weakref.ref[QMainWindow] | None = None  # napari's main window once docked in it
        QTimer.singleShot(0, self._watch_main_window)  # add_dock_widget has docked it by then
        use_engine()
        # the engine process loads torch while the user picks folders
        self.tasks.submit(start_engine, what="the engine to start (it loads torch once per session)")

    def show_tab(self, panel: QWidget) -> None:
        """Bring ``panel`` (one of the four) to the front."""
        self.tabs.setCurrentWidget(self._tab_of[panel])

    def current_tab(self) -> QWidget:
        """The panel in front."""
        return next(panel for panel, page in self._tab_of.items() if page is self.tabs.currentWidget())

    @property
    def busy(self) -> bool:
        """True while a run or an engine call is in progress or queued (tests wait on this)."""
        return self.run_panel.running or self.tasks.busy

    def open_project(self, project_dir: str, say_opened: bool = True) -> bool:
        """Show a project for review (after a run, from Open project or from napari's File > Open); False if it
        is not one. ``say_opened``: the Run tab says which project is open (after a run it keeps the run's
        result instead)."""
        if not project_dir:
            self.run_panel.status.setText("Choose a project folder first (the one a run wrote), or run one.")
            return False
        if not (Path(project_dir) / "project.json").exists():
            self.run_panel.status.setText(f"{project_dir} is not a project folder (no project.json); run one first.")
            return False
        self.run_panel.project_folder.setText(str(project_dir))
        if say_opened:  # a message of its own: an earlier one ("Pick an image folder...") no longer applies
            self.run_panel.status.setText(f"Opened {project_dir}: review it in the Review and Categories tabs.")
            self.show_tab(self.review)  # opened to be reviewed (after a run, its summary stays in view)
        self._first_show = True
        self.review.reset_queue()
        self.view.open(project_dir)
        return True

    def _open_clicked(self, project_dir: str) -> None:
        self.open_project(project_dir)

    def _run_finished(self, project_dir: str) -> None:
        self.open_project(project_dir, say_opened=False)

    def _on_first_image(self, _position: int) -> None:
        if self._first_show:
            self._first_show = False
            self.categories.refresh(reread=False)  # the view read the table with the project

    def _after_retrain(self) -> None:
        self.review.reset_queue()
        self.view.reload()
        self.categories.refresh()

    # -- closing -----------------------------------------------------------------------------
    def shutdown(self) -> list:
        """napari is closing: cancel a run, drop queued tasks, write pending edits now. Returns the messages of
        edits that could not be written (each also shown as a notification)."""
        if self._closed:
            return []
        self._closed = True
        self.run_panel.cancel()
        self.tasks.close()
        failed = self.view.flush()
        done_with_engine()  # the last widget to close stops the engine process (a run resumes next time)
        return failed

    def eventFilter(self, watched, event) -> bool:
        """napari's main window is closing: write the pending edits at once, let napari handle the Close (it
        may ask the user to confirm), and shut down only if the window really closes."""
        if event.type() != QEvent.Type.Close or self._closed:
            return False
        self.view.flush()
        watched.event(event)  # napari's closeEvent: accepts or ignores it
        if event.isAccepted():
            self.shutdown()
        return True  # delivered already

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ParentChange and not self._closed:
            if self.parent() is None:
                self.view.flush()  # taken out of its dock (remove_dock_widget): its edits must not wait
            else:
                self._watch_main_window()
        return super().event(event)

    def _watch_main_window(self) -> None:
        """Docked: watch the main window's Close, which comes before napari removes the layers (found through
        Qt's parents, not napari's private ``_qt_window``)."""
        window = self.window()
        if isinstance(window, QMainWindow) and (self._watched is None or window is not self._watched()):
            window.installEventFilter(self)
            self._watched = weakref.ref(window)  # a weak link: napari's window (and viewer) must stay collectable

    def showEvent(self, event) -> None:
        self._watch_main_window()
        super().showEvent(event)


def scrolling(panel: QWidget) -> QScrollArea:
    """``panel`` in a frameless area that scrolls up and down when the dock is shorter than the panel needs (napari
    opens at about 1089 x 633): its buttons keep their height instead of being squeezed until their text is cut.
    As wide as the panel needs, so nothing scrolls sideways."""
    area = QScrollArea()
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(panel)
    bar = area.verticalScrollBar()
    area.setMinimumWidth(panel.minimumSizeHint().width() + (bar.sizeHint().width() if bar is not None else 0))
    return area
