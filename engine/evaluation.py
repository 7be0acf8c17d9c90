"""Evaluate unsupervised predictions (cluster ids) against ground truth (class ids), without Qt or torch.

Protocol (method.md): clusters are matched one-to-one to ground-truth classes by the Hungarian algorithm on
the IoU computed over the *whole dataset* (background 0 takes part in the matching like any other id); the
matching is then used for semantic mIoU and for class-aware mask AP (COCOeval, ``iouType="segm"``).
Class-agnostic AP and CorLoc do not need the matching.

Design choices (documented here because they change the numbers):

* **#clusters != #classes.** ``linear_sum_assignment`` on the rectangular IoU matrix pairs min(K, C) ids.
  A cluster left unmatched (more clusters than classes) maps to no class: its pixels count as misses
  (false negatives) of the ground-truth class they lie on and as false positives of no class; its predicted
  instances are dropped from the class-aware AP (kept in the class-agnostic AP and CorLoc). A class left
  unmatched (more classes than clusters) gets IoU 0 and still counts in the mean. A pair chosen by the
  assignment that does not overlap at all (intersection 0) is left out of the matching: that changes no
  metric (the class's IoU is 0 either way, and such a pair's instances could only be false positives of a
  class they never touch), but keeps the reported matching honest.
* **Which classes enter the mean.** Every ground-truth id that has at least one (non-ignored) pixel in the
  dataset, background 0 included. Ground-truth pixels < 0 are ignored (see ``ignore_value`` of
  :func:`load_ground_truth`).
* **Instances of a cluster matched to background** are dropped from the class-aware AP (category ids
  must be >= 1), kept in the class-agnostic AP.
* **AP when nothing is predicted.** COCOeval returns -1 when there are no detections; we report 0.0 (and
  do not call COCOeval at all, since ``loadRes`` crashes on an empty list). When the ground truth has no
  instances at all, AP is undefined and reported as ``None``.
* **Crowd regions** (COCO ``iscrowd: 1``) are painted into the semantic map but are not instances, so a
  detection on a crowd region is a false positive here (official COCO ignores it).
* **CorLoc** uses the highest-scoring predicted instance of every image, whatever its cluster, and its tight
  box; the denominator is the images that have at least one ground-truth instance (an image with no object
  cannot be localised correctly; ``corloc_images`` reports the denominator). A missing prediction, or one
  without instances, is a failure.
* **Matching predictions to ground truth by name**: exact ``file_name`` first, then the path without its
  suffix (``a/b.jpg`` ~ ``a/b.png``), then the bare file stem, each only when unambiguous.
"""
from __future__ import annotations

import contextlib
import io
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from engine.masks import bbox_xywh, encode_rle

LABEL_SUFFIXES = (".png", ".tif", ".tiff")  # case-insensitive
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class ImageTruth:
    file_name: str                 # relative path / file name used to match predictions
    semantic: np.ndarray           # (H, W) int, 0 = background, class ids >= 1 (< 0: ignored)
    instance_masks: np.ndarray     # (n, H, W) bool
    instance_classes: np.ndarray   # (n,) int >= 1


@dataclass
class ImagePrediction:
    file_name: str
    semantic: np.ndarray           # (H, W) int, 0 = background, cluster ids >= 1
    instance_masks: np.ndarray     # (m, H, W) bool
    instance_classes: np.ndarray   # (m,) int >= 1 (cluster ids)
    instance_scores: np.ndarray    # (m,) float


class GroundTruthError(ValueError):
    """Ground truth that cannot be used; the message names the file."""


# ------------------------------------------------------------------------------------ loading ground truth


def load_ground_truth(path, ignore_value: int | None = None) -> dict:
    """Ground truth keyed by file name, from a COCO json or from a folder of label images.

    * COCO json: masks through pycocotools ``annToMask`` (RLE, uncompressed RLE and polygons); the semantic
      map is painted from all annotations, largest first so smaller ones stay visible; ``iscrowd`` regions
      go into the semantic map only (not instances). Class id = ``category_id``. Keyed by each image's
      ``file_name``. Instances whose mask is empty are dropped.
    * Folder: every ``.png``/``.tif``/``.tiff`` directly in it is one image; pixel value = class id
      (0 background; palette PNGs give their palette indices). Instances are the **8-connected** components
      of each class. Keyed by the label file's name (e.g. ``img_001.png``); :func:`evaluate` matches
      predictions to it by stem.

    ``ignore_value`` (e.g. 255 for VOC boundaries): pixels with that value become -1 in ``semantic`` and
    are ignored by the semantic metrics; they form no instances. Raises :class:`GroundTruthError` naming
    the file for unreadable input, ``FileNotFoundError`` for a missing path.
    """
    path = Path(path)
    if path.is_dir():
        return _load_label_folder(path, ignore_value)
    if path.is_file():
        return _load_coco(path)
    raise FileNotFoundError(f"{path}: no such ground-truth file or folder")


def _load_coco(path: Path) -> dict:
    from pycocotools.coco import COCO

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GroundTruthError(f"{path}: not a readable COCO json ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise GroundTruthError(f"{path}: not a COCO json (no 'images' list)")
    document.setdefault("annotations", [])
    document.setdefault("categories", [])
    coco = COCO()
    coco.dataset = document
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except (KeyError, TypeError) as exc:
        raise GroundTruthError(f"{path}: malformed COCO json ({exc!r})") from exc

    truths = {}
    for image in document["images"]:
        try:
            name, height, width = str(image["file_name"]), int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GroundTruthError(f"{path}: image {image.get('id')!r} lacks file_name/height/width") from exc
        if name in truths:
            raise GroundTruthError(f"{path}: file_name {name!r} is listed twice")
        painted = []  # (area, class id, mask, is_instance)
        for ann in coco.imgToAnns.get(image["id"], []):
            try:
                mask = coco.annToMask(ann).astype(bool)
                class_id = int(ann["category_id"])
            except Exception as exc:  # pycocotools raises assorted errors on bad polygons / RLE
                raise GroundTruthError(
                    f"{path}: annotation {ann.get('id')!r} of {name!r} cannot be decoded ({exc!r})") from exc
            if mask.shape != (height, width):
                raise GroundTruthError(f"{path}: annotation {ann.get('id')!r} of {name!r} has size "
                                       f"{mask.shape}, the image is {(height, width)}")
            if class_id < 1:
                raise GroundTruthError(f"{path}: annotation {ann.get('id')!r} has category_id {class_id} (< 1)")
            area = int(mask.sum())
            if area:
                painted.append((area, class_id, mask, not ann.get("iscrowd", 0)))
        painted.sort(key=lambda item: -item[0])  # stable: equal areas keep file order
        semantic = np.zeros((height, width), dtype=np.int64)
        for _, class_id, mask, _ in painted:
            semantic[mask] = class_id
        instances = [(class_id, mask) for _, class_id, mask, is_instance in painted if is_instance]
        truths[name] = _truth(name, semantic, instances)
    return truths


def _load_label_folder(folder: Path, ignore_value: int | None) -> dict:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LABEL_SUFFIXES)
    if not files:
        raise GroundTruthError(f"{folder}: no label images ({', '.join(LABEL_SUFFIXES)}) in this folder")
    truths = {}
    for file in files:
        semantic = _read_label_image(file, ignore_value)
        instances = []
        for class_id in np.unique(semantic):
            if class_id < 1:
                continue
            components, count = ndimage.label(semantic == class_id, structure=_EIGHT_CONNECTED)
            instances.extend((int(class_id), components == k) for k in range(1, count + 1))
        truths[file.name] = _truth(file.name, semantic, instances)
    return truths


def _read_label_image(file: Path, ignore_value: int | None) -> np.ndarray:
    try:
        if file.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = np.asarray(tifffile.imread(file))
        else:
            from PIL import Image

            with Image.open(file) as image:
                if image.mode not in ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
                    raise GroundTruthError(f"{file}: label image has mode {image.mode}; expected one channel "
                                           "of class ids (grayscale, palette or 16-bit)")
                array = np.asarray(image)
    except GroundTruthError:
        raise
    except Exception as exc:  # Pillow / tifffile raise many kinds
        raise GroundTruthError(f"{file}: cannot read label image ({exc})") from exc
    array = np.squeeze(array)
    if array.ndim != 2:
        raise GroundTruthError(f"{file}: label image has shape {array.shape}; expected (H, W) class ids")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise GroundTruthError(f"{file}: label image holds non-integer values")
    elif array.dtype.kind not in "biu":
        raise GroundTruthError(f"{file}: label image has dtype {array.dtype}; expected integers")
    semantic = array.astype(np.int64)
    if ignore_value is not None:
        semantic[semantic == ignore_value] = -1
    if (semantic < -1).any() or (ignore_value is None and (semantic < 0).any()):
        raise GroundTruthError(f"{file}: label image holds negative class ids")
    return semantic


def _truth(name: str, semantic: np.ndarray, instances: list) -> ImageTruth:
    h, w = semantic.shape
    masks = np.stack([m for _, m in instances]) if instances else np.zeros((0, h, w), dtype=bool)
    classes = np.array([c for c, _ in instances], dtype=np.int64)
    return ImageTruth(file_name=name, semantic=semantic, instance_masks=masks, instance_classes=classes)


# ----------------------------------------------------------------------------------------------- matching


def _iou_matrix(confusion: np.ndarray) -> np.ndarray:
    confusion = np.asarray(confusion, dtype=np.float64)
    union = confusion.sum(axis=1, keepdims=True) + confusion.sum(axis=0, keepdims=True) - confusion
    return np.divide(confusion, union, out=np.zeros_like(confusion), where=union > 0)


def hungarian_match(confusion: np.ndarray) -> dict:
    """One-to-one mapping ``pred id -> gt id`` maximising the summed IoU.

    ``confusion[p, g]`` = pixels predicted ``p`` whose ground truth is ``g`` (row/column 0 = background,
    which is matched like any other id). Only ids with at least one pixel take part; with a rectangular
    matrix the surplus ids stay unmatched, and chosen pairs with no overlap at all are left out.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2:
        raise ValueError(f"confusion must be 2-D, got shape {confusion.shape}")
    rows = np.flatnonzero(confusion.sum(axis=1) > 0)
    cols = np.flatnonzero(confusion.sum(axis=0) > 0)
    if rows.size == 0 or cols.size == 0:
        return {}
    sub = confusion[np.ix_(rows, cols)]
    r, c = linear_sum_assignment(_iou_matrix(confusion)[np.ix_(rows, cols)], maximize=True)
    return {int(rows[i]): int(cols[j]) for i, j in zip(r, c) if sub[i, j] > 0}


# --------------------------------------------------------------------------------------------- evaluation


def _name_keys(name: str) -> list:
    posix = PurePosixPath(unicodedata.normalize("NFC", str(name)).replace("\\", "/"))
    return [str(posix), str(posix.with_suffix("")) if posix.suffix else str(posix), posix.stem]


def _pair_predictions(predictions: dict, truths: dict) -> tuple:
    """truth key -> prediction (or None); and the number of predictions that matched no truth."""
    indexes = [{}, {}, {}]  # level -> key -> truth key (None when ambiguous)
    for truth_key in truths:
        for level, key in enumerate(_name_keys(truth_key)):
            indexes[level][key] = truth_key if indexes[level].get(key, truth_key) == truth_key else None
    paired, unmatched = {}, 0
    for pred_key, prediction in predictions.items():
        name = getattr(prediction, "file_name", None) or pred_key
        target = None
        for candidate in dict.fromkeys([pred_key, name]):
            for level, key in enumerate(_name_keys(candidate)):
                target = indexes[level].get(key)
                if target is not None:
                    break
            if target is not None:
                break
        if target is None or target in paired:
            unmatched += 1
        else:
            paired[target] = prediction
    return {key: paired.get(key) for key in truths}, unmatched


def _empty_prediction(truth: ImageTruth) -> ImagePrediction:
    h, w = truth.semantic.shape
    return ImagePrediction(truth.file_name, np.zeros((h, w), dtype=np.int64), np.zeros((0, h, w), dtype=bool),
                           np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


def _check_prediction(prediction: ImagePrediction, truth: ImageTruth) -> None:
    name = prediction.file_name
    shape = truth.semantic.shape
    semantic = np.asarray(prediction.semantic)
    if semantic.shape != shape:
        raise ValueError(f"{name}: predicted semantic map is {semantic.shape}, ground truth is {shape}")
    if semantic.size and semantic.min() < 0:
        raise ValueError(f"{name}: predicted semantic map holds negative ids")
    masks = np.asarray(prediction.instance_masks)
    m = len(masks)
    if masks.shape[1:] != shape and m:
        raise ValueError(f"{name}: predicted instance masks are {masks.shape[1:]}, ground truth is {shape}")
    if len(prediction.instance_classes) != m or len(prediction.instance_scores) != m:
        raise ValueError(f"{name}: {m} instance masks but {len(prediction.instance_classes)} classes and "
                         f"{len(prediction.instance_scores)} scores")


def _box_iou(a: list, b: list) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _coco_ap(gt_document: dict, results: list, use_cats: bool) -> tuple:
    """(AP@[.5:.95], AP@.5); (0.0, 0.0) without detections, (None, None) without ground-truth instances."""
    if not gt_document["annotations"]:
        return None, None
    if not results:
        return 0.0, 0.0
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_document
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in results])
        evaluator = COCOeval(gt, dt, iouType="segm")
        evaluator.params.useCats = int(use_cats)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50 = (float(v) for v in evaluator.stats[:2])
    return max(ap, 0.0), max(ap50, 0.0)  # -1 = nothing to evaluate -> 0.0


def evaluate(predictions: dict, truths: dict) -> dict:
    """Semantic mIoU, mask AP (class-aware and agnostic) and CorLoc of ``predictions`` against ``truths``.

    Returns a JSON-serialisable dict: ``miou``, ``per_class_iou`` {class id (str): IoU}, ``matching``
    {cluster id (str): class id}, ``unmatched_clusters``, ``unmatched_classes``, ``ap``, ``ap50`` (class-aware,
    cluster ids mapped through the matching, instances of unmatched clusters dropped), ``ap_agnostic``,
    ``ap50_agnostic`` (``useCats = 0``, all instances), ``corloc``, ``corloc_images``, ``images``,
    ``missing_predictions`` (ground-truth images without a prediction; evaluated as empty predictions) and
    ``unmatched_predictions`` (predictions for images not in the ground truth; ignored).

    AP is 0.0 when there are no predicted instances (COCOeval would return -1) and ``None`` when the ground
    truth has no instances. See the module docstring for how unequal cluster/class counts are handled.
    """
    if not truths:
        raise ValueError("no ground-truth images to evaluate against")
    paired, unmatched_predictions = _pair_predictions(predictions, truths)
    missing = sum(p is None for p in paired.values())
    items = []
    for key, truth in truths.items():
        prediction = paired[key] if paired[key] is not None else _empty_prediction(truth)
        _check_prediction(prediction, truth)
        items.append((truth, prediction))

    # ---- semantic: dataset-level confusion, Hungarian matching, per-class IoU
    counts: dict = {}
    for truth, prediction in items:
        gt = np.asarray(truth.semantic).ravel().astype(np.int64)
        pred = np.asarray(prediction.semantic).ravel().astype(np.int64)
        valid = gt >= 0
        gt, pred = gt[valid], pred[valid]
        if gt.size == 0:
            continue
        base = int(gt.max()) + 1
        codes, n = np.unique(pred * base + gt, return_counts=True)
        for code, count in zip(codes.tolist(), n.tolist()):
            pair = divmod(code, base)
            counts[pair] = counts.get(pair, 0) + count
    n_pred = 1 + max((p for p, _ in counts), default=0)
    n_gt = 1 + max((g for _, g in counts), default=0)
    confusion = np.zeros((n_pred, n_gt), dtype=np.int64)
    for (p, g), count in counts.items():
        confusion[p, g] += count
    matching = hungarian_match(confusion)
    gt_classes = np.flatnonzero(confusion.sum(axis=0) > 0)
    pred_ids = np.flatnonzero(confusion.sum(axis=1) > 0)
    per_class = {}
    for g in gt_classes.tolist():
        matched = [p for p, target in matching.items() if target == g]
        tp = sum(int(confusion[p, g]) for p in matched)
        predicted = sum(int(confusion[p].sum()) for p in matched)
        union = int(confusion[:, g].sum()) + predicted - tp
        per_class[str(g)] = tp / union if union else 0.0
    miou = float(np.mean(list(per_class.values()))) if per_class else 0.0

    # ---- instances: COCO documents built in memory
    images, gt_anns, results_aware, results_agnostic = [], [], [], []
    categories = set()
    corloc_hits, corloc_images = 0, 0
    for image_id, (truth, prediction) in enumerate(items, start=1):
        h, w = truth.semantic.shape
        images.append({"id": image_id, "file_name": truth.file_name, "height": int(h), "width": int(w)})
        gt_boxes = []
        for mask, class_id in zip(truth.instance_masks, truth.instance_classes):
            mask = np.asarray(mask, dtype=bool)
            box = bbox_xywh(mask)
            gt_boxes.append(box)
            categories.add(int(class_id))
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": int(class_id),
                            "segmentation": encode_rle(mask), "area": int(mask.sum()), "bbox": box,
                            "iscrowd": 0})
        masks = np.asarray(prediction.instance_masks, dtype=bool)
        scores = np.asarray(prediction.instance_scores, dtype=np.float64)
        for mask, cluster, score in zip(masks, prediction.instance_classes, scores):
            record = {"image_id": image_id, "segmentation": encode_rle(mask), "score": float(score)}
            results_agnostic.append({**record, "category_id": 1})
            target = matching.get(int(cluster))
            if target is not None and target >= 1:
                results_aware.append({**record, "category_id": int(target)})
        if gt_boxes:
            corloc_images += 1
            if len(masks):
                top = bbox_xywh(masks[int(np.argmax(scores))])
                corloc_hits += any(_box_iou(top, box) >= 0.5 for box in gt_boxes)
    categories |= {int(g) for g in gt_classes if g >= 1}
    document = {"images": images, "annotations": gt_anns,
                "categories": [{"id": c, "name": str(c)} for c in sorted(categories)]}
    agnostic_document = {**document, "annotations": [{**a, "category_id": 1} for a in gt_anns],
                         "categories": [{"id": 1, "name": "object"}]}
    ap, ap50 = _coco_ap(document, results_aware, use_cats=True)
    ap_agnostic, ap50_agnostic = _coco_ap(agnostic_document, results_agnostic, use_cats=False)

    return {
        "miou": miou,
        "per_class_iou": per_class,
        "matching": {str(p): int(g) for p, g in sorted(matching.items())},
        "unmatched_clusters": [int(p) for p in pred_ids if int(p) not in matching],
        "unmatched_classes": [int(g) for g in gt_classes if int(g) not in set(matching.values())],
        "ap": ap,
        "ap50": ap50,
        "ap_agnostic": ap_agnostic,
        "ap50_agnostic": ap50_agnostic,
        "corloc": corloc_hits / corloc_images if corloc_images else 0.0,
        "corloc_images": corloc_images,
        "images": len(items),
        "missing_predictions": missing,
        "unmatched_predictions": unmatched_predictions,
    }
