"""COCO export that real trainers accept, validated with pycocotools on every write.

Rules (napari-and-coco.md): compressed RLE, ``iscrowd: 0``, every image listed (also those without
objects), image, category and annotation ids all >= 1 (pycocotools uses 0 for "unmatched"), ``area`` and
``bbox`` computed from the mask.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from engine.atomic import atomic_writer
from engine.io.coco_reader import CocoFile
from engine.io.coco_validation import CocoValidationError, validate_coco
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


class CocoWriter:
    """A COCO file written one image at a time, so memory does not grow with the number of images.

    Each image is checked with its annotations as it is added (:func:`validate_coco` on a one-image document:
    pycocotools loads it and every mask round-trips); image ids must be unique and annotation ids increase.
    Images and annotations wait in anonymous temporary files beside ``path``; :meth:`close` assembles the document
    and replaces ``path`` atomically. A failed check, or an error before ``close``, leaves ``path`` as it was.
    ``categories`` may be set (or replaced) until :meth:`close`, which checks the annotations against them;
    so may ``renumber`` ({category id as added: id in the file}), applied to every annotation as it is copied into
    the document (an export numbers its categories only once it knows which it wrote).

        with CocoWriter(path, categories, image_root, description) as writer:
            writer.add_image(image, annotations)
        counts = writer.counts
    """

    def __init__(self, path: Path, categories: list | None = None, image_root: str = "", description: str = "",
                 exact_masks: bool = True):
        self.path, self.exact_masks = Path(path), exact_masks
        self.categories = categories  # may be set (or replaced) until close: an export learns some as it goes
        self.renumber: dict | None = None  # category ids as added -> ids written (set until close)
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
            spool.write(b",\n" if self.counts[kind] else b"")  # one record a line: renumber reads them back
            spool.write(json.dumps(item).encode("utf-8"))
            self.counts[kind] += 1

    def close(self) -> dict:
        """Check the categories against the annotations, write the document to ``path`` (atomically); returns
        the counts."""
        try:
            categories = self.categories or []
            validate_coco(build_coco([], [], categories, "", ""), str(self.path), self.exact_masks)
            written, unmapped = self._category_ids, set()
            if self.renumber:
                unmapped = self._category_ids - set(self.renumber)
                written = {self.renumber[c] for c in self._category_ids - unmapped}
            unknown = (written - {c["id"] for c in categories}) | unmapped
            if unknown:
                raise CocoValidationError(f"{self.path}: annotations have unknown categories {sorted(unknown)}")
            self.counts["categories"] = len(categories)
            with atomic_writer(self.path) as handle:
                head = json.dumps({"info": self._info, "licenses": []})[:-1]  # the object, left open
                handle.write(f'{head}, "images": ['.encode())
                self._copy("images", handle)
                handle.write(b'], "annotations": [')
                if self.renumber:
                    self._copy_renumbered(handle)
                else:
                    self._copy("annotations", handle)
                handle.write(f'], "categories": {json.dumps(categories)}}}'.encode())
        finally:
            self.discard()
        return self.counts

    def _copy(self, kind: str, handle) -> None:
        spool = self._spools[kind]
        spool.seek(0)
        shutil.copyfileobj(spool, handle)

    def _copy_renumbered(self, handle) -> None:
        renumber = self.renumber or {}  # called only when there is one
        spool = self._spools["annotations"]
        spool.seek(0)
        for number, line in enumerate(spool):
            record = json.loads(line.rstrip(b",\n"))
            record["category_id"] = renumber[record["category_id"]]
            handle.write((b",\n" if number else b"") + json.dumps(record).encode("utf-8"))

    def discard(self) -> None:
        """Drop what was added; ``path`` stays as it was."""
        for spool in self._spools.values():
            spool.close()

    def __enter__(self) -> CocoWriter:
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
