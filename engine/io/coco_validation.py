"""The one home of COCO checks: what a COCO document, annotation or RLE may hold.

:func:`validate_coco` checks a document before it is written (pycocotools loads it, every mask round-trips);
:func:`segmentation_problem` and :func:`rle_problem` check what is read (a COCO file, a project's stored
masks) without decoding a mask. A problem is a :class:`CocoValidationError` naming the file and the annotation.
"""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np

from engine.masks import decode_rle, rle_counts


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


def rle_problem(rle, hw: tuple | None = None) -> str | None:
    """What is wrong with a COCO RLE (compressed ``counts`` string or uncompressed list), or None if it
    decodes to exactly ``size`` (and ``hw``, when given) pixels.

    Checked in Python before pycocotools sees it: its C decoder trusts the counts, so a garbled string can
    read or write past its buffers instead of failing.
    """
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        return "is not an RLE object with 'counts' and 'size'"
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        return f"has an RLE size {size!r} that is not [height, width]"
    if hw is not None and tuple(size) != tuple(int(v) for v in hw):
        return f"has an RLE of size {size[1]}x{size[0]} on an image of {hw[1]}x{hw[0]}"
    counts = rle["counts"]
    total = int(size[0]) * int(size[1])
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            return "has RLE counts that are not ASCII"
    if isinstance(counts, str):
        decoded = rle_counts(counts)
        if decoded is None:
            return "has garbled compressed RLE counts"
        values = decoded
    elif isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            return "has RLE counts that are not integers"
        if any(abs(v) >= 2**62 for v in counts):
            return "has RLE counts too large for any image"
        values = np.asarray(counts, np.int64)
    else:
        return f"has RLE counts of type {type(counts).__name__} (expected a string or a list of integers)"
    if (values < 0).any():
        return "has negative RLE counts"
    if int(values.sum()) != total:
        return f"has RLE counts covering {int(values.sum())} pixels instead of {total}"
    return None


_SEGMENTATION_HINT = ("expected polygons (a list of [x1, y1, x2, y2, ...] lists) or an RLE object with "
                      "'counts' and 'size'")


def segmentation_problem(segmentation, hw: tuple) -> str | None:
    """What is wrong with an annotation's segmentation (checked without decoding it), or None."""
    if isinstance(segmentation, dict):
        return rle_problem(segmentation, hw)
    if not isinstance(segmentation, list):
        return f"has a segmentation of type {type(segmentation).__name__} ({_SEGMENTATION_HINT})"
    if not segmentation:
        return "has an empty segmentation (no polygon)"
    h, w = hw
    for polygon in segmentation:
        if not isinstance(polygon, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon):
            return f"has a segmentation that is neither polygons nor RLE ({_SEGMENTATION_HINT})"
        if len(polygon) < 6:
            return f"has a polygon of {len(polygon) // 2} point(s); a polygon needs at least 3"
        if len(polygon) % 2:
            return f"has a polygon with an odd number of coordinates ({len(polygon)})"
        coords = np.asarray(polygon, float)
        if not np.isfinite(coords).all() or np.abs(coords[0::2]).max() > 4 * w + 16 \
                or np.abs(coords[1::2]).max() > 4 * h + 16:
            return f"has polygon coordinates far outside its {w}x{h} image"
    return None
