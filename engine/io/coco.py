"""COCO export that real trainers accept, validated with pycocotools on every write.

Rules (napari-and-coco.md): compressed RLE, ``iscrowd: 0``, every image listed (also those without
objects), image, category and annotation ids all >= 1 (pycocotools uses 0 for "unmatched"), ``area`` and
``bbox`` computed from the mask.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from engine.atomic import atomic_writer
from engine.io.coco_reader import CocoFile
from engine.masks import bbox_xywh, decode_rle, encode_rle


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


class CocoWriter:
    """A COCO file written one image at a time, so memory does not grow with the number of images.

    Each image is checked with its annotations as it is added (:func:`validate_coco` on a one-image document:
    pycocotools loads it and every mask round-trips); image ids must be unique and annotation ids increase.
    Images and annotations wait in anonymous temporary files beside ``path``; :meth:`close` assembles the document
    and replaces ``path`` atomically. A failed check, or an error before ``close``, leaves ``path`` as it was.
    ``categories`` may be set (or replaced) until :meth:`close`, which checks the annotations against them.

        with CocoWriter(path, categories, image_root, description) as writer:
            writer.add_image(image, annotations)
        counts = writer.counts
    """

    def __init__(self, path: Path, categories: list | None = None, image_root: str = "", description: str = "",
                 exact_masks: bool = True):
        self.path, self.exact_masks = Path(path), exact_masks
        self.categories = categories  # may be set (or replaced) until close: an export learns some as it goes
        self._info = {"description": description, "image_root": image_root}
        self._image_ids: set = set()
        self._category_ids: set = set()
        self._last_annotation_id = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)  # the spools sit beside it (a large export, not /tmp)
        self._spools = {kind: tempfile.TemporaryFile(prefix=".coco-", dir=self.path.parent)  # nameless on Linux
                        for kind in ("images", "annotations")}
        self.counts = {"images": 0, "annotations": 0, "categories": 0}

    def add_image(self, image: dict, annotations: list) -> None:
        """One image (id, file_name, width, height) and all of its annotations."""
        if image.get("id") in self._image_ids:
            raise CocoValidationError(f"{self.path}: image id {image['id']} is listed twice")
        for ann in annotations:
            if not isinstance(ann.get("id"), int) or ann["id"] <= self._last_annotation_id:
                raise CocoValidationError(f"{self.path}: annotation id {ann.get('id')!r} does not follow "
                                          f"{self._last_annotation_id} (ids must be unique and increasing)")
            self._last_annotation_id = ann["id"]
        used = {ann.get("category_id") for ann in annotations}
        stand_ins = [{"id": c, "name": str(c)} for c in used if isinstance(c, int)]  # checked on close
        validate_coco(build_coco([image], annotations, stand_ins, "", ""), str(self.path), self.exact_masks)
        self._image_ids.add(image["id"])
        self._category_ids |= used
        self._append("images", [image])
        self._append("annotations", annotations)

    def _append(self, kind: str, items: list) -> None:
        spool = self._spools[kind]
        for item in items:
            spool.write(b"," if self.counts[kind] else b"")
            spool.write(json.dumps(item).encode("utf-8"))
            self.counts[kind] += 1

    def close(self) -> dict:
        """Check the categories against the annotations, write the document to ``path`` (atomically); returns
        the counts."""
        try:
            categories = self.categories or []
            validate_coco(build_coco([], [], categories, "", ""), str(self.path), self.exact_masks)
            unknown = self._category_ids - {c["id"] for c in categories}
            if unknown:
                raise CocoValidationError(f"{self.path}: annotations have unknown categories {sorted(unknown)}")
            self.counts["categories"] = len(categories)
            with atomic_writer(self.path) as handle:
                head = json.dumps({"info": self._info, "licenses": []})[:-1]  # the object, left open
                handle.write(f'{head}, "images": ['.encode("utf-8"))
                self._copy("images", handle)
                handle.write(b'], "annotations": [')
                self._copy("annotations", handle)
                handle.write(f'], "categories": {json.dumps(categories)}}}'.encode("utf-8"))
        finally:
            self.discard()
        return self.counts

    def _copy(self, kind: str, handle) -> None:
        spool = self._spools[kind]
        spool.seek(0)
        shutil.copyfileobj(spool, handle)

    def discard(self) -> None:
        """Drop what was added; ``path`` stays as it was."""
        for spool in self._spools.values():
            spool.close()

    def __enter__(self) -> "CocoWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


def write_coco(document: dict, path: Path, exact_masks: bool = True) -> dict:
    """Validate, then write atomically (a failed export never replaces the previous file)."""
    by_image: dict = {}
    for ann in document["annotations"]:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    unknown = set(by_image) - {image.get("id") for image in document["images"]}
    if unknown:
        ann = next(a for a in document["annotations"] if a.get("image_id") in unknown)
        raise CocoValidationError(f"{path}: annotation {ann.get('id')} has unknown image {ann.get('image_id')}")
    info = document.get("info", {})
    with CocoWriter(path, document["categories"], info.get("image_root", ""), info.get("description", ""),
                    exact_masks) as writer:
        for image in document["images"]:
            writer.add_image(image, by_image.get(image.get("id"), []))
    return writer.counts


def count_annotations(path: Path) -> int | None:
    """How many annotations a COCO file holds, counted without loading it (each has one "iscrowd" key);
    None when it cannot be read."""
    pattern, count, tail = re.compile(rb'"iscrowd"\s{0,4}:'), 0, b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                block = tail + chunk
                cut = len(block) - 16  # a key starting after the cut may end in the next chunk: counted then
                count += sum(1 for match in pattern.finditer(block) if match.start() < cut)
                tail = block[max(cut, 0):]
    except OSError:
        return None
    return count + len(pattern.findall(tail))


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
        values = _compressed_counts(counts)
        if values is None:
            return "has garbled compressed RLE counts"
    elif isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            return "has RLE counts that are not integers"
        values = counts
    else:
        return f"has RLE counts of type {type(counts).__name__} (expected a string or a list of integers)"
    if any(v < 0 for v in values):
        return "has negative RLE counts"
    if sum(values) != total:
        return f"has RLE counts covering {sum(values)} pixels instead of {total}"
    return None


def _compressed_counts(text: str) -> list | None:
    """The run lengths of pycocotools' compressed RLE string (its ``rleFrString``), or None if garbled."""
    values = []
    position, length = 0, len(text)
    while position < length:
        value, shift, more = 0, 0, True
        while more:
            if position >= length or shift > 30:
                return None  # ends inside a number / absurdly long number
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift  # sign extension
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


_SEGMENTATION_HINT = ("expected polygons (a list of [x1, y1, x2, y2, ...] lists) or an RLE object with "
                      "'counts' and 'size'")


def _segmentation_problem(segmentation, hw: tuple) -> str | None:
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


def decode_segmentation(segmentation, hw: tuple) -> np.ndarray:
    from pycocotools import mask as mask_utils

    h, w = hw
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in segmentation], h, w))
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, h, w)
    else:
        return decode_rle(segmentation)
    return mask_utils.decode(rle).astype(bool)


def read_coco_categories(path) -> list:
    """The categories of a COCO file, [{"id", "name"}, ...] (ids >= 1), after checking the whole file
    (structure, ids, segmentations) as :func:`iter_coco_images` does; no mask is decoded."""
    with CocoFile(path) as coco:
        return coco.categories


def iter_coco_images(path):
    """Every image of a COCO file, one at a time: (file_name, (height, width), masks (n, H, W) bool,
    category ids (n,) int).

    The whole file is checked first (raising CocoValidationError naming the file and the annotation),
    before anything is yielded: call this before writing anything. The file is read as a stream and masks
    are decoded one image at a time (engine.io.coco_reader), so neither the file nor its masks are ever all
    in memory. RLE and polygon segmentations are both accepted; crowd annotations are skipped.
    """
    return _decode_images(CocoFile(path))


def _decode_images(coco: CocoFile):
    with coco:
        yield from coco_image_masks(coco)


def coco_image_masks(coco: CocoFile):
    """What :func:`iter_coco_images` yields, from a CocoFile already open (and left open: read it again)."""
    for slot, (file_name, hw, _) in enumerate(coco.images):
        anns = coco.annotations(slot)
        if anns:
            masks = np.stack([decode_segmentation(a["segmentation"], hw) for a in anns])
        else:
            masks = np.zeros((0, *hw), bool)
        yield file_name, hw, masks, np.array([int(a["category_id"]) for a in anns], int)


def read_coco(path) -> tuple:
    """Instances of an existing COCO file: ({file_name: (masks (n, H, W), category ids)}, categories).

    Holds every mask of the file in memory: for large files use :func:`iter_coco_images`.
    """
    coco = CocoFile(path)
    categories = coco.categories
    images = {name: (masks, ids) for name, _, masks, ids in _decode_images(coco)}
    return images, categories
