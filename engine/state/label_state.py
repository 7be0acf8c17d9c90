"""The label state: the one place that turns a project's files into labelled instances.

Generated results (clustered proposals, the final model's predictions) and the user's work (category table,
split assignments and pins, corrected masks; stored by engine.state.corrections) meet here and nowhere else. Export,
training targets, proposal filtering, the overview, review and the napari plugin all ask a :class:`LabelState`.

Precedence per image: the user's correction > the final model's predictions (when they were made for the
current clustering) > the clustered proposals. A proposal's category is the user's assignment of that mask
(keyed by its pixels, engine.masks.mask_identity) or else the category bound to its cluster. Categories then go
through merges and discards. A category id that the table does not know is kept, under a generated name, never
dropped.

User state is tied to the clustering it was made on (categories.json "clustering" = clusters.json "id"). When
a re-run clusters differently, :func:`rebind_categories` moves every category to the new cluster holding most
of its masks (Hungarian matching of shared masks) and pins the masks of categories the user edited, so every
name, merge and discard stays on the masks it was made about.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal, overload

import numpy as np

from engine.atomic import ProjectFileError, atomic_write_json
from engine.masks import encode_rle, iou, mask_identity, mask_rle
from engine.method.second_scale import unheld
from engine.state.corrections import (
    Category,
    CategoryTable,
    CorruptCorrectionError,
    categories_path,
    correction_path,
    default_table,
    is_positional_key,
    load_assignments,
    load_categories,
    load_correction,
)
from engine.state.project import Project, joined_masks, load_image_predictions, load_image_proposals
from engine.state.schema import read_clusters, read_predictions_stamp, rerun_hint

SOURCES = ("current", "predictions", "proposals", "corrections")
CORRECTION_WEIGHT = 3.0  # a user-corrected image counts this many times a pseudo-labelled one in training


class MisfitCorrectionError(CorruptCorrectionError):
    """A correction whose label map is not the size images.json gives its image."""


def clustering_id(masks: list, k: int) -> str:
    """Identity of a clustering: which mask (by key) went to which cluster."""
    text = f"{k}|" + ";".join(f"{m['key']}={m['cluster']}" for m in sorted(masks, key=lambda m: m["key"]))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass
class ImageInstances:
    """One image's instances as the label state sees them (categories before merges and discards)."""

    masks: np.ndarray  # (n, H, W) bool
    categories: np.ndarray  # (n,) category ids >= 1
    scores: np.ndarray  # (n,)
    origin: str  # "correction", "prediction" or "proposal"
    reviewed: bool = False  # every object of the image reviewed by the user
    warning: str | None = None  # e.g. the image's correction file is unreadable
    object_reviewed: np.ndarray | None = None  # (n,) per object, for a correction
    # (n,) per object: 0 for the image's own, k >= 1 for its k-th overlapping object of the second scale (a number
    # that stays when others leave: the review's outline layer keeps its colours)
    overlapping: np.ndarray | None = None


class LabelState:
    """Categories, merges, discards, assignments and corrections of one project, resolved.

    Build it with :meth:`load`; it reads the small files once and the per-image files when asked.
    """

    def __init__(self, project: Project, clusters: dict, table: CategoryTable, assignments: dict):
        self.project = project
        self.clusters = clusters
        self.table = table
        self.assignments = assignments
        self._by_id = table.by_id()
        self.category_of_cluster = {c.cluster: c.id for c in table.categories if c.cluster is not None}
        self._assigned_images = {key.split(":", 1)[0] for key in assignments}  # images with a user choice
        self._masks_of_image: dict = {}
        self._stamp: tuple = (None, None)  # (stat of predictions/stamp.json, the clustering it names)
        for m in clusters.get("masks", []):
            self._masks_of_image.setdefault(m["image_id"], {})[m["index"]] = m
        for cluster in clusters.get("clusters", []):  # a cluster the table does not name: an unnamed category
            if cluster["id"] not in self.category_of_cluster:
                new_id = max(self._by_id, default=0) + 1
                self._add(Category(new_id, table.free_name(f"cluster_{cluster['id'] + 1}"), cluster=cluster["id"]))
                self.category_of_cluster[cluster["id"]] = new_id

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def load(cls, project, clusters: dict | None = None) -> LabelState:
        project = project if isinstance(project, Project) else Project(project)
        if clusters is None:
            clusters = read_clusters(project.clusters_path) if project.clusters_path.exists() else {
                "clusters": [], "masks": []}
        table = load_categories(project.root, clusters)
        assignments = load_assignments(project.root)
        if table.clustering not in (None, clusters.get("id")):
            previous = _previous_clusters(project)
            if previous is not None and previous.get("id") == table.clustering:  # a re-run stopped before re-binding
                table, assignments, _ = rebind_categories(table, assignments, previous, clusters)
        return cls(project, clusters, table, assignments)

    def _add(self, category: Category) -> None:
        self.table.categories.append(category)
        self._by_id[category.id] = category

    # -- categories -----------------------------------------------------------------------------
    def category(self, category_id: int) -> Category:
        """The category of an id; an id nobody named gets a generated one (its masks are never dropped)."""
        category_id = int(category_id)
        if category_id not in self._by_id:
            self._add(Category(category_id, f"category_{category_id}"))
        return self._by_id[category_id]

    def resolve(self, category_id: int) -> int | None:
        """The category a mask of ``category_id`` is exported as (after merges); None when discarded."""
        self.category(category_id)
        return self.table.resolve(int(category_id))

    def resolved(self, category_ids) -> np.ndarray:
        """:meth:`resolve` of each id as an int array, 0 for a discarded category (the head's background)."""
        return np.array([self.resolve(c) or 0 for c in category_ids], int)

    def discard_mode(self, category_id: int) -> str | None:
        """"background" or "ignore" when the category (or the one it is merged into) is discarded."""
        seen, current = set(), self.category(category_id)
        while current.discarded is None and current.merged_into is not None and current.id not in seen:
            seen.add(current.id)
            current = self.category(current.merged_into)
        return current.discarded

    def num_classes(self) -> int:
        """Outputs a segmentation head needs: every category id in use."""
        return max([0] + list(self._by_id))

    def exported_categories(self, used=None) -> list:
        """COCO categories (engine.state.corrections.CategoryTable.exported): unique names; with ``used``, the
        generated categories without masks left out."""
        return self.table.exported(used)

    # -- instances ------------------------------------------------------------------------------
    def mask_keys(self, entry: dict, masks: np.ndarray) -> list:
        known = self._masks_of_image.get(entry["image_id"], {})
        return [known[i]["key"] if "key" in known.get(i, {}) else mask_identity(entry["image_id"], mask)
                for i, mask in enumerate(masks)]

    def proposal_categories(self, entry: dict, masks: np.ndarray) -> np.ndarray:
        """Category of each proposal: the user's assignment of that mask, else its cluster's category."""
        known = self._masks_of_image.get(entry["image_id"], {})
        keys = self.mask_keys(entry, masks)
        categories = []
        for index, key in enumerate(keys):
            if key in self.assignments:
                categories.append(self.assignments[key])
            elif index in known:
                categories.append(self.category_of_cluster[known[index]["cluster"]])
            else:
                raise ValueError(f"{self.project.clusters_path} does not list mask {index} of {entry['relative_path']}"
                                 f"; re-run `maskdistill run` on the image folder to cluster it")
        return np.array(categories, int)

    def predictions_valid(self) -> bool:
        """Predictions count only when they were made for the current clustering (a stopped re-run leaves
        older ones behind, which must not be mixed with new categories)."""
        return self._stamped_clustering() == self.clusters.get("id")

    def predictions_note(self) -> str | None:
        """Why the predictions in predictions/ are not used (the export then takes the clustered proposals), or
        None when they are used or there are none."""
        folder = self.project.predictions_dir
        made_for = self._stamped_clustering()
        if made_for == self.clusters.get("id") or (made_for is None and not any(folder.glob("*.npz"))):
            return None
        redo = f"run: maskdistill predict --project {self.project.root}"
        if not made_for:
            return (f"{folder / 'stamp.json'} is missing or unreadable, so the final model's predictions were not "
                    f"used and the clustered proposals were exported instead; {redo}")
        return (f"the predictions in {folder} were made for another clustering and were not used (the clustered "
                f"proposals were exported instead); {redo}")

    def assignments_note(self) -> str | None:
        """What assignments.json holds of the older format ("image_id/index" entries, which match no mask and
        are ignored), or None when it holds none."""
        older = sum(is_positional_key(key) for key in self.assignments)
        if not older:
            return None
        return (f"{self.project.root / 'assignments.json'} holds {older} entries of an older format that no longer "
                "match any mask; they are kept in the file but ignored (split or re-assign those masks again in "
                "the review if needed)")

    def _stamped_clustering(self) -> str | None:
        """The clustering id predictions/stamp.json names: None without a stamp, "" when it is unreadable. Read
        again only when the file changes; a predictions swap stopped between its renames is finished first."""
        stamp = self.project.predictions_dir / "stamp.json"
        try:
            stat = stamp.stat()
        except FileNotFoundError:
            if not self.project.recover_predictions():
                return None
            stat = stamp.stat()
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._stamp[0] != key:
            try:
                made_for = read_predictions_stamp(stamp)["clustering"]  # schema-checked
            except (OSError, ValueError, AttributeError):
                made_for = ""
            self._stamp = (key, made_for if isinstance(made_for, str) else "")
        return self._stamp[1]

    @overload
    def instances(self, entry: dict, source: Literal["current", "predictions", "proposals"] = "current",
                  overlapping: bool = False) -> ImageInstances: ...

    @overload
    def instances(self, entry: dict, source: str, overlapping: bool = False) -> ImageInstances | None: ...

    def instances(self, entry: dict, source: str = "current", overlapping: bool = False) -> ImageInstances | None:
        """The image's instances from ``source`` (module docstring); None for "corrections" without one.
        ``overlapping``: with the second scale's objects over the image's own (RunConfig.second_scale), numbered in
        ``ImageInstances.overlapping``: the export and the scores take them, the review's label map cannot hold
        them (the plugin shows them as a layer of their own, a corrected image's too, as they are exported); on a
        corrected image those an object the user made or checked holds (IoU >= 0.5) are left out."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        image_id, warning = entry["image_id"], None
        if source in ("current", "corrections"):
            try:
                correction = self.correction(entry)
            except CorruptCorrectionError as error:
                if source == "corrections":
                    raise
                correction, warning = None, f"{error}; this image was taken from the generated masks"
            if correction is not None:
                masks, categories = correction.instances()
                ids = correction.ids()
                corrected = ImageInstances(masks, np.asarray(categories, int),
                                           np.array([correction.score(k) for k in ids], np.float32), "correction",
                                           correction.reviewed, object_reviewed=np.array(
                                               [k in correction.reviewed_ids for k in ids], bool),
                                           overlapping=np.zeros(len(ids), int))
                return self.with_overlapping(entry, corrected) if overlapping else corrected
            if source == "corrections":
                return None
        prediction = self.project.predictions_path(image_id)
        if source == "predictions" or (source == "current" and prediction.exists() and self.predictions_valid()):
            if not prediction.exists() or not self.predictions_valid():
                raise FileNotFoundError(f"No up-to-date prediction for {entry['relative_path']} in "
                                        f"{self.project.root}; run: maskdistill distill --project {self.project.root}")
            _, masks, categories, scores = load_image_predictions(prediction)
            size = (int(entry["height"]), int(entry["width"]))
            if len(masks) and tuple(masks.shape[1:]) != size:
                raise ProjectFileError(
                    f"{prediction}: the predictions of {entry['relative_path']} are {masks.shape[2]} x "
                    f"{masks.shape[1]} pixels but images.json says the image is {size[1]} x {size[0]}; run "
                    f"`maskdistill predict --project {self.project.root}` (or re-run `maskdistill run` if the image "
                    f"changed)")
            categories = self._assigned_predictions(entry, masks, np.asarray(categories, int))
            found = ImageInstances(masks, categories, np.asarray(scores, np.float32), "prediction", warning=warning,
                                   overlapping=np.zeros(len(masks), int))
            return self.with_overlapping(entry, found) if overlapping else found
        proposals, _, _ = load_image_proposals(self.project.proposals_path(image_id),
                                               (entry["height"], entry["width"]))
        return ImageInstances(proposals.masks, self.proposal_categories(entry, proposals.masks),
                              np.asarray(proposals.scores, np.float32), "proposal", warning=warning)

    def with_overlapping(self, entry: dict, found: ImageInstances) -> ImageInstances:
        """``found`` (this image's current instances) with its overlapping objects (:meth:`instances`)."""
        path = self.project.overlapping_path(entry["image_id"])
        if not path.exists() or not self.predictions_valid():
            return found
        _, masks, categories, scores = load_image_predictions(path)
        numbers = np.arange(1, len(masks) + 1)
        users = np.flatnonzero(found.object_reviewed) if found.object_reviewed is not None else np.zeros(0, int)
        if len(users) and len(masks):
            # the objects the user made or checked stand for those they hold (a taken overlapping object, one drawn
            # again); a generated object an edit changed does not: the user has not looked at it
            free = unheld([encode_rle(found.masks[i]) for i in users], [mask_rle(masks, i) for i in range(len(masks))])
            masks, categories, scores, numbers = (masks[free], np.asarray(categories)[free], np.asarray(scores)[free],
                                                  numbers[free])
        return replace(found, masks=joined_masks(found.masks, masks),
                       categories=np.concatenate([found.categories, np.asarray(categories, int)]),
                       scores=np.concatenate([found.scores, np.asarray(scores, np.float32)]),
                       overlapping=np.concatenate([np.zeros(len(found.masks), int), numbers]),
                       object_reviewed=None if found.object_reviewed is None else  # nobody reviews them
                       np.concatenate([found.object_reviewed, np.zeros(len(masks), bool)]))

    def correction(self, entry: dict):
        """The image's correction (None without one); :class:`CorruptCorrectionError` when it cannot be read or
        no longer fits the image: a file replaced by one of another size keeps its old correction until a run
        sets it aside (engine.state.image_identity), and until then the image is taken from its generated masks
        instead of blocking every export and training."""
        correction = load_correction(self.project.root, entry["image_id"])
        size = (int(entry["height"]), int(entry["width"]))
        if correction is not None and correction.labels.shape != size:
            raise MisfitCorrectionError(
                f"{correction_path(self.project.root, entry['image_id'])}: the correction of "
                f"{entry['relative_path']} is {correction.labels.shape[1]} x {correction.labels.shape[0]} pixels "
                f"but the image is {size[1]} x {size[0]} (it was replaced or resized); re-run "
                f"`{rerun_hint(self.project.root)}` to set the correction aside in corrections/orphaned/")
        return correction

    def _assigned_predictions(self, entry: dict, masks: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """A predicted object matching a proposal the user assigned (a split part) takes that assignment, so
        discarding or renaming a split part reaches the export without retraining."""
        if not len(masks) or entry["image_id"] not in self._assigned_images:
            return categories
        proposals, _, _ = load_image_proposals(self.project.proposals_path(entry["image_id"]),
                                               (entry["height"], entry["width"]))
        assigned = [(mask, self.assignments[key]) for mask, key in zip(proposals.masks,
                                                                     self.mask_keys(entry, proposals.masks))
                    if key in self.assignments]
        categories = categories.copy()
        for i, mask in enumerate(masks):
            overlaps = [(iou(mask, other), category) for other, category in assigned]
            best = max(overlaps, key=lambda item: item[0], default=(0.0, None))
            if best[0] >= 0.5:
                categories[i] = best[1]
        return categories

    def exported(self, entry: dict, source: str = "current", overlapping: bool = True):
        """(masks, resolved category ids, scores, overlapping numbers, ImageInstances as read) without discarded
        categories; None when ``source`` has nothing for the image. ``overlapping``: with the second scale's objects
        (:meth:`instances`; their numbers >= 1, the image's own objects 0)."""
        found = self.instances(entry, source, overlapping)
        if found is None:
            return None
        resolved = [self.resolve(c) for c in found.categories]
        keep = np.array([r is not None for r in resolved], bool)
        numbers = found.overlapping if found.overlapping is not None else np.zeros(len(keep), int)
        return (found.masks[keep], np.array([r for r in resolved if r is not None], int),
                found.scores[keep], numbers[keep], found)

    def iter_exported(self, entries: list, source: str = "current", overlapping: bool = True):
        """(entry, masks, resolved category ids, scores) per image that ``source`` covers."""
        for entry in entries:
            result = self.exported(entry, source, overlapping)
            if result is not None:
                yield entry, *result[:3]

    def training_instances(self, entry: dict, keep: np.ndarray | None = None):
        """(masks, resolved ids with 0 = background, ignored flags, weight) to train on for one image: the
        user's correction (weighted up) or else the clustered proposals, masks not in ``keep`` ignored.
        Discarded categories train as background or not at all, as the user chose."""
        found = self.instances(entry, "current")
        if found.origin == "prediction":  # training always starts again from the proposals
            found = self.instances(entry, "proposals")
        # the user's checked masks count most; a correction nobody reviewed yet (an import) counts as generated
        weight = CORRECTION_WEIGHT if found.origin == "correction" and found.reviewed else 1.0
        if keep is None or found.origin == "correction":
            keep = np.ones(len(found.masks), bool)
        resolved = self.resolved(found.categories)
        ignored = ~np.asarray(keep, bool) | np.array([self.discard_mode(c) == "ignore" for c in found.categories],
                                                     np.bool_)
        return found.masks, resolved, ignored, weight


# -- re-binding the user's categories to a new clustering ----------------------------------------------
def rebind_categories(table: CategoryTable, assignments: dict, old: dict, new: dict) -> tuple:
    """(table, assignments, report) with every category moved from ``old`` clusters to ``new`` ones.

    Categories and new clusters are matched one to one by the masks they share (Hungarian, most shared masks);
    a new cluster left over whose masks mostly come from a category the user edited is merged into that
    category. Then mask by mask, for masks of both clusterings:

    - a mask of an edited category (named, merged, discarded, recoloured) that would now get another category
      is pinned to its own (assignments), so no user decision leaves the masks it was made about;
    - a mask of a generated category that would now land in an edited one (or a discarded one) is pinned to
      a visible, exported "to_review" category: a re-run never moves a mask into a category the user named or
      discarded, and never takes a mask out of the export, by guessing;
    - a pin to "to_review" is lifted once a re-run puts the mask in a generated category again.

    Masks new to this run follow their cluster. Categories keep their ids; unmatched clusters get new categories
    with names no other category has; nothing is deleted. The report (:func:`describe_rebinding`) says per
    category how many masks it kept, gained (from where) and lost (to where).
    """
    from scipy.optimize import linear_sum_assignment

    table = CategoryTable([replace(c) for c in table.categories], table.clustering)
    assignments = dict(assignments)
    old = _with_keys(old, new)
    by_cluster = {c.cluster: c for c in table.categories if c.cluster is not None}
    old_category = {m["key"]: by_cluster[m["cluster"]].id for m in old.get("masks", [])
                    if m["cluster"] in by_cluster}
    before = {key: table.resolve(assignments.get(key, category_id)) for key, category_id in old_category.items()}
    new_cluster = {m["key"]: m["cluster"] for m in new.get("masks", [])}
    bound = [c for c in table.categories if c.cluster is not None]
    row = {c.id: i for i, c in enumerate(bound)}
    k_new = len(new.get("clusters", []))
    shared = np.zeros((len(bound), k_new), int)
    for key, category_id in old_category.items():
        category_id = assignments.get(key, category_id)  # a pinned mask votes for its pin, if that is bound
        if key in new_cluster and category_id in row:
            shared[row[category_id], new_cluster[key]] += 1
    members = {c.id: int(sum(1 for v in old_category.values() if v == c.id)) for c in bound}
    for category in table.categories:
        category.cluster = None
    rows, cols = linear_sum_assignment(-shared) if shared.size else ((), ())
    category_of_cluster = {}
    for r, j in zip(rows, cols):
        if shared[r, j] > 0:
            bound[r].cluster = int(j)
            category_of_cluster[int(j)] = bound[r].id
    for j in range(k_new):
        if j in category_of_cluster:
            continue
        category = Category(_next_id(table), table.free_name(f"cluster_{j + 1}"), cluster=j)
        if shared.size and shared[:, j].max() > 0:
            majority = bound[int(shared[:, j].argmax())]
            if majority.edited:  # its masks keep the user's category, reversibly (restore undoes the merge)
                category.merged_into = majority.id
        table.categories.append(category)
        category_of_cluster[j] = category.id
    pinned = {c.id: 0 for c in bound}
    by_id = table.by_id()
    placed_by_user = {c: _placed_by_user(table, c) for c in set(category_of_cluster.values())}
    resolved = {c: table.resolve(c) for c in set(category_of_cluster.values())}
    for key, cluster in new_cluster.items():
        if key not in old_category:
            continue  # a mask new to this run: its cluster decides
        default = category_of_cluster[cluster]
        if key in assignments:
            pin = by_id.get(assignments[key])
            if pin is not None and pin.to_review and not pin.edited and not placed_by_user[default]:
                del assignments[key]  # no longer ambiguous: the new clustering decides
            continue
        if resolved[default] == before[key]:
            continue
        if by_id[old_category[key]].edited:
            assignments[key] = old_category[key]
            pinned[old_category[key]] += 1
        elif placed_by_user[default]:
            assignments[key] = _review_category(table).id
    after = {key: table.resolve(assignments.get(key, category_of_cluster[cluster]))
             for key, cluster in new_cluster.items()}
    report = []
    for category in bound:
        agree = int(shared[row[category.id], category.cluster]) if category.cluster is not None else 0
        report.append({"category": category.id, "name": category.name, "edited": category.edited,
                       "cluster": category.cluster, "masks": members[category.id], "agree": agree,
                       "pinned": pinned[category.id]})
    table.clustering = new.get("id")
    return table, assignments, {"movements": _movements(table, before, after), "bindings": report}


def _next_id(table: CategoryTable) -> int:
    return max([c.id for c in table.categories], default=0) + 1


def _placed_by_user(table: CategoryTable, category_id: int) -> bool:
    """Whether masks of ``category_id`` end up in a category the user decided about (named, merged,
    discarded, recoloured), where no re-run may add masks by guessing."""
    by_id = table.by_id()
    resolved = table.resolve(category_id)
    return resolved is None or by_id[category_id].edited or by_id[resolved].edited


def _review_category(table: CategoryTable) -> Category:
    """The table's generated "to_review" category, made on first use."""
    for category in table.categories:
        if category.to_review and not category.edited:
            return category
    category = Category(_next_id(table), table.free_name("to_review"), to_review=True)
    table.categories.append(category)
    return category


def _movements(table: CategoryTable, before: dict, after: dict) -> list:
    """Per exported category (None: discarded), the masks it kept, gained and lost between two clusterings,
    in resolved categories, as the export sees them."""
    by_id = table.by_id()
    entries: dict = {}

    def entry(category_id):
        if category_id not in entries:
            category = by_id.get(category_id)
            entries[category_id] = {"category": category_id,
                                    "name": category.name if category else "discarded",
                                    "edited": bool(category and category.edited), "to_review": bool(
                                        category and category.to_review),
                                    "kept": 0, "gained": {}, "lost": {}, "gone": 0, "new": 0}
        return entries[category_id]

    def name(category_id):
        return by_id[category_id].name if category_id in by_id else "discarded"

    for key, source in before.items():
        if key not in after:
            entry(source)["gone"] += 1
            continue
        target = after[key]
        if target == source:
            entry(source)["kept"] += 1
        else:
            lost, gained = entry(source)["lost"], entry(target)["gained"]
            lost[name(target)] = lost.get(name(target), 0) + 1
            gained[name(source)] = gained.get(name(source), 0) + 1
    for key, target in after.items():
        if key not in before:
            entry(target)["new"] += 1
    return [entries[k] for k in sorted(entries, key=lambda k: (k is None, k or 0))]


def describe_rebinding(report: dict) -> list:
    """One line per category whose masks changed or that the user edited, e.g.
    "'alpha': 12 of 16 masks kept; lost 3 to 'to_review', 1 no longer proposed; gained 2 from 'cluster_3'"."""
    def listed(counts: dict, word: str) -> str:
        return ", ".join(f"{n} {word} '{name}'" if name != "discarded" else f"{n} {word} discarded"
                         for name, n in sorted(counts.items(), key=lambda item: -item[1]))

    lines = []
    for item in (report or {}).get("movements", []):
        lost = sum(item["lost"].values()) + item["gone"]
        if not (item["edited"] or item["to_review"] or lost or item["gained"]):
            continue
        label = f"'{item['name']}'" if item["category"] is not None else "discarded masks"
        parts = [f"{item['kept']} of {item['kept'] + lost} masks kept"]
        losses = [listed(item["lost"], "to")] if item["lost"] else []
        losses += [f"{item['gone']} no longer proposed"] if item["gone"] else []
        parts += [f"lost {', '.join(losses)}"] if losses else []
        parts += [f"gained {listed(item['gained'], 'from')}"] if item["gained"] else []
        parts += [f"{item['new']} new"] if item["new"] else []
        if item["to_review"]:
            parts.append("the re-run could not place these without guessing: review them in the plugin "
                         "or rename / merge the category")
        lines.append(f"{label}: " + "; ".join(parts))
    return lines


def adopt_clustering(project: Project, previous: dict | None, clusters: dict) -> dict:
    """Write ``clusters`` as the project's clustering, re-binding the user's categories and pins to it.

    Order matters for a crash at any point: the previous clustering is kept (clusters.previous.json) before
    clusters.json changes, so :meth:`LabelState.load` can finish the re-binding later; predictions made for
    the previous clustering are removed first. Returns the report of :func:`rebind_categories` (empty when
    nothing changed or the user has no state yet). Call it under the project's state lock.
    """
    import shutil

    changed = previous is not None and previous.get("id") != clusters["id"]
    user_state = categories_path(project.root).exists() or project.root.joinpath("assignments.json").exists()
    if changed:
        atomic_write_json(project.root / "clusters.previous.json", previous)
        shutil.rmtree(project.predictions_dir, ignore_errors=True)
    atomic_write_json(project.clusters_path, clusters)
    if previous is None or not (changed and user_state):
        return {}
    from engine.state.corrections import save_assignments, save_categories

    table = load_categories(project.root, previous)
    if table.clustering is None:  # written before tables named their clustering: made for the previous one
        table.clustering = previous.get("id")
    assignments = load_assignments(project.root)
    table, assignments, report = rebind_categories(table, assignments, previous, clusters)
    save_assignments(project.root, assignments)
    save_categories(project.root, table)
    return report


def _with_keys(old: dict, new: dict) -> dict:
    """Clusters written before masks had keys: take each mask's key from the same position of the new run
    (right when the proposals did not change, which is all such a project can say)."""
    if all("key" in m for m in old.get("masks", [])):
        return old
    key_at = {(m["image_id"], m["index"]): m["key"] for m in new.get("masks", [])}
    masks = [{**m, "key": m.get("key") or key_at.get((m["image_id"], m["index"]), f"{m['image_id']}/{m['index']}")}
             for m in old.get("masks", [])]
    return {**old, "masks": masks}


def _previous_clusters(project: Project) -> dict | None:
    path = project.root / "clusters.previous.json"
    try:
        return read_clusters(path) if path.exists() else None
    except (OSError, ValueError):  # damaged: the re-binding it would finish cannot be done; nothing is guessed
        return None


__all__ = ["CORRECTION_WEIGHT", "ImageInstances", "LabelState", "SOURCES", "adopt_clustering", "clustering_id",
           "default_table", "describe_rebinding", "rebind_categories"]
