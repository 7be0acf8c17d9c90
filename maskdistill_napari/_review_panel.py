"""Browse the project's images (previous / next / jump) and review them: accept an image, reject the mask
under the selected label, jump to the next low-confidence mask (engine.api). Errors of these calls, and of
loading and saving images, are shown in this panel's status line."""
from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QGridLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._engine import call


class ReviewPanel(QWidget):
    def __init__(self, view, tasks, parent=None):
        super().__init__(parent)
        self.view, self.tasks = view, tasks
        self.previous, self.next = QPushButton("◀ Previous"), QPushButton("Next ▶")
        self.jump = QSpinBox(minimum=1, maximum=1)
        self.jump.setPrefix("image ")
        self.accept, self.reject = QPushButton("Accept image"), QPushButton("Reject selected mask")
        self.low_confidence = QPushButton("Next low-confidence mask")
        self.info = QLabel("No project open.")
        self.info.setWordWrap(True)
        self.status = QLabel("Paint, erase and fill with napari's Labels tools; edits are saved to the "
                             "project automatically. A new label gets the category selected in Categories.")
        self.status.setWordWrap(True)
        grid = QGridLayout()
        grid.addWidget(self.previous, 0, 0)
        grid.addWidget(self.jump, 0, 1)
        grid.addWidget(self.next, 0, 2)
        grid.addWidget(self.accept, 1, 0)
        grid.addWidget(self.reject, 1, 1)
        grid.addWidget(self.low_confidence, 1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.info)
        layout.addWidget(self.status)
        layout.addStretch()
        self.previous.clicked.connect(lambda: self.view.show(self.view.position - 1))
        self.next.clicked.connect(lambda: self.view.show(self.view.position + 1))
        self.jump.editingFinished.connect(lambda: self.view.show(self.jump.value() - 1))
        self.accept.clicked.connect(self.accept_image)
        self.reject.clicked.connect(self.reject_selected)
        self.low_confidence.clicked.connect(self.next_low_confidence)
        view.image_shown.connect(self._shown)
        view.saved.connect(lambda _: self._shown(self.view.position))
        view.failed.connect(self.status.setText)

    def _shown(self, position: int) -> None:
        data = self.view.current
        self.jump.setMaximum(max(1, len(self.view.entries)))
        self.jump.setValue(position + 1)
        self.info.setText(f"{data['name']} ({position + 1}/{len(self.view.entries)}): {len(data['classes'])} masks "
                          f"from the {data['source']}{', reviewed' if data['reviewed'] else ''}")

    def _after(self, message: str, image_id: str):
        def done(_):
            self.status.setText(message)
            self.view.forget(image_id)
            self.view.show(self.view.position)
        return done

    def _failed(self, what: str):
        return lambda message: self.status.setText(f"{what} failed: {message}")

    def accept_image(self) -> None:
        if self.view.current is None:
            return
        self.view.save()
        image_id = self.view.current["image_id"]
        self.tasks.submit(call, "accept_image", self.view.project_dir, image_id,
                          on_done=self._after(f"Accepted {self.view.current['name']}.", image_id),
                          on_error=self._failed("Accepting the image"))

    def reject_selected(self) -> None:
        layer = self.view.labels_layer
        if self.view.current is None or layer is None:
            return
        label = int(layer.selected_label)
        present = [int(k) for k in np.unique(np.asarray(layer.data)) if k != 0]
        if label not in present:
            self.status.setText(f"Label {label} is not in this image; select the mask to reject first.")
            return
        self.view.save()
        # after a save the engine's masks are the label map's ids in increasing order; without one, id k is mask k-1
        index = present.index(label) if self.view.current["source"] == "correction" else label - 1
        image_id = self.view.current["image_id"]
        self.tasks.submit(call, "reject_mask", self.view.project_dir, image_id, index,
                          on_done=self._after(f"Rejected mask {label}.", image_id),
                          on_error=self._failed(f"Rejecting mask {label}"))

    def next_low_confidence(self) -> None:
        if self.view.project_dir is None:
            return
        self.view.save()
        self.tasks.submit(call, "low_confidence_masks", self.view.project_dir, 1, on_done=self._go_to,
                          on_error=self._failed("Finding low-confidence masks"))

    def _go_to(self, found: list) -> None:
        if not found:
            self.status.setText("No unreviewed masks left.")
            return
        image_id, index, score = found[0]
        position = next(i for i, e in enumerate(self.view.entries) if e["image_id"] == image_id)
        self.status.setText(f"Lowest confidence: mask {index + 1} of image {position + 1} (score {score:.2f}).")
        self.view.show(position, select_label=index + 1)
