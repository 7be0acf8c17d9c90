"""The project index: what the review needs about every image, without decoding masks on each question.

Per image it keeps the objects of the image's current masks (stable instance id, category before merges,
score, reviewed flag: what :func:`engine.state.review.image_objects` shows) and the count of its exported
instances per category before merges. From that the review answers, for a project of thousands of images:

* how many masks each category has (:meth:`ProjectIndex.category_counts`; merges and discards are resolved
  at read time from the category table, so a rename, merge or recolour never touches the per-image data);
* the project-wide low-confidence queue (:meth:`ProjectIndex.unreviewed`).

Each image's entry is stored with the *stamps* of everything it was derived from: the stat (inode, size,
mtime in ns) of its correction, prediction and proposals files, the user's assignments of its masks, and the
binding of clusters to categories (clustering id, which category names which cluster, whether the
predictions belong to this clustering). Every question first compares those stamps (stat calls, no reads) and
recomputes only the images whose stamp changed, so an entry can never be stale, whoever changed the files.
Review writes put the entry of the image they change directly (:meth:`ProjectIndex.put_correction`).

On disk: ``index.sqlite`` in the project (derived data: deleting it only costs a rebuild). In memory: one
:class:`ProjectIndex` per project folder in an :class:`IndexCache`, holding the images list, the clusters and
the label state read once; each use checks the stamps of the small files (images.json, clusters.json,
categories.json, assignments.json, predictions/stamp.json) and re-reads only what changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

from engine.state.corrections import (
    CorruptCorrectionError,
    ImageCorrection,
    assignments_path,
    categories_path,
    correction_path,
)
from engine.state.label_state import LabelState
from engine.state.project import Project
from engine.state.schema import read_clusters, read_images

INDEX_NAME = "index.sqlite"
FORMAT_VERSION = "2"  # bump when what an entry holds changes: older files are rebuilt
CACHED_PROJECTS = 2  # projects whose index stays in memory per process (the plugin shows one at a time)


@dataclass
class IndexEntry:
    """One image in the index."""

    stamp: str  # of the files it was derived from (see the module docstring)
    origin: str  # "correction", "prediction" or "proposal"
    objects: list  # [instance id, category id before merges, score, reviewed] per present object, id increasing
    counts: dict  # {category id before merges: exported instances}
    outlined: dict  # {category id before merges: the views' overlapping objects exported beside them}


# -- the current masks of one image, as the review numbers them -------------------------------------------
def current_correction(state: LabelState, entry: dict, outlined: bool = False) -> tuple:
    """(correction, origin, counts) of an image: the user's correction, else its current generated masks as an
    unreviewed correction (instance k = mask k, scores kept; a mask wholly covered by later ones has no pixel
    left and so no object), and the count of its instances per category before merges (every generated mask
    counts, as exports count them). An unreadable correction is shown from the generated masks, as
    engine.state.label_state does. ``outlined``: a fourth item, :func:`outlined_counts`, from the same read of the
    generated masks."""
    try:
        correction = state.correction(entry)  # None, or unreadable / another size: raises
    except CorruptCorrectionError:
        correction = None
    if correction is not None:
        read = correction, "correction", _correction_counts(correction)
        return read + (outlined_counts(state, entry),) if outlined else read
    found = state.instances(entry, "current")
    correction = ImageCorrection.from_instances((int(entry["height"]), int(entry["width"])), found.masks,
                                                found.categories, reviewed=found.reviewed, scores=found.scores)
    read = correction, found.origin, dict(Counter(int(c) for c in found.categories))
    return read + (_outlined(state.with_overlapping(entry, found)),) if outlined else read


def outlined_counts(state: LabelState, entry: dict) -> dict:
    """{category id before merges: overlapping objects exported} of an image (the views', those no object the
    user made or checked holds); {} without them, read without decoding anything."""
    if not state.project.overlapping_path(entry["image_id"]).exists():
        return {}
    return _outlined(state.instances(entry, "current", overlapping=True))  # a damaged correction: the generated


def _outlined(found) -> dict:
    outlined = found.overlapping if found.overlapping is not None else ()
    return dict(Counter(int(c) for c, k in zip(found.categories, outlined) if k))


def _correction_counts(correction: ImageCorrection) -> dict:
    return dict(Counter(correction.classes[k] for k in correction.ids()))


def _objects(correction: ImageCorrection) -> list:
    return [[k, correction.classes[k], correction.score(k), k in correction.reviewed_ids] for k in correction.ids()]


# -- stamps ----------------------------------------------------------------------------------------------
def file_stamp(path: Path) -> str:
    """Changes whenever the file is replaced or rewritten (every project file is replaced by a rename)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "-"
    return f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"


def _digest(value) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


class _Stamps:
    """Per-image stamps against one label state: the binding of clusters to categories and the user's
    assignments by image are digested once, the files of an image are stat-ed on each call."""

    def __init__(self, state: LabelState):
        self.project = state.project
        self.predictions_valid = state.predictions_valid()
        self.binding = _digest([state.clusters.get("id"), sorted(state.category_of_cluster.items()),
                                self.predictions_valid])
        by_image: dict = {}
        for key, category in state.assignments.items():
            by_image.setdefault(key.split(":", 1)[0], []).append((key, category))
        self.assigned = {image_id: _digest(sorted(items)) for image_id, items in by_image.items()}

    def of(self, image_id: str) -> str:
        project = self.project
        prediction = (file_stamp(project.predictions_path(image_id)) + "," +
                      file_stamp(project.overlapping_path(image_id))) if self.predictions_valid else ""
        return "|".join((file_stamp(correction_path(project.root, image_id)), prediction,
                         file_stamp(project.proposals_path(image_id)), self.assigned.get(image_id, ""),
                         self.binding))


# -- the stored rows -------------------------------------------------------------------------------------
class _Store:
    """index.sqlite: one row per image. Best effort: a project folder that cannot hold it (read-only, a
    damaged file) keeps the index in memory only and says nothing, since it is derived data."""

    def __init__(self, path: Path):
        self.path = path
        self.connection = self._open()

    def _open(self):
        try:
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            # derived data: a write-ahead log without a sync per commit (a review write per image stays cheap);
            # a crash can lose the last rows, never corrupt the file, and lost rows are recomputed by stamp
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = connection.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None or row[0] != FORMAT_VERSION:
                connection.execute("DROP TABLE IF EXISTS images")
                connection.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT_VERSION,))
            connection.execute("CREATE TABLE IF NOT EXISTS images (image_id TEXT PRIMARY KEY, stamp TEXT, "
                               "origin TEXT, objects TEXT, counts TEXT, outlined TEXT)")
            connection.commit()
            return connection
        except sqlite3.Error:
            return None

    def read(self) -> dict:
        if self.connection is None:
            return {}
        try:
            rows = self.connection.execute("SELECT image_id, stamp, origin, objects, counts, outlined "
                                           "FROM images").fetchall()
        except sqlite3.Error:
            return {}
        return {image_id: IndexEntry(stamp, origin, json.loads(objects),
                                     {int(k): v for k, v in json.loads(counts).items()},
                                     {int(k): v for k, v in json.loads(outlined).items()})
                for image_id, stamp, origin, objects, counts, outlined in rows}

    def write(self, entries: dict, removed=()) -> None:
        if self.connection is None or not (entries or removed):
            return
        try:
            with self.connection:  # one transaction
                self.connection.executemany("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?)", [
                    (image_id, e.stamp, e.origin, json.dumps(e.objects), json.dumps(e.counts), json.dumps(e.outlined))
                    for image_id, e in entries.items()])
                self.connection.executemany("DELETE FROM images WHERE image_id = ?", [(i,) for i in removed])
        except sqlite3.Error:
            pass

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


# -- the index of one project ----------------------------------------------------------------------------
def _small_file_stamps(project: Project) -> tuple:
    """What the images list, clusters and label state were read from."""
    return tuple(file_stamp(path) for path in (
        project.images_path, project.clusters_path, project.root / "clusters.previous.json",
        categories_path(project.root), assignments_path(project.root), project.predictions_dir / "stamp.json"))


class ProjectIndex:
    """The index of one project (module docstring). Get it from :func:`project_index`; its answers are
    current as of the call that returned it."""

    def __init__(self, project: Project):
        self.project = project
        self.lock = threading.RLock()
        self._store = _Store(project.root / INDEX_NAME)
        self._entries = self._store.read()  # image id -> IndexEntry
        self._totals: Counter = Counter()  # category before merges -> instances, over every image
        self._outlined: Counter = Counter()  # the same for the overlapping objects beside them
        for entry in self._entries.values():
            self._totals.update(entry.counts)
            self._outlined.update(entry.outlined)
        self._small: tuple | None = None
        self._clusters_stamp = None
        self.images: list = []
        self.clusters: dict = {}
        self._state: LabelState | None = None  # shared by the readers of this process: never change it
        self._by_id: dict = {}
        self._stamps: _Stamps | None = None

    @property
    def state(self) -> LabelState:
        """The label state as :meth:`refresh_small` last read it (every way to get an index refreshes it)."""
        if self._state is None:
            raise RuntimeError(f"the index of {self.project.root} was used before refresh_small()")
        return self._state

    def _current_stamps(self) -> _Stamps:
        if self._stamps is None:
            raise RuntimeError(f"the index of {self.project.root} was used before refresh_small()")
        return self._stamps

    # -- keeping it current -------------------------------------------------------------------------
    def refresh_small(self) -> ProjectIndex:
        """Re-read whichever small file changed (images list, clusters, label state); per-image entries are
        left as they are (see :meth:`refresh`)."""
        with self.lock:
            small = _small_file_stamps(self.project)
            if small != self._small:
                self._reload(small)
        return self

    def refresh(self, progress=None) -> ProjectIndex:
        """:meth:`refresh_small`, then recompute the images whose stamp changed. ``progress(done, total)`` is
        called while recomputing (a first build decodes every image once)."""
        with self.lock:
            self.refresh_small()
            stale = [e for e in self.images if self._entry_stale(e["image_id"])]
            fresh = {}
            for done, entry in enumerate(stale, start=1):
                fresh[entry["image_id"]] = self._computed(entry)
                if progress is not None:
                    progress(done, len(stale))
            known = set(self._by_id)
            gone = [image_id for image_id in self._entries if image_id not in known]
            for image_id in gone:
                self._set(image_id, None)
            for image_id, entry in fresh.items():
                self._set(image_id, entry)
            self._store.write(fresh, gone)
        return self

    def _reload(self, small: tuple) -> None:
        project = self.project
        self.images = read_images(project.images_path) if project.images_path.exists() else []
        clusters_stamp = small[1]
        if clusters_stamp != self._clusters_stamp:
            self.clusters = (read_clusters(project.clusters_path) if project.clusters_path.exists()
                             else {"clusters": [], "masks": []})
            self._clusters_stamp = clusters_stamp
        self._state = LabelState.load(project, self.clusters)
        self._stamps = _Stamps(self._state)
        self._by_id = {e["image_id"]: e for e in self.images}
        self._small = small

    def _entry_stale(self, image_id: str) -> bool:
        known = self._entries.get(image_id)
        return known is None or known.stamp != self._current_stamps().of(image_id)

    def _computed(self, entry: dict) -> IndexEntry:
        # taken before reading: a change while reading shows next time
        stamp = self._current_stamps().of(entry["image_id"])
        correction, origin, counts, outlined = current_correction(self.state, entry, outlined=True)
        return IndexEntry(stamp, origin, _objects(correction), counts, outlined)

    def _set(self, image_id: str, entry: IndexEntry | None) -> None:
        old = self._entries.pop(image_id, None)
        if old is not None:
            self._totals.subtract(old.counts)
            self._outlined.subtract(old.outlined)
        if entry is not None:
            self._entries[image_id] = entry
            self._totals.update(entry.counts)
            self._outlined.update(entry.outlined)

    def put_correction(self, image_id: str, correction: ImageCorrection) -> None:
        """After a review write saved an image's correction: its entry from the correction in hand, without
        decoding anything. When the small files changed since they were read, nothing is done here: the
        next :meth:`refresh` sees the correction's new stamp and recomputes the entry."""
        with self.lock:
            if self._stamps is None or image_id not in self._by_id or self._small != _small_file_stamps(self.project):
                return
            entry = IndexEntry(self._stamps.of(image_id), "correction", _objects(correction),
                               _correction_counts(correction), outlined_counts(self.state, self._by_id[image_id]))
            self._set(image_id, entry)
            self._store.write({image_id: entry})

    # -- answers ------------------------------------------------------------------------------------
    def entry(self, image_id: str) -> dict:
        """The images.json entry of an image."""
        entry = self._by_id.get(image_id)
        if entry is None:
            raise KeyError(f"No image {image_id!r} in {self.project.root}")
        return entry

    def objects(self, image_id: str) -> list:
        """[instance id, category before merges, score, reviewed] of the image's current objects."""
        return self._entries[image_id].objects

    def origin(self, image_id: str) -> str:
        return self._entries[image_id].origin

    def counts(self, image_id: str) -> dict:
        """{category id before merges: instances} of one image."""
        return self._entries[image_id].counts

    def raw_counts(self, overlapping: bool = False) -> dict:
        """{category id before merges: instances} over every image (``overlapping``: of the overlapping objects)."""
        return {c: n for c, n in (self._outlined if overlapping else self._totals).items() if n}

    def category_counts(self, overlapping: bool = False) -> dict:
        """{category id: masks exported under it now}: the raw counts through the table's merges and discards
        (``overlapping``: the views' overlapping objects exported beside them)."""
        counts: Counter = Counter()
        for category, n in self.raw_counts(overlapping).items():
            resolved = self.state.resolve(category)
            if resolved is not None:
                counts[resolved] += n
        return dict(counts)

    def unreviewed(self):
        """(image id, instance id, score, position among the image's objects) of every unreviewed object that
        is exported (an object of a discarded category, or of one merged into a discarded one, is not shown and
        needs no review), in images.json order and then by instance id."""
        for entry in self.images:
            objects = self._entries[entry["image_id"]].objects
            for position, (instance_id, category, score, reviewed) in enumerate(objects):
                if not reviewed and self.state.resolve(int(category)) is not None:
                    yield entry["image_id"], int(instance_id), float(score), position

    def close(self) -> None:
        self._store.close()


class IndexCache:
    """The indexes of the last few projects used in this process, by folder. Each use refreshes the index it
    returns (stamps compared, changes re-read), so a cached index is never out of date."""

    def __init__(self, limit: int = CACHED_PROJECTS):
        self.limit = limit
        self._lock = threading.Lock()
        self._indexes: OrderedDict = OrderedDict()

    def get(self, project, images: bool = True, progress=None) -> ProjectIndex:
        """The project's index with its small files re-checked, and with ``images`` its per-image entries."""
        index = self.loaded(project, create=True)
        return index.refresh(progress) if images else index.refresh_small()

    def loaded(self, project, create: bool = False):
        """The project's index as it is in memory (None when not loaded and not ``create``), unrefreshed."""
        project = project if isinstance(project, Project) else Project(project)
        with self._lock:
            index = self._indexes.get(project.root)
            if index is None:
                if not create:
                    return None
                index = self._indexes[project.root] = ProjectIndex(project)
            self._indexes.move_to_end(project.root)
            while len(self._indexes) > self.limit:
                self._indexes.popitem(last=False)[1].close()
        return index

    def clear(self) -> None:
        with self._lock:
            for index in self._indexes.values():
                index.close()
            self._indexes.clear()


# One per process: the plugin's worker threads and the review functions share it (each use re-checks stamps).
_CACHE = IndexCache()


def project_index(project, progress=None) -> ProjectIndex:
    """The project's index, every entry current (module docstring). ``with index.lock:`` around a sequence
    of questions that must see one state."""
    return _CACHE.get(project, progress=progress)


def project_files(project) -> ProjectIndex:
    """The project's index with its images list, clusters and (shared, read-only) label state current, its
    per-image entries not checked: for questions about one image."""
    return _CACHE.get(project, images=False)


def fresh_label_state(project) -> LabelState:
    """A label state of the project's files now, the caller's own to change (review writes), built over the
    clusters held in memory (re-read only when clusters.json changed)."""
    files = project_files(project)
    return LabelState.load(files.project, files.clusters)


def note_correction(project, image_id: str, correction: ImageCorrection) -> None:
    """Tell a loaded index that a review write saved this correction (nothing when none is loaded)."""
    index = _CACHE.loaded(project)
    if index is not None:
        index.put_correction(image_id, correction)


def forget_indexes() -> None:
    """Drop every cached index of this process (tests; a project folder replaced wholesale)."""
    _CACHE.clear()


__all__ = ["INDEX_NAME", "IndexCache", "IndexEntry", "ProjectIndex", "current_correction",
           "file_stamp", "forget_indexes", "fresh_label_state", "note_correction", "project_files", "project_index"]
