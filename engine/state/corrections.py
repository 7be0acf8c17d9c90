"""The user's work on disk: corrected masks per image, the category table (names, merges, discards) and split
assignments. Storage only: engine.state.label_state is the one place that turns these files plus the generated
results into labelled instances.

Stored apart from everything generated (corrections/, categories.json, assignments.json), so no re-run,
retraining or export overwrites them; a re-run re-binds categories to its new clusters (engine.state.label_state).
Every write is atomic and, through engine.state.review, made under the project's state lock. Category ids are stable
numbers >= 1; each category names the cluster of the clustering it is bound to (``cluster``), if any.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.atomic import atomic_write_bytes, atomic_write_json
from engine.state.schema import plain_name, read_assignments, read_categories

DISCARD_MODES = ("background", "ignore")  # a discarded class's pixels become background, or carry no label


@dataclass
class Category:
    id: int  # >= 1
    name: str
    discarded: str | None = None  # None, "background" or "ignore"
    merged_into: int | None = None  # id of the category this one was merged into
    colour: list | None = None  # RGB chosen by the user
    cluster: int | None = None  # the cluster (of CategoryTable.clustering) whose masks this category names
    user_named: bool = False  # named by the user (or an import), not generated
    to_review: bool = False  # made by a re-run for masks it could not place without guessing the user's intent

    @property
    def edited(self) -> bool:
        """The user decided something about this category's masks; a re-run must keep it on them."""
        return self.user_named or self.discarded is not None or self.merged_into is not None or bool(self.colour)

    @property
    def status(self) -> str:
        """What was decided about it, in the words the Categories tab and ``maskdistill categories`` show."""
        return "; ".join(([f"merged into {self.merged_into}"] if self.merged_into is not None else [])
                         + ([f"discarded ({self.discarded})"] if self.discarded else [])
                         + (["to review (a re-run could not place it)"] if self.to_review else []))


@dataclass
class CategoryTable:
    categories: list = field(default_factory=list)
    clustering: str | None = None  # id of the clustering the ``cluster`` fields refer to (clusters.json "id")

    def by_id(self) -> dict:
        return {c.id: c for c in self.categories}

    def resolve(self, category_id: int) -> int | None:
        """The category an id ends up in after merges; None if that category is discarded."""
        table = self.by_id()
        seen = set()
        while category_id in table and table[category_id].merged_into is not None and category_id not in seen:
            seen.add(category_id)
            category_id = table[category_id].merged_into
        category = table.get(category_id)
        return None if category is None or category.discarded else category_id

    def exported(self, used=None) -> list:
        """COCO categories: every category that is neither merged away nor discarded, with unique names.

        used: the category ids an export wrote masks under; when given, a generated category without masks is
        left out (one the user named stays, empty or not). A name that repeats (two categories renamed alike in
        an older version) gets its id appended, so trainers that map classes by name never merge them.
        """
        kept = [c for c in self.categories if c.merged_into is None and not c.discarded
                and (used is None or c.id in used or c.user_named)]
        counts: dict = {}
        for c in kept:
            counts[c.name] = counts.get(c.name, 0) + 1
        return [{"id": c.id, "name": c.name if counts[c.name] == 1 else f"{c.name}_{c.id}", "supercategory": "object"}
                for c in kept]

    def free_name(self, base: str) -> str:
        """``base``, or ``base`` with the first free suffix when a category already has that name."""
        taken = {c.name for c in self.categories}
        if base not in taken:
            return base
        return next(f"{base}_{n}" for n in range(2, len(taken) + 3) if f"{base}_{n}" not in taken)


def categories_path(root: Path) -> Path:
    return Path(root) / "categories.json"


def default_table(clusters: dict | None) -> CategoryTable:
    """One generated category per cluster (``cluster_N``, id N): the table before the user touches it."""
    clusters = clusters or {"clusters": []}
    return CategoryTable([Category(c["id"] + 1, c["name"], cluster=c["id"]) for c in clusters["clusters"]],
                         clusters.get("id"))


_CATEGORY_FIELDS = {"id", "name", "discarded", "merged_into", "colour", "cluster", "user_named", "to_review"}


def load_categories(root: Path, clusters: dict | None = None) -> CategoryTable:
    """The user's table as stored, or the generated one when the user has none yet.

    Tables written before categories were bound to a clustering (no ``cluster`` field) used id = cluster + 1
    and are read that way. Use engine.state.label_state for a table matched to the current clusters.
    """
    path = categories_path(root)
    if not path.exists():
        return default_table(clusters)
    document = read_categories(path)  # every field checked: a wrong one is an error, never a guess
    categories = []
    for item in document["categories"]:
        legacy = "cluster" not in item
        category = Category(**{k: v for k, v in item.items() if k in _CATEGORY_FIELDS})
        if legacy:
            category.cluster = category.id - 1
            category.user_named = category.name != f"cluster_{category.id}"
        categories.append(category)
    return CategoryTable(categories, document.get("clustering"))


def save_categories(root: Path, table: CategoryTable) -> None:
    ids = [c.id for c in table.categories]
    if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
        raise ValueError(f"category ids must be unique and >= 1, got {ids}")
    by_id = table.by_id()
    unknown = sorted({c.merged_into for c in table.categories if c.merged_into is not None} - set(by_id))
    if unknown:  # the file would not load again (engine.state.schema)
        raise ValueError(f"categories merged into ids the table does not list: {unknown}")
    for category in table.categories:  # a merge cycle would leave its masks in no exported category
        chain = [category.id]
        while by_id.get(chain[-1]) is not None and by_id[chain[-1]].merged_into is not None:
            chain.append(by_id[chain[-1]].merged_into)
            if chain[-1] in chain[:-1]:
                raise ValueError("categories merged into each other in a cycle: "
                                 + " -> ".join(str(i) for i in chain) + "; restore one of them")
    atomic_write_json(categories_path(root), {"clustering": table.clustering,
                                              "categories": [asdict(c) for c in table.categories]})


@dataclass
class ImageCorrection:
    """An image's masks as the user left them: instance label map plus a category per instance.

    Instance ids are stable: a rejected object leaves its id unused, the others keep theirs. "Reviewed" is kept
    per instance (``reviewed_ids``); ``reviewed`` says whether every instance is reviewed (files written before
    per-instance flags stored only that, read as all-or-none). ``scores`` keeps the generated confidence of
    instances the user has not touched (missing: 1.0).
    """

    labels: np.ndarray  # (H, W) uint16: 0 background, k = instance k
    classes: dict  # instance k -> category id
    reviewed: bool = True
    # Both are never None once built (__post_init__) but may be None when given: the annotations say the first,
    # the constructor's signature for the type checker below the second.
    reviewed_ids: set = None  # type: ignore[assignment]  # instance ids the user reviewed; None: all if ``reviewed``
    scores: dict = None  # type: ignore[assignment]  # instance k -> confidence; None: none kept (1.0 each)

    if TYPE_CHECKING:
        def __init__(self, labels: np.ndarray, classes: dict, reviewed: bool = True,
                     reviewed_ids: set | None = None, scores: dict | None = None) -> None: ...

    def __post_init__(self):
        self.classes = {int(k): int(c) for k, c in self.classes.items()}
        if self.reviewed_ids is None:
            self.reviewed_ids = set(self.classes) if self.reviewed else set()
        self.reviewed_ids = {int(k) for k in self.reviewed_ids}
        self.scores = {int(k): float(v) for k, v in (self.scores or {}).items()}
        self.update_reviewed()

    def update_reviewed(self) -> None:
        """Recompute the image-level flag (every instance reviewed) after ``reviewed_ids`` changed."""
        if self.classes:
            self.reviewed = all(k in self.reviewed_ids for k in self.classes)

    def ids(self) -> list:
        """Instance ids present in the label map (and in ``classes``), increasing."""
        return [int(k) for k in np.unique(self.labels) if k != 0 and int(k) in self.classes]

    def score(self, instance_id: int) -> float:
        return float(self.scores.get(int(instance_id), 1.0))

    def next_id(self) -> int:
        """One above every id in use, for a new object (the label map widened when it needs to be). A rejected
        object's id comes back only if it was the highest; an undo stack undoes the new object before that
        reject, so the reject's undo still finds its id free."""
        highest = max(int(self.labels.max(initial=0)), max(self.classes, default=0))
        if highest + 1 > np.iinfo(self.labels.dtype).max:
            self.labels = self.labels.astype(np.uint32)
        return highest + 1

    def instances(self) -> tuple:
        """(masks (n, H, W), category ids (n,)) for the instances present in the label map."""
        present = self.ids()
        if not present:
            return np.zeros((0, *self.labels.shape), bool), np.zeros(0, int)
        return np.stack([self.labels == k for k in present]), np.array([self.classes[k] for k in present])

    @classmethod
    def from_instances(cls, image_hw: tuple, masks, category_ids, reviewed: bool = True,
                       scores=None) -> ImageCorrection:
        """Instance k = mask k - 1 (a later mask covers an earlier one where they overlap)."""
        labels = np.zeros(image_hw, np.uint16 if len(masks) < 65535 else np.uint32)
        for k, mask in enumerate(masks, start=1):
            labels[mask] = k
        ids = range(1, len(category_ids) + 1)
        return cls(labels, {k: int(c) for k, c in zip(ids, category_ids)}, reviewed,
                   scores=None if scores is None else {k: float(s) for k, s in zip(ids, scores)})


def correction_path(root: Path, image_id: str) -> Path:
    return Path(root) / "corrections" / f"{plain_name(image_id, 'image id')}.npz"  # never outside corrections/


def save_correction(root: Path, image_id: str, correction: ImageCorrection) -> None:
    buffer = io.BytesIO()
    ids = np.array(sorted(correction.classes), np.int64)
    correction.update_reviewed()
    np.savez_compressed(buffer, labels=correction.labels, instance_ids=ids,
                        categories=np.array([correction.classes[i] for i in ids], np.int64),
                        reviewed=np.array(correction.reviewed),
                        instance_reviewed=np.array([i in correction.reviewed_ids for i in ids], bool),
                        scores=np.array([correction.score(i) for i in ids], np.float32))
    atomic_write_bytes(correction_path(root, image_id), buffer.getvalue())


def load_correction(root: Path, image_id: str) -> ImageCorrection | None:
    path = correction_path(root, image_id)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            ids = [int(i) for i in data["instance_ids"]]
            classes = {i: int(c) for i, c in zip(ids, data["categories"])}
            labels = data["labels"]
            if labels.ndim != 2:
                raise ValueError(f"label map has shape {labels.shape}")
            reviewed = bool(data["reviewed"])
            reviewed_ids = ({i for i, r in zip(ids, data["instance_reviewed"]) if r}
                            if "instance_reviewed" in data.files else None)  # older files: all or none
            scores = dict(zip(ids, (float(s) for s in data["scores"]))) if "scores" in data.files else None
            return ImageCorrection(labels, classes, reviewed, reviewed_ids, scores)
    except Exception as error:  # torn, truncated or foreign file: say which, never guess its content
        raise CorruptCorrectionError(f"{path}: the saved correction cannot be read ({error}); the file is left "
                                     "untouched: restore it from a backup, or save the image's masks again") from error


class CorruptCorrectionError(ValueError):
    """A corrections/<image>.npz file that cannot be read."""


def assignments_path(root: Path) -> Path:
    return Path(root) / "assignments.json"


def load_assignments(root: Path) -> dict:
    """The user's choice of category for single masks (splits, pins kept across re-runs):
    {mask key (engine.masks.mask_identity): category id}.

    Entries of files written before masks had keys are returned under their "image_id/index" positions
    (:func:`is_positional_key`): they match no mask, so they are ignored, and kept when the file is saved again.
    """
    path = assignments_path(root)
    if not path.exists():
        return {}
    document = read_assignments(path)  # every entry checked
    return dict(document["by_mask"] if "by_mask" in document or "version" in document else document)


def is_positional_key(key: str) -> bool:
    """An assignment key of the older format, "image_id/index": a position in a list of masks, which matches no
    mask key ("image_id:digest"; image ids hold no "/")."""
    return "/" in key


def save_assignments(root: Path, assignments: dict) -> None:
    atomic_write_json(assignments_path(root), {"version": 2, "by_mask": assignments})
