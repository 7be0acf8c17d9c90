"""The user's work: corrected masks per image and the category table (names, merges, discards).

Stored apart from everything generated (corrections/ and categories.json), so no re-run, retraining or
export ever overwrites them. Every write is atomic. Category ids are the pseudo-class ids (cluster + 1)
unless the user adds categories or imports a COCO file.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_json, read_json

DISCARD_MODES = ("background", "ignore")  # a discarded class's pixels become background, or carry no label


@dataclass
class Category:
    id: int  # >= 1
    name: str
    discarded: Optional[str] = None  # None, "background" or "ignore"
    merged_into: Optional[int] = None  # id of the category this one was merged into
    colour: Optional[list] = None  # RGB chosen by the user


@dataclass
class CategoryTable:
    categories: list = field(default_factory=list)

    def by_id(self) -> dict:
        return {c.id: c for c in self.categories}

    def resolve(self, category_id: int) -> Optional[int]:
        """The category an id ends up in after merges; None if that category is discarded."""
        table = self.by_id()
        seen = set()
        while category_id in table and table[category_id].merged_into is not None and category_id not in seen:
            seen.add(category_id)
            category_id = table[category_id].merged_into
        category = table.get(category_id)
        return None if category is None or category.discarded else category_id

    def exported(self) -> list:
        """COCO categories: every category that is neither merged away nor discarded."""
        return [{"id": c.id, "name": c.name, "supercategory": "object"} for c in self.categories
                if c.merged_into is None and not c.discarded]


def categories_path(root: Path) -> Path:
    return Path(root) / "categories.json"


def load_categories(root: Path, clusters: Optional[dict] = None) -> CategoryTable:
    """The user's table, or one category per cluster (``cluster_N``) when the user has none yet."""
    path = categories_path(root)
    if path.exists():
        return CategoryTable([Category(**c) for c in read_json(path)["categories"]])
    clusters = clusters or {"clusters": []}
    return CategoryTable([Category(c["id"] + 1, c["name"]) for c in clusters["clusters"]])


def save_categories(root: Path, table: CategoryTable) -> None:
    ids = [c.id for c in table.categories]
    if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
        raise ValueError(f"category ids must be unique and >= 1, got {ids}")
    by_id = table.by_id()
    for category in table.categories:  # a merge cycle would leave its masks in no exported category
        chain = [category.id]
        while by_id.get(chain[-1]) is not None and by_id[chain[-1]].merged_into is not None:
            chain.append(by_id[chain[-1]].merged_into)
            if chain[-1] in chain[:-1]:
                raise ValueError("categories merged into each other in a cycle: "
                                 + " -> ".join(str(i) for i in chain) + "; restore one of them")
    atomic_write_json(categories_path(root), {"categories": [asdict(c) for c in table.categories]})


@dataclass
class ImageCorrection:
    """An image's masks as the user left them: instance label map plus a category per instance."""

    labels: np.ndarray  # (H, W) uint16: 0 background, k = instance k
    classes: dict  # instance k -> category id
    reviewed: bool = True

    def instances(self) -> tuple:
        """(masks (n, H, W), category ids (n,)) for the instances present in the label map."""
        present = [int(k) for k in np.unique(self.labels) if k != 0 and int(k) in self.classes]
        if not present:
            return np.zeros((0, *self.labels.shape), bool), np.zeros(0, int)
        return np.stack([self.labels == k for k in present]), np.array([self.classes[k] for k in present])

    @classmethod
    def from_instances(cls, image_hw: tuple, masks, category_ids, reviewed: bool = True) -> "ImageCorrection":
        labels = np.zeros(image_hw, np.uint16 if len(masks) < 65535 else np.uint32)
        for k, mask in enumerate(masks, start=1):
            labels[mask] = k
        return cls(labels, {k: int(c) for k, c in enumerate(category_ids, start=1)}, reviewed)


def correction_path(root: Path, image_id: str) -> Path:
    return Path(root) / "corrections" / f"{image_id}.npz"


def save_correction(root: Path, image_id: str, correction: ImageCorrection) -> None:
    buffer = io.BytesIO()
    ids = np.array(sorted(correction.classes), np.int64)
    np.savez_compressed(buffer, labels=correction.labels, instance_ids=ids,
                        categories=np.array([correction.classes[i] for i in ids], np.int64),
                        reviewed=np.array(correction.reviewed))
    atomic_write_bytes(correction_path(root, image_id), buffer.getvalue())


def load_correction(root: Path, image_id: str) -> Optional[ImageCorrection]:
    path = correction_path(root, image_id)
    if not path.exists():
        return None
    with np.load(path) as data:
        classes = {int(i): int(c) for i, c in zip(data["instance_ids"], data["categories"])}
        return ImageCorrection(data["labels"], classes, bool(data["reviewed"]))


def assignments_path(root: Path) -> Path:
    return Path(root) / "assignments.json"


def load_assignments(root: Path) -> dict:
    """User overrides of which category a proposal belongs to (from splits): {"image_id/index": category id}."""
    path = assignments_path(root)
    return read_json(path) if path.exists() else {}


def save_assignments(root: Path, assignments: dict) -> None:
    atomic_write_json(assignments_path(root), assignments)
