"""One-click objects: a point (or a box) on an image becomes a new object of the user's correction; further
clicks refine it (``refine_object``: positive and negative points).

A click's mask comes from :func:`engine.method.prompt.points_mask` over the image's cached patch tokens
(``features/``, the key in images.json) and the image's pixels (for its edges): no network pass. A box takes a
closer look (engine.method.closer_look): a crop around it goes through the backbone once, so small objects get
finer edges. The object is written
like every other review action (engine.state.review): into the image's correction (made from its generated
masks when it has none), as one read-modify-write under the project's state lock. The new object takes only
pixels no other object holds (a click never takes away the user's work), gets the next unused instance id,
the chosen category, score 1.0 and the reviewed flag (the user made it).
"""
from __future__ import annotations

import numpy as np

from engine.method.backbones import centres_keys
from engine.state.corrections import ImageCorrection
from engine.state.label_state import LabelState
from engine.state.project import Project
from engine.state.review import EditRefused, _edit_correction, check_visible_category
from engine.state.schema import read_images

MIN_OBJECT_PIXELS = 16  # a proposal with fewer free pixels than this is no object
TAKE_IN_SHARE = 0.7  # a generated object with this share of its pixels in a box's mask is a part of it
# one adding click of an object made without a box may at most add this many times its size (when that is also
# more than MAX_CLICK_GROWTH_SHARE of the image): a click on the background beside it cut the whole sky
MAX_CLICK_GROWTH, MAX_CLICK_GROWTH_SHARE = 3.0, 0.05


def add_object(project_dir, image_id: str, point=None, box=None, category: int | None = None,
               allow_discarded: bool = False, closer_look: bool = True) -> dict:
    """Add the object at ``point`` (x, y) and/or in ``box`` (x0, y0, x1, y1), image pixels, to an image as a
    new object of ``category`` (None: the first category that is neither merged nor discarded). A discarded
    category (its objects are not exported) is refused (engine.state.review.DiscardedCategoryError) unless
    ``allow_discarded``: the user confirmed it. ``closer_look``: a box is answered from a crop embedded anew
    (engine.method.closer_look; False: from the cached tokens only, no network pass).

    A box says where the whole object is, so it wins over the generated objects (those no one reviewed: the
    user's own are never touched): its mask takes their pixels, and the ones lying mostly inside it
    (``TAKE_IN_SHARE`` of their pixels) are its parts, taken in whole, as a merge would.

    Returns the undo record for engine.api.restore_object: action "add", image_id, instance_id (the new
    object's id), area (pixels), category, and (as every review edit's) whether the correction was created;
    a box's also removed (the parts' ids) and the changed window (changed_box, before, after), as
    engine.state.object_edits.merge_objects' record.
    """
    project = Project(project_dir)
    config = project.read_config()
    entry = _entry(project, image_id)
    name = entry["relative_path"]
    try:
        # from generated files only: outside the lock
        mask = object_mask(project, config, entry, point, box, closer_look=closer_look)
    except ValueError as error:  # a prompt outside the image: say which image
        raise ValueError(f"{name}: {error}") from None

    return _edit_correction(project.root, image_id, None, _adding(project, name, mask, category, allow_discarded,
                                                                  point, box))


def take_overlapping_object(project_dir, image_id: str, label: int) -> dict:
    """The image's overlapping object ``label`` (engine.api.overlapping_labels: a second scale's object over the
    image's own) made an object of the image, of its category: as a box's object it wins over the generated objects
    (their pixels; those lying mostly inside it taken in whole), never over the user's reviewed ones. An object of
    the image then holds it, so it leaves the overlapping objects and is exported once. Returns the undo record for
    engine.api.restore_object (as add_object's with a box)."""
    from engine.state.review import overlapping_objects

    project = Project(project_dir)
    name = _entry(project, image_id)["relative_path"]
    masks, categories = overlapping_objects(project.root, image_id)
    if masks is None or int(label) not in categories:
        raise EditRefused(f"{name} has no overlapping object {label} (now: "
                          f"{', '.join(map(str, sorted(categories))) or 'none'}); open the image again.")
    mask = masks[list(categories).index(int(label))]  # whole, also where a smaller outline lies over it
    rows, cols = np.nonzero(mask)
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    record = _edit_correction(project.root, image_id, None,
                              _adding(project, name, mask, categories[int(label)], False, None, box))
    return {**record, "outlined": int(label)}  # the undo says what comes back


def _adding(project: Project, name: str, mask: np.ndarray, category, allow_discarded: bool, point, box):
    """The edit that adds ``mask`` as a new object (engine.state.review._edit_correction runs it under the state
    lock): with a ``box`` it wins over the generated objects and takes in their parts, else it takes free pixels."""
    def add(correction: ImageCorrection) -> dict:  # under the state lock (engine.state.review._edit_correction)
        category_id = _category_id(LabelState.load(project), category, allow_discarded)
        parts, labels = _claimed(mask, correction, box)
        free = _free_part(mask, labels, point, name)
        if int(free.sum()) < MIN_OBJECT_PIXELS:
            taken = ", ".join(str(k) for k in sorted(set(np.unique(correction.labels[mask]).tolist()) - {0}))
            raise EditRefused(f"No new object at {_where(point, box)} of {name}: its mask "
                             f"({int(mask.sum())} pixels) lies on objects {taken} already; reject one of them "
                             "first, or paint the object.")
        instance_id = correction.next_id()
        correction.classes[instance_id] = category_id
        correction.scores[instance_id] = 1.0
        if box is not None:  # as a merge: undone by putting the changed window and the parts back
            from engine.state.object_edits import _replace_object

            record = _replace_object(correction, instance_id, free | np.isin(correction.labels, parts), parts)
            del record["objects"][instance_id]  # it did not exist before: the undo removes it
            shrunk = set(np.unique(record["before"][record["after"] == instance_id]).tolist()) - {0, *parts}
            return {"action": "add", **record, "added": [instance_id], "shrunk": sorted(int(k) for k in shrunk)}
        correction.labels[free] = instance_id
        correction.reviewed_ids.add(instance_id)
        return {"action": "add", "instance_id": instance_id, "area": int(free.sum()), "category": category_id}

    return add


def refine_object(project_dir, image_id: str, instance_id: int, positive=(), negative=(), box=None,
                  closer_look: bool = True, newest: str | None = None) -> dict:
    """Remake the object being made by clicks from all of them: ``positive`` (x, y) points on it (the first
    click and each left click since), ``negative`` points off it (right / shift clicks), image pixels, and an
    optional ``box`` (with ``closer_look``, answered from a crop around it, as add_object's). Its mask
    (engine.method.prompt.points_mask) replaces the object's pixels, in the parts under its positive points (and,
    with a box, its largest part): only pixels no other object holds, or, with a box, as add_object's box, also
    the generated objects' pixels, and those objects lying mostly inside it whole. The object keeps its id and
    category and becomes reviewed. ``newest``: the list the newest point was added to, "positive" (the object on
    screen only grows: joined with the new answer) or "negative" (it only shrinks: cut to it), as a user expects
    of one click (a refit of the box's classifier may move the boundary elsewhere too; docs/decisions.md
    #d-box-clicks); None: the new answer replaces the object.

    Returns the undo record for engine.api.restore_object, which also says what changed: action "refine",
    image_id, instance_id, category, area, box (x0, y0, x1, y1) and the changed window of the label map
    (changed_box (y0, x0, y1, x1), before, after), as engine.state.object_edits.grow_object's.
    """
    from engine.state.object_edits import _replace_object

    if newest not in (None, "positive", "negative"):
        raise ValueError(f"newest is 'positive', 'negative' or None, not {newest!r}")
    positive, negative = [tuple(p) for p in positive], [tuple(p) for p in negative]
    project = Project(project_dir)
    entry = _entry(project, image_id)
    name = entry["relative_path"]
    try:
        mask = object_mask(project, project.read_config(), entry, box=box, positive=positive, negative=negative,
                           closer_look=closer_look)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None

    def refine(correction: ImageCorrection) -> dict:  # under the state lock (engine.state.review._edit_correction)
        own = correction.labels == int(instance_id)
        answer = mask | own if newest == "positive" else mask & own if newest == "negative" else mask
        parts, labels = _claimed(answer, correction, box)
        refined = _parts_at(answer & (own | (labels == 0)), positive, with_largest=box is not None)
        if newest == "positive":
            refined |= own
            added, size = int((refined & ~own).sum()), int(own.sum())
            if box is None and added > MAX_CLICK_GROWTH * size and added > MAX_CLICK_GROWTH_SHARE * own.size:
                raise EditRefused(f"Object {instance_id} of {name}: this click would add {added:,} pixels to its "
                                  f"{size:,}, most likely the background around it. Click closer inside the "
                                  "missing part, draw a box around the object, or paint the part.")
        if int(refined.sum()) < MIN_OBJECT_PIXELS:
            raise EditRefused(f"Object {instance_id} of {name}: these clicks leave it no free pixels ({int(mask.sum())}"
                             " pixels lie on other objects); undo the last click, or paint the object.")
        if np.array_equal(refined, own):
            raise EditRefused(f"Object {instance_id} of {name}: the click changes nothing. Click a region the "
                             "object misses (left) or holds wrongly (right or shift-click), further from its edge.")
        return {"action": "refine", **_replace_object(correction, int(instance_id),
                                                      refined | np.isin(correction.labels, parts), parts)}

    return _edit_correction(project.root, image_id, instance_id, refine)


def _claimed(mask: np.ndarray, correction: ImageCorrection, box) -> tuple:
    """(parts, labels): what an object made with a ``box`` takes, when added and when refined by clicks. A box
    says where the whole object is, so it wins over the generated objects (never over the user's reviewed ones):
    ``labels`` is the label map with only reviewed objects left (the pixels the mask may take are its zeros),
    ``parts`` the generated objects lying mostly inside the mask, taken in whole. Without a box: no parts, the
    label map as it is (a click takes only free pixels)."""
    if box is None:
        return [], correction.labels
    labels = np.where(np.isin(correction.labels, sorted(correction.reviewed_ids)), correction.labels, 0)
    return _generated_parts_inside(mask, correction), labels


def _generated_parts_inside(mask: np.ndarray, correction: ImageCorrection) -> list:
    """Ids of the objects no one reviewed with at least TAKE_IN_SHARE of their pixels inside ``mask``, or too
    few outside it to stay an object."""
    ids, inside = np.unique(correction.labels[mask], return_counts=True)
    areas = np.bincount(correction.labels.ravel())
    return [int(k) for k, n in zip(ids.tolist(), inside.tolist())
            if k and k not in correction.reviewed_ids
            and (n >= TAKE_IN_SHARE * areas[k] or areas[k] - n < MIN_OBJECT_PIXELS)]


def _parts_at(mask: np.ndarray, points: list, with_largest: bool = False) -> np.ndarray:
    """The connected parts of ``mask`` under any of the points, else its largest part (a click on its edge);
    ``with_largest`` (a box's object): its largest part too, the object the box holds."""
    from scipy import ndimage

    parts, count = ndimage.label(mask)
    if count == 0:
        return mask
    height, width = mask.shape
    under = {int(parts[min(max(int(y), 0), height - 1), min(max(int(x), 0), width - 1)]) for x, y in points} - {0}
    if not under or with_largest:
        under |= {1 + int(np.argmax(np.bincount(parts.ravel())[1:]))}
    return np.isin(parts, sorted(under))


def object_mask(project: Project, config: dict, entry: dict, point=None, box=None, positive=(),
                negative=(), closer_look: bool = True) -> np.ndarray:
    """(H, W) bool: the object a point / box (or several ``positive`` and ``negative`` points) shows on one
    image, from its cached features and its pixels; with a box and ``closer_look``, from the tokens of a crop
    around the box (engine.method.closer_look: one network pass, finer edges on small objects)."""
    from engine.io.images import ImageSource
    from engine.method.closer_look import closer_look_mask, loadable_crop_embedder
    from engine.method.features import FeatureCache  # torch: loaded by the first click (the plugin has it)
    from engine.method.prompt import points_mask

    features = FeatureCache(project.features_dir).get(entry.get("feature_key", ""))
    if features is None:
        raise FileNotFoundError(f"{project.features_dir}: no cached features of {entry['relative_path']}; run "
                                f"`maskdistill run` on {project.root} again to compute them (a cache prune may "
                                "have removed them)")
    image = ImageSource.of_project(config).load(entry)
    centre = centres_keys(config.get("backbone", {}).get("family"))
    # the tokens, not the keys: every cache format keeps them (the compact one drops the keys), and on the
    # example photos they gave whole objects where the keys more often gave parts
    points = ([] if point is None else [point]) + list(positive)
    if box is not None and closer_look:
        embed = loadable_crop_embedder(config.get("config", {}))
        if embed is not None:
            return closer_look_mask(embed, image, box, positive=points, negative=negative, centre=centre)
    return points_mask(features.tokens, features.grid_hw, image, positive=points, negative=negative, box=box,
                       centre=centre)


def _free_part(mask: np.ndarray, labels: np.ndarray, point, name: str = "the image") -> np.ndarray:
    """The pixels of ``mask`` no object holds: their connected part under the point (nothing when the point is
    on an object already), else their largest part, so no scattered fringe of other objects becomes one."""
    from scipy import ndimage

    if point is not None:
        row = min(max(int(point[1]), 0), labels.shape[0] - 1)
        col = min(max(int(point[0]), 0), labels.shape[1] - 1)
        if labels[row, col]:
            raise EditRefused(f"The {_where(point, None)} of {name} is on object {int(labels[row, col])} already: "
                             "select it to change it, or reject it first.")
    parts, count = ndimage.label(mask & (labels == 0))
    if count == 0:
        return np.zeros_like(mask)
    if point is not None and parts[row, col]:
        return parts == parts[row, col]
    return parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))


def _entry(project: Project, image_id: str) -> dict:
    entry = next((e for e in read_images(project.images_path) if e["image_id"] == image_id), None)
    if entry is None:
        raise KeyError(f"The image {image_id} is no longer in {project.images_path}; open the project again.")
    return entry


def _category_id(state: LabelState, category, allow_discarded: bool = False) -> int:
    if category is None:
        active = [c.id for c in state.table.categories if c.merged_into is None and not c.discarded]
        if not active:
            raise ValueError("Every category is merged or discarded; restore one to add objects to it.")
        return active[0]
    return check_visible_category(state, int(category), allow_discarded)


def _where(point, box) -> str:
    """The prompt in words, whole pixels (a click lands between pixels: its fractions mean nothing to a user)."""
    if point is not None:
        return f"point (x={float(point[0]):.0f}, y={float(point[1]):.0f})"
    return "box ({})".format(", ".join(f"{float(v):.0f}" for v in box))
