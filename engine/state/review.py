"""What a reviewer does to pseudo-labels, as plain functions over a project folder (the napari widgets and
scripts both call these, through engine.api). Every change applies to all images at once and is saved
immediately to the user's files (categories.json, assignments.json, corrections/), never to generated results,
each as one read-modify-write under the project's state lock (two writers never lose a change). What the masks
and categories *are* is read from engine.state.label_state, the one owner of the label state; project-wide
questions (mask counts, the low-confidence queue) are answered by engine.state.project_index, which caches its
per-image results and which every write here keeps current.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

import numpy as np

from engine.io.coco import coco_image_masks
from engine.io.coco_reader import CocoFile
from engine.state.corrections import (
    DISCARD_MODES,
    Category,
    CategoryTable,
    ImageCorrection,
    assignments_path,
    categories_path,
    correction_path,
    load_correction,
    save_assignments,
    save_categories,
    save_correction,
)
from engine.state.label_state import LabelState
from engine.state.project import Project, load_image_proposals
from engine.state.project_index import (
    current_correction,
    fresh_label_state,
    note_correction,
    project_files,
    project_index,
)
from engine.state.schema import read_images


def _category(state: LabelState, category_id: int) -> Category:
    if int(category_id) not in state.table.by_id():
        raise KeyError(f"No category {category_id}; known: {sorted(state.table.by_id())}")
    return state.category(category_id)


class EditRefused(ValueError):
    """An edit the image or the category table cannot give (nothing larger to grow into, no smaller part, a click
    that changes nothing, a name another category has, a split into more parts than masks): an answer for the
    user, not a fault. ``user_answer`` lets a caller tell it from a failure without
    importing the engine (the plugin shows it in its status line, not as an error)."""

    user_answer = True


class DiscardedCategoryError(ValueError):
    """A new or edited object was given a category whose objects are not exported (discarded, or merged into a
    discarded one) without the caller confirming it (``allow_discarded``)."""


def check_visible_category(state: LabelState, category_id: int, allow_discarded: bool = False) -> int:
    """``category_id`` if its objects are exported (merges followed), or if the caller confirmed a discarded one
    with ``allow_discarded``; else :class:`DiscardedCategoryError`: the user's new object would vanish from the
    export."""
    category = _category(state, category_id)
    if state.resolve(category.id) is None and not allow_discarded:
        raise DiscardedCategoryError(
            f"Category {category.name!r} is discarded: its objects are not exported. Choose another category "
            "(or restore this one in the Categories tab) so that the object is kept.")
    return category.id


def _edit_table(project_dir, edit) -> None:
    """Load the label state, apply ``edit(state)`` to its table and save it, all under the state lock."""
    project = Project(project_dir)
    with project.state_lock():
        state = fresh_label_state(project)  # the clusters held in memory: a rename never re-reads clusters.json
        edit(state)
        state.table.clustering = state.clusters.get("id")
        save_categories(project.root, state.table)


def rename_category(project_dir, category_id: int, name: str) -> None:
    if not name.strip():
        raise EditRefused("A category name cannot be empty.")

    def edit(state):
        category = _category(state, category_id)
        same = [c for c in state.table.categories if c.name == name.strip() and c.id != category.id
                and c.merged_into is None and not c.discarded]
        if same:  # trainers map classes by name: two categories of one name would become one class silently
            raise EditRefused(f"A category is already named {name.strip()!r}; merge into it instead, or choose "
                              f"another name.")
        category.name, category.user_named = name.strip(), True
    _edit_table(project_dir, edit)


def recolour_category(project_dir, category_id: int, rgb) -> None:
    if len(rgb) != 3 or not all(0 <= int(v) <= 255 for v in rgb):
        raise ValueError(f"A colour is three values 0-255, not {rgb!r}")

    def edit(state):
        _category(state, category_id).colour = [int(v) for v in rgb]
    _edit_table(project_dir, edit)


def merge_categories(project_dir, category_ids, into: int) -> None:
    """Every mask of ``category_ids`` becomes ``into`` (kept as a reversible link, not a rewrite); a merged
    category that was discarded is no longer (its masks are exported as ``into``'s, as the merge says)."""
    if not [c for c in category_ids if int(c) != int(into)]:
        raise EditRefused(f"Nothing to merge: give categories other than {into}, the one they merge into.")

    def edit(state):
        _category(state, into).merged_into = None  # the target stays a category of its own: no merge cycle
        for category_id in category_ids:
            if category_id != into:
                category = _category(state, category_id)
                category.merged_into, category.discarded = into, None
    _edit_table(project_dir, edit)


def discard_category(project_dir, category_id: int, mode: str = "background") -> None:
    """Drop a category from exports; for training its pixels become background or carry no label. A merged
    category that is discarded leaves its merge (its masks are dropped, not exported as another's)."""
    if mode not in DISCARD_MODES:
        raise ValueError(f"discard mode must be one of {', '.join(DISCARD_MODES)}, not {mode!r}")

    def edit(state):
        category = _category(state, category_id)
        category.discarded, category.merged_into = mode, None
    _edit_table(project_dir, edit)


def restore_category(project_dir, category_id: int) -> None:
    """Undo a discard or a merge."""
    def edit(state):
        category = _category(state, category_id)
        category.discarded, category.merged_into = None, None
    _edit_table(project_dir, edit)


def _split_members(state: LabelState, entry: dict, category_id: int) -> list:
    """(key, embedding) of the proposals behind the image's current masks shown as ``category_id`` (those of the
    categories merged into it too: the masks on screen; a predicted mask is represented by the proposal it
    overlaps most, IoU >= 0.5), plus the proposals shown as that category themselves when the image shows
    proposals."""
    from engine.masks import iou

    project = state.project
    proposals, vectors, _ = load_image_proposals(project.proposals_path(entry["image_id"]),
                                                 (entry["height"], entry["width"]))
    keys = state.mask_keys(entry, proposals.masks)
    chosen = {i for i, c in enumerate(state.proposal_categories(entry, proposals.masks))
              if _shown_as(state, c, category_id)}
    current = state.instances(entry, "current")
    if current.origin != "proposal":
        chosen = set() if current.origin == "prediction" else chosen
        for mask, category in zip(current.masks, current.categories):
            if not _shown_as(state, category, category_id) or not len(proposals.masks):
                continue
            overlaps = [iou(mask, other) for other in proposals.masks]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= 0.5:
                chosen.add(best)
    return [(keys[i], vectors[i]) for i in sorted(chosen)]


def split_category(project_dir, category_id: int, parts: int, seed: int = 0) -> list:
    """Re-cluster the masks of one category, as shown now (corrections > predictions > proposals), into
    ``parts`` categories; returns the new category ids (the first part keeps ``category_id``). Each mask is
    represented by its proposal (a predicted mask by the proposal it overlaps most) and the new category is
    saved under that proposal's key, so it follows the mask through re-runs and reaches the predictions that
    overlap it without retraining (engine.state.label_state)."""
    project = Project(project_dir)
    index = project_index(project)
    with project.state_lock():
        state = fresh_label_state(project)
        source = _category(state, category_id)
        members, embeddings = [], []
        for entry in _images_that_may_hold(index, state, int(category_id)):
            for key, vector in _split_members(state, entry, int(category_id)):
                members.append(key)
                embeddings.append(vector)
        if len(members) < parts:
            raise EditRefused(f"Category {source.name!r} has {len(members)} masks; it cannot be split into {parts}.")
        with index.lock:
            entries = list(index.images)
        labels = _split_labels(project, entries, np.stack(embeddings).astype(np.float32), parts, seed)
        next_id = max(state.table.by_id()) + 1
        new_ids = [category_id] + list(range(next_id, next_id + parts - 1))
        for new_id in new_ids[1:]:  # "cat_2", "cat_3", ...: a second split must not make a second "cat_2"
            state.table.categories.append(Category(new_id, state.table.free_name(source.name)))
        assignments = dict(state.assignments)
        for key, label in zip(members, labels):
            assignments[key] = new_ids[int(label)]
        state.table.clustering = state.clusters.get("id")
        save_categories(project.root, state.table)
        save_assignments(project.root, assignments)
    return new_ids


def _split_labels(project: Project, entries: list, embeddings: np.ndarray, parts: int, seed: int) -> np.ndarray:
    """k-means of one category's mask embeddings into ``parts``, compared as the run's clustering compares them:
    pooled embeddings without the folder's dominant token directions (engine.method.clustering)."""
    from engine.method.clustering import comparable, kmeans, whiten  # torch: loaded only when a split needs it
    from engine.method.features import FeatureCache

    embedding = project.read_config().get("config", {}).get("embedding", "pooled")
    comparable(embeddings, embedding, FeatureCache(project.features_dir), [entry["feature_key"] for entry in entries])
    return kmeans(whiten(embeddings), parts, seed=seed)[0]


def _images_that_may_hold(index, state: LabelState, category_id: int) -> list:
    """The images whose masks shown as ``category_id`` a split takes: those showing it now (or a category merged
    into it), and every image with a correction (its proposals of the category count too; see
    :func:`_split_members`)."""
    index.refresh()
    with index.lock:
        return [entry for entry in index.images if index.origin(entry["image_id"]) == "correction"
                or any(_shown_as(state, c, category_id) for c in index.counts(entry["image_id"]))]


def _shown_as(state: LabelState, mask_category: int, category_id: int) -> bool:
    """Whether a mask of ``mask_category`` belongs to ``category_id`` for a split: its own, or merged into it."""
    return int(mask_category) == category_id or state.resolve(mask_category) == category_id


def _save_correction(project: Project, image_id: str, correction: ImageCorrection) -> None:
    """Save an image's correction and put it in the project index (call under the state lock)."""
    save_correction(project.root, image_id, correction)
    note_correction(project, image_id, correction)


def set_image_masks(project_dir, image_id: str, masks, category_ids, reviewed: bool = True) -> None:
    """Save the user's masks of one image (they replace generated ones in exports and count most in training)."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3 or len(masks) != len(category_ids):
        raise ValueError("masks must be (n, H, W) with one category id per mask")
    project = Project(project_dir)
    with project.state_lock():
        _save_correction(project, image_id, ImageCorrection.from_instances(masks.shape[1:], masks, category_ids,
                                                                           reviewed))


def set_image_labels(project_dir, image_id: str, labels: np.ndarray, classes: dict, reviewed=True,
                     scores: dict | None = None, allow_discarded: bool = False) -> None:
    """Save an edited instance label map (what napari's Labels layer holds) as the image's correction.

    ``reviewed``: True / False for every instance, or the instance ids the user reviewed (e.g. those a stroke
    touched). ``scores`` (instance id -> confidence): missing ids keep the score they had (their id in the
    image's correction, else in its generated masks numbered 1..n), else 1.0. A new object (an id the image did
    not have) or one given another category may not be of a discarded category unless ``allow_discarded``
    (objects that already were keep theirs).
    """
    project = Project(project_dir)
    with project.state_lock():
        previous = None
        if not allow_discarded:
            previous = _check_new_categories(project, image_id, classes)
        if previous is None and (scores is None or len(scores) < len(classes)):
            previous = _base_correction(project, image_id)
        kept = dict(previous.scores) if previous is not None else {}
        kept.update(scores or {})
        if isinstance(reviewed, bool):
            correction = ImageCorrection(np.asarray(labels), dict(classes), reviewed, scores=kept)
        else:
            correction = ImageCorrection(np.asarray(labels), dict(classes), False, set(reviewed), kept)
        correction.scores = {k: v for k, v in correction.scores.items() if k in correction.classes}
        _save_correction(project, image_id, correction)


def _check_new_categories(project: Project, image_id: str, classes: dict):
    """:class:`DiscardedCategoryError` when an object of ``classes`` new to the image, or with a changed
    category, is of a discarded category (call under the state lock). Returns the image's previous correction
    when it had to be read (only when some category is discarded), else None."""
    state = fresh_label_state(project)
    hidden = {int(k): int(c) for k, c in classes.items() if state.resolve(int(c)) is None}
    if not hidden:
        return None
    previous = _base_correction(project, image_id)
    for instance_id, category_id in sorted(hidden.items()):
        if previous.classes.get(instance_id) != category_id:
            check_visible_category(state, category_id)
    return previous


def image_correction(project_dir, image_id: str):
    return load_correction(Project(project_dir).root, image_id)


def _backup_user_state(project: Project) -> str:
    """Copy categories.json, assignments.json and corrections/ into backups/<time>/; returns that folder."""
    folder = project.root / "backups" / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while folder.exists():
        folder = folder.with_name(f"{folder.name.split('.')[0]}.{suffix}")
        suffix += 1
    folder.mkdir(parents=True)
    for path in (categories_path(project.root), assignments_path(project.root)):
        if path.exists():
            shutil.copy2(path, folder / path.name)
    corrections = project.root / "corrections"
    if corrections.exists():
        shutil.copytree(corrections, folder / "corrections")
    return str(folder)


def import_coco(project_dir, coco_path, replace: bool = False) -> dict:
    """Masks of an existing COCO file become corrections to review (unreviewed), matched to the project's images
    by file name relative to its image folder; streamed one image at a time.

    By default the import merges: the file's categories join the table (a name already there is reused), and an
    image that already has the user's correction keeps it (counted under "kept"), as does an image the file lists
    with no annotations (under "unannotated": a merge never empties an image). ``replace`` replaces the
    category table and every correction instead, after copying them to backups/. The whole file is checked
    before anything is written: no image matching the project, no categories, an undefined category or a
    wrong image size is an error that changes nothing.
    """
    with CocoFile(coco_path) as coco:  # read and checked once, then read back per image twice
        return _import_checked(Project(project_dir), coco, coco_path, replace)


def _import_checked(project: Project, coco: CocoFile, coco_path, replace: bool) -> dict:
    file_categories = coco.categories
    if not file_categories:
        raise ValueError(f"{coco_path} defines no categories; nothing was imported")
    defined = {c["id"] for c in file_categories}
    entries = {e["relative_path"]: e for e in read_images(project.images_path)}
    matched, unmatched, unannotated = [], [], []
    for file_name, hw, _, category_ids in coco_image_masks(coco):  # first the checks (every mask decodes)
        if file_name not in entries:
            unmatched.append(file_name)
            continue
        if not replace and not len(category_ids):
            # listing an image is not saying it holds nothing: a merge never empties an image
            unannotated.append(file_name)
            continue
        entry = entries[file_name]
        if tuple(hw) != (entry["height"], entry["width"]):
            raise ValueError(f"{coco_path}: {file_name} is {hw[1]}x{hw[0]} in the COCO file but "
                             f"{entry['width']}x{entry['height']} on disk; nothing was imported")
        undefined = sorted(set(int(c) for c in category_ids) - defined)
        if undefined:
            raise ValueError(f"{coco_path}: {file_name} has annotations of category {undefined} that the file does "
                             "not define; nothing was imported")
        matched.append(file_name)
    if not matched and not unannotated:
        raise ValueError(f"{coco_path}: none of its {len(unmatched)} images is an image of {project.root} (first: "
                         f"{', '.join(unmatched[:3]) or 'none'}); file names must be relative to the image folder. "
                         "Nothing was imported.")
    with project.state_lock():
        state = fresh_label_state(project)
        backup = _backup_user_state(project) if (replace or categories_path(project.root).exists()
                                                 or (project.root / "corrections").exists()) else None
        if replace:
            table = CategoryTable([Category(c["id"], c["name"], user_named=True) for c in file_categories])
            id_map = {c["id"]: c["id"] for c in file_categories}
            shutil.rmtree(project.root / "corrections", ignore_errors=True)
            save_assignments(project.root, {})
        else:
            table, id_map = _merge_categories(state.table, file_categories)
        table.clustering = state.clusters.get("id")
        kept = []
        targets = set(matched)
        for file_name, _, masks, category_ids in coco_image_masks(coco):
            if file_name not in targets:
                continue
            image_id = entries[file_name]["image_id"]
            if not replace and correction_path(project.root, image_id).exists():
                kept.append(file_name)  # the user's own work is never overwritten by a merge
                continue
            _save_correction(project, image_id, ImageCorrection.from_instances(
                masks.shape[1:], masks, [id_map[int(c)] for c in category_ids], reviewed=False))
        save_categories(project.root, table)
    return {"images": len(matched) - len(kept), "unmatched": unmatched, "categories": len(file_categories),
            "kept": kept, "unannotated": unannotated, "backup": backup, "mode": "replace" if replace else "merge"}


def _merge_categories(table: CategoryTable, file_categories: list) -> tuple:
    """(table with the file's categories added, file id -> table id): a name already in the table is reused."""
    table = CategoryTable(list(table.categories), table.clustering)
    by_name = {c.name: c.id for c in table.categories}
    next_id = max([c.id for c in table.categories], default=0) + 1
    id_map = {}
    for category in file_categories:
        if category["name"] in by_name:
            id_map[category["id"]] = by_name[category["name"]]
            continue
        table.categories.append(Category(next_id, category["name"], user_named=True))
        by_name[category["name"]] = id_map[category["id"]] = next_id
        next_id += 1
    return table, id_map


def current_instances(project_dir, image_id: str) -> tuple:
    """(masks, category ids, scores, reviewed) of one image as a user would export it right now (categories
    before merges, so the review shows what the user can restore)."""
    files = project_files(project_dir)
    found = files.state.instances(files.entry(image_id), "current")
    return found.masks, np.asarray(found.categories, int), np.asarray(found.scores, float), found.reviewed


def reject_mask(project_dir, image_id: str, index: int) -> dict:
    """Remove mask ``index`` (position in :func:`current_instances`) of an image; see :func:`reject_object`."""
    objects = image_objects(project_dir, image_id)
    if not 0 <= index < len(objects.ids):
        raise IndexError(f"Image {image_id} has {len(objects.ids)} masks; there is no mask {index}.")
    return reject_object(project_dir, image_id, int(objects.ids[index]))


def accept_image(project_dir, image_id: str) -> dict:
    """Mark every object of the image as checked by the user (the masks become its correction; their scores
    are kept). Returns what :func:`restore_object` needs to undo it."""
    def edit(correction):
        before = set(correction.reviewed_ids)
        correction.reviewed_ids |= set(correction.ids())
        return {"action": "accept_image", "reviewed_ids": sorted(before)}
    return _edit_correction(project_dir, image_id, None, edit)


def low_confidence_masks(project_dir, limit: int | None = None) -> list:
    """(image_id, position among the objects of :func:`image_objects`, score) of the unreviewed objects, least
    confident first (read from the project index)."""
    found = [(image_id, position, score) for image_id, _, score, position in _unreviewed(project_dir)]
    found.sort(key=lambda item: item[2])
    return found[:limit] if limit else found


# -- objects: one mask of one image, by its stable instance id ---------------------------------------------
@dataclass
class ImageObjects:
    """An image's objects as the review sees them: a label map whose values are stable instance ids (a
    correction's own ids; else 1..n in :func:`current_instances` order) and, per present id (increasing), its
    category (before merges), score, reviewed flag and area in pixels."""

    image_id: str
    labels: np.ndarray  # (H, W) instance ids
    ids: np.ndarray  # (n,) present instance ids, increasing
    categories: np.ndarray  # (n,)
    scores: np.ndarray  # (n,)
    reviewed: np.ndarray  # (n,) bool
    areas: np.ndarray  # (n,) pixels
    origin: str  # "correction", "prediction" or "proposal"

    def as_dicts(self) -> tuple:
        """({id: category}, {id: score}, {id: reviewed}, {id: area})."""
        ids = [int(k) for k in self.ids]
        return (dict(zip(ids, (int(c) for c in self.categories))), dict(zip(ids, (float(s) for s in self.scores))),
                dict(zip(ids, (bool(r) for r in self.reviewed))), dict(zip(ids, (int(a) for a in self.areas))))


def _objects_of(correction: ImageCorrection, image_id: str, origin: str, positions=None) -> ImageObjects:
    ids = correction.ids()
    areas = np.bincount(correction.labels.ravel(), minlength=max(ids, default=0) + 1) if ids else np.zeros(1, int)
    return ImageObjects(image_id, correction.labels, np.array(ids, int),
                        np.array([correction.classes[k] for k in ids], int),
                        np.array([correction.score(k) for k in ids], float),
                        np.array([k in correction.reviewed_ids for k in ids], bool),
                        np.array([int(areas[k]) for k in ids], int), origin)


def _base_correction(project: Project, image_id: str):
    """The image's correction, or its current generated masks as an unreviewed one (ids 1..n in
    :func:`current_instances` order, their scores kept)."""
    correction = load_correction(project.root, image_id)
    if correction is not None:
        return correction
    files = project_files(project)
    return current_correction(files.state, files.entry(image_id))[0]


def image_objects(project_dir, image_id: str, state: LabelState | None = None) -> ImageObjects:
    """The image's objects with stable ids (see :class:`ImageObjects`); ``state``: a label state to read the
    generated masks with (default: the project's, held in memory)."""
    files = project_files(project_dir)
    correction, origin, _ = current_correction(state or files.state, files.entry(image_id))
    return _objects_of(correction, image_id, origin)


def overlapping_objects(project_dir, image_id: str) -> tuple:
    """The views' objects over the image's own (RunConfig.second_scale, mirror_view) as exported and not of a
    discarded category: (masks, {number: category before merges}) in the order the label state gives them, each
    number the object's among the image's overlapping objects (it stays when others leave); (None, {}) when none."""
    files = project_files(project_dir)
    if not files.state.project.overlapping_path(image_id).exists():  # most projects: not read a second time
        return None, {}
    found = files.state.instances(files.entry(image_id), "current", overlapping=True)
    numbers = found.overlapping if found.overlapping is not None else np.zeros(0, int)
    chosen = [i for i in np.flatnonzero(numbers) if files.state.resolve(int(found.categories[i])) is not None]
    if not chosen:
        return None, {}
    return found.masks[chosen], {int(numbers[i]): int(found.categories[i]) for i in chosen}


def overlapping_labels(project_dir, image_id: str) -> tuple:
    """:func:`overlapping_objects` as one label map (label = the object's number) for the review's outline layer;
    the larger painted first, so an object inside another stays visible and can be clicked. The review does not
    edit them (its label map holds one object per pixel); discarding their category removes them from the export."""
    masks, categories = overlapping_objects(project_dir, image_id)
    if masks is None:
        return None, {}
    labels = np.zeros(masks.shape[1:], np.uint16)
    for k in np.argsort([-int(np.count_nonzero(m)) for m in masks], kind="stable"):
        labels[masks[k]] = list(categories)[k]
    return labels, categories


def _edit_correction(project_dir, image_id: str, instance_id, edit) -> dict:
    """Under the state lock: the image's correction (made from its generated masks when it has none),
    ``edit(correction)`` -> undo record, saved. The record says which image and object, and whether the
    correction file was created by this edit (an undo then removes it again when nothing else changed)."""
    project = Project(project_dir)
    with project.state_lock():
        existing = load_correction(project.root, image_id)
        correction = existing if existing is not None else _base_correction(project, image_id)
        if instance_id is not None and int(instance_id) not in correction.ids():
            raise KeyError(f"Image {image_id} has no object {instance_id}; its objects are {correction.ids()}")
        # the edit may name the object itself (an added one gets its id inside the edit)
        undo = {"image_id": image_id, "instance_id": None if instance_id is None else int(instance_id),
                **edit(correction)}
        _save_correction(project, image_id, correction)
        undo.update({"created": existing is None, "digest": _digest(correction)})
    return undo


def _digest(correction: ImageCorrection) -> str:
    import hashlib

    text = repr((sorted(correction.classes.items()), sorted(correction.reviewed_ids)))
    return hashlib.sha1(np.ascontiguousarray(correction.labels).tobytes() + text.encode()).hexdigest()


def reject_object(project_dir, image_id: str, instance_id: int) -> dict:
    """Remove one object of an image by its instance id; the other objects keep their ids. Returns the undo
    record for :func:`restore_object` (it holds the object's pixels, category, score and reviewed flag)."""
    def edit(correction):
        mask = correction.labels == int(instance_id)
        record = {"action": "reject", "pixels": np.flatnonzero(mask), "category": correction.classes[int(instance_id)],
                  "score": correction.score(instance_id), "reviewed": int(instance_id) in correction.reviewed_ids}
        correction.labels[mask] = 0
        del correction.classes[int(instance_id)]
        correction.scores.pop(int(instance_id), None)
        correction.reviewed_ids.discard(int(instance_id))
        return record
    return _edit_correction(project_dir, image_id, instance_id, edit)


def accept_object(project_dir, image_id: str, instance_id: int) -> dict:
    """Mark one object as reviewed (its score is kept); returns the undo record."""
    def edit(correction):
        record = {"action": "accept", "reviewed": int(instance_id) in correction.reviewed_ids}
        correction.reviewed_ids.add(int(instance_id))
        return record
    return _edit_correction(project_dir, image_id, instance_id, edit)


def set_object_category(project_dir, image_id: str, instance_id: int, category_id: int,
                        allow_discarded: bool = False) -> dict:
    """Give one object another category (it becomes reviewed); returns the undo record. A discarded category
    (its objects are not exported) is refused unless ``allow_discarded`` (the user confirmed it)."""
    project = Project(project_dir)
    check_visible_category(fresh_label_state(project), category_id, allow_discarded)

    def edit(correction):
        record = {"action": "category", "category": correction.classes[int(instance_id)],
                  "reviewed": int(instance_id) in correction.reviewed_ids}
        correction.classes[int(instance_id)] = int(category_id)
        correction.reviewed_ids.add(int(instance_id))
        return record
    return _edit_correction(project_dir, image_id, instance_id, edit)


def restore_object(project_dir, undo: dict) -> None:
    """Undo :func:`reject_object`, :func:`accept_object`, :func:`set_object_category`, :func:`accept_image` or
    engine.state.prompt_review.add_object from the record they returned (an added object is removed): the object
    comes back under the same id with its category, score and reviewed flag (a rejected object's pixels are given
    back where no other object took them since). A grow, shrink, merge or split (engine.state.object_edits) gives
    back the pixels it changed where nothing changed them since, and the objects it took in (a split's new parts
    go). When the action created the image's correction and nothing else changed it since, the correction is
    removed."""
    project = Project(project_dir)
    image_id, instance_id = undo["image_id"], undo["instance_id"]
    with project.state_lock():
        correction = load_correction(project.root, image_id)
        if correction is None:
            raise FileNotFoundError(f"Image {image_id} has no correction to undo {undo['action']} in")
        if undo.get("created") and _digest(correction) == undo.get("digest"):
            correction_path(project.root, image_id).unlink()  # the index sees the file gone by its stamp
            return
        if undo["action"] == "add" and "changed_box" not in undo:
            if instance_id not in correction.classes:
                raise ValueError(f"Image {image_id} has no object {instance_id} any more; nothing to undo")
            correction.labels[correction.labels == instance_id] = 0
            del correction.classes[instance_id]
            correction.scores.pop(instance_id, None)
            correction.reviewed_ids.discard(instance_id)
            _save_correction(project, image_id, correction)
            return
        if undo["action"] in RELABELLING_ACTIONS or undo["action"] == "add":  # an add that took parts in
            _put_back_relabelling(correction, undo)
            _save_correction(project, image_id, correction)
            return
        if undo["action"] == "reject":
            if instance_id in correction.classes:
                raise ValueError(f"Object {instance_id} of image {image_id} is in use again; the reject cannot be "
                                 "undone")
            flat = correction.labels.reshape(-1)
            pixels = np.asarray(undo["pixels"], np.int64)
            flat[pixels[flat[pixels] == 0]] = instance_id
            correction.scores[instance_id] = float(undo["score"])
        if undo["action"] == "accept_image":
            correction.reviewed_ids = set(undo["reviewed_ids"])
        else:
            if "category" in undo:
                correction.classes[instance_id] = int(undo["category"])
            if undo["reviewed"]:
                correction.reviewed_ids.add(instance_id)
            else:
                correction.reviewed_ids.discard(instance_id)
        _save_correction(project, image_id, correction)


# records of a changed label window: engine.state.object_edits, engine.state.prompt_review.refine_object
RELABELLING_ACTIONS = ("grow", "shrink", "merge", "refine", "split")


def _put_back_relabelling(correction: ImageCorrection, undo: dict) -> None:
    """Undo a grow / shrink / merge / split: each pixel of its changed window that still holds what the edit
    wrote gets its value from before; the objects it changed or took in get their category, score and reviewed
    flag back, and the parts a split added are gone once they hold no pixel. An object it took in whose id is in
    use again cannot come back."""
    reused = sorted(k for k in undo["removed"] if k in correction.classes)
    if reused:
        raise ValueError(f"Object {reused[0]} of image {undo['image_id']} is in use again; the {undo['action']} "
                         "cannot be undone")
    top, left, bottom, right = undo["changed_box"]
    window = correction.labels[top:bottom, left:right]
    as_left = window == undo["after"]
    window[as_left] = undo["before"][as_left]
    for key in undo.get("added", ()):  # the parts a split made, unless an edit since gave them other pixels
        if not (correction.labels == key).any():
            correction.classes.pop(int(key), None)
            correction.scores.pop(int(key), None)
            correction.reviewed_ids.discard(int(key))
    for key, (category, score, reviewed) in undo["objects"].items():
        correction.classes[int(key)] = int(category)
        correction.scores[int(key)] = float(score)
        if reviewed:
            correction.reviewed_ids.add(int(key))
        else:
            correction.reviewed_ids.discard(int(key))


def _unreviewed(project_dir) -> list:
    """(image_id, instance id, score, position among the image's objects) of every unreviewed object, in
    images.json order and then by instance id, from the project index (no mask is decoded)."""
    index = project_index(project_dir)
    with index.lock:
        return list(index.unreviewed())


def low_confidence_objects(project_dir, limit: int | None = None) -> list:
    """(image_id, instance id, score) of every unreviewed object of the project, least confident first (the
    review queue; ids are those of :func:`image_objects`)."""
    found = sorted(((image_id, k, score) for image_id, k, score, _ in _unreviewed(project_dir)),
                   key=lambda item: item[2])
    return found[:limit] if limit else found


def category_sizes(project_dir, overlapping: bool = False) -> dict:
    """{category id: masks exported under it now} over every image (merges applied, discarded categories
    left out), from the project index: kept up to date as masks change, never recounted by decoding them.
    ``overlapping``: the views' overlapping objects exported beside the masks (outlined in the review)."""
    index = project_index(project_dir)
    with index.lock:
        return index.category_counts(overlapping)


def instance_source(project_dir, image_id: str) -> str:
    """Where :func:`current_instances` takes an image's masks from: "correction", "prediction" or "proposal"."""
    files = project_files(project_dir)
    return files.state.instances(files.entry(image_id), "current").origin
