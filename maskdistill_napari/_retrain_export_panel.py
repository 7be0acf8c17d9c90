"""Retrain (engine.api.distill, which weights the user's corrections above the pseudo-labels) and report
what changed; export COCO or label images (engine.api.export_project, validated with pycocotools). Both go
through the widget's task queue, so they wait for a Run (or each other) instead of finding the project locked.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import _engine_calls as engine_calls


def suggested_export_path(project_dir) -> Path:
    """A new file next to the project, never the project's own annotations.json: export.json, export_2.json..."""
    folder = Path(project_dir)
    path, n = folder / "export.json", 1
    while path.exists():
        n += 1
        path = folder / f"export_{n}.json"
    return path


def masks_snapshot(project_dir) -> dict:
    """{image id: (mask count, digest of the masks and categories)} of the current instances."""
    from engine.api import current_instances, open_project

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
    summary = engine_calls.distill(project_dir, progress=progress)  # in the engine process
    after = masks_snapshot(project_dir)
    changed = sorted(name for name in after if before.get(name) != after[name])
    return {"before": sum(n for n, _ in before.values()), "after": sum(n for n, _ in after.values()),
            "changed": changed, "summary": summary}


def describe_retrain(result: dict) -> str:
    from engine.api import describe_folder_passes

    changed = result["changed"]
    names = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    carried = result["summary"].get("carried") or {}
    text = (f"Retrained: {result['before']} masks before, {result['after']} after; "
            f"{len(changed)} image(s) changed" + (f": {names}." if changed else "."))
    if carried:
        text += (f" Your corrected objects were carried to {len(carried)} image(s) of the same scene "
                 f"({sum(carried.values())} object(s)).")
    for line in describe_folder_passes(result["summary"]):
        text += f" {line[0].upper()}{line[1:]}."
    return text


def describe_export(summary: dict) -> str:
    """What an export wrote, and where: a COCO file, label images, or both."""
    parts = []
    if "coco" in summary:
        coco = summary["coco"]
        text = (f"pycocotools validation passed: {coco['images']} images, {coco['annotations']} annotations, "
                f"{coco['categories']} categories → {summary['path']}")
        if coco.get("warnings"):
            text += f" ({len(coco['warnings'])} warnings, e.g. {coco['warnings'][0]})"
        parts.append(text)
    if "labels" in summary:
        labels = summary["labels"]
        parts.append(f"{labels['images']} label images written to {labels['folder']} (instances.json there gives "
                     "each object's category; no COCO file was changed)")
        if labels.get("overlapping_left_out"):
            parts.append(f"{labels['overlapping_left_out']} overlapping objects left out of them (one object per "
                         "pixel; the COCO export has them)")
    return "; ".join(parts) + "."


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

    def _ready(self, status) -> bool:
        if self.view.project_dir is None:
            status.setText("Open or run a project first.")
            return False
        self.view.save()
        return True

    def retrain(self) -> None:
        if not self._ready(self.retrain_result):
            return
        self.retrain_button.setEnabled(False)
        self.retrain_result.setText("Retraining…" if not self.tasks.busy else
                                    "Retraining after the task in progress…")
        self.tasks.submit(retrain_and_compare, self.view.project_dir, on_done=self._retrained,
                          on_error=lambda message: self.retrain_result.setText(f"Retraining failed: {message}"),
                          on_finished=lambda: self.retrain_button.setEnabled(True))

    def _retrained(self, result: dict) -> None:
        self.retrain_result.setText(describe_retrain(result))
        self.after_retrain()

    def export_coco(self) -> None:
        if not self._ready(self.export_result):
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export COCO", str(suggested_export_path(self.view.project_dir)),
                                              "COCO (*.json)")
        if path and Path(path).resolve() == (self.view.project_dir / "annotations.json").resolve():
            self.export_result.setText("annotations.json is the project's own file (rewritten by every run); "
                                       "choose another name.")
            return
        if path:
            self._export(path, None)

    def export_labels(self) -> None:
        if not self._ready(self.export_result):
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for the label images")
        if folder:
            self._export(None, folder)

    def _export(self, path, labels) -> None:
        self.export_result.setText("Exporting…" if not self.tasks.busy else "Exporting after the task in progress…")
        self.tasks.submit(engine_calls.export_project, self.view.project_dir, path, self.polygons.isChecked(), labels,
                          on_done=lambda summary: self.export_result.setText(describe_export(summary)),
                          on_error=lambda message: self.export_result.setText(f"Export failed: {message}"))
