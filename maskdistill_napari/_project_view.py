"""The images of one project in the viewer, one at a time: an Image layer and a Labels layer of its current
masks. The user's edits to the Labels layer are saved to the project as corrections (debounced), so they
survive closing napari. Only the current image is in the viewer; a few recently shown ones are cached.

An edit is pending until the engine's write returns: a failed write is shown and retried (after a delay, a
bounded number of times, and again on the next edit); switching image queues the current edit; ``flush``
writes every pending edit at once on the calling thread (napari is closing).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, QTimer, Signal

from . import _engine_calls as engine_calls
from ._layers import category_colour, category_table, features_table, label_colormap, load_image_data, with_colour_table
from ._tasks import error_message

IMAGE_LAYER, LABELS_LAYER, STROKE_LAYER, BOX_LAYER = "image", "masks", "stroke", "box"
OVERLAPPING_LAYER = "overlapping objects"  # the views' (second scale, mirrored): outlines, not edited
CACHE_SIZE = 4
SAVE_DELAY_MS = 500
RETRY_DELAYS_MS = (1_000, 5_000, 20_000)  # after the 1st, 2nd, 3rd failure in a row; later: on the next edit


@dataclass(eq=False)
class Edit:
    """One image's corrected label map, waiting to be written."""

    project_dir: Path
    image_id: str
    labels: np.ndarray
    classes: dict
    reviewed: bool | set | list = True  # True, or the ids of the objects the user reviewed (changed or accepted)
    scores: dict | None = None  # confidence kept for each object (new ones: 1.0)
    allow_discarded: bool = False  # new labels go to a discarded category the user confirmed in the Review tab
    failures: int = 0
    queued: bool = False  # a write of this edit is in the task queue


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def read_project_state(project_dir) -> tuple:
    """(config, entries, clusters, category table) of a project (in a worker: reading is disk work)."""
    from engine.api import open_project

    _, config, entries, clusters = open_project(project_dir)
    return config, entries, clusters, category_table(project_dir, clusters)


def load_for_display(project_dir, images, entry: dict, make_layers: bool) -> dict:
    """``load_image_data`` in a worker; with ``make_layers`` (none on screen yet) also the Image and Labels
    layers themselves: building a napari layer costs a few hundred ms, which the GUI thread then does not pay
    (adding it to the viewer still does: its controls and its canvas visual)."""
    data = load_image_data(project_dir, images, entry)
    if make_layers:
        from napari.layers import Image, Labels

        data["new_layers"] = (Image(data["image"], name=IMAGE_LAYER, rgb=data["image"].ndim == 3),
                              Labels(data["labels"].copy(), name=LABELS_LAYER, opacity=0.55))
    return data


def draws_the_same(current, new, new_label_colour: bool = True) -> bool:
    """Every colour of the colormap ``new`` is already that of ``current`` (a Labels layer's): setting it would
    change no pixel on screen (an entry ``current`` has beyond ``new``, an object removed, draws nothing), only
    make napari rebuild its colour table, 60 ms on the GUI thread for uint16 label maps. So a reject, accept or
    undo that changes no colour leaves the colormap as it is. ``new_label_colour`` False: the colour of labels
    not saved yet (key None) is left out."""
    old = getattr(current, "color_dict", None)  # napari's default colormap (cyclic) has none
    keys = [key for key in new.color_dict if new_label_colour or key is not None]
    if old is None or any(key not in old for key in keys):
        return False
    return bool(np.allclose([old[key] for key in keys], [new.color_dict[key] for key in keys]))


def write_edit(edit: Edit, lock: threading.Lock) -> None:
    """The engine call behind an autosave (a worker, or the GUI thread in ``flush``); ``lock`` keeps a write
    that is still running in a worker from landing after a newer one written by ``flush``."""
    with lock:
        engine_calls.set_image_labels(edit.project_dir, edit.image_id, edit.labels, edit.classes, edit.reviewed,
                                      edit.scores, edit.allow_discarded)


class ProjectView(QObject):
    """Browse a project's images and keep the user's corrections on disk."""

    image_shown = Signal(int)  # position in the project's image list
    object_selected = Signal(int)  # instance id of the selected object on the current image (0: none)
    outlined_clicked = Signal(int, int)  # an overlapping object was clicked inside: its label and its category
    objects_changed = Signal()  # the current image's objects changed (an edit, a recolour)
    project_read = Signal(dict, dict)  # project.json and clusters.json of the project just opened
    saved = Signal(str)  # image id, once its edit is on disk
    failed = Signal(str)  # a readable message: loading or saving went wrong

    def __init__(self, viewer, tasks, new_label_category=lambda: None, parent=None):
        super().__init__(parent)
        self.viewer, self.tasks = viewer, tasks
        # category id for label ids the user paints: the Review tab's choice, which is exported or confirmed
        self.new_label_category = new_label_category
        self.project_dir = None
        self.entries, self.clusters, self.table, self.images = [], {}, None, None
        self.position = -1
        self.current = None  # dict from load_image_data of the image on screen
        self._cache: OrderedDict = OrderedDict()
        self._snapshot = None  # the label map of the current image as last taken into an Edit (or loaded)
        self.pending: dict = {}  # image id -> Edit not yet on disk
        self._write_lock = threading.Lock()
        self._loading = False
        self.selected = 0  # instance id of the object the Review panel acts on (clicked, or from the queue)
        self.outlined = 0  # the overlapping object under the last click on the image (0: none)
        self.also_selected: set = set()  # further objects shift-clicked with it (what Merge joins)
        self.by_object = False  # colour each object apart instead of by category
        self.highlight = True  # show only the selected object's mask while one is selected
        self.prompt = None  # set_prompt: where canvas clicks go instead of selecting ("Add object" mode)
        self.stroke = None  # set_stroke: where a line dragged on the canvas goes ("Split by stroke" mode)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self.save)
        self._retry_timer = QTimer(self)
        self._retry_timer.setSingleShot(True)
        self._retry_timer.timeout.connect(self._retry)
        viewer.layers.events.removing.connect(self._layer_removing)

    # -- project -----------------------------------------------------------------------------
    def open(self, project_dir, position: int = 0) -> None:
        """Read the project (in a worker), then show image ``position``."""
        self.save()
        self.tasks.submit(read_project_state, project_dir,
                          on_done=lambda result: self._opened(project_dir, result, position),
                          on_error=lambda message: self.failed.emit(f"Opening {project_dir} failed: {message}"))

    def _opened(self, project_dir, result, position) -> None:
        config, self.entries, self.clusters, self.table = result
        from engine.api import ImageSource

        self.project_dir, self.images = Path(project_dir).resolve(), ImageSource.of_project(config)
        self._cache.clear()
        self.current = None
        self.project_read.emit(config, self.clusters)
        self.show(min(position, len(self.entries) - 1))

    def reload(self) -> None:
        """Re-read everything (after a retrain): the cached masks are stale."""
        if self.project_dir is not None:
            self.open(self.project_dir, max(self.position, 0))

    def set_category_table(self, table) -> None:
        """Recolour and relabel the current image with ``table`` (read in a worker after a category change)."""
        self.table = table
        self.update_appearance()

    def update_appearance(self) -> None:
        """Colours and names of the current labels from the table in hand (a selection changed)."""
        self._update_labels_appearance()

    # -- browsing ----------------------------------------------------------------------------
    def show(self, position: int, select_label: int | None = None) -> None:
        if not self.entries or not 0 <= position < len(self.entries):
            return
        self.save()
        entry = self.entries[position]
        cached = self._cache.get(entry["image_id"])
        if cached is not None:
            self._display(position, cached, select_label)
        else:
            make_layers = IMAGE_LAYER not in self.viewer.layers or LABELS_LAYER not in self.viewer.layers
            self.tasks.submit(load_for_display, self.project_dir, self.images, entry, make_layers,
                              on_done=lambda data: self._display(position, data, select_label),
                              on_error=lambda message: self.failed.emit(
                                  f"Loading {entry['relative_path']} failed: {message}"))

    def forget(self, image_id: str) -> None:
        """Drop an image from the cache (the engine changed its masks)."""
        self._cache.pop(image_id, None)

    def apply_object_edit(self, record: dict, undone: bool = False) -> bool:
        """Show an engine edit of the image on screen (a grow, shrink or merge; ``undone``: its undo) from the
        changed window its record holds, without reading the image back; the edited object is selected. False
        when it cannot be done so (another image, strokes not saved yet, an undo that removed the correction):
        the caller reloads the image instead."""
        data, layer = self.current, self.labels_layer
        if (data is None or layer is None or data["image_id"] != record["image_id"] or self.dirty
                or (undone and record.get("created"))):
            self.forget(record["image_id"])
            return False
        top, left, bottom, right = record["changed_box"]
        new, old = (record["before"], record["after"]) if undone else (record["after"], record["before"])
        labels = np.asarray(layer.data)
        window = labels[top:bottom, left:right]
        as_engine_left = window == old  # the engine changed exactly these pixels, as this layer shows them
        window[as_engine_left] = new[as_engine_left]
        self._loading = True
        try:
            layer.refresh()
        finally:
            self._loading = False
        self._snapshot = labels.copy()
        data.update(labels=self._snapshot, original=self._snapshot, source="correction")
        self._note_objects(data, record, undone)
        self._update_labels_appearance(new_label_colour=False)
        self.select_object(int(record["instance_id"]))
        return True

    def object_pixels(self, instance_id: int) -> np.ndarray:
        """Flat indices of the pixels the Labels layer shows for ``instance_id``."""
        layer = self.labels_layer
        return np.flatnonzero(np.asarray(layer.data) == int(instance_id)) if layer is not None else np.zeros(0, int)

    def apply_object_change(self, image_id: str, objects: dict, relabel=None, select: int = 0) -> bool:
        """Show an object action (a reject, accept or category, or its undo) on the image on screen at once, before
        the engine confirms it: ``objects`` {id: (category, score, reviewed), or None for an object removed};
        ``relabel`` (flat pixel indices, old id, new id): those of the pixels that show ``old`` show ``new``.
        False when the image is not on screen or holds strokes not taken for saving (it is dropped from the
        cache: the caller reloads it once the engine is done)."""
        data, layer = self.current, self.labels_layer
        if data is None or layer is None or data["image_id"] != image_id or self.dirty:
            self.forget(image_id)
            return False
        if relabel is not None:
            self._relabel(data, layer, *relabel)
        for key, state in objects.items():
            if state is None:
                data["classes"].pop(key, None)
                data["scores"].pop(key, None)
                data["reviewed_ids"].discard(key)
            else:
                data["classes"][key], data["scores"][key] = state[0], state[1]
                (data["reviewed_ids"].add if state[2] else data["reviewed_ids"].discard)(key)
        data["source"] = "correction"
        data["original_reviewed"] = set(data["reviewed_ids"])  # what the engine writes
        data["reviewed"] = bool(data["classes"]) and data["reviewed_ids"] >= set(data["classes"])
        self._update_labels_appearance(new_label_colour=False)
        self.select_object(int(select))
        return True

    def _relabel(self, data: dict, layer, pixels, old: int, new: int) -> None:
        labels = np.asarray(layer.data)
        where = np.unravel_index(np.asarray(pixels, np.int64), labels.shape)
        showing_old = labels[where] == old  # an undone reject gives back only pixels nothing took since
        labels[tuple(axis[showing_old] for axis in where)] = new
        self._loading = True  # not a user's stroke: nothing to save
        try:
            layer.refresh()
        finally:
            self._loading = False
        self._snapshot = labels.copy()
        data.update(labels=self._snapshot, original=self._snapshot)
        moved = int(showing_old.sum())
        areas = data["areas"]
        for key, change in ((old, -moved), (new, moved)):
            if key:
                areas[key] = areas.get(key, 0) + change
        data["areas"] = {k: v for k, v in areas.items() if v > 0}

    @staticmethod
    def _note_objects(data: dict, record: dict, undone: bool) -> None:
        """The shown image's object table after an edit's record (or its undo), its label map already updated:
        categories, scores, reviewed flags and areas of the objects that have pixels (as engine.api.image_objects
        lists them)."""
        if undone:
            for key, (category, score, reviewed) in record["objects"].items():
                data["classes"][key], data["scores"][key] = category, score
                if reviewed:
                    data["reviewed_ids"].add(key)
                else:
                    data["reviewed_ids"].discard(key)
        else:
            for key in record.get("added", ()):  # a split's new parts: the object's category, score and flag
                data["classes"][key] = record["category"]
                data["scores"][key] = data["scores"].get(record["instance_id"], 1.0)
                data["reviewed_ids"].add(key)
            for key in record["removed"]:
                for table in ("classes", "scores"):
                    data[table].pop(key, None)
                data["reviewed_ids"].discard(key)
            data["classes"][record["instance_id"]] = record["category"]
            data["reviewed_ids"].add(record["instance_id"])
        areas = np.bincount(np.asarray(data["labels"]).ravel())
        present = {k for k in data["classes"] if k < len(areas) and areas[k]}
        for table in ("classes", "scores"):
            data[table] = {k: v for k, v in data[table].items() if k in present}
        data["reviewed_ids"] &= present
        data["areas"] = {k: int(areas[k]) for k in present}
        data["original_reviewed"] = set(data["reviewed_ids"])
        data["reviewed"] = bool(data["classes"]) and data["reviewed_ids"] >= set(data["classes"])

    def _display(self, position: int, data: dict, select_label=None) -> None:
        new_layers = data.pop("new_layers", None)  # built in the worker; the cache keeps only the data
        self._cache[data["image_id"]] = data
        self._cache.move_to_end(data["image_id"])
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        self.position, self.current = position, data
        self._snapshot = data["labels"]
        self._loading = True
        try:
            self._put_layers(data, new_layers)
        finally:
            self._loading = False
        self.selected = 0
        self.image_shown.emit(position)
        self.select_object(int(select_label or 0), zoom=bool(select_label) and self.zoom_on_select)

    def _put_layers(self, data: dict, new_layers=None) -> None:
        """Show ``data`` in the Image and Labels layers: new data in the layers on screen, else the layers built
        in the worker (``new_layers``), else new ones."""
        layers = self.viewer.layers
        rgb = data["image"].ndim == 3
        made_image, made_labels = new_layers or (None, None)
        if IMAGE_LAYER in layers and layers[IMAGE_LAYER].rgb == rgb:
            layers[IMAGE_LAYER].data = data["image"]
        else:
            if IMAGE_LAYER in layers:
                layers.remove(IMAGE_LAYER)
            image = made_image if made_image is not None else Image(data["image"], name=IMAGE_LAYER, rgb=rgb)
            # just under the masks, above any layer the user had open (a sample, another image): in view
            layers.insert(layers.index(LABELS_LAYER) if LABELS_LAYER in layers else len(layers), image)
        if LABELS_LAYER in layers:
            labels = layers[LABELS_LAYER]
            labels.data = data["labels"].copy()  # painting changes the layer's array, not the cached one
            mode = labels.mode  # napari clears the undo history when a layer stops being editable: undo must
            labels.editable = False  # not replay strokes of the previous image
            labels.editable = True
            labels.mode = mode
        else:
            labels = made_labels if made_labels is not None else Labels(data["labels"].copy(), name=LABELS_LAYER,
                                                                        opacity=0.55)
            layers.append(labels)
            labels.events.paint.connect(self._changed)
            labels.events.data.connect(self._changed)
            labels.events.set_data.connect(self._changed)  # undo and redo only refresh the layer
            labels.mouse_drag_callbacks.append(self._on_click)
            layers.move(layers.index(labels), len(layers) - 1)
        layers[IMAGE_LAYER].metadata["image_id"] = labels.metadata["image_id"] = data["image_id"]
        layers[IMAGE_LAYER].metadata["name"] = data["name"]
        self._put_overlapping(data)
        self._update_labels_appearance()
        self.viewer.reset_view()

    def _put_overlapping(self, data: dict) -> None:
        """The image's overlapping objects as outlines above its masks (gone for an image without any); the masks
        layer stays the active one, so clicks and painting still reach it."""
        layers, overlapping = self.viewer.layers, data.get("overlapping")
        self.outlined = 0
        if overlapping is None:
            if OVERLAPPING_LAYER in layers:
                layers.remove(OVERLAPPING_LAYER)
            return
        if OVERLAPPING_LAYER in layers:
            layers[OVERLAPPING_LAYER].data = overlapping
        else:
            layer = Labels(overlapping, name=OVERLAPPING_LAYER, opacity=0.9)
            layer.contour = 2
            layers.append(layer)
            layers.selection.active = layers[LABELS_LAYER]
        layers[OVERLAPPING_LAYER].editable = False  # napari makes a layer editable again when its data is set
        layers[OVERLAPPING_LAYER].metadata["image_id"] = data["image_id"]

    zoom_on_select = False  # the queue zooms to the object it shows (set by the Review panel's checkbox)

    # -- selecting one object ----------------------------------------------------------------
    def select_object(self, instance_id: int, zoom: bool = False) -> None:
        """Make ``instance_id`` the selected object (0: none): highlighted (napari's ``show_selected_label``)
        and napari's brush label, so painting extends it; ``zoom`` centres and zooms the canvas on it."""
        layer = self.labels_layer
        self.selected = int(instance_id) if self.current and int(instance_id) in self.current["classes"] else 0
        self.also_selected = set()
        if layer is not None:
            if self.selected:
                layer.selected_label = self.selected
            self._sync_highlight(layer)
            if zoom and self.selected:
                self.zoom_to(self.selected)
        self.object_selected.emit(self.selected)

    def zoom_to(self, instance_id: int) -> None:
        layer = self.labels_layer
        ys, xs = np.nonzero(np.asarray(layer.data) == int(instance_id))
        if not len(ys):
            return
        self.viewer.reset_view()
        height, width = np.asarray(layer.data).shape[:2]
        box_h, box_w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        camera = camera_of(self.viewer)
        camera.center = ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2)
        camera.zoom = camera.zoom * max(1.0, 0.5 * min(height / box_h, width / box_w))

    def _on_click(self, layer, event):
        """In pan/zoom mode: a click (press and release without a drag) on a mask selects that object; while
        ``prompt`` is set (the Review panel's "Add object" mode), a click or a dragged box goes to it instead;
        while ``stroke`` is set ("Split by stroke"), a dragged line goes to it."""
        if layer.mode != "pan_zoom":
            return
        if self.stroke is not None:
            yield from self._draw_stroke(layer, event)
            return
        start = tuple(event.position)
        corner = tuple(layer.world_to_data(start)[-2:])
        yield
        moved = False
        while event.type == "mouse_move":
            moved = moved or np.hypot(*np.subtract(event.position[-2:], start[-2:])) > 2
            if moved and self.prompt is not None:  # the box is drawn while it is dragged
                self._show_drawn(BOX_LAYER, [corner, tuple(layer.world_to_data(tuple(event.position))[-2:])])
            yield
        self._show_drawn(BOX_LAYER, [])
        if self.prompt is not None:
            # the Review panel's refine of the object being made: a right or shift click removes a region from
            # it, a ctrl (cmd) click adds one; a plain click makes a new object
            modifiers = getattr(event, "modifiers", ())
            refine = ("remove" if "Shift" in modifiers or getattr(event, "button", 1) == 2
                      else "add" if "Control" in modifiers or "Meta" in modifiers else None)
            self.prompt(corner, tuple(layer.world_to_data(tuple(event.position))[-2:]) if moved else None, refine)
        elif not moved:
            value = int(layer.get_value(start, world=True) or 0)
            outlines = self.viewer.layers[OVERLAPPING_LAYER] if OVERLAPPING_LAYER in self.viewer.layers else None
            self.outlined = int(outlines.get_value(start, world=True) or 0) if outlines is not None else 0
            if "Shift" in getattr(event, "modifiers", ()) and self.selected:
                self.toggle_selected(value)  # shift-click: several objects (to merge them)
            else:
                self.select_object(value)
            if self.outlined and self.current is not None:  # after the selection's words: these say more
                self.outlined_clicked.emit(self.outlined, self.current["overlapping_classes"].get(self.outlined, 0))

    @property
    def selected_ids(self) -> list:
        """The selected object first, then those shift-clicked with it."""
        return [self.selected, *sorted(self.also_selected)] if self.selected else []

    def toggle_selected(self, instance_id: int) -> None:
        """Add an object to the selection, or take it out (the first selected one stays)."""
        if not self.current or int(instance_id) not in self.current["classes"] or int(instance_id) == self.selected:
            return
        self.also_selected ^= {int(instance_id)}
        if self.labels_layer is not None:
            self._sync_highlight(self.labels_layer)
        self.object_selected.emit(self.selected)

    def _showing_one(self) -> bool:
        """Only the selected object's mask is shown: one object is selected and the highlight is on."""
        return bool(self.selected) and self.highlight and not self.also_selected

    def _sync_highlight(self, layer) -> None:
        """napari's ``show_selected_label`` as :meth:`_showing_one` says, set only when it changes: every set
        refreshes the layer and its colours, which the window waits for on each object action."""
        if layer.show_selected_label != self._showing_one():
            layer.show_selected_label = self._showing_one()

    def _draw_stroke(self, layer, event):
        """Follow a drag on the canvas as a line (shown in the stroke layer while drawn) and hand its points, data
        (row, col), to ``stroke``; a click without a drag draws nothing."""
        points = [tuple(layer.world_to_data(tuple(event.position))[-2:])]
        yield
        while event.type == "mouse_move":
            points.append(tuple(layer.world_to_data(tuple(event.position))[-2:]))
            self._show_drawn(STROKE_LAYER, points)
            yield
        self._show_drawn(STROKE_LAYER, [])
        if self.stroke is not None and len(points) > 1 and np.hypot(*np.subtract(points[-1], points[0])) > 2:
            self.stroke(points)

    def _show_drawn(self, name: str, points: list) -> None:
        """Draw what is being dragged in its shapes layer: the stroke layer's line along ``points`` (as wide as
        the engine cuts), the box layer's rectangle with ``points`` as corners; no points: nothing."""
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is None or (not len(layer.data) and len(points) < 2):
            return
        layer.data = []
        if len(points) > 1 and name == STROKE_LAYER:
            from engine.api import STROKE_WIDTH_PIXELS

            layer.add_paths([np.asarray(points, float)], edge_width=STROKE_WIDTH_PIXELS, edge_color="yellow")
        elif len(points) > 1:
            layer.add_rectangles([np.asarray([points[0], points[-1]], float)], edge_width=2, edge_color="yellow",
                                 face_color="transparent")

    def _drawing_layer(self, name: str, shown: bool) -> None:
        """Add or remove the shapes layer a drag is drawn in; the canvas's clicks still go to the labels layer,
        where _on_click is."""
        layers, labels = self.viewer.layers, self.labels_layer
        if not shown and name in layers:
            layers.remove(name)
        if shown and name not in layers:
            self.viewer.add_shapes([], shape_type="path" if name == STROKE_LAYER else "rectangle", name=name)
        if shown and labels is not None:
            labels.mode = "pan_zoom"
            layers.selection.active = labels
        # last: napari sets the camera's panning when the active layer or its mode changes
        camera_of(self.viewer).mouse_pan = self.stroke is None and self.prompt is None

    def set_stroke(self, stroke) -> None:
        """Send lines dragged on the canvas to ``stroke(points)`` (data (row, col)) instead of panning, drawn in a
        stroke layer while they are drawn; None ends that (and removes the layer)."""
        self.stroke = stroke
        self._drawing_layer(STROKE_LAYER, stroke is not None)

    def set_prompt(self, prompt) -> None:
        """Send canvas clicks and dragged boxes to ``prompt(start, end, refine)`` (data (row, col); ``end`` None for a
        click) instead of selecting objects; None ends that. While set, a drag draws a box (in a box layer)
        instead of panning."""
        self.prompt = prompt
        self._drawing_layer(BOX_LAYER, prompt is not None)

    def image_name(self, image_id: str) -> str:
        """The image's file name (relative to the image folder) for messages; its id only if it is unknown."""
        return next((e["relative_path"] for e in self.entries if e["image_id"] == image_id), f"image {image_id}")

    @property
    def labels_layer(self):
        return self.viewer.layers[LABELS_LAYER] if LABELS_LAYER in self.viewer.layers else None

    def _update_labels_appearance(self, new_label_colour: bool = True) -> None:
        """Colours, highlight and features table of the Labels layer from the objects and categories in hand.
        ``new_label_colour`` False (an object action): the colour of labels painted and not saved yet is not a
        reason to rebuild napari's colour table; it follows at the next change of colours."""
        layer, data, table = self.labels_layer, self.current, self.table
        if layer is None or data is None or table is None:
            return
        new = table.by_id().get(self.new_label_category() or -1)
        rgb = category_colour(new) if new is not None else (255, 255, 255)
        self._loading = True
        try:
            colormap = label_colormap(data["classes"], table, rgb, self.by_object)
            if not draws_the_same(layer.colormap, colormap, new_label_colour):
                # napari does not carry the highlight over to a new colormap; only a set of the flag did
                colormap.use_selection, colormap.selection = layer.show_selected_label, layer.selected_label
                layer.colormap = with_colour_table(colormap, np.asarray(layer.data).dtype)
            self._sync_highlight(layer)
            layer.features = features_table(data["classes"], data["scores"], data["source"], data["reviewed_ids"],
                                            table)
        finally:
            self._loading = False
        self.objects_changed.emit()

    # -- corrections -------------------------------------------------------------------------
    def _layer_removing(self, event) -> None:
        """The Labels layer is about to go (the user deleted it, or napari is closing): keep its edit."""
        if self.viewer.layers[event.index] is self.labels_layer:
            self.save()

    def _changed(self, event=None) -> None:
        if not self._loading and self.current is not None:
            self._timer.start()

    @property
    def dirty(self) -> bool:
        """The Labels layer differs from the last label map taken for saving (or loaded)."""
        layer = self.labels_layer
        return (self.current is not None and layer is not None and self._snapshot is not None
                and not np.array_equal(np.asarray(layer.data), self._snapshot))

    @property
    def unsaved(self) -> bool:
        """Some edit is not on disk yet (changed, queued, being written, or failed and waiting for a retry)."""
        return self.dirty or bool(self.pending)

    def save(self) -> None:
        """Queue the current Labels layer as the image's correction if it changed. Edits of earlier writes that
        failed are queued again too."""
        self._timer.stop()
        self._take_edit()
        self._retry()

    def _take_edit(self) -> bool:
        data, table, project_dir = self.current, self.table, self.project_dir
        if not self.dirty or data is None or table is None or project_dir is None:
            return False
        labels = np.asarray(self.labels_layer.data).copy()
        present = [int(k) for k in np.unique(labels) if k != 0]
        fallback = self.new_label_category() or next((c.id for c in table.categories if not c.discarded
                                                      and c.merged_into is None), 1)
        classes = {k: data["classes"].get(k, fallback) for k in present}
        # reviewed: what was reviewed on disk plus the objects that now differ from it (a stroke undone is no
        # change, so undo also takes the flag back)
        original = data["original"]
        diff = labels != original if original.shape == labels.shape else np.ones(labels.shape, bool)
        # the objects strokes were made with: painted (gained pixels) or erased (pixels set to 0); an object
        # another one was painted over is not counted as reviewed
        changed = (set(np.unique(labels[diff]).tolist()) | set(np.unique(original[diff & (labels == 0)]).tolist())
                   ) - {0}
        reviewed = {k for k in present if k in data["original_reviewed"] or k in changed}
        scores = {k: data["scores"].get(k, 1.0) for k in present}
        areas = np.bincount(labels.ravel(), minlength=max(present, default=0) + 1)
        data.update(labels=labels, classes=classes, source="correction", reviewed_ids=reviewed, scores=scores,
                    reviewed=bool(present) and len(reviewed) == len(present),
                    areas={k: int(areas[k]) for k in present})
        self._snapshot = labels
        self._update_labels_appearance()
        # new labels take ``fallback``: a discarded one only when the user confirmed it in the Review tab
        allow_discarded = table.resolve(fallback) is None
        self.pending[data["image_id"]] = Edit(project_dir, data["image_id"], labels, classes, reviewed, scores,
                                              allow_discarded)
        return True

    def set_colour_by_object(self, by_object: bool) -> None:
        self.by_object = bool(by_object)
        self._update_labels_appearance()

    def set_highlight(self, highlight: bool) -> None:
        self.highlight = bool(highlight)
        if self.labels_layer is not None:
            self._sync_highlight(self.labels_layer)

    def _retry(self) -> None:
        """Queue a write of every pending edit that has none queued."""
        self._retry_timer.stop()
        for edit in list(self.pending.values()):
            if not edit.queued:
                edit.queued = True
                self.tasks.submit(write_edit, edit, self._write_lock,
                                  on_done=lambda _, edit=edit: self._written(edit),
                                  on_error=lambda message, edit=edit: self._write_failed(edit, message))

    def _written(self, edit: Edit) -> None:
        edit.queued = False
        if self.pending.get(edit.image_id) is edit:  # else a newer edit of the image is on its way
            del self.pending[edit.image_id]
        self.saved.emit(edit.image_id)

    def _write_failed(self, edit: Edit, message: str) -> None:
        edit.queued = False
        if self.pending.get(edit.image_id) is not edit:
            return
        edit.failures += 1
        text = f"Your edit of {self.image_name(edit.image_id)} is not saved yet: {message}."
        if edit.failures <= len(RETRY_DELAYS_MS):
            delay = RETRY_DELAYS_MS[edit.failures - 1]
            self._retry_timer.start(delay)
            text += f" Retrying in {delay / 1000:g} s."
        else:
            text += " It is retried on your next edit, when you switch image and when napari closes."
        self.failed.emit(text)

    def flush(self) -> list:
        """Write every pending edit now, on this thread (napari is closing: queued writes would never run).
        Returns the messages of the writes that failed (each also shown as a notification)."""
        self._timer.stop()
        self._retry_timer.stop()
        errors = []
        try:
            self._take_edit()
        except Exception as error:  # noqa: BLE001 - e.g. the layer is already gone; the queued edits still count
            errors.append(f"The last edit could not be read from the Labels layer: {error_message(error)}")
            show_error(errors[-1])
        for image_id, edit in list(self.pending.items()):
            try:
                write_edit(edit, self._write_lock)
            except Exception as error:  # noqa: BLE001 - every failure is shown, the others still written
                message = f"Your edit of {self.image_name(image_id)} could not be saved: {error_message(error)}"
                errors.append(message)
                show_error(message)
                continue
            del self.pending[image_id]
        return errors
