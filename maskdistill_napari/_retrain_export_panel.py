"""Retrain (engine.pipeline.distill, which weights the user's corrections above the pseudo-labels) and report
what changed; export COCO or label images (engine.pipeline.export_project, validated with pycocotools)."""
from __future__ import annotations

import hashlib

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.pipeline import distill, export_project, open_project
from engine.review import current_instances


def masks_snapshot(project_dir) -> dict:
    """{image id: (mask count, digest of the masks and categories)} of the current instances."""
    _, _, entries, _ = open_project(project_dir)
    snapshot = {}
    for entry in entries:
        masks, classes, _, _ = current_instances(project_dir, entry["image_id"])
        digest = hashlib.sha1(masks.tobytes() + classes.tobytes()).hexdigest()
        snapshot[entry["relative_path"]] = (len(masks), digest)
    return snapshot


def retrain_and_compare(project_dir, progress=None) -> dict:
    """Masks before and after a retrain: totals and the images whose masks changed (runs in a worker)."""
    before = masks_snapshot(project_dir)
    summary = distill(project_dir, progress)
    after = masks_snapshot(project_dir)
    changed = sorted(name for name in after if before.get(name) != after[name])
    return {"before": sum(n for n, _ in before.values()), "after": sum(n for n, _ in after.values()),
            "changed": changed, "summary": summary}


def describe_retrain(result: dict) -> str:
    changed = result["changed"]
    names = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return (f"Retrained: {result['before']} masks before, {result['after']} after; "
            f"{len(changed)} image(s) changed" + (f": {names}." if changed else "."))


def describe_export(summary: dict) -> str:
    coco = summary["coco"]
    text = (f"pycocotools validation passed: {coco['images']} images, {coco['annotations']} annotations, "
            f"{coco['categories']} categories → {summary['path']}")
    if "labels" in summary:
        text += f"; label images in {summary['labels']['folder']}"
    if coco.get("warnings"):
        text += f" ({len(coco['warnings'])} polygon warnings, e.g. {coco['warnings'][0]})"
    return text


class RetrainExportPanel(QWidget):
    def __init__(self, view, tasks, after_retrain, parent=None):
        super().__init__(parent)
        self.view, self.tasks, self.after_retrain = view, tasks, after_retrain
        self.retrain_button = QPushButton("Retrain with my corrections")
        self.retrain_result = QLabel("Retraining uses your corrections (weighted above the pseudo-labels) and "
                                     "re-predicts the images you have not corrected.")
        self.coco_button, self.labels_button = QPushButton("Export COCO…"), QPushButton("Export label images…")
        self.polygons = QCheckBox("polygons instead of RLE (holes are filled)")
        self.export_result = QLabel("")
        for label in (self.retrain_result, self.export_result):
            label.setWordWrap(True)
        retrain_box, export_box = QGroupBox("Retrain"), QGroupBox("Export")
        box = QVBoxLayout(retrain_box)
        box.addWidget(self.retrain_button)
        box.addWidget(self.retrain_result)
        box = QVBoxLayout(export_box)
        for widget in (self.polygons, self.coco_button, self.labels_button, self.export_result):
            box.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addWidget(retrain_box)
        layout.addWidget(export_box)
        layout.addStretch()
        self.retrain_button.clicked.connect(self.retrain)
        self.coco_button.clicked.connect(self.export_coco)
        self.labels_button.clicked.connect(self.export_labels)

    def _ready(self) -> bool:
        if self.view.project_dir is None:
            self.export_result.setText("Open or run a project first.")
            return False
        self.view.save()
        return True

    def retrain(self) -> None:
        if not self._ready():
            return
        self.retrain_button.setEnabled(False)
        self.retrain_result.setText("Retraining…")
        self.tasks.submit(retrain_and_compare, self.view.project_dir, on_done=self._retrained,
                          on_error=self._retrain_failed)

    def _retrained(self, result: dict) -> None:
        self.retrain_button.setEnabled(True)
        self.retrain_result.setText(describe_retrain(result))
        self.after_retrain()

    def _retrain_failed(self, error) -> None:
        self.retrain_button.setEnabled(True)
        self.retrain_result.setText(f"Retraining failed: {type(error).__name__}: {error}")

    def export_coco(self) -> None:
        if not self._ready():
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export COCO", str(self.view.project_dir / "annotations.json"),
                                              "COCO (*.json)")
        if path:
            self._export(path, None)

    def export_labels(self) -> None:
        if not self._ready():
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for the label images")
        if folder:
            self._export(None, folder)

    def _export(self, path, labels) -> None:
        self.export_result.setText("Exporting…")
        self.tasks.submit(export_project, self.view.project_dir, path, self.polygons.isChecked(), labels,
                          on_done=lambda summary: self.export_result.setText(describe_export(summary)),
                          on_error=lambda error: self.export_result.setText(f"Export failed: {error}"))
