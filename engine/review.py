"""What a reviewer does to pseudo-labels, as plain functions over a project folder (the napari widgets and
scripts both call these, through engine.api). Every change applies to all images at once and is saved
immediately to the user's files (categories.json, assignments.json, corrections/), never to generated results,
each as one read-modify-write under the project's state lock (two writers never lose a change). What the masks
and categories *are* is read from engine.label_state, the one owner of the label state.
"""
from __future__ import annotations

import shutil
import time

import numpy as np

from .atomic import read_json
from .coco import iter_coco_images, read_coco_categories
from .corrections import (
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
from .label_state import LabelState
from .project import Project, load_image_proposals


def _category(state: LabelState, category_id: int) -> Category:
    if int(category_id) not in state.table.by_id():
        raise KeyError(f"No category {category_id}; known: {sorted(state.table.by_id())}")
    return state.category(category_id)


def _edit_table(project_dir, edit) -> None:
    """Load the label state, apply ``edit(state)`` to its table and save it, all under the state lock."""
    project = Project(project_dir)
    with project.state_lock():
        state = LabelState.load(project)
        edit(state)
        state.table.clustering = state.clusters.get("id")
        save_categories(project.root, state.table)


def rename_category(project_dir, category_id: int, name: str) -> None:
    if not name.strip():
        raise ValueError("A category name cannot be empty.")

    def edit(state):
        category = _category(state, category_id)
        category.name, category.user_named = name.strip(), True
    _edit_table(project_dir, edit)


def recolour_category(project_dir, category_id: int, rgb) -> None:
    if len(rgb) != 3 or not all(0 <= int(v) <= 255 for v in rgb):
        raise ValueError(f"A colour is three values 0-255, not {rgb!r}")

    def edit(state):
        _category(state, category_id).colour = [int(v) for v in rgb]
    _edit_table(project_dir, edit)


def merge_categories(project_dir, category_ids, into: int) -> None:
    """Every mask of ``category_ids`` becomes ``into`` (kept as a reversible link, not a rewrite)."""
    def edit(state):
        _category(state, into).merged_into = None  # the target stays a category of its own: no merge cycle
        for category_id in category_ids:
            if category_id != into:
                _category(state, category_id).merged_into = into
    _edit_table(project_dir, edit)


def discard_category(project_dir, category_id: int, mode: str = "background") -> None:
    """Drop a category from exports; for training its pixels become background or carry no label."""
    if mode not in DISCARD_MODES:
        raise ValueError(f"discard mode must be one of {', '.join(DISCARD_MODES)}, not {mode!r}")

    def edit(state):
        _category(state, category_id).discarded = mode
    _edit_table(project_dir, edit)


def restore_category(project_dir, category_id: int) -> None:
    """Undo a discard or a merge."""
    def edit(state):
        category = _category(state, category_id)
        category.discarded, category.merged_into = None, None
    _edit_table(project_dir, edit)


def split_category(project_dir, category_id: int, parts: int, seed: int = 0) -> list:
    """Re-cluster the proposals of one category into ``parts`` categories; returns the new category ids
    (the first part keeps ``category_id``). Each proposal's new category is saved under the mask's key, so it
    follows that mask through re-runs."""
    project = Project(project_dir)
    with project.state_lock():
        state = LabelState.load(project)
        source = _category(state, category_id)
        members, embeddings = [], []
        for entry in read_json(project.images_path):
            proposals, vectors, _ = load_image_proposals(project.proposals_path(entry["image_id"]),
                                                         (entry["height"], entry["width"]))
            categories = state.proposal_categories(entry, proposals.masks)
            for key, category, vector in zip(state.mask_keys(entry, proposals.masks), categories, vectors):
                if category == category_id:
                    members.append(key)
                    embeddings.append(vector)
        if len(members) < parts:
            raise ValueError(f"Category {source.name!r} has {len(members)} masks; it cannot be split into {parts}.")
        from .clustering import kmeans, whiten  # torch: loaded only when a split needs it

        labels, _, _ = kmeans(whiten(np.stack(embeddings)), parts, seed=seed)
        next_id = max(state.table.by_id()) + 1
        new_ids = [category_id] + list(range(next_id, next_id + parts - 1))
        for part, new_id in enumerate(new_ids[1:], start=1):
            state.table.categories.append(Category(new_id, f"{source.name}_{part + 1}"))
        assignments = dict(state.assignments)
        for key, label in zip(members, labels):
            assignments[key] = new_ids[int(label)]
        state.table.clustering = state.clusters.get("id")
        save_categories(project.root, state.table)
        save_assignments(project.root, assignments)
    return new_ids


def set_image_masks(project_dir, image_id: str, masks, category_ids, reviewed: bool = True) -> None:
    """Save the user's masks of one image (they replace generated ones in exports and count most in training)."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3 or len(masks) != len(category_ids):
        raise ValueError("masks must be (n, H, W) with one category id per mask")
    project = Project(project_dir)
    with project.state_lock():
        save_correction(project.root, image_id, ImageCorrection.from_instances(masks.shape[1:], masks, category_ids,
                                                                               reviewed))


def set_image_labels(project_dir, image_id: str, labels: np.ndarray, classes: dict, reviewed: bool = True) -> None:
    """Save an edited instance label map (what napari's Labels layer holds) as the image's correction."""
    project = Project(project_dir)
    with project.state_lock():
        save_correction(project.root, image_id, ImageCorrection(np.asarray(labels), dict(classes), reviewed))


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
    image that already has the user's correction keeps it (counted under "kept"). ``replace`` replaces the
    category table and every correction instead, after copying them to backups/. The whole file is checked
    before anything is written: no image matching the project, no categories, an undefined category or a
    wrong image size is an error that changes nothing.
    """
    project = Project(project_dir)
    file_categories = read_coco_categories(coco_path)
    if not file_categories:
        raise ValueError(f"{coco_path} defines no categories; nothing was imported")
    defined = {c["id"] for c in file_categories}
    entries = {e["relative_path"]: e for e in read_json(project.images_path)}
    matched, unmatched = [], []
    for file_name, hw, _, category_ids in iter_coco_images(coco_path):
        if file_name not in entries:
            unmatched.append(file_name)
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
    if not matched:
        raise ValueError(f"{coco_path}: none of its {len(unmatched)} images is an image of {project.root} (first: "
                         f"{', '.join(unmatched[:3]) or 'none'}); file names must be relative to the image folder. "
                         "Nothing was imported.")
    with project.state_lock():
        state = LabelState.load(project)
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
        for file_name, _, masks, category_ids in iter_coco_images(coco_path):
            if file_name not in targets:
                continue
            image_id = entries[file_name]["image_id"]
            if not replace and correction_path(project.root, image_id).exists():
                kept.append(file_name)  # the user's own work is never overwritten by a merge
                continue
            save_correction(project.root, image_id, ImageCorrection.from_instances(
                masks.shape[1:], masks, [id_map[int(c)] for c in category_ids], reviewed=False))
        save_categories(project.root, table)
    return {"images": len(matched) - len(kept), "unmatched": unmatched, "categories": len(file_categories),
            "kept": kept, "backup": backup, "mode": "replace" if replace else "merge"}


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


def _entry(project: Project, image_id: str) -> dict:
    entry = next((e for e in read_json(project.images_path) if e["image_id"] == image_id), None)
    if entry is None:
        raise KeyError(f"No image {image_id!r} in {project.root}")
    return entry


def current_instances(project_dir, image_id: str) -> tuple:
    """(masks, category ids, scores, reviewed) of one image as a user would export it right now (categories
    before merges, so the review shows what the user can restore)."""
    project = Project(project_dir)
    found = LabelState.load(project).instances(_entry(project, image_id), "current")
    return found.masks, np.asarray(found.categories, int), np.asarray(found.scores, float), found.reviewed


def reject_mask(project_dir, image_id: str, index: int) -> None:
    """Remove one mask of an image (the image's masks become the user's correction)."""
    masks, classes, _, _ = current_instances(project_dir, image_id)
    if not 0 <= index < len(masks):
        raise IndexError(f"Image {image_id} has {len(masks)} masks; there is no mask {index}.")
    keep = np.arange(len(masks)) != index
    set_image_masks(project_dir, image_id, masks[keep], classes[keep], reviewed=True)


def accept_image(project_dir, image_id: str) -> None:
    """Mark an image's current masks as checked by the user (they become its correction)."""
    masks, classes, _, _ = current_instances(project_dir, image_id)
    set_image_masks(project_dir, image_id, masks, classes, reviewed=True)


def low_confidence_masks(project_dir, limit: int | None = None) -> list:
    """(image_id, mask index, score) of the masks in images not yet reviewed, least confident first."""
    project = Project(project_dir)
    state = LabelState.load(project)
    found = []
    for entry in read_json(project.images_path):
        instances = state.instances(entry, "current")
        if instances.reviewed:
            continue
        found += [(entry["image_id"], i, float(s)) for i, s in enumerate(instances.scores)]
    found.sort(key=lambda item: item[2])
    return found[:limit] if limit else found


def instance_source(project_dir, image_id: str) -> str:
    """Where :func:`current_instances` takes an image's masks from: "correction", "prediction" or "proposal"."""
    project = Project(project_dir)
    return LabelState.load(project).instances(_entry(project, image_id), "current").origin
