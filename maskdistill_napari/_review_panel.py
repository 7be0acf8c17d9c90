"""Browse the project's images (previous / next / jump) and review single objects: the object the user clicked
(or picked in the object table, or that the queue shows) is accepted, rejected or given another category by
its stable instance id, each undoable, shown in the layer at once and confirmed by the engine in the task queue
(the window never waits for it; an engine error reads the image back); a low-confidence queue walks forward
and back through the unreviewed objects of the whole project. "Add object (click)" turns a click (or a dragged
box) on the canvas into a new object (``engine.api.add_object``: a mask from the image's cached features, in
the task queue, never on the GUI thread), undone like the others. Grow (key Up) and Shrink (key Down) turn the
selected object into the whole it is part of or its largest part, Merge joins the selected objects (shift-click
selects several), Split cuts one along a line dragged across it (shown at once, confirmed by the engine) or into
its two parts; the layer follows the change each returns, without reading the image back. Errors of these
calls, and of loading and saving images, are shown in this panel's status line. The object table and legend
sit below (``_objects_panel``)."""
from __future__ import annotations

import time

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import _engine_calls as engine_calls
from ._layers import category_label
from ._objects_panel import ObjectsPanel

PAINT_HINT = ("Paint, erase and fill with napari's Labels tools; edits are saved to the project automatically. A "
              "new label gets the category chosen in the box above.")


def use_discarded_anyway(parent, name: str) -> bool:
    """Ask whether a new or edited object may go into the discarded category ``name`` (its objects are not
    exported): True for "Use it anyway", False for "Choose another"."""
    box = QMessageBox(QMessageBox.Icon.Question, "Discarded category",
                      f"'{name}' is discarded: its objects are not exported.", parent=parent)
    use = box.addButton("Use it anyway", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Choose another", QMessageBox.ButtonRole.RejectRole)
    box.exec_()
    return box.clickedButton() is use


def confirm_shown_action(record: dict, operation, *args) -> dict:
    """In the task queue: the engine call of an object action the layer already shows. The engine's undo record
    fills ``record`` in here, in the worker, so that an Undo queued behind it finds it (the queue runs in order);
    "pending" stays when the call fails."""
    record.update(operation(*args))
    record.pop("pending", None)
    return record


def undo_shown_action(project_dir, record: dict) -> None:
    """In the task queue: the engine's undo of an action of :func:`confirm_shown_action`."""
    if record.get("pending"):
        raise RuntimeError(f"The {record['action']} of object {record['instance_id']} did not reach the project; "
                           "there is nothing to undo")
    engine_calls.restore_object(project_dir, {k: v for k, v in record.items() if k != "shown"})


class ReviewPanel(QWidget):
    def __init__(self, view, tasks, parent=None):
        super().__init__(parent)
        self.view, self.tasks = view, tasks
        self.queue: list | None = None  # [(image_id, instance id, score)], least confident first
        self.queue_cursor = -1
        self.done: set = set()  # (image_id, instance id) reviewed or rejected since the queue was read
        self.undo_stack: list = []  # engine undo records, newest last
        self.making: dict | None = None  # the object further clicks refine (refine_made_object)
        self.last_add_seconds = None  # click to engine result of the last added object (shown; benchmarked)
        self.confirmed_discarded: set = set()  # discarded categories the user chose to use anyway
        self._visible_choice = None  # the last category chosen in the box whose objects are exported
        self.previous, self.next = QPushButton("◀ Previous"), QPushButton("Next ▶")
        self.jump = QSpinBox()
        self.jump.setRange(1, 1)
        self.jump.setPrefix("image ")
        self.accept_object_button = QPushButton("Accept object")
        self.reject = QPushButton("Reject object")
        self.undo_button = QPushButton("Undo")
        self.category = QComboBox()
        self.set_category_button = QPushButton("Set category")
        self.accept = QPushButton("Accept image")
        self.queue_previous = QPushButton("◀ Less uncertain")
        self.low_confidence = QPushButton("Next low-confidence ▶")
        self.add_object_button = QPushButton("Add object (click)")
        self.add_object_button.setCheckable(True)
        self.grow_button, self.shrink_button = QPushButton("Grow ▲ (Up)"), QPushButton("Shrink ▼ (Down)")
        self.merge_button = QPushButton("Merge selected")
        self.split_button = QPushButton("Split by stroke")
        self.split_button.setCheckable(True)
        self.split_parts_button = QPushButton("Split into parts")
        self.take_outlined_button = QPushButton("Take outlined object")
        self.zoom = QCheckBox("zoom to it")
        self.highlight = QCheckBox("show only the selected mask")
        self.highlight.setChecked(True)
        tips = {self.accept_object_button: "Mark the selected object as checked (it leaves the queue).",
                self.reject: "Remove the selected object from this image; Undo brings it back with the same id.",
                self.undo_button: "Undo the last object action (reject, accept, category).",
                self.set_category_button: "Give the selected object the chosen category.",
                self.category: "The category of objects you add, paint or re-categorise here.",
                self.accept: "Mark every object of this image as checked.",
                self.low_confidence: "Show the next unreviewed object of the project, least confident first.",
                self.queue_previous: "Go back in the low-confidence queue.",
                self.highlight: "While an object is selected, show only its mask.",
                self.add_object_button: "While on: click an object on the image (or drag a box around it) to add it "
                                        "as a new object, made from the image's features and snapped to its "
                                        "edges. It gets the category chosen in the box above; Undo removes it. "
                                        "Then a ctrl click adds the region under it to that object, a right or "
                                        "shift click removes it; a plain click makes another object.",
                self.zoom: "Zoom to the object the queue shows.",
                self.grow_button: "Replace the selected object by the whole it is part of, as the image's features "
                                  "outline it (key Up); it takes in objects lying mostly inside. Undo goes back.",
                self.shrink_button: "Replace the selected object by its largest part (key Down).",
                self.split_button: "While on: drag a line across the selected object (or any object) to cut it "
                                   "there; each part becomes an object of its category. Undo joins them again.",
                self.split_parts_button: "Cut the selected object in two where its colours part (two touching "
                                         "objects, or an object and what it sits on), else into the two parts "
                                         "the image's features see in it. Undo joins them again.",
                self.take_outlined_button: "Make the outlined object you last clicked inside (the overlapping "
                                           "objects layer: what a second scale or a mirrored view found inside "
                                           "a group or the background) an object of the image, of its category; "
                                           "it takes the generated objects' pixels, never yours. Undo gives them "
                                           "back.",
                self.merge_button: "Join the selected objects into one (shift-click masks to select several); it "
                                   "keeps the category of the largest one shown."}
        for widget, tip in tips.items():
            widget.setToolTip(tip)
        self.selection = QLabel("Click a mask (pan/zoom mode) or a row of the table to select an object.")
        self.selection.setWordWrap(True)
        self.info = QLabel("No project open.")
        self.info.setWordWrap(True)
        self.status = QLabel(PAINT_HINT)
        self._image_on_screen = None  # the image _shown last described: a message about another one goes
        self._status_for = None  # the image a message names before it is shown (the queue's)
        self.status.setWordWrap(True)
        grid = QGridLayout()
        grid.addWidget(self.previous, 0, 0)
        grid.addWidget(self.jump, 0, 1)
        grid.addWidget(self.next, 0, 2)
        grid.addWidget(self.accept_object_button, 1, 0)
        grid.addWidget(self.reject, 1, 1)
        grid.addWidget(self.undo_button, 1, 2)
        grid.addWidget(self.set_category_button, 2, 0)
        grid.addWidget(self.category, 2, 1, 1, 2)
        grid.addWidget(self.queue_previous, 3, 0)
        grid.addWidget(self.low_confidence, 3, 1)
        grid.addWidget(self.accept, 3, 2)
        grid.addWidget(self.zoom, 4, 0)
        grid.addWidget(self.highlight, 4, 1, 1, 2)
        grid.addWidget(self.add_object_button, 5, 0, 1, 3)
        grid.addWidget(self.grow_button, 6, 0)
        grid.addWidget(self.shrink_button, 6, 1)
        grid.addWidget(self.merge_button, 6, 2)
        grid.addWidget(self.split_button, 7, 0, 1, 2)
        grid.addWidget(self.split_parts_button, 7, 2)
        grid.addWidget(self.take_outlined_button, 8, 0, 1, 3)
        self.objects = ObjectsPanel(view)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.selection)
        layout.addWidget(self.info)
        layout.addWidget(self.status)
        layout.addWidget(self.objects, 1)
        self.previous.clicked.connect(lambda: self.view.show(self.view.position - 1))
        self.next.clicked.connect(lambda: self.view.show(self.view.position + 1))
        self.jump.editingFinished.connect(lambda: self.view.show(self.jump.value() - 1))
        self.accept.clicked.connect(self.accept_image)
        self.accept_object_button.clicked.connect(self.accept_selected)
        self.reject.clicked.connect(self.reject_selected)
        self.undo_button.clicked.connect(self.undo)
        self.set_category_button.clicked.connect(self.set_category)
        self.category.activated.connect(self._category_activated)  # the user's pick, not a refill
        self.low_confidence.clicked.connect(self.next_low_confidence)
        self.queue_previous.clicked.connect(self.previous_low_confidence)
        self.zoom.toggled.connect(lambda on: setattr(self.view, "zoom_on_select", on))
        self.highlight.toggled.connect(self.view.set_highlight)
        self.add_object_button.toggled.connect(self.set_add_mode)
        self.grow_button.clicked.connect(self.grow_selected)
        self.shrink_button.clicked.connect(self.shrink_selected)
        self.merge_button.clicked.connect(self.merge_selected)
        self.split_button.toggled.connect(self.set_split_mode)
        self.split_parts_button.clicked.connect(self.split_into_parts_selected)
        self.take_outlined_button.clicked.connect(self.take_outlined)
        # on the canvas, Up / Down grow and shrink the selected object (napari binds neither key by default)
        view.viewer.bind_key("Up", lambda _viewer: self.grow_selected(), overwrite=True)
        view.viewer.bind_key("Down", lambda _viewer: self.shrink_selected(), overwrite=True)
        view.image_shown.connect(self._shown)
        view.saved.connect(lambda _: self._shown(self.view.position))
        view.failed.connect(self.status.setText)
        view.object_selected.connect(self._selected)
        view.outlined_clicked.connect(self._outlined)
        view.objects_changed.connect(self._fill_categories)
        view.objects_changed.connect(self._describe_selection)  # a category renamed or merged, an object edited
        view.objects_changed.connect(self._describe_image)  # its object count and reviewed count follow

    # -- what is on screen -------------------------------------------------------------------
    def _shown(self, position: int) -> None:
        data = self.view.current
        if data is None:
            return
        self.jump.setMaximum(max(1, len(self.view.entries)))
        self.jump.setValue(position + 1)
        if data["image_id"] != self._image_on_screen:  # another image: a message about the last one is stale
            if data["image_id"] != self._status_for:
                self.status.setText(PAINT_HINT)
            self._image_on_screen, self._status_for = data["image_id"], None
        self._describe_image()

    def _describe_image(self) -> None:
        """The info line: the image, its object count, where they come from and how many are reviewed."""
        data = self.view.current
        if data is None:
            return
        reviewed = len(data["reviewed_ids"])
        where = f"{data['name']} ({self.view.position + 1}/{len(self.view.entries)})"
        if not data["classes"]:
            self.info.setText(f"{where}: no objects on this image. Add one with Add object (click), or paint one.")
            return
        self.info.setText(f"{where}: {len(data['classes'])} objects from the {data['source']}, {reviewed} reviewed")

    def _selected(self, instance_id: int) -> None:
        """A new selection: described, and its category (merges resolved) chosen in the box."""
        self._describe_selection()
        data = self.view.current
        if not instance_id or data is None or instance_id not in data["classes"]:
            return
        category_id = self.view.table.resolve(data["classes"][instance_id])
        index = self.category.findData(category_id)
        if category_id is not None and index >= 0:  # the box never turns to a discarded category unless the
            self.category.setCurrentIndex(index)  # user picks it

    def _describe_selection(self) -> None:
        """The selection line, from the objects and categories as they are now (after any change of either)."""
        data, instance_id = self.view.current, self.view.selected
        if not instance_id or data is None or instance_id not in data["classes"]:
            self.selection.setText("No object selected: click a mask (pan/zoom mode) or a row of the table.")
            return
        name = category_label(self.view.table, data["classes"][instance_id])
        text = (f"Object {instance_id}: {name}, score {data['scores'].get(instance_id, 1.0):.2f}"
                f"{', reviewed' if instance_id in data['reviewed_ids'] else ''}")
        others = self.view.selected_ids[1:]
        if others:
            text += (f"; with object{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} (Merge selected "
                     "joins them)")
        self.selection.setText(text)

    def _fill_categories(self) -> None:
        """The categories a new object can take: every one not merged into another, discarded ones marked (a
        pick of one asks first). A chosen category discarded since, and not confirmed, gives way to the first
        exported one, said in the status line."""
        table = self.view.table
        if table is None:
            return
        chosen = self.category.currentData()
        if chosen is not None and table.resolve(chosen) is not None:
            chosen = table.resolve(chosen)  # a category merged since: the one it went into
        self.confirmed_discarded = {k for k in self.confirmed_discarded if self._is_discarded(k)}
        self.category.blockSignals(True)
        try:
            self.category.clear()
            for category in table.categories:
                if category.merged_into is None:
                    self.category.addItem(f"{category.id}: {category.name}"
                                          + (" (discarded)" if category.discarded else ""), category.id)
            if chosen is not None and self._is_discarded(chosen) and chosen not in self.confirmed_discarded:
                replacement = self._first_exported()
                if replacement is not None and chosen in table.by_id():
                    self.status.setText(f"'{table.by_id()[chosen].name}' is discarded: new objects now get "
                                        f"'{table.by_id()[replacement].name}'.")
                chosen = replacement
            if chosen is not None and self.category.findData(chosen) >= 0:
                self.category.setCurrentIndex(self.category.findData(chosen))
        finally:
            self.category.blockSignals(False)

    # -- the category of new and edited objects -------------------------------------------------
    def _is_discarded(self, category_id) -> bool:
        """The category's objects are not exported (discarded, or merged into a discarded one)."""
        table = self.view.table
        return table is not None and category_id is not None and table.resolve(int(category_id)) is None

    def _first_exported(self):
        table = self.view.table
        return next((c.id for c in table.categories if table.resolve(c.id) is not None), None) if table else None

    def _choose(self, category_id) -> None:
        index = self.category.findData(category_id)
        if index >= 0:
            self.category.setCurrentIndex(index)

    def _category_activated(self, index: int) -> None:
        """The box's slot (a slot returns nothing; chosen_category reads _category_picked's answer)."""
        self._category_picked(index)

    def _category_picked(self, index: int) -> bool:
        """The user picked a category in the box: a discarded one is kept only if the user says "Use it
        anyway", else the box goes back to the last exported choice. True when the pick stands."""
        category_id = self.category.itemData(index)
        if category_id is None:
            return False
        if self._is_discarded(category_id) and category_id not in self.confirmed_discarded:
            name = self.view.table.by_id()[category_id].name
            if not use_discarded_anyway(self, name):
                self._choose(self._visible_choice if self._visible_choice is not None else self._first_exported())
                self.status.setText(f"'{name}' is discarded; new objects keep the category shown in the box.")
                self.view.update_appearance()
                return False
            self.confirmed_discarded.add(category_id)
        if not self._is_discarded(category_id):
            self._visible_choice = category_id
        self.view.update_appearance()  # the colour of new labels follows the choice
        return True

    def chosen_category(self):
        """The box's category for an action on an object, asking first when it is discarded and not confirmed;
        None when there is none or the user chose another."""
        chosen = self.category.currentData()
        if chosen is None:
            return None
        if self._is_discarded(chosen) and chosen not in self.confirmed_discarded:
            if not self._category_picked(self.category.currentIndex()):
                return None
        return int(chosen)

    def new_object_category(self):
        """The category of a painted label: the box's when its objects are exported or the user confirmed it,
        else the first exported category (never the Categories tab's selection: painting cannot ask)."""
        chosen = self.category.currentData()
        if chosen is not None and (not self._is_discarded(chosen) or chosen in self.confirmed_discarded):
            return int(chosen)
        return self._first_exported()

    # -- object actions ----------------------------------------------------------------------
    def _failed(self, what: str):
        return lambda message: self.status.setText(f"{what} failed: {message}")

    def _reload(self, image_id: str, select: int = 0) -> None:
        self.view.forget(image_id)
        position = next((i for i, e in enumerate(self.view.entries) if e["image_id"] == image_id), None)
        if position is not None:
            self.view.show(position, select_label=select or None)

    def _object_action(self, operation, action: str, description: str, *args, after=None) -> None:
        """``operation(project, image, selected object, *args)`` (a reject, accept or category of _engine_calls):
        shown in the layer at once (its state ``after``: (category, score, reviewed), None for a reject), then
        confirmed by the engine in the task queue after pending edits are saved; on an engine error the image is
        read back. The record goes on the undo stack at once; the engine's undo record fills it in."""
        data, instance_id = self.view.current, self.view.selected
        if data is None or not instance_id:
            self.status.setText("Select an object first: click its mask or its row in the table.")
            return
        self.view.save()
        image_id = data["image_id"]
        before = (data["classes"][instance_id], data["scores"].get(instance_id, 1.0),
                  instance_id in data["reviewed_ids"])
        record = {"image_id": image_id, "instance_id": instance_id, "action": action, "pending": True,
                  "shown": {"before": before, "after": after, "source": data["source"],
                            "pixels": self.view.object_pixels(instance_id) if after is None else None}}
        self._show_action(record, undone=False)
        self.undo_stack.append(record)
        self.done.add((image_id, instance_id))
        self.status.setText(f"{description} object {instance_id}.")

        def failed(message):
            self.undo_stack = [r for r in self.undo_stack if r is not record]
            self.done.discard((image_id, instance_id))
            self.status.setText(f"{description} object {instance_id} failed: {message}. The image is shown as "
                                "saved.")
            self._reload(image_id, instance_id)
        self.tasks.submit(confirm_shown_action, record, operation, self.view.project_dir, image_id, instance_id,
                          *args, on_error=failed)

    def _show_action(self, record: dict, undone: bool) -> bool:
        """Show an action of :meth:`_object_action` (``undone``: its undo) in the layer; False when its image is
        not on screen (then it is read back when shown)."""
        shown, instance_id = record["shown"], record["instance_id"]
        state = shown["before"] if undone else shown["after"]
        relabel = None
        if shown["pixels"] is not None:
            relabel = (shown["pixels"], 0, instance_id) if undone else (shown["pixels"], instance_id, 0)
        on_screen = self.view.apply_object_change(record["image_id"], {instance_id: state}, relabel,
                                                  select=instance_id if state is not None else 0)
        if on_screen:
            self._shown(self.view.position)  # the object count and reviewed count follow
        return on_screen

    def reject_selected(self) -> None:
        self._object_action(engine_calls.reject_object, "reject", "Rejected")

    def accept_selected(self) -> None:
        data, instance_id = self.view.current, self.view.selected
        after = (data["classes"][instance_id], data["scores"].get(instance_id, 1.0), True) \
            if data is not None and instance_id else None
        self._object_action(engine_calls.accept_object, "accept", "Accepted", after=after)

    def set_category(self) -> None:
        category_id = self.chosen_category()
        data, instance_id = self.view.current, self.view.selected
        if category_id is not None:
            name = self.view.table.by_id()[category_id].name
            after = (category_id, data["scores"].get(instance_id, 1.0), True) \
                if data is not None and instance_id else None
            self._object_action(engine_calls.set_object_category, "category", f"Category '{name}' for",
                                category_id, self._is_discarded(category_id), after=after)

    # -- parts and wholes: grow, shrink, merge ----------------------------------------------------
    def grow_selected(self) -> None:
        self._edit_objects(engine_calls.grow_object, ("Grew", "Growing"), self.view.selected)

    def shrink_selected(self) -> None:
        self._edit_objects(engine_calls.shrink_object, ("Shrank", "Shrinking"), self.view.selected)

    def merge_selected(self) -> None:
        ids = self.view.selected_ids
        if len(ids) < 2:
            self.status.setText("Select the objects to merge: click one, then shift-click the others.")
            return
        self._edit_objects(engine_calls.merge_objects, ("Merged into", "Merging into"), ids)

    # -- split: along a stroke drawn on the canvas, or into the parts the features see ---------------
    def split_into_parts_selected(self) -> None:
        self._edit_objects(engine_calls.split_into_parts, ("Split", "Splitting"), self.view.selected)

    def set_split_mode(self, on: bool) -> None:
        """Lines dragged on the canvas cut objects (on), or the canvas pans and selects (off)."""
        if self.split_button.isChecked() != bool(on):
            self.split_button.setChecked(bool(on))  # toggles back into this method
            return
        if on:
            self.set_add_mode(False)  # one canvas mode at a time
            self.status.setText("Drag a line across the selected object, from outside one edge to outside the "
                                "other, to cut it there.")
        self.view.set_stroke(self.split_along if on else None)

    def split_along(self, stroke: list) -> None:
        """Cut the selected object (else the one the line crosses most) along ``stroke`` (data (row, col) points):
        shown in the layer at once (engine.api.split_along_stroke on what it shows), then confirmed by the engine
        in the task queue (engine.api.split_object, which saves it), after pending edits; undoable. A line that
        cuts nothing in two goes to the engine too, whose refusal says what to do."""
        data, layer = self.view.current, self.view.labels_layer
        if data is None or layer is None or self.view.project_dir is None:
            self.status.setText("Open or run a project first.")
            return
        self.view.save()  # the engine cuts what the layer shows: earlier strokes are written first
        from engine.api import split_along_stroke  # numpy / scipy only: a few ms on the object's box

        labels, image_id = np.asarray(layer.data), data["image_id"]
        target = self._stroke_target(labels, stroke)
        if not target:
            self.status.setText("Draw the line across an object: it crossed none.")
            return
        first_new = max(int(labels.max(initial=0)), max(data["classes"], default=0)) + 1  # as the engine numbers
        cut = split_along_stroke(labels, target, stroke, first_new)
        record = None
        if cut is not None:
            record = {"image_id": image_id, "action": "split", "pending": True, **cut, "removed": [],
                      "category": data["classes"][target],
                      "objects": {target: (data["classes"][target], data["scores"].get(target, 1.0),
                                           target in data["reviewed_ids"])}}
            shown = {key: record[key] for key in ("changed_box", "added", "after")}
            self.view.apply_object_edit(record)
            self.undo_stack.append(record)
            self.done.update((image_id, k) for k in (target, *cut["added"]))
            self.status.setText(self._edit_summary("Split", record))

        def confirmed(result):
            if record is None:  # not shown (the engine cut what the layer did not): show the engine's cut
                self.undo_stack.append(result)
                if not self.view.apply_object_edit(result):
                    self._reload(image_id, target)
                self.status.setText(self._edit_summary("Split", result))
            elif not (result["changed_box"] == shown["changed_box"] and result["added"] == shown["added"]
                      and np.array_equal(result["after"], shown["after"])):
                self._reload(image_id, target)  # the engine cut otherwise: show what it saved

        def failed(message):
            if record is not None:
                self.undo_stack = [r for r in self.undo_stack if r is not record]
                self._reload(image_id, target)
            self.status.setText(f"Split: {message}")
        self.tasks.submit(confirm_shown_action, record if record is not None else {}, engine_calls.split_object,
                          self.view.project_dir, image_id, target, [tuple(map(float, p)) for p in stroke],
                          on_done=confirmed, on_error=failed)

    def _stroke_target(self, labels: np.ndarray, stroke: list) -> int:
        """The object a line cuts: the selected one when the line crosses it, else the one it crosses most."""
        points = np.rint(np.asarray(stroke, float)).astype(int)
        inside = ((points >= 0) & (points < labels.shape)).all(axis=1)
        crossed = labels[points[inside, 0], points[inside, 1]]
        crossed = crossed[crossed > 0]
        if self.view.selected and (crossed == self.view.selected).any():
            return int(self.view.selected)
        return int(np.bincount(crossed).argmax()) if len(crossed) else 0

    def _outlined(self, label: int, category: int) -> None:
        table = self.view.table
        name = category_label(table, category) if table is not None else f"category {category}"
        self.status.setText(f"Outlined object {label} ({name}) is under the click: Take outlined object makes it "
                            "one of the image's objects.")

    def take_outlined(self) -> None:
        """The outlined object last clicked inside becomes an object of the image (engine.api.take_overlapping_object);
        the image is read again, as its outlines change."""
        data, label = self.view.current, self.view.outlined
        if data is None or not label:
            self.status.setText("Click inside an outlined object first (pan/zoom mode).")
            return
        self.view.save()
        image_id = data["image_id"]

        def done(record):
            self.undo_stack.append(record)
            self.done.update((image_id, k) for k in [record["instance_id"], *record["removed"]])
            self._reload(image_id, record["instance_id"])
            self.status.setText(self._edit_summary(f"Took outlined object {label} as", {**record, "added": []}))
        self.status.setText(f"Taking outlined object {label}...")
        self.tasks.submit(engine_calls.take_overlapping_object, self.view.project_dir, image_id, label, on_done=done,
                          on_error=self._failed(f"Taking outlined object {label}"))

    def _edit_objects(self, operation, wording: tuple, target) -> None:
        """``operation(project, image, target)`` (a grow, shrink or merge of _engine_calls) after pending edits
        are saved; the layer follows the change it returns (no reload), which goes on the undo stack."""
        data = self.view.current
        if data is None or not self.view.selected:
            self.status.setText("Select an object first: click its mask or its row in the table.")
            return
        self.view.save()
        image_id, (done_text, doing_text) = data["image_id"], wording

        def done(record):
            self.undo_stack.append(record)
            self.done.update((image_id, k) for k in [record["instance_id"], *record["removed"]])
            if not self.view.apply_object_edit(record):
                self._reload(image_id, record["instance_id"])
            self.status.setText(self._edit_summary(done_text, record))
        # a split or a grow takes a second or two off the GUI thread: say it is under way
        what = f"objects {', '.join(map(str, target))}" if isinstance(target, list) else f"object {target}"
        self.status.setText(f"{doing_text.split()[0]} {what}...")
        self.tasks.submit(operation, self.view.project_dir, image_id, target, on_done=done,
                          on_error=self._failed(f"{doing_text} object {self.view.selected}"))

    def _edit_summary(self, description: str, record: dict) -> str:
        table = self.view.table  # the name the object shows: its category's after merges
        name = category_label(table, record["category"]) if table is not None else f"category {record['category']}"
        took, made = record["removed"], record.get("added", [])
        taken = f"; took in object{'s' if len(took) > 1 else ''} {', '.join(map(str, took))}" if took else ""
        taken += f"; new object{'s' if len(made) > 1 else ''} {', '.join(map(str, made))}" if made else ""
        shrunk = record.get("shrunk", [])
        taken += f"; took pixels of object{'s' if len(shrunk) > 1 else ''} {', '.join(map(str, shrunk))}" \
            if shrunk else ""
        return f"{description} object {record['instance_id']}: {record['area']} pixels, {name}{taken}. Undo goes back."

    def undo(self) -> None:
        if not self.undo_stack or self.view.project_dir is None:
            self.status.setText("Nothing to undo.")
            return
        self.view.save()
        record = self.undo_stack.pop()
        if "shown" in record:
            self._undo_shown(record)
            return
        added = record["action"] == "add"  # an added object is removed (nothing to select after the undo)

        def done(_):
            self.done.discard((record["image_id"], record["instance_id"]))
            self.status.setText(_undone(record))
            if record["action"] == "refine" and self.making is not None and record.get("points"):
                self.making.update(record["points"])
            if not (record["action"] in ("grow", "shrink", "merge", "refine", "split")
                    and self.view.apply_object_edit(record, True)):
                self._reload(record["image_id"], 0 if added else record["instance_id"] or 0)

        def failed(message):
            self.undo_stack.append(record)
            self.status.setText(f"Undo failed: {message}")
        # a split is shown before the engine confirms it: its undo must not run if that failed
        restore = undo_shown_action if record["action"] == "split" else engine_calls.restore_object
        self.tasks.submit(restore, self.view.project_dir, record,
                          on_done=done, on_error=failed)

    def _undo_shown(self, record: dict) -> None:
        """Undo a reject, accept or category: shown in the layer at once, then done by the engine in the task
        queue (after the action itself, which it waits for there); on an engine error the image is read back."""
        image_id, instance_id = record["image_id"], record["instance_id"]
        on_screen = self._show_action(record, undone=True)
        self.done.discard((image_id, instance_id))
        self.status.setText(f"Undid {record['action']} of object {instance_id}.")

        def done(_):
            data = self.view.current
            if record.get("created") and data is not None and data["image_id"] == image_id:
                data["source"] = record["shown"]["source"]  # the engine removed the correction the action made
                self._shown(self.view.position)
            if not on_screen:
                self._reload(image_id, instance_id)

        def failed(message):
            if not record.get("pending"):  # else the action itself failed: nothing to undo
                self.undo_stack.append(record)
            self.status.setText(f"Undo failed: {message}. The image is shown as saved.")
            self._reload(image_id, instance_id)
        self.tasks.submit(undo_shown_action, self.view.project_dir, record, on_done=done, on_error=failed)

    # -- one-click objects -------------------------------------------------------------------
    def set_add_mode(self, on: bool) -> None:
        """Canvas clicks add objects (on) or select them (off)."""
        if self.add_object_button.isChecked() != bool(on):
            self.add_object_button.setChecked(bool(on))  # toggles back into this method
            return
        if on:
            self.set_split_mode(False)  # one canvas mode at a time
        self.view.set_prompt(self.add_object_at if on else None)
        self.making = None  # the object clicks refine: the last one added while this mode is on
        if on:
            self.status.setText("Click an object on the image, or drag a box around it, to add it.")

    def add_object_at(self, start, end=None, refine: str | None = None) -> None:
        """Add the object at data position ``start`` (row, col), or in the box from ``start`` to ``end``, in a
        worker; the image is reloaded with the new object selected. ``refine`` "add" (a ctrl click) or "remove"
        (a right or shift click) instead changes the object just added by the region under the click
        (:meth:`refine_made_object`)."""
        data = self.view.current
        if data is None or self.view.project_dir is None:
            self.status.setText("Open or run a project first.")
            return
        making = self.making
        if refine is not None:
            if end is None and making is not None and making["image_id"] == data["image_id"] \
                    and making["instance_id"] in data["classes"]:
                self.refine_made_object(making, (float(start[1]), float(start[0])), refine == "remove")
            else:
                self.status.setText("A ctrl click adds a region to the object just added, a right or shift click "
                                    "removes one: add an object with a plain click first.")
            return
        category = self.chosen_category()
        if category is None:
            self.status.setText("Choose the new object's category in the box above first.")
            return
        if end is None:
            prompt: dict[str, tuple] = {"point": (float(start[1]), float(start[0]))}  # engine: (x, y)
        else:
            (r0, c0), (r1, c1) = start, end
            prompt = {"box": (min(c0, c1), min(r0, r1), max(c0, c1), max(r0, r1))}
        self.view.save()  # the new object must not land under an edit still waiting to be written
        image_id, clicked = data["image_id"], time.perf_counter()

        def done(undo):
            self.undo_stack.append(undo)
            self.making = {"image_id": image_id, "instance_id": undo["instance_id"], "box": prompt.get("box"),
                           "positive": [prompt["point"]] if "point" in prompt else [], "negative": []}
            self.last_add_seconds = time.perf_counter() - clicked
            category = self.view.table.by_id().get(undo["category"]) if self.view.table else None
            took = undo.get("removed") or []
            taken = f", taking in object{'s' if len(took) > 1 else ''} {', '.join(map(str, took))}" if took else ""
            self.status.setText(f"Added object {undo['instance_id']} ({undo['area']} pixels, "
                                f"{category.name if category else 'category ' + str(undo['category'])}{taken}) in "
                                f"{self.last_add_seconds * 1000:.0f} ms; Undo removes it.")
            self._reload(image_id, undo["instance_id"])
        self.tasks.submit(engine_calls.add_object, self.view.project_dir, image_id, category=category,
                          allow_discarded=self._is_discarded(category), on_done=done,
                          on_error=self._failed("Adding an object"), **prompt)

    def refine_made_object(self, making: dict, point: tuple, negative: bool) -> None:
        """Remake the object just added (``making``: its image, id, box and clicks) from all its clicks plus
        ``point`` (x, y): positive adds the region under it, negative removes it; undoable, the layer follows the
        returned change."""
        side = "negative" if negative else "positive"
        before = {"positive": list(making["positive"]), "negative": list(making["negative"])}
        making[side].append(point)
        self.view.save()

        def done(record):
            self.undo_stack.append({**record, "points": before})  # an undo takes the click back too
            if not self.view.apply_object_edit(record):
                self._reload(record["image_id"], record["instance_id"])
            self.status.setText(f"{'Removed a region from' if negative else 'Added a region to'} object "
                                f"{record['instance_id']}. Undo goes back.")

        def failed(message):
            making[side].pop()
            self.status.setText(f"Refining the object: {message}")
        self.tasks.submit(engine_calls.refine_object, self.view.project_dir, making["image_id"],
                          making["instance_id"], positive=list(making["positive"]),
                          negative=list(making["negative"]), box=making["box"], newest=side, on_done=done,
                          on_error=failed)

    def accept_image(self) -> None:
        if self.view.current is None:
            return
        self.view.save()
        image_id, name = self.view.current["image_id"], self.view.current["name"]

        def done(undo):
            self.undo_stack.append(undo)
            self.done.update((image_id, k) for k in self.view.current["classes"])
            self.status.setText(f"Accepted {name}.")
            self._reload(image_id)
        self.tasks.submit(engine_calls.accept_image, self.view.project_dir, image_id, on_done=done,
                          on_error=self._failed("Accepting the image"))

    # -- the low-confidence queue ------------------------------------------------------------
    def next_low_confidence(self) -> None:
        self._step(+1)

    def previous_low_confidence(self) -> None:
        self._step(-1)

    def reset_queue(self) -> None:
        """Forget the queue (a retrain or a new project): the next step reads it again."""
        self.queue, self.queue_cursor, self.done = None, -1, set()

    def _step(self, direction: int) -> None:
        if self.view.project_dir is None:
            return
        self.view.save()
        if self.queue is None:
            self.tasks.submit(engine_calls.low_confidence_objects, self.view.project_dir,
                              on_done=lambda found: self._got_queue(found, direction),
                              on_error=self._failed("Finding low-confidence masks"))
            return
        cursor = self.queue_cursor + direction
        while 0 <= cursor < len(self.queue) and self.queue[cursor][:2] in self.done:
            cursor += direction  # reviewed or rejected since the queue was read
        if not 0 <= cursor < len(self.queue):
            self.status.setText("No unreviewed masks left." if direction > 0 else "At the start of the queue.")
            return
        self.queue_cursor = cursor
        image_id, instance_id, score = self.queue[cursor]
        position = next(i for i, e in enumerate(self.view.entries) if e["image_id"] == image_id)
        self._status_for = image_id  # this message is about the image shown next: it stays
        self.status.setText(f"Low confidence {cursor + 1}/{len(self.queue)}: object {instance_id} of "
                            f"{self.view.entries[position]['relative_path']} (image {position + 1}, score "
                            f"{score:.2f}).")
        if position == self.view.position and self.view.current is not None:
            self.view.select_object(instance_id, zoom=self.zoom.isChecked())
        else:
            self.view.show(position, select_label=instance_id)

    def _got_queue(self, found: list, direction: int) -> None:
        self.queue, self.queue_cursor = [tuple(item) for item in found], -1
        if not found:
            self.status.setText("No unreviewed masks left.")
            return
        self._step(max(direction, 1))


def _undone(record: dict) -> str:
    """What an undo of an engine edit gave back, in the words of the action undone."""
    instance_id = record["instance_id"]
    if record.get("outlined"):
        return f"Undid taking outlined object {record['outlined']}: object {instance_id} is gone, its outline is back."
    if record["action"] == "add":
        return f"Undid adding object {instance_id}."
    return f"Undid {record['action']} of object {instance_id or 'all'}."
