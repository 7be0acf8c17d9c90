"""Screenshots of the plugin's object review for the README, on a copy of the demo project (``make demo``).

    xvfb-run -a -s "-screen 0 1700x1100x24" .venv/bin/python docs/make_review_screenshots.py

Writes docs/plugin_objects.png (the object table with one object selected and highlighted) and
docs/plugin_click_object.png (an object added by one click on the rocket of pair_person_rocket.jpg). The demo
project is copied to a temporary folder first, so runs/demo is never changed. If runs/demo is missing, build it
with `.venv/bin/maskdistill run examples/images --project runs/demo --num-classes 4`.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))
from _screens import open_window, save_screenshot, waiter  # noqa: E402
DEMO = ROOT / "runs" / "demo"
DOCS = ROOT / "docs"
OBJECTS_IMAGE, CLICK_IMAGE, CLICK_AT = "cat_02.jpg", "pair_person_rocket.jpg", (200, 360)  # (row, col)


def main() -> None:
    if not (DEMO / "project.json").exists():
        raise SystemExit(f"{DEMO} is missing: run `make demo` first")
    project = Path(tempfile.mkdtemp(prefix="maskdistill_review_shots_")) / "demo"
    shutil.copytree(DEMO, project)
    app, viewer, widget = open_window((1650, 1050), dock_width=560)
    wait = waiter(app, widget, seconds=300)

    def show(name: str) -> None:
        position = next(i for i, e in enumerate(widget.view.entries) if e["relative_path"] == name)
        widget.view.show(position)
        wait(lambda: not widget.busy and widget.view.position == position)

    def shot(name: str) -> None:
        path = DOCS / name
        save_screenshot(viewer, path, wait)
        print(f"written: {path.relative_to(ROOT)} ({path.stat().st_size // 1000} KB)")

    widget.open_project(str(project))
    wait(lambda: not widget.busy and "masks" in viewer.layers)
    widget.show_tab(widget.review)

    show(OBJECTS_IMAGE)  # the object table, colour by object, one object selected (only its mask shown)
    review = widget.review
    review.objects.colour_by.setCurrentText("object")
    review.objects.table.sortItems(3, 1)  # by area, largest first (Qt.DescendingOrder)
    review.objects.table.selectRow(0)
    shot("plugin_objects.png")

    review.objects.colour_by.setCurrentText("category")
    show(CLICK_IMAGE)  # one click on the rocket adds it as a new object
    review.add_object_button.setChecked(True)
    review.add_object_at(CLICK_AT)
    wait()
    print(review.status.text())
    shot("plugin_click_object.png")
    viewer.close()
    shutil.rmtree(project.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
