"""COCO export that real trainers accept, validated with pycocotools on every write.

Rules (napari-and-coco.md): compressed RLE, ``iscrowd: 0``, every image listed (also those without
objects), image, category and annotation ids all >= 1 (pycocotools uses 0 for "unmatched"), ``area`` and
``bbox`` computed from the mask.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .masks import bbox_xywh, decode_rle, encode_rle


def annotation_record(annotation_id: int, image_id: int, category_id: int, mask: np.ndarray,
                      score: float | None = None) -> dict:
    record = {
        "id": int(annotation_id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "segmentation": encode_rle(mask),
        "area": int(mask.sum()),
        "bbox": bbox_xywh(mask),
        "iscrowd": 0,
    }
    if score is not None:
        record["score"] = float(score)
    return record


def build_coco(images: list, annotations: list, categories: list, image_root: str, description: str) -> dict:
    """Assemble the document; ``images`` are dicts with id, file_name, width, height."""
    return {
        "info": {"description": description, "image_root": image_root},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


class CocoValidationError(ValueError):
    pass


def validate_coco(document: dict, source: str = "annotations", exact_masks: bool = True) -> dict:
    """Check that pycocotools loads the document and every mask round-trips; return counts.

    exact_masks: RLE segmentations must decode to exactly their ``area``; polygons (``False``) must have
    at least 3 points each and rasterise to a non-empty mask of the image's size.
    """
    from pycocotools.coco import COCO

    problems = []
    for kind in ("images", "annotations", "categories"):
        if any(int(item["id"]) < 1 for item in document[kind]):
            problems.append(f"a {kind[:-1]} id is < 1")
    category_ids = {c["id"] for c in document["categories"]}
    image_sizes = {im["id"]: (im["height"], im["width"]) for im in document["images"]}
    for ann in document["annotations"]:
        if ann["category_id"] not in category_ids:
            problems.append(f"annotation {ann['id']} has unknown category {ann['category_id']}")
        if ann["image_id"] not in image_sizes:
            problems.append(f"annotation {ann['id']} has unknown image {ann['image_id']}")
    if problems:
        raise CocoValidationError(f"{source}: " + "; ".join(problems[:5]))
    coco = COCO()
    coco.dataset = json.loads(json.dumps(document))  # exactly what a trainer reading the file sees
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    for ann in coco.dataset["annotations"]:
        decoded = coco.annToMask(ann).astype(bool)
        if decoded.shape != image_sizes[ann["image_id"]]:
            raise CocoValidationError(f"{source}: annotation {ann['id']} has the wrong size in pycocotools")
        if isinstance(ann["segmentation"], list):
            if any(len(p) < 6 or len(p) % 2 for p in ann["segmentation"]) or not decoded.any():
                raise CocoValidationError(f"{source}: annotation {ann['id']} has a polygon of fewer than 3 points")
        elif exact_masks and (int(decoded.sum()) != ann["area"]
                              or not np.array_equal(decoded, decode_rle(ann["segmentation"]))):
            raise CocoValidationError(f"{source}: annotation {ann['id']} does not round-trip through pycocotools")
    return {"images": len(document["images"]), "annotations": len(document["annotations"]),
            "categories": len(document["categories"])}


def write_coco(document: dict, path: Path, exact_masks: bool = True) -> dict:
    """Validate, then write atomically (a failed export never replaces the previous file)."""
    counts = validate_coco(document, str(path), exact_masks)
    atomic_write_bytes(Path(path), json.dumps(document).encode("utf-8"))
    return counts


def read_coco(path) -> tuple:
    """Instances of an existing COCO file: ({file_name: (masks (n, H, W), category ids)}, categories).

    RLE and polygon segmentations are both accepted; crowd annotations are skipped.
    """
    from pycocotools.coco import COCO

    path = Path(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CocoValidationError(f"{path}: not a readable COCO file ({error})") from None
    categories = [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in coco.dataset.get("categories", [])]
    if any(c["id"] < 1 for c in categories):
        raise CocoValidationError(f"{path}: category ids must be >= 1")
    images = {}
    for image in coco.dataset.get("images", []):
        anns = [a for a in coco.imgToAnns.get(image["id"], []) if not a.get("iscrowd", 0)]
        hw = (int(image["height"]), int(image["width"]))
        masks = np.stack([coco.annToMask(a).astype(bool) for a in anns]) if anns else np.zeros((0, *hw), bool)
        images[image["file_name"]] = (masks, np.array([int(a["category_id"]) for a in anns], int))
    return images, categories
