"""What a reviewer does to pseudo-labels, as plain functions over a project folder (the napari widgets and
scripts both call these). Every change applies to all images at once and is saved immediately to the
user's files (categories.json, assignments.json, corrections/), never to generated results.
"""
from __future__ import annotations

import numpy as np

from .atomic import read_json
from .clustering import kmeans, whiten
from .coco import read_coco
from .corrections import (
    DISCARD_MODES,
    Category,
    CategoryTable,
    ImageCorrection,
    load_assignments,
    load_categories,
    load_correction,
    save_assignments,
    save_categories,
    save_correction,
)
from .export import iter_instances
from .project import Project, load_image_proposals


def _table(project: Project):
    return load_categories(project.root, read_json(project.clusters_path))


def _category(table, category_id: int) -> Category:
    try:
        return table.by_id()[category_id]
    except KeyError:
        raise KeyError(f"No category {category_id}; known: {sorted(table.by_id())}") from None


def rename_category(project_dir, category_id: int, name: str) -> None:
    if not name.strip():
        raise ValueError("A category name cannot be empty.")
    project = Project(project_dir)
    table = _table(project)
    _category(table, category_id).name = name.strip()
    save_categories(project.root, table)


def recolour_category(project_dir, category_id: int, rgb) -> None:
    if len(rgb) != 3 or not all(0 <= int(v) <= 255 for v in rgb):
        raise ValueError(f"A colour is three values 0-255, not {rgb!r}")
    project = Project(project_dir)
    table = _table(project)
    _category(table, category_id).colour = [int(v) for v in rgb]
    save_categories(project.root, table)


def merge_categories(project_dir, category_ids, into: int) -> None:
    """Every mask of ``category_ids`` becomes ``into`` (kept as a reversible link, not a rewrite)."""
    project = Project(project_dir)
    table = _table(project)
    _category(table, into).merged_into = None  # the target stays a category of its own: no merge cycle
    for category_id in category_ids:
        if category_id != into:
            _category(table, category_id).merged_into = into
    save_categories(project.root, table)


def discard_category(project_dir, category_id: int, mode: str = "background") -> None:
    """Drop a category from exports; for training its pixels become background or carry no label."""
    if mode not in DISCARD_MODES:
        raise ValueError(f"discard mode must be one of {', '.join(DISCARD_MODES)}, not {mode!r}")
    project = Project(project_dir)
    table = _table(project)
    _category(table, category_id).discarded = mode
    save_categories(project.root, table)


def restore_category(project_dir, category_id: int) -> None:
    """Undo a discard or a merge."""
    project = Project(project_dir)
    table = _table(project)
    category = _category(table, category_id)
    category.discarded, category.merged_into = None, None
    save_categories(project.root, table)


def split_category(project_dir, category_id: int, parts: int, seed: int = 0) -> list:
    """Re-cluster the proposals of one category into ``parts`` categories; returns the new category ids
    (the first part keeps ``category_id``)."""
    project = Project(project_dir)
    clusters = read_json(project.clusters_path)
    table = _table(project)
    source = _category(table, category_id)
    assignments = load_assignments(project.root)
    cluster_of = {f"{m['image_id']}/{m['index']}": m["cluster"] + 1 for m in clusters["masks"]}
    members, embeddings = [], []
    for entry in read_json(project.images_path):
        _, vectors, _ = load_image_proposals(project.proposals_path(entry["image_id"]),
                                             (entry["height"], entry["width"]))
        for index, vector in enumerate(vectors):
            key = f"{entry['image_id']}/{index}"
            if assignments.get(key, cluster_of.get(key)) == category_id:
                members.append(key)
                embeddings.append(vector)
    if len(members) < parts:
        raise ValueError(f"Category {source.name!r} has {len(members)} masks; it cannot be split into {parts}.")
    labels, _, _ = kmeans(whiten(np.stack(embeddings)), parts, seed=seed)
    next_id = max(c.id for c in table.categories) + 1
    new_ids = [category_id] + list(range(next_id, next_id + parts - 1))
    for part, new_id in enumerate(new_ids[1:], start=1):
        table.categories.append(Category(new_id, f"{source.name}_{part + 1}"))
    for key, label in zip(members, labels):
        assignments[key] = new_ids[int(label)]
    save_categories(project.root, table)
    save_assignments(project.root, assignments)
    return new_ids


def set_image_masks(project_dir, image_id: str, masks, category_ids, reviewed: bool = True) -> None:
    """Save the user's masks of one image (they replace generated ones in exports and count most in training)."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3 or len(masks) != len(category_ids):
        raise ValueError("masks must be (n, H, W) with one category id per mask")
    project = Project(project_dir)
    save_correction(project.root, image_id, ImageCorrection.from_instances(masks.shape[1:], masks, category_ids,
                                                                           reviewed))


def set_image_labels(project_dir, image_id: str, labels: np.ndarray, classes: dict, reviewed: bool = True) -> None:
    """Save an edited instance label map (what napari's Labels layer holds) as the image's correction."""
    project = Project(project_dir)
    save_correction(project.root, image_id, ImageCorrection(np.asarray(labels), dict(classes), reviewed))


def image_correction(project_dir, image_id: str):
    return load_correction(Project(project_dir).root, image_id)


def import_coco(project_dir, coco_path) -> dict:
    """Existing COCO annotations become the starting masks to correct (unreviewed corrections) and their
    categories the category table. Images are matched by file name relative to the project's image folder."""
    project = Project(project_dir)
    images, categories = read_coco(coco_path)
    entries = {e["relative_path"]: e for e in read_json(project.images_path)}
    unmatched = [name for name in images if name not in entries]
    matched = [name for name in images if name in entries]
    for file_name in matched:  # check every image before writing any correction: no half-done import
        masks, entry = images[file_name][0], entries[file_name]
        if masks.shape[1:] != (entry["height"], entry["width"]):
            raise ValueError(f"{coco_path}: {file_name} is {masks.shape[2]}x{masks.shape[1]} in the COCO file but "
                             f"{entry['width']}x{entry['height']} on disk")
    for file_name in matched:
        masks, category_ids = images[file_name]
        set_image_masks(project.root, entries[file_name]["image_id"], masks, category_ids, reviewed=False)
    imported = len(matched)
    save_categories(project.root, CategoryTable([Category(c["id"], c["name"]) for c in categories]))
    return {"images": imported, "unmatched": unmatched, "categories": len(categories)}


def current_instances(project_dir, image_id: str) -> tuple:
    """(masks, category ids, scores, reviewed) of one image as a user would export it right now."""
    project = Project(project_dir)
    clusters = read_json(project.clusters_path)
    entry = next((e for e in read_json(project.images_path) if e["image_id"] == image_id), None)
    if entry is None:
        raise KeyError(f"No image {image_id!r} in {project.root}")
    _, masks, classes, scores = next(iter_instances(project, [entry], clusters, "current"))
    correction = load_correction(project.root, image_id)
    return masks, np.asarray(classes, int), np.asarray(scores, float), bool(correction and correction.reviewed)


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
    clusters = read_json(project.clusters_path)
    found = []
    for entry, masks, _, scores in iter_instances(project, read_json(project.images_path), clusters, "current"):
        correction = load_correction(project.root, entry["image_id"])
        if correction is not None and correction.reviewed:
            continue
        found += [(entry["image_id"], i, float(s)) for i, s in enumerate(scores)]
    found.sort(key=lambda item: item[2])
    return found[:limit] if limit else found


def instance_source(project_dir, image_id: str) -> str:
    """Where :func:`current_instances` takes an image's masks from: "correction", "prediction" or "proposal"."""
    project = Project(project_dir)
    if load_correction(project.root, image_id) is not None:
        return "correction"
    return "prediction" if project.predictions_path(image_id).exists() else "proposal"
