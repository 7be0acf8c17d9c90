"""Screenshots of the napari plugin for the README, from a real run on examples/images.

    xvfb-run -a .venv/bin/python docs/make_screenshots.py     # (starts a virtual display itself if needed)

Steps: the Run panel; masks coloured by category with the Categories panel (categories named the way a
user would after looking at the gallery); a correction painted with napari's brush; after retraining; the
export result. Writes docs/plugin_*.png (each kept under 400 KB). The project goes to a temporary folder.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))
from _screens import open_window, save_screenshot, waiter  # noqa: E402
DOCS = ROOT / "docs"
MAX_BYTES = 400_000


def main() -> None:
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        Display(visible=False, size=(1600, 1000)).start()
    from qtpy.QtWidgets import QFileDialog

    work = Path(tempfile.mkdtemp(prefix="maskdistill_screens_"))
    app, viewer, widget = open_window((1560, 940), dock_width=500)
    wait = waiter(app, widget)

    def shot(name: str, tab: int) -> None:
        widget.tabs.setCurrentIndex(tab)
        wait()
        path = DOCS / f"plugin_{name}.png"
        size = save_screenshot(viewer, path, wait, MAX_BYTES)
        print(f"{path.relative_to(ROOT)}: {size[0]}x{size[1]}, {path.stat().st_size // 1000} KB")

    panel = widget.run_panel
    panel.image_folder.setText(str(ROOT / "examples" / "images"))
    panel.project_folder.setText(str(work / "project"))
    panel.input_size.value = 224  # magicgui widgets (the engine's settings form)
    panel.num_classes.value = 4
    panel.device.value = "cpu"
    shot("1_run", 0)

    panel.start()
    wait(lambda: not panel.running and not widget.busy)
    view, categories = widget.view, widget.categories
    # name each category after the photos its representative masks come from, as a user would from the gallery
    clusters = json.loads((work / "project" / "clusters.json").read_text())
    paths = {e["image_id"]: e["relative_path"] for e in view.entries}
    for cluster in clusters["clusters"]:
        names = [paths[image_id].split("_")[0] for image_id, _ in cluster["representatives"]]
        categories.select(cluster["id"] + 1)
        categories.name.setText(max(set(names), key=names.count))
        categories.rename()
        wait()
    view.show(next(i for i, e in enumerate(view.entries) if e["relative_path"] == "pair_cat_cup.jpg"))
    wait()
    categories.select(1)
    wait()
    shot("2_categories", 2)

    # a correction: paint the rocket of pair_person_rocket.jpg as a new "rocket" mask with napari's brush
    x, y, w, h = json.loads((ROOT / "examples" / "categories.json").read_text())["pair_person_rocket.jpg"][1]["bbox"]
    view.show(next(i for i, e in enumerate(view.entries) if e["relative_path"] == "pair_person_rocket.jpg"))
    wait()
    rocket = next(c.id for c in view.table.categories if c.name == "rocket")
    categories.select(rocket)
    review = widget.review  # a painted label takes the category chosen in the Review tab's box, as a user picks it
    review.category.setCurrentIndex(review.category.findData(rocket))
    review.category.activated.emit(review.category.currentIndex())
    wait()
    masks = view.labels_layer
    masks.mode = "paint"
    masks.brush_size = w
    new_label = int(masks.data.max()) + 1
    masks.selected_label = new_label
    for row in range(y + w // 2, y + h - w // 2, 4):
        masks.paint((row, x + w // 2), new_label)
    view.save()
    wait()
    shot("3_correction", 1)

    widget.retrain_export.retrain()
    wait()
    shot("4_retrained", 3)

    out = work / "export" / "annotations.json"
    out.parent.mkdir()
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(out), ""))
    widget.retrain_export.export_coco()
    wait()
    shot("5_export", 3)
    print(widget.retrain_export.retrain_result.text())
    print(widget.retrain_export.export_result.text())
    viewer.close()


if __name__ == "__main__":
    main()
