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

Memory does not grow with the number of images: ground truth and predictions may be lazy mappings
(:func:`open_ground_truth`, :class:`LazyMapping`) that decode one image when asked; :func:`evaluate` reads
each image twice (first the dataset-level confusion for the matching, then the instances), and COCO AP runs
COCOeval's per-image evaluation a chunk of images at a time, keeping of each image only what COCOeval's
accumulate step reads (detection scores, matched and ignored flags), so the AP is COCOeval's own.
"""
from __future__ import annotations

import contextlib
import copy
import io
import unicodedata
from collections.abc import Mapping
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


class LazyMapping(Mapping):
    """A read-only mapping whose values are made by ``load(key)`` each time one is asked for and not kept:
    ground truth or predictions of many images, one image in memory at a time."""

    def __init__(self, keys, load):
        self._keys = list(dict.fromkeys(keys))
        self._known = set(self._keys)
        self._load = load

    def __getitem__(self, key):
        if key not in self._known:
            raise KeyError(key)
        return self._load(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


# ------------------------------------------------------------------------------------ loading ground truth


def load_ground_truth(path, ignore_value: int | None = None) -> dict:
    """Ground truth keyed by file name, from a COCO json or from a folder of label images.

    * COCO json: masks through pycocotools (RLE, uncompressed RLE and polygons; engine.io.coco_reader); the semantic
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
    return dict(open_ground_truth(path, ignore_value).items())


def open_ground_truth(path, ignore_value: int | None = None) -> LazyMapping:
    """The ground truth of :func:`load_ground_truth` as a :class:`LazyMapping`: the file is checked and
    indexed now, each image decoded when asked for (so its errors are raised then)."""
    path = Path(path)
    if path.is_dir():
        return _open_label_folder(path, ignore_value)
    if path.is_file():
        return _open_coco(path)
    raise FileNotFoundError(f"{path}: no such ground-truth file or folder")


def _open_coco(path: Path) -> LazyMapping:
    from engine.io.coco import decode_segmentation
    from engine.io.coco_reader import CocoFile
    from engine.io.coco_validation import CocoValidationError

    try:  # read as a stream, annotations kept on disk by image: memory does not grow with the file
        coco = CocoFile(path, require_categories=False)
    except CocoValidationError as error:
        raise GroundTruthError(str(error)) from None
    by_name = {name: (slot, hw) for slot, (name, hw, _) in enumerate(coco.images)}

    def load(name: str) -> ImageTruth:
        slot, (height, width) = by_name[name]
        painted = []  # (area, class id, mask, is_instance)
        for ann in coco.annotations(slot, crowd=True):
            try:
                mask = decode_segmentation(ann["segmentation"], (height, width))
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
        return _truth(name, semantic, instances)

    return LazyMapping(by_name, load)


def _open_label_folder(folder: Path, ignore_value: int | None) -> LazyMapping:
    files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in LABEL_SUFFIXES}
    if not files:
        raise GroundTruthError(f"{folder}: no label images ({', '.join(LABEL_SUFFIXES)}) in this folder")

    def load(name: str) -> ImageTruth:
        semantic = _read_label_image(files[name], ignore_value)
        instances: list = []
        for class_id in np.unique(semantic):
            if class_id < 1:
                continue
            components, count = ndimage.label(semantic == class_id, structure=_EIGHT_CONNECTED)
            instances.extend((int(class_id), components == k) for k in range(1, count + 1))
        return _truth(name, semantic, instances)

    return LazyMapping(files, load)


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


def _pair_predictions(predictions: Mapping, truths: Mapping) -> tuple:
    """truth key -> prediction key (or None); and the number of predictions that matched no truth. A lazy
    mapping's keys are its file names; a plain dict's values may name another file (``file_name``)."""
    indexes: list[dict] = [{}, {}, {}]  # level -> key -> truth key (None when ambiguous)
    for truth_key in truths:
        for level, key in enumerate(_name_keys(truth_key)):
            indexes[level][key] = truth_key if indexes[level].get(key, truth_key) == truth_key else None
    paired, unmatched = {}, 0
    for pred_key in predictions:
        name = pred_key if isinstance(predictions, LazyMapping) else (
            getattr(predictions[pred_key], "file_name", None) or pred_key)
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
            paired[target] = pred_key
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


class StreamedAP:
    """COCO mask AP (AP@[.5:.95], AP@.5; all areas, 100 detections per image) over images added one at a time.

    COCOeval's own per-image evaluation runs on chunks of ``chunk`` images; of each image and category only
    what COCOeval's accumulate step reads is kept (detection scores, matched and ignored flags per IoU
    threshold, ignored ground truth), concatenated per category in image order. accumulate() then runs once
    over those arrays, treated as one image (its 100-detection cut was already made per image), so the numbers
    are COCOeval's while memory holds a few bytes per detection instead of every mask.
    """

    MAX_DETECTIONS = 100

    def __init__(self, category_ids, use_cats: bool, chunk: int = 200):
        self.category_ids = sorted(int(c) for c in category_ids)
        self.use_cats, self.chunk = bool(use_cats), chunk
        self._keys = self.category_ids if self.use_cats else [-1]
        self._kept: dict[int, dict[str, list]] = {
            key: {"dtScores": [], "dtMatches": [], "dtIgnore": [], "gtIgnore": []} for key in self._keys}
        self._images: list = []
        self._truths: list = []
        self._results: list = []
        self.truth_count = self.result_count = 0

    def add(self, image: dict, truths: list, results: list) -> None:
        """One image ({"id", "height", "width"}), its ground-truth annotations (segmentation RLE, category_id,
        area, bbox, iscrowd 0) and its detections (segmentation RLE, category_id, score)."""
        self._images.append(image)
        for truth in truths:
            self.truth_count += 1
            self._truths.append({**truth, "id": self.truth_count})  # ids >= 1: COCOeval marks "no match" by 0
        self._results.extend(results)
        self.result_count += len(results)
        if len(self._images) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._images:
            return
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        categories = [{"id": c, "name": str(c)} for c in self.category_ids]
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = {"images": self._images, "annotations": self._truths, "categories": categories}
            gt.createIndex()
            if self._results:
                dt = gt.loadRes([dict(r) for r in self._results])
            else:  # loadRes fails on an empty list; the images' ground truth still counts (missed objects)
                dt = COCO()
                dt.dataset = {"images": self._images, "annotations": [], "categories": categories}
                dt.createIndex()
            evaluator = COCOeval(gt, dt, iouType="segm")
            self._set_params(evaluator.params, [image["id"] for image in self._images], self.MAX_DETECTIONS)
            evaluator.evaluate()
        for result in evaluator.evalImgs:
            if result is None:
                continue
            kept = self._kept[result["category_id"]]
            kept["dtScores"].append(np.asarray(result["dtScores"], np.float64))
            kept["dtMatches"].append(np.asarray(result["dtMatches"]) > 0)
            kept["dtIgnore"].append(np.asarray(result["dtIgnore"], bool))
            kept["gtIgnore"].append(np.asarray(result["gtIgnore"], np.uint8))
        self._images, self._truths, self._results = [], [], []

    def _set_params(self, params, image_ids: list, max_detections: int) -> None:
        params.useCats = int(self.use_cats)
        params.imgIds = image_ids
        params.catIds = list(self.category_ids) or [1]
        params.areaRng, params.areaRngLbl = [[0, 1e10]], ["all"]
        params.maxDets = [max_detections]

    def result(self) -> tuple:
        """(AP@[.5:.95], AP@.5); (0.0, 0.0) without detections, (None, None) without ground-truth instances."""
        self._flush()
        if not self.truth_count:
            return None, None
        if not self.result_count:
            return 0.0, 0.0
        from pycocotools.cocoeval import COCOeval

        evaluator = COCOeval(iouType="segm")
        # the whole dataset as one image: every detection was already cut to 100 per image in evaluate()
        self._set_params(evaluator.params, [0], 2 ** 62)
        evaluator._paramsEval = copy.deepcopy(evaluator.params)
        evaluator.evalImgs = [self._merged(key) for key in self._keys]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.accumulate()
        precision = evaluator.eval["precision"][..., 0, 0]  # (IoU thresholds, recall thresholds, categories)
        at50 = precision[np.flatnonzero(np.isclose(evaluator.params.iouThrs, 0.5))]
        ap, ap50 = (float(np.mean(p[p > -1])) if (p > -1).any() else -1.0 for p in (precision, at50))
        return max(ap, 0.0), max(ap50, 0.0)  # -1 = nothing to evaluate -> 0.0

    def _merged(self, key) -> dict | None:
        """What was kept of every image for one category, joined in image order (None: no image had any)."""
        kept = self._kept[key]
        if not kept["gtIgnore"]:
            return None
        return {name: np.concatenate(parts, axis=1 if name in ("dtMatches", "dtIgnore") else 0)
                for name, parts in kept.items()}


def _image_evaluation(image_id: int, truth: ImageTruth, prediction: ImagePrediction, matching: dict) -> tuple:
    """(image record, ground-truth annotations, class-aware detections, class-agnostic detections) of one image
    for :class:`StreamedAP`; detections of clusters matched to no class (or to background) are not class-aware."""
    h, w = truth.semantic.shape
    image = {"id": image_id, "height": int(h), "width": int(w)}
    truths = []
    for mask, class_id in zip(truth.instance_masks, truth.instance_classes):
        mask = np.asarray(mask, dtype=bool)
        truths.append({"image_id": image_id, "category_id": int(class_id), "segmentation": encode_rle(mask),
                       "area": int(mask.sum()), "bbox": bbox_xywh(mask), "iscrowd": 0})
    aware, agnostic = [], []
    scores = np.asarray(prediction.instance_scores, dtype=np.float64)
    for mask, cluster, score in zip(np.asarray(prediction.instance_masks, dtype=bool), prediction.instance_classes,
                                    scores):
        record = {"image_id": image_id, "segmentation": encode_rle(mask), "score": float(score)}
        agnostic.append({**record, "category_id": 1})
        target = matching.get(int(cluster))
        if target is not None and target >= 1:
            aware.append({**record, "category_id": int(target)})
    return image, truths, aware, agnostic


def _corloc_hit(truth: ImageTruth, prediction: ImagePrediction):
    """None for an image without ground-truth instances; else whether the top-scoring predicted instance's box
    overlaps a ground-truth box with IoU >= 0.5."""
    boxes = [bbox_xywh(np.asarray(mask, bool)) for mask in truth.instance_masks]
    if not boxes:
        return None
    if not len(prediction.instance_masks):
        return False
    top = bbox_xywh(np.asarray(prediction.instance_masks[int(np.argmax(prediction.instance_scores))], bool))
    return any(_box_iou(top, box) >= 0.5 for box in boxes)


def _add_confusion(counts: dict, truth: ImageTruth, prediction: ImagePrediction) -> None:
    """Add one image's (predicted id, ground-truth id) pixel counts to ``counts`` (ignored pixels left out)."""
    gt = np.asarray(truth.semantic).ravel().astype(np.int64)
    pred = np.asarray(prediction.semantic).ravel().astype(np.int64)
    valid = gt >= 0
    gt, pred = gt[valid], pred[valid]
    if gt.size == 0:
        return
    base = int(gt.max()) + 1
    codes, n = np.unique(pred * base + gt, return_counts=True)
    for code, count in zip(codes.tolist(), n.tolist()):
        pair = divmod(code, base)
        counts[pair] = counts.get(pair, 0) + count


def evaluate(predictions: Mapping, truths: Mapping, chunk: int = 200) -> dict:
    """Semantic mIoU, mask AP (class-aware and agnostic) and CorLoc of ``predictions`` against ``truths``.

    Both are mappings by file name (dicts, or :class:`LazyMapping` for many images: each image is then read
    twice, one at a time). Returns a JSON-serialisable dict: ``miou``, ``per_class_iou`` {class id (str): IoU},
    ``matching`` {cluster id (str): class id}, ``unmatched_clusters``, ``unmatched_classes``, ``ap``, ``ap50``
    (class-aware, cluster ids mapped through the matching, instances of unmatched clusters dropped),
    ``ap_agnostic``, ``ap50_agnostic`` (``useCats = 0``, all instances), ``corloc``, ``corloc_images``,
    ``images``, ``missing_predictions`` (ground-truth images without a prediction; evaluated as empty
    predictions) and ``unmatched_predictions`` (predictions for images not in the ground truth; ignored).

    AP is 0.0 when there are no predicted instances (COCOeval would return -1) and ``None`` when the ground
    truth has no instances. See the module docstring for how unequal cluster/class counts are handled.
    ``chunk``: images per COCOeval evaluation (memory only; the numbers do not depend on it).
    """
    if not truths:
        raise ValueError("no ground-truth images to evaluate against")
    paired, unmatched_predictions = _pair_predictions(predictions, truths)
    missing = sum(p is None for p in paired.values())

    def items():
        for key in truths:
            truth = truths[key]
            prediction = predictions[paired[key]] if paired[key] is not None else _empty_prediction(truth)
            _check_prediction(prediction, truth)
            yield truth, prediction

    # ---- pass 1: dataset-level confusion, Hungarian matching, per-class IoU; CorLoc
    counts: dict = {}
    corloc_hits, corloc_images = 0, 0
    instance_classes: set = set()
    for truth, prediction in items():
        _add_confusion(counts, truth, prediction)
        hit = _corloc_hit(truth, prediction)
        if hit is not None:
            corloc_images += 1
            corloc_hits += hit
        instance_classes.update(int(c) for c in truth.instance_classes)
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

    # ---- pass 2: instances, through COCOeval a chunk of images at a time
    categories = instance_classes | {int(g) for g in gt_classes if g >= 1}
    aware_ap, agnostic_ap = StreamedAP(categories, use_cats=True, chunk=chunk), StreamedAP([1], False, chunk)
    for image_id, (truth, prediction) in enumerate(items(), start=1):
        image, truth_records, aware, agnostic = _image_evaluation(image_id, truth, prediction, matching)
        aware_ap.add(image, truth_records, aware)
        agnostic_ap.add(image, [{**t, "category_id": 1} for t in truth_records], agnostic)
    ap, ap50 = aware_ap.result()
    ap_agnostic, ap50_agnostic = agnostic_ap.result()

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
        "images": len(truths),
        "missing_predictions": missing,
        "unmatched_predictions": unmatched_predictions,
    }
