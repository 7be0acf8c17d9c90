"""Reading a COCO file of any size with memory that does not grow with it.

The file is parsed as a stream (ijson): categories and images, one small record each, stay in memory; each
annotation goes as its JSON text into a temporary SQLite table on disk. Once the whole file is read, every
annotation is checked (categories, images, segmentation, without decoding a mask) and filed under its image,
so a file with a problem raises :class:`~engine.io.coco_validation.CocoValidationError` naming the file and the
annotation before anything is used, and the annotations of one image are then read back on their own.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import ijson

from engine.atomic import ProjectFileError, read_json
from engine.io.coco_validation import CocoValidationError, segmentation_problem

TOP_LEVEL_LISTS = ("images", "annotations", "categories")
_EVENT_TYPES = {"start_map": "dict", "start_array": "list", "string": "str", "number": "number",
                "boolean": "bool", "null": "NoneType"}
MAX_PROBLEMS = 5


class CocoFile:
    """A checked COCO file: ``categories`` [{"id", "name"}], ``images`` [(file_name, (height, width), id)] in
    file order, and :meth:`annotations` of one image (by its position in ``images``), read from disk.

    require_categories: annotations must use a category the file defines (an import); ``False`` accepts any
    integer category id (ground truth scored by id). Crowd annotations are kept, unchecked, for
    :meth:`annotations` ``(crowd=True)``. Close it (or use ``with``) to delete the temporary table.
    """

    def __init__(self, path, require_categories: bool = True):
        self.path = Path(path)
        self._error = CocoValidationError
        self._problems: list = []
        self.categories: list[dict] = []
        self.images: list[tuple] = []  # (file name, (height, width), id)
        self._image_slots: dict = {}
        self._names: set = set()
        self._db = sqlite3.connect("")  # a private temporary database on disk, deleted on close
        self._db.execute("CREATE TABLE annotation (ordinal INTEGER PRIMARY KEY, slot INTEGER, crowd INTEGER, "
                         "body TEXT)")
        try:
            self._read(require_categories)
        except BaseException:
            self.close()
            raise

    # -- reading and checking ------------------------------------------------------------------------
    def _read(self, require_categories: bool) -> None:
        seen = set()
        pending = []
        for key, item in self._items():
            if item is _KEY:
                seen.add(key)
            elif key == "categories":
                self._add_category(item, len(self.categories) + len(self._problems))
            elif key == "images":
                self._add_image(item, len(self.images) + len(self._problems))
            else:
                pending.append(json.dumps(item))
                if len(pending) >= 1000:
                    self._spool(pending)
        self._spool(pending)
        missing = [key for key in ("images", "annotations") if key not in seen]
        if missing:
            raise self._error(f"{self.path}: not a COCO file: no {' and no '.join(repr(k) for k in missing)} key")
        self._check_annotations(require_categories)
        if self._problems:
            raise self._error(f"{self.path}: " + "; ".join(self._problems))
        self._db.execute("CREATE INDEX by_slot ON annotation (slot, ordinal)")

    def _spool(self, bodies: list) -> None:
        self._db.executemany("INSERT INTO annotation (body) VALUES (?)", [(body,) for body in bodies])
        bodies.clear()

    def _problem(self, text: str) -> None:
        self._problems.append(text)
        if len(self._problems) >= MAX_PROBLEMS:
            raise self._error(f"{self.path}: " + "; ".join(self._problems))

    def _items(self):
        """(top-level key, _KEY) for each key, then (key, item) for each item of the lists we read; raises on
        anything that is not an object of lists."""
        with open(self.path, "rb") as handle:
            if handle.read(3) != b"\xef\xbb\xbf":  # a UTF-8 byte-order mark, as read_json accepts
                handle.seek(0)
            try:
                yield from _top_level_items(ijson.parse(handle, use_float=True), self.path, self._error)
            except ijson.JSONError:
                self._explain_bad_json()

    def _explain_bad_json(self) -> None:
        """The parser's own messages name no line: read the file with json for the message read_json gives."""
        try:
            read_json(self.path)
        except ProjectFileError as error:
            raise self._error(f"not a readable COCO file: {error}") from None
        raise self._error(f"{self.path}: not a readable COCO file (not valid JSON)")

    def _add_category(self, category, index: int) -> None:
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            self._problem(f"category #{index + 1} has no integer id")
        elif category["id"] < 1:
            self._problem(f"category {category['id']} ({category.get('name', '')!r}): category ids must be >= 1")
        elif any(c["id"] == category["id"] for c in self.categories):
            self._problem(f"category id {category['id']} is defined twice")
        else:
            self.categories.append({"id": int(category["id"]), "name": str(category.get("name", category["id"]))})

    def _add_image(self, image, index: int) -> None:
        if not isinstance(image, dict):
            self._problem(f"image #{index + 1} is not an object")
            return
        label = f"image {image.get('id', '#' + str(index + 1))}"
        if not _is_int(image.get("id")):
            self._problem(f"{label} has no integer id")
        elif not isinstance(image.get("file_name"), str) or not image["file_name"]:
            self._problem(f"{label} has no file_name")
        elif not all(_is_int(image.get(k)) and image[k] > 0 for k in ("height", "width")):
            self._problem(f"{label} ({image['file_name']}) has no positive integer height and width")
        elif image["id"] in self._image_slots:
            self._problem(f"image id {image['id']} is listed twice")
        elif image["file_name"] in self._names:
            self._problem(f"{image['file_name']} is listed twice")
        else:
            self._image_slots[image["id"]] = len(self.images)
            self._names.add(image["file_name"])
            self.images.append((image["file_name"], (int(image["height"]), int(image["width"])), image["id"]))

    def _check_annotations(self, require_categories: bool) -> None:
        category_ids = {c["id"] for c in self.categories}
        filed = []
        for ordinal, body in self._db.execute("SELECT ordinal, body FROM annotation ORDER BY ordinal"):
            ann = json.loads(body)
            index = ordinal - 1
            if not isinstance(ann, dict):
                self._problem(f"annotation #{index + 1} is not an object")
                continue
            label = f"annotation {ann.get('id', '#' + str(index + 1))}"
            category = ann.get("category_id")
            if not _is_int(category) or (require_categories and category not in category_ids):
                defined = ", ".join(str(c) for c in sorted(category_ids)[:10]) or "none"
                self._problem(f"{label} has category {category!r}, which the file's categories do not define "
                              f"(defined: {defined})")
                continue
            if not _is_int(ann.get("image_id")) or ann["image_id"] not in self._image_slots:
                self._problem(f"{label} belongs to image {ann.get('image_id')!r}, which the file's images do "
                              "not list")
                continue
            slot = self._image_slots[ann["image_id"]]
            crowd = bool(ann.get("iscrowd", 0))
            if not crowd:  # crowd regions are not instances: not checked, read only on request
                if "segmentation" not in ann:
                    self._problem(f"{label} has no segmentation")
                    continue
                reason = segmentation_problem(ann["segmentation"], self.images[slot][1])
                if reason:
                    self._problem(f"{label} ({self.images[slot][0]}) {reason}")
                    continue
            filed.append((slot, int(crowd), ordinal))
        for start in range(0, len(filed), 10_000):  # ordinals of the annotations filed: a few ints each
            self._db.executemany("UPDATE annotation SET slot = ?, crowd = ? WHERE ordinal = ?",
                                 filed[start:start + 10_000])

    # -- reading back --------------------------------------------------------------------------------
    def annotations(self, slot: int, crowd: bool = False) -> list:
        """The annotations of ``images[slot]`` in file order (with crowd ones when ``crowd``)."""
        query = "SELECT body FROM annotation WHERE slot = ?" + ("" if crowd else " AND crowd = 0")
        return [json.loads(body) for (body,) in self._db.execute(query + " ORDER BY ordinal", (slot,))]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CocoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_KEY = object()  # marks "this top-level key is present" in _top_level_items


def _top_level_items(events, path: Path, error):
    """Turn ijson's parse events into (key, _KEY) per top-level key and (key, item) per item of the lists in
    TOP_LEVEL_LISTS (each item built on its own: one item in memory at a time)."""
    first = next(events, None)
    if first is None or first[1] != "start_map":
        found = "nothing" if first is None else f"a {_EVENT_TYPES.get(first[1], first[1])}"
        raise error(f"{path}: not a COCO file: expected a JSON object with 'images', 'annotations' and "
                    f"'categories', found {found}")
    key = builder = None
    for prefix, event, value in events:
        if prefix == "" and event == "map_key":
            key = value
            yield key, _KEY
        elif key not in TOP_LEVEL_LISTS or prefix == "":
            continue  # other top-level values (info, licenses) are not read
        elif prefix == key:
            if event not in ("start_array", "end_array"):
                raise error(f"{path}: '{key}' must be a list, found {_EVENT_TYPES.get(event, event)}")
        elif builder is None and prefix == f"{key}.item":
            if event in ("start_map", "start_array"):
                builder = ijson.ObjectBuilder()
                builder.event(event, value)
            else:
                yield key, value  # a scalar item
        elif builder is not None:
            builder.event(event, value)
            if prefix == f"{key}.item" and event in ("end_map", "end_array"):
                yield key, builder.value
                builder = None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
