"""Parts and wholes: a reviewer grows, shrinks, merges or splits objects of one image.

Grow and shrink walk the image's candidate tree (engine.method.hierarchy, built from its cached patch tokens:
no network pass): the object's node is the node of highest IoU with the object's patch coverage; grow takes
its parent, shrink its largest child (the nearest ancestor / largest-child descendant at least
``hierarchy.GROW_STEP`` times larger / smaller: a binary tree's parent often adds one stray patch; a grow goes
no higher than ``MAX_GROWN_SHARE`` of the image's patches, and moves on up while a level adds nothing), snapped to
the image's edges at full resolution by the guided filter a click's mask gets (engine.method.prompt). Merge
joins several objects into one; split cuts one along a stroke the user drew (engine.masks.split_along_stroke, a
pure function the plugin also uses to show the cut at once), or into two parts: where its colours part
(engine.method.colour_cut), else the two its tree node holds.

Each is written like every other review action (engine.state.review): into the image's correction (made from its
generated masks when it has none), as one read-modify-write under the project's state lock, and returns an undo
record for engine.state.review.restore_object. The edited object keeps its instance id (a merge keeps the largest
object's), becomes reviewed (a correction like a painted one, so retraining learns which level is the object),
and keeps its score. What a grow may take: pixels no object holds, pixels of objects of a discarded category
(hidden from the user), and whole objects lying at least ``ABSORB_SHARE`` inside the grown region (the parts of
the whole: they join it); other objects keep their pixels.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from engine.masks import (
    MIN_PART_PIXELS,
    STROKE_WIDTH_PIXELS,
    coverage_on_grid,
    mask_box,
    parts_record,
    split_along_stroke,
)
from engine.method.backbones import centres_keys
from engine.method.colour_cut import colour_halves
from engine.state.corrections import ImageCorrection
from engine.state.project import Project
from engine.state.project_index import fresh_label_state, project_files
from engine.state.review import EditRefused, _edit_correction, check_visible_category

MIN_CHANGE_PIXELS = 16  # a grow / shrink that moves fewer pixels than this tries the next level
MAX_GROWN_SHARE = 0.8  # a grow stops below regions of more of the image's patches (the whole image is no object)
ABSORB_SHARE = 0.5  # an object with at least this share of its pixels in the grown region joins it whole
_TREES_KEPT = 4  # images whose tree (and pixels) stay in memory: repeated Up / Down on one image cost no rebuild
_TREES: OrderedDict = OrderedDict()
_TREES_LOCK = threading.Lock()


def grow_object(project_dir, image_id: str, instance_id: int) -> dict:
    """Replace an object by its parent in the image's candidate tree (the whole it is a part of).

    Returns the undo record for engine.api.restore_object, which also says what changed: action "grow",
    image_id, instance_id (the object's, unchanged), category, box (x0, y0, x1, y1, pixels, exclusive) and area
    of the grown object, removed (ids of the objects it took in), and the changed window of the label map
    (changed_box (y0, x0, y1, x1), before, after) to update a displayed layer with.
    """
    project = Project(project_dir)
    entry = project_files(project).entry(image_id)
    tree, image = image_tree(project, entry)  # from generated files only: outside the lock

    def grow(correction: ImageCorrection) -> dict:  # under the state lock (engine.state.review._edit_correction)
        labels, old = correction.labels, correction.labels == int(instance_id)
        node = tree.node_matching(coverage_on_grid(old, tree.grid_hw))
        hidden = _hidden_objects(project, correction)
        for candidate in (k for k in tree.larger(node) if tree.sizes[k] <= MAX_GROWN_SHARE * tree.patches):
            region = _snapped(image, tree.patch_mask(candidate))
            absorbed = _mostly_inside(correction, region, exclude={int(instance_id), *hidden})
            takeable = np.isin(labels, [0, *hidden, *absorbed])
            grown = old | (region & takeable) | np.isin(labels, absorbed)
            if int((grown & ~old).sum()) >= MIN_CHANGE_PIXELS:
                return {"action": "grow", **_replace_object(correction, int(instance_id), grown, absorbed)}
        raise EditRefused(f"Object {instance_id} of {_name(entry)} cannot grow: the image's features outline no larger "
                         "region around it below most of the image, or what lies around it belongs to other "
                         "objects. Merge it with them, or paint.")

    return _edit_correction(project.root, image_id, instance_id, grow)


def shrink_object(project_dir, image_id: str, instance_id: int) -> dict:
    """Replace an object by its largest child in the image's candidate tree (its largest part, inside the
    object; the rest becomes background). Returns the undo record, as :func:`grow_object` (action "shrink")."""
    project = Project(project_dir)
    entry = project_files(project).entry(image_id)
    tree, image = image_tree(project, entry)

    def shrink(correction: ImageCorrection) -> dict:
        old = correction.labels == int(instance_id)
        node = tree.node_matching(coverage_on_grid(old, tree.grid_hw))
        for candidate in tree.smaller(node):
            part = _largest_part(old & _snapped(image, tree.patch_mask(candidate)))
            if int(part.sum()) >= MIN_CHANGE_PIXELS and int((old & ~part).sum()) >= MIN_CHANGE_PIXELS:
                return {"action": "shrink", **_replace_object(correction, int(instance_id), part, [])}
        raise EditRefused(f"Object {instance_id} of {_name(entry)} cannot shrink: the image's features outline no "
                         "smaller part of it. Paint over it to cut it.")

    return _edit_correction(project.root, image_id, instance_id, shrink)


def merge_objects(project_dir, image_id: str, instance_ids, category_id: int | None = None,
                  allow_discarded: bool = False) -> dict:
    """Join objects of an image into one: the largest keeps its id and takes the others' pixels. Its category
    is ``category_id`` (a discarded one only with ``allow_discarded``: the object would leave the export), else
    that of the largest object whose category is exported (a hidden part does not hide the whole). Returns the
    undo record, as :func:`grow_object` (action "merge"; removed: the other objects' ids)."""
    ids = sorted({int(k) for k in instance_ids})
    if len(ids) < 2:
        raise ValueError(f"Select two or more objects to merge (got {ids or 'none'}).")
    project = Project(project_dir)
    entry = project_files(project).entry(image_id)

    def merge(correction: ImageCorrection) -> dict:
        missing = sorted(set(ids) - set(correction.ids()))
        if missing:
            raise KeyError(f"{_name(entry)} has no object {', '.join(map(str, missing))}; its objects are "
                           f"{correction.ids()}")
        areas = np.bincount(correction.labels.ravel(), minlength=max(ids) + 1)
        by_size = sorted(ids, key=lambda k: (-int(areas[k]), k))  # the largest first; on a tie the lowest id
        kept, state = by_size[0], fresh_label_state(project)
        if category_id is not None:
            category = check_visible_category(state, category_id, allow_discarded)
        else:
            shown = [k for k in by_size if state.resolve(correction.classes[k]) is not None]
            category = correction.classes[(shown or by_size)[0]]
        joined = np.isin(correction.labels, ids)
        record = _replace_object(correction, kept, joined, [k for k in ids if k != kept], category)
        return {"action": "merge", "instance_id": kept, **record}

    return _edit_correction(project.root, image_id, None, merge)


def split_object(project_dir, image_id: str, instance_id: int, stroke,
                 width: int = STROKE_WIDTH_PIXELS) -> dict:
    """Cut an object along a stroke the user drew across it (``stroke``: (row, col) points, image pixels; drawn
    ``width`` pixels wide): each part of at least engine.masks.MIN_PART_PIXELS becomes an object of the object's
    category and score, reviewed; the largest keeps the id, the others take new ids; the stroke's pixels and
    crumbs go to the nearest part (engine.masks.split_along_stroke). A stroke that does not cut it in two is
    refused, naming the image. Returns the undo record, as :func:`grow_object` (action "split"; added: the new
    objects' ids, larger first)."""
    project = Project(project_dir)
    entry = project_files(project).entry(image_id)

    def split(correction: ImageCorrection) -> dict:  # under the state lock (engine.state.review._edit_correction)
        cut = split_along_stroke(correction.labels, int(instance_id), stroke, correction.next_id(), width)
        if cut is None:
            raise EditRefused(f"The stroke does not cut object {instance_id} of {_name(entry)} in two. Draw it "
                             "across the whole object, from outside one edge to outside the other (each part at "
                             f"least {MIN_PART_PIXELS} pixels).")
        return {"action": "split", **_apply_split(correction, cut)}

    return _edit_correction(project.root, image_id, instance_id, split)


def split_into_parts(project_dir, image_id: str, instance_id: int) -> dict:
    """Cut an object in two without a stroke: where its colours part (engine.method.colour_cut: two touching
    objects of one kind, or an object and what it sits on; on feral_cats it splits 49 of 62 pairs of touching cats
    right, the tree 27), else into the two parts the image's candidate tree sees in it (its largest part, the one
    :func:`shrink_object` keeps, and the rest). Each part is an object of the object's category and score,
    reviewed; the larger keeps the id. Returns the undo record, as :func:`split_object` (action "split")."""
    project = Project(project_dir)
    entry = project_files(project).entry(image_id)
    tree, image = image_tree(project, entry)

    def split(correction: ImageCorrection) -> dict:
        old = correction.labels == int(instance_id)
        box = mask_box(old)
        for part, rest in _two_parts(tree, image, old):
            if int(part.sum()) >= MIN_PART_PIXELS and int(rest.sum()) >= MIN_PART_PIXELS:
                larger, smaller = (part, rest) if part.sum() >= rest.sum() else (rest, part)
                parts = (larger[box] * 1 + smaller[box] * 2).astype(np.int32)
                cut = parts_record(correction.labels, int(instance_id), box, parts, correction.next_id())
                return {"action": "split", **_apply_split(correction, cut)}
        raise EditRefused(f"Object {instance_id} of {_name(entry)} cannot be split into parts: neither its colours "
                         "nor the image's features outline a part of it. Draw a stroke across it to cut it where you "
                         "want.")

    return _edit_correction(project.root, image_id, instance_id, split)


def _two_parts(tree, image: np.ndarray, old: np.ndarray):
    """(part, rest) pairs of full-size bool masks to try in turn: the colour cut's halves, then the candidate
    tree's smaller nodes under the object's, each snapped to the image's edges (its largest piece) and the rest."""
    halves = colour_halves(image, old)
    if halves is not None:
        _, box, pieces = halves
        part = np.zeros(old.shape, bool)
        part[box] = pieces == 1
        yield part, old & ~part
    node = tree.node_matching(coverage_on_grid(old, tree.grid_hw))
    for candidate in tree.smaller(node):
        part = _largest_part(old & _snapped(image, tree.patch_mask(candidate)))
        yield part, old & ~part


def _apply_split(correction: ImageCorrection, cut: dict) -> dict:
    """Write a cut of engine.masks.split_along_stroke into the correction: the new parts take the object's
    category and score, and every part is reviewed. Returns the cut with what restore_object needs."""
    kept = cut["instance_id"]
    category, score = correction.classes[kept], correction.score(kept)
    objects = {kept: (category, score, kept in correction.reviewed_ids)}
    if cut["after"].dtype != correction.labels.dtype:  # the new ids need a wider label type
        correction.labels = correction.labels.astype(cut["after"].dtype)
    top, left, bottom, right = cut["changed_box"]
    correction.labels[top:bottom, left:right] = cut["after"]
    for key in (kept, *cut["added"]):
        correction.classes[key] = category
        correction.scores[key] = score
        correction.reviewed_ids.add(key)
    return {**cut, "category": category, "removed": [], "objects": objects}


def image_tree(project: Project, entry: dict) -> tuple:
    """(CandidateTree, image pixels) of one image, from its cached patch tokens; the last few are kept."""
    key = (str(project.features_dir), entry.get("feature_key", ""), entry["relative_path"])
    with _TREES_LOCK:
        if key in _TREES:
            _TREES.move_to_end(key)
            return _TREES[key]
    found = _build_tree(project, entry)
    with _TREES_LOCK:
        _TREES[key] = found
        while len(_TREES) > _TREES_KEPT:
            _TREES.popitem(last=False)
    return found


def _build_tree(project: Project, entry: dict) -> tuple:
    from engine.io.images import ImageSource
    from engine.method.features import FeatureCache
    from engine.method.hierarchy import candidate_tree

    config = project.read_config()
    features = FeatureCache(project.features_dir).get(entry.get("feature_key", ""))
    if features is None:
        raise FileNotFoundError(f"{project.features_dir}: no cached features of {entry['relative_path']}; run "
                                f"`maskdistill run` on {project.root} again to compute them (a cache prune may "
                                "have removed them)")
    centre = centres_keys(config.get("backbone", {}).get("family"))
    image = ImageSource.of_project(config).load(entry)
    return candidate_tree(features.tokens, features.grid_hw, centre=centre), image


def _snapped(image: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(H, W) bool: a patch mask snapped to the image's edges, as a click's mask is (engine.method.prompt)."""
    from engine.method.prompt import _refined

    return _refined(image, cells.astype(np.float32), 1e-3)


def _hidden_objects(project: Project, correction: ImageCorrection) -> list:
    """Ids of the image's objects whose category is discarded: not shown, not exported, free to grow into."""
    state = fresh_label_state(project)
    return [k for k in correction.ids() if state.discard_mode(correction.classes[k]) is not None]


def _mostly_inside(correction: ImageCorrection, region: np.ndarray, exclude: set) -> list:
    """Ids of the objects (other than ``exclude``) with at least ABSORB_SHARE of their pixels in ``region``."""
    labels = correction.labels
    areas = np.bincount(labels.ravel())
    inside = np.bincount(labels[region], minlength=len(areas))
    return [k for k in correction.ids() if k not in exclude and inside[k] >= ABSORB_SHARE * areas[k]]


def _largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected part of a mask (a tree node is one piece on the grid; the edge snapping and
    the cut to the object may leave crumbs)."""
    from scipy import ndimage

    parts, count = ndimage.label(mask)
    if count <= 1:
        return mask
    return parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))


def _replace_object(correction: ImageCorrection, instance_id: int, mask: np.ndarray, removed: list,
                    category: int | None = None) -> dict:
    """Make ``mask`` the object ``instance_id`` (reviewed, of ``category`` or its own), drop the objects of
    ``removed`` (their pixels must lie in ``mask``); returns what changed and what restore_object needs to put
    it back: the changed window of the label map before and after, and the table entries it changed."""
    labels = correction.labels
    old = labels == instance_id
    rows, cols = np.nonzero(old != mask)
    changed_box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    window = (slice(changed_box[0], changed_box[2]), slice(changed_box[1], changed_box[3]))
    before = labels[window].copy()
    objects = {k: (correction.classes[k], correction.score(k), k in correction.reviewed_ids)
               for k in [instance_id, *removed]}
    labels[old & ~mask] = 0
    labels[mask] = instance_id
    for key in removed:
        del correction.classes[key]
        correction.scores.pop(key, None)
        correction.reviewed_ids.discard(key)
    if category is not None:
        correction.classes[instance_id] = int(category)
    correction.reviewed_ids.add(instance_id)
    rows, cols = np.nonzero(mask)
    return {"instance_id": instance_id, "category": correction.classes[instance_id], "area": int(mask.sum()),
            "box": (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1),
            "removed": [int(k) for k in removed], "changed_box": changed_box, "before": before,
            "after": labels[window].copy(), "objects": objects}


def _name(entry: dict) -> str:
    from engine.io.images import message_name

    return message_name(entry)
