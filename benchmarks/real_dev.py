"""The real-image benchmark: the engine on ``real-dev`` (13 real photos with human annotations), scored per source.

    .venv/bin/python -m benchmarks.real_dev [--out runs/benchmark-real] [--real-dev PATH] [--device auto]
                                            [--weights FILE|random] [--input-size N] [--seeds N]

``real-dev`` (default ``../shared/data/real-dev`` next to the repository; see its README) is one COCO file,
``ground_truth.json``, with two image-level fields: ``source`` (where the photo comes from) and ``annotation``
(``mask``: instance masks; ``box``: boxes only). The images of ``DENSE_SOURCES`` (the two aerial tree tiles)
are left out here: the dense section (benchmarks/dense.py) scores them with the dense proposals. The engine
runs twice on the other images (copied to ``OUT/images``) into one project folder (``OUT/project``; the
second run reuses the features and proposals): with the default K (``num_classes=None``,
the silhouette's suggestion) and with the given K (the number of ground-truth classes that recur, i.e. are
annotated in at least two images). Each run is scored at three stages:

* ``proposals``: the class-agnostic proposal masks, scored by their proposal score;
* ``clustered``: the same masks with their pseudo-classes (adds the Hungarian mIoU);
* ``final``: the distilled model's predictions (``predictions/``).

Metrics, per source, in total (pooled over every image) and as the mean over the sources (``source_mean``: each
source weighs alike); all class-agnostic except mIoU. The same scorer (:func:`score_project`) serves any folder of
images with a COCO ground truth: benchmarks/domains.py scores the domain folders with it, class-agnostically.

* ``corloc``: share of images whose highest-scoring mask has a tight box with IoU >= 0.5 with some ground-truth
  box (every image, box-only ones included);
* ``box_ap50``: COCO box AP at IoU 0.5, ``useCats = 0``, predicted box = the mask's tight box (every image);
* ``mask_ap50``: COCO mask AP at IoU 0.5, ``useCats = 0`` (mask images only; ``None`` for a source without);
* ``box_recall50`` / ``mask_recall50``: share of annotated objects that some predicted box / mask matches at
  IoU >= 0.5 (not every object is annotated, so AP counts correct masks of unannotated objects as false
  positives; recall does not);
* ``miou`` (clustered and final): pseudo-classes matched one-to-one to ground-truth classes by the Hungarian
  algorithm on the pixel IoU over all mask images (engine.output.evaluation.hungarian_match, background 0 included
  as in engine.output.evaluation); pixels of classes that do not recur are ignored, and the mean runs over background
  and the recurring classes present. Per source, the same dataset-level matching is used and the mean runs
  over the classes present in that source (``None`` where no recurring class is annotated: background alone
  says nothing about classes). ``miou_objects`` leaves background out of the mean.

``--seeds N`` runs the whole benchmark for N seeds (the first one's figures stay the headline) and adds
``seed_spread``: min / max / mean of each run's final figures and of the correction curve. ``make benchmark``
uses the synthetic set's seeds (3).

``--noise-runs N`` also runs the default settings at the first seed on N copies of the images each given its own
invisible noise (every pixel's channels moved by -1, 0 or +1 grey level, stored losslessly) and adds
``noise_spread``: min / max / mean of the final figures over the unperturbed run and the N noisy ones. The seed
reaches only the k-means and the training, never the features; a change of the features as small as bfloat16's
(tokens at cosine 0.99995) moves real-dev's figures by more than the seeds do, so a difference inside this spread
is noise as well (docs/decisions.md#d-noise-spread).

Results go to OUT/results.json (``quality.real`` of ``make benchmark``; the default run's stages at the top level
and ``source_mean.<stage>.{corloc,box_ap50,mask_ap50}``) and a table is printed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from engine.atomic import atomic_write_json, read_json  # noqa: E402
from engine.masks import bbox_xywh, encode_rle  # noqa: E402
from engine.method.distill import paint_label_map  # noqa: E402
from engine.output.evaluation import hungarian_match  # noqa: E402
from engine.state.project import Project, joined_masks, load_image_predictions, load_image_proposals  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL_DEV = REPO_ROOT.parent / "shared" / "data" / "real-dev"
STAGES = ("proposals", "clustered", "final")
IGNORE = -1
# real-dev sources of dense small objects, scored by the dense section (benchmarks/dense.py) with the dense
# proposals and left out of real-dev's run and figures: the two aerial tiles' 98 tree-crown boxes were 98 of
# real-dev's 151 objects and decided its pooled box AP50
DENSE_SOURCES = ("deepforest",)


# ------------------------------------------------------------------------------------------- ground truth


@dataclass
class RealImage:
    file_name: str
    source: str
    annotation: str             # "mask" or "box"
    height: int
    width: int
    boxes: np.ndarray           # (n, 4) float xywh
    classes: np.ndarray         # (n,) int category ids
    masks: np.ndarray | None    # (n, H, W) bool, None for box-only images


def ground_truth_missing(path, label: str) -> str | None:
    """Why the folder ``path`` cannot be scored (a sentence starting with ``label``), or None when it holds
    ground_truth.json and images/."""
    path = Path(path)
    if not (path / "ground_truth.json").is_file():
        return f"{label} skipped: {path / 'ground_truth.json'} not found"
    if not (path / "images").is_dir():
        return f"{label} skipped: {path / 'images'} not found"
    return None


def real_dev_missing(path) -> str | None:
    return ground_truth_missing(path, "real-dev")


def load_ground_truth(path, default_source: str = "unknown") -> list:
    """The images of ``path/ground_truth.json`` (COCO) with boxes, classes and (for mask images) decoded masks.

    An image's ``source`` and ``annotation`` fields are optional (real-dev has them; a plain COCO file such as a
    domain folder's does not): ``default_source`` and ``mask`` stand in for them.
    """
    document = json.loads((Path(path) / "ground_truth.json").read_text())
    by_image: dict = {}
    for ann in document["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = []
    for info in document["images"]:
        h, w = int(info["height"]), int(info["width"])
        kind = info.get("annotation", "mask")
        if kind not in ("mask", "box"):
            raise ValueError(f"{path}: image {info['file_name']} has annotation {kind!r} (expected mask or box)")
        anns = [a for a in by_image.get(info["id"], []) if not a.get("iscrowd", 0)]
        masks = None
        if kind == "mask":
            masks = np.zeros((len(anns), h, w), bool)
            for i, ann in enumerate(anns):
                segmentation = ann["segmentation"]
                if isinstance(segmentation, list):
                    rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
                elif isinstance(segmentation.get("counts"), list):
                    rle = mask_utils.frPyObjects(segmentation, h, w)
                else:
                    rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")
                           if isinstance(segmentation["counts"], str) else segmentation["counts"]}
                masks[i] = mask_utils.decode(rle).astype(bool)
            boxes = np.array([bbox_xywh(m) for m in masks], float).reshape(-1, 4)
        else:
            boxes = np.array([a["bbox"] for a in anns], float).reshape(-1, 4)
        images.append(RealImage(info["file_name"], str(info.get("source", default_source)), kind, h, w, boxes,
                                np.array([int(a["category_id"]) for a in anns], int), masks))
    return images


def stage_images(source: Path, file_names: list, folder: Path) -> Path:
    """``folder`` holding copies of ``source``'s files ``file_names`` and nothing else (the engine runs on a
    folder: this is how part of one is run); returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {Path(name) for name in file_names}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder) not in wanted:
            path.unlink()
    for name in wanted:
        target = folder / name
        if not target.exists() or target.stat().st_size != (Path(source) / name).stat().st_size:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(source) / name, target)
    return folder


def recurring_classes(images: list) -> list:
    """Category ids annotated in at least two images (of any kind), sorted."""
    seen: dict = {}
    for image in images:
        for cls in set(image.classes.tolist()):
            seen[cls] = seen.get(cls, 0) + 1
    return sorted(c for c, n in seen.items() if n >= 2)


# ------------------------------------------------------------------------------------------- predictions


@dataclass
class StagePrediction:
    masks: np.ndarray           # (m, H, W) bool
    scores: np.ndarray          # (m,) float
    semantic: np.ndarray | None  # (H, W) int, 0 background, pseudo-class ids >= 1; None: class-agnostic


class StagePredictions(Mapping):
    """{image file name: StagePrediction}, each read from the project's files when asked for: a folder of
    hundreds of images does not hold every image's masks in memory at once. Asking twice reads twice."""

    def __init__(self, loaders: dict):
        self._loaders = loaders  # {file name: () -> StagePrediction}

    def __getitem__(self, name) -> StagePrediction:
        return self._loaders[name]()

    def __iter__(self):
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def project_stages(project_dir) -> dict:
    """{stage: StagePredictions} of a finished project's files (read image by image when scored)."""
    project = Project(project_dir)
    entries = read_json(project.images_path)
    clusters = read_json(project.clusters_path)
    labels: dict = {}
    for m in clusters["masks"]:
        labels.setdefault(m["image_id"], {})[m["index"]] = m["cluster"] + 1

    def proposals_of(entry, with_classes: bool) -> StagePrediction:
        hw = (entry["height"], entry["width"])
        proposals, _, _ = load_image_proposals(project.proposals_path(entry["image_id"]), hw)
        semantic = None
        if with_classes:
            classes = [labels[entry["image_id"]][i] for i in range(len(proposals))]
            semantic = paint_label_map(hw, proposals.masks, classes)
        return StagePrediction(proposals.masks, np.asarray(proposals.scores, float), semantic)

    def final_of(entry, path) -> StagePrediction:
        semantic, masks, _, pred_scores = load_image_predictions(path)
        overlapping = project.overlapping_path(entry["image_id"])  # a second scale's (RunConfig.second_scale)
        if overlapping.exists():
            _, extra, _, extra_scores = load_image_predictions(overlapping)
            masks, pred_scores = joined_masks(masks, extra), np.concatenate([pred_scores, extra_scores])
        return StagePrediction(masks, np.asarray(pred_scores, float), semantic.astype(np.int64))

    loaders: dict = {stage: {} for stage in STAGES}
    for entry in entries:
        name = entry["relative_path"]
        loaders["proposals"][name] = partial(proposals_of, entry, False)
        loaders["clustered"][name] = partial(proposals_of, entry, True)
        path = project.predictions_path(entry["image_id"])
        if path.exists():
            loaders["final"][name] = partial(final_of, entry, path)
    if not loaders["final"]:
        del loaders["final"]
    return {stage: StagePredictions(stage_loaders) for stage, stage_loaders in loaders.items()}


# ---------------------------------------------------------------------------------------------- metrics


def _box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xywh box in ``a`` with every one in ``b``."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _mask_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, bool).reshape(len(a), -1).astype(np.float32)
    b = np.asarray(b, bool).reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class CocoAp50:
    """Class-agnostic COCO AP at IoU 0.5 (``useCats = 0``, COCO's 100 detections per image) of boxes and masks,
    filled image by image (masks are kept as RLE, so a folder of hundreds of images fits in memory). Box AP
    counts every image; mask AP only the mask images."""

    def __init__(self):
        self.images: dict = {"bbox": [], "segm": []}
        self.truth: dict = {"bbox": [], "segm": []}
        self.found: dict = {"bbox": [], "segm": []}

    def add(self, image: RealImage, masks: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> None:
        image_id = len(self.images["bbox"]) + 1
        kinds = ("bbox", "segm") if image.annotation == "mask" else ("bbox",)
        for kind in kinds:
            self.images[kind].append({"id": image_id, "file_name": image.file_name, "height": image.height,
                                      "width": image.width})
        for i, box in enumerate(image.boxes):
            record = {"image_id": image_id, "category_id": 1, "iscrowd": 0}
            self.truth["bbox"].append({**record, "bbox": [float(v) for v in box], "area": float(box[2] * box[3])})
            if "segm" in kinds:
                self.truth["segm"].append({**record, "bbox": [float(v) for v in box],
                                           "segmentation": encode_rle(image.masks[i]),
                                           "area": float(image.masks[i].sum())})
        for mask, box, score in zip(masks, boxes, scores):
            record = {"image_id": image_id, "category_id": 1, "score": float(score)}
            self.found["bbox"].append({**record, "bbox": [float(v) for v in box]})
            if "segm" in kinds:
                self.found["segm"].append({**record, "segmentation": encode_rle(mask)})

    def ap50(self, iou_type: str) -> float | None:
        """None without ground truth, 0.0 without detections."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        truth = [{**ann, "id": i} for i, ann in enumerate(self.truth[iou_type], start=1)]
        if not truth:
            return None
        if not self.found[iou_type]:
            return 0.0
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = {"images": self.images[iou_type], "annotations": truth,
                          "categories": [{"id": 1, "name": "object"}]}
            gt.createIndex()
            dt = gt.loadRes(self.found[iou_type])
            evaluator = COCOeval(gt, dt, iouType=iou_type)
            evaluator.params.useCats = 0
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return max(float(evaluator.stats[1]), 0.0)


def _masks_and_scores(image: RealImage, prediction: StagePrediction | None) -> tuple:
    """(masks, tight xywh boxes, scores) of an image's prediction; empty where there is none."""
    if prediction is None:
        return np.zeros((0, image.height, image.width), bool), np.zeros((0, 4)), np.zeros(0)
    boxes = np.array([bbox_xywh(m) for m in prediction.masks], float).reshape(-1, 4)
    return prediction.masks, boxes, np.asarray(prediction.scores, float)


def _coco_ap50(images: list, predictions: Mapping, iou_type: str) -> float | None:
    """Class-agnostic COCO AP at IoU 0.5 of ``predictions`` on ``images`` (see :class:`CocoAp50`)."""
    document = CocoAp50()
    for image in images:
        document.add(image, *_masks_and_scores(image, predictions.get(image.file_name)))
    return document.ap50(iou_type)


def _confusion(pairs: list, size: tuple) -> np.ndarray:
    """Pixel counts [predicted id, ground-truth id] over (semantic_pred, semantic_gt) pairs; gt < 0 ignored."""
    confusion = np.zeros(size, np.int64)
    for pred, gt in pairs:
        valid = gt >= 0
        codes = pred[valid].astype(np.int64) * size[1] + gt[valid].astype(np.int64)
        confusion += np.bincount(codes, minlength=size[0] * size[1]).reshape(size)
    return confusion


def ground_truth_semantic(image: RealImage, recurring: list) -> np.ndarray:
    """Class-id map of a mask image: largest masks painted first; classes that do not recur are IGNORE."""
    semantic = np.zeros((image.height, image.width), np.int64)
    order = np.argsort([-int(m.sum()) for m in image.masks], kind="stable")
    for i in order:
        cls = int(image.classes[i])
        semantic[image.masks[i]] = cls if cls in recurring else IGNORE
    return semantic


def semantic_scores(images: list, predictions: dict, recurring: list) -> tuple:
    """(matching {pseudo-class: class}, {image file name: confusion}, total confusion) over the mask images."""
    pairs = {}
    for image in images:
        if image.annotation != "mask":
            continue
        prediction = predictions.get(image.file_name)
        pred = (prediction.semantic if prediction is not None and prediction.semantic is not None
                else np.zeros((image.height, image.width), np.int64))
        pairs[image.file_name] = (np.asarray(pred, np.int64), ground_truth_semantic(image, recurring))
    n_pred = 1 + max((int(p.max()) for p, _ in pairs.values() if p.size), default=0)
    n_gt = 1 + max(recurring, default=0)
    per_image = {name: _confusion([pair], (n_pred, n_gt)) for name, pair in pairs.items()}
    total = sum(per_image.values(), np.zeros((n_pred, n_gt), np.int64))
    return hungarian_match(total), per_image, total


def miou_from_confusion(confusion: np.ndarray, matching: dict) -> tuple:
    """(mIoU over the ground-truth ids present incl. background, mIoU without background, per-class IoU)."""
    per_class = {}
    for g in np.flatnonzero(confusion.sum(axis=0) > 0).tolist():
        matched = [p for p, target in matching.items() if target == g and p < confusion.shape[0]]
        tp = sum(int(confusion[p, g]) for p in matched)
        predicted = sum(int(confusion[p].sum()) for p in matched)
        union = int(confusion[:, g].sum()) + predicted - tp
        per_class[g] = tp / union if union else 0.0
    objects = [v for g, v in per_class.items() if g >= 1]
    if not objects:  # background alone (no recurring class here): not a class-discovery score
        return None, None, {str(g): round(v, 4) for g, v in per_class.items()}
    return (float(np.mean(list(per_class.values()))), float(np.mean(objects)),
            {str(g): round(v, 4) for g, v in per_class.items()})


def score_images(images: list, predictions: Mapping, matching: dict | None = None, confusion=None) -> dict:
    """Every metric of the module docstring on ``images`` (one source, all, or a domain folder) for one stage's
    predictions; each image's predictions are read once."""
    hits, corloc_images = 0, 0
    box_found, box_total, mask_found, mask_total, predicted = 0, 0, 0, 0, 0
    document = CocoAp50()
    for image in images:
        masks, boxes, scores = _masks_and_scores(image, predictions.get(image.file_name))
        document.add(image, masks, boxes, scores)
        predicted += len(masks)
        if len(image.boxes):
            corloc_images += 1
            if len(masks):
                top = int(np.argmax(scores))
                hits += bool((_box_iou_matrix(boxes[top:top + 1], image.boxes) >= 0.5).any())
        box_total += len(image.boxes)
        if len(masks) and len(image.boxes):
            box_found += int((_box_iou_matrix(boxes, image.boxes) >= 0.5).any(axis=0).sum())
        if image.annotation == "mask":
            mask_total += len(image.masks)
            if len(masks) and len(image.masks):
                mask_found += int((_mask_iou_matrix(masks, image.masks) >= 0.5).any(axis=0).sum())
    has_mask_images = any(image.annotation == "mask" for image in images)
    result = {
        "images": len(images),
        "objects": box_total,
        "corloc": hits / corloc_images if corloc_images else None,
        "box_ap50": document.ap50("bbox"),
        "mask_ap50": document.ap50("segm") if has_mask_images else None,
        "box_recall50": box_found / box_total if box_total else None,
        # every predicted mask counts (the engine keeps at most a few dozen per image: more than COCO's 100
        # detections is never cut)
        "mask_recall50": mask_found / mask_total if mask_total else None,
        "predicted_masks": predicted,
    }
    if matching is not None:  # a stage with pseudo-classes: mIoU, None where no mask image has them
        result["miou"], result["miou_objects"], result["per_class_iou"] = (
            miou_from_confusion(confusion, matching) if confusion is not None else (None, None, {}))
    return result


SOURCE_MEAN_METRICS = ("corloc", "box_ap50", "mask_ap50", "box_recall50", "mask_recall50")


def _has_pseudo_classes(predictions: Mapping) -> bool:
    """Whether a stage's predictions carry pseudo-classes (every image of a stage does alike: one is read)."""
    first = next(iter(predictions.values()), None)
    return first is not None and first.semantic is not None


def source_mean(per_source: dict) -> dict:
    """Each metric's mean over the sources that have it (every source weighs alike, whatever its image count);
    None where none has it."""
    means = {}
    for metric in SOURCE_MEAN_METRICS:
        values = [scores[metric] for scores in per_source.values() if scores.get(metric) is not None]
        means[metric] = float(np.mean(values)) if values else None
    return means


def score_stage(images: list, predictions: Mapping, recurring: list | None, per_source: bool = True) -> dict:
    """{"total": metrics, "per_source": {source: metrics}, "source_mean": {metric: mean over the sources}} of
    one stage. ``recurring`` None: class-agnostic figures only (no mIoU); ``per_source`` False: "total" alone
    (a single-source folder)."""
    semantic = recurring is not None and _has_pseudo_classes(predictions)
    matching = per_image = total = None
    if semantic:
        matching, per_image, total = semantic_scores(images, predictions, recurring)
    result = {"total": score_images(images, predictions, matching, total)}
    if per_source:
        by_source = {}
        for source in sorted({image.source for image in images}):
            subset = [image for image in images if image.source == source]
            confusion = None
            if semantic:
                confusion = sum((per_image[i.file_name] for i in subset if i.file_name in per_image),
                                np.zeros_like(total))
                confusion = confusion if confusion.any() else None
            by_source[source] = score_images(subset, predictions, matching, confusion)
        result["per_source"] = by_source
        result["source_mean"] = source_mean(by_source)
    if semantic:
        result["matching"] = {str(p): int(g) for p, g in sorted(matching.items())}
    return result


def _keyed(predictions: Mapping, images: list) -> StagePredictions:
    """Predictions keyed by ground-truth file name (exact relative path, else the bare file name); nothing is
    read until scored."""
    by_name = {Path(k).name: k for k in predictions}
    keys = {image.file_name: image.file_name if image.file_name in predictions
            else by_name.get(Path(image.file_name).name) for image in images}
    return StagePredictions({name: partial(predictions.__getitem__, key) for name, key in keys.items()
                             if key is not None})


def score_project(project_dir, images: list, recurring: list | None, per_source: bool = True) -> dict:
    """Every stage of a finished project, scored against ``images`` (a folder of images and its COCO ground
    truth: real-dev per source with mIoU, or a domain folder class-agnostically with ``recurring`` None)."""
    return {stage: score_stage(images, _keyed(predictions, images), recurring, per_source)
            for stage, predictions in project_stages(project_dir).items()}


POOL_SIDE = 160  # the pool's IoUs are measured on masks at most this many pixels on the longer side
POOL_MIN_PATCHES, POOL_MAX_SHARE = 4, 0.8  # tree nodes from 4 patches up to 80 % of the grid


def tree_pool_recall(project_dir, images: list) -> dict:
    """Recall at IoU 0.5 of every node of each image's candidate tree (engine.method.hierarchy, on the cached
    tokens) before any ranking, on the images with instance masks: what no ranking of the tree can exceed.

    Nodes of ``POOL_MIN_PATCHES`` patches up to ``POOL_MAX_SHARE`` of the grid, upsampled nearest as the
    proposals are (no edge refinement); IoU on masks resized to ``POOL_SIDE`` px on the longer side.
    Returns {"tree_mask_recall50", "tree_nodes_per_image", "images", "objects"} (recall None without masks)."""
    from engine.masks import resize_nearest
    from engine.method.features import FeatureCache
    from engine.method.hierarchy import candidate_tree

    project = Project(project_dir)
    entries = {entry["relative_path"]: entry for entry in read_json(project.images_path)}
    centre = project.read_config().get("backbone", {}).get("family") in ("dinov2", "dinov3")
    cache = FeatureCache(project.features_dir)
    found = objects = nodes = scored = 0
    for image in images:
        entry = entries.get(image.file_name)
        features = cache.get(entry["feature_key"]) if entry and image.annotation == "mask" else None
        if features is None or not len(image.masks):
            continue
        tree = candidate_tree(features.tokens, features.grid_hw, centre=centre)
        sizes = tree.sizes
        kept = np.flatnonzero((sizes >= POOL_MIN_PATCHES) & (sizes <= POOL_MAX_SHARE * tree.patches))
        scale = min(1.0, POOL_SIDE / max(image.height, image.width))
        hw = (max(1, round(image.height * scale)), max(1, round(image.width * scale)))
        candidates = np.stack([resize_nearest(tree.patch_mask(n), *hw) for n in kept]).reshape(len(kept), -1)
        truth = np.stack([resize_nearest(m, *hw) for m in image.masks]).reshape(len(image.masks), -1)
        inter = candidates.astype(np.float32) @ truth.T.astype(np.float32)
        union = candidates.sum(1)[:, None] + truth.sum(1)[None, :] - inter
        found += int((inter / np.maximum(union, 1) >= 0.5).any(axis=0).sum())
        objects, nodes, scored = objects + len(image.masks), nodes + len(kept), scored + 1
    return {"tree_mask_recall50": found / objects if objects else None,
            "tree_nodes_per_image": round(nodes / scored, 1) if scored else None, "images": scored, "objects": objects}


# ------------------------------------------------------------------------------------ what a correction buys

CORRECTED_COUNTS = (0, 1, 2, 4)


def reviewer_order(images: list) -> list:
    """Mask images in the order a simulated reviewer corrects them: one per source in turn (file-name order
    within a source), so the first few corrections are not all of one kind of photo."""
    by_source: dict = {}
    for image in sorted((i for i in images if i.annotation == "mask"), key=lambda i: i.file_name):
        by_source.setdefault(image.source, []).append(image)
    order, queues = [], [list(q) for _, q in sorted(by_source.items())]
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


def _reviewer_categories(current_masks: np.ndarray, current_classes: np.ndarray, truth: np.ndarray) -> list:
    """The category a reviewer gives each true mask: that of the current mask it overlaps most (the pseudo-class
    already on screen), else the image's most common one, else 1."""
    fallback = int(np.bincount(current_classes).argmax()) if len(current_classes) else 1
    if not len(current_masks):
        return [fallback] * len(truth)
    overlap = _mask_iou_matrix(truth, current_masks)
    return [int(current_classes[row.argmax()]) if row.max() > 0 else fallback for row in overlap]


CURVE_METRICS = ("corloc", "box_ap50", "mask_ap50", "box_recall50", "mask_recall50")


def correction_curve(project_dir, out, images: list, counts=CORRECTED_COUNTS, log=print, seed: int | None = None,
                     device: str = "auto", label: str = "real-dev") -> dict:
    """Box / mask AP50 on the images no simulated reviewer touched, after correcting k images with their
    ground truth (through engine.api, as a user would) and retraining, for each k in ``counts``.

    Works on a copy of the project (``out/corrections-project``); the held-out images are the same for every k
    (all of ``images`` but the first max(counts) of :func:`reviewer_order`), so the curve shows what corrections
    buy elsewhere. ``seed``: the retraining's seed (None: the project's own); ``device``: where it trains;
    ``label`` names the folder in the log. Each point also says on how many held-out images the engine carried
    a correction's objects (``carried_to_held_out``: near-duplicate scenes) and how long it took.
    """
    import shutil

    from engine.api import current_instances, distill, set_image_masks

    reviewed = reviewer_order(images)[:max(counts)]
    held_out = [image for image in images if image.file_name not in {r.file_name for r in reviewed}]
    copy = Path(out) / "corrections-project"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(project_dir, copy, ignore=shutil.ignore_patterns(".lock", ".state.lock"))
    ids = {Path(e["relative_path"]).name: e["image_id"] for e in read_json(Project(copy).images_path)}
    held_out_names = {Path(image.file_name).name for image in held_out}
    curve = {}
    for k in counts:
        start = time.perf_counter()
        shutil.rmtree(copy / "corrections", ignore_errors=True)
        for image in reviewed[:k]:
            image_id = ids[Path(image.file_name).name]
            masks, classes, _, _ = current_instances(copy, image_id)
            set_image_masks(copy, image_id, image.masks, _reviewer_categories(masks, classes, image.masks))
        summary = distill(copy, device=device, seed=seed)
        final = _keyed(project_stages(copy)["final"], held_out)
        scores = score_images(held_out, final)
        curve[str(k)] = {"corrected": [image.file_name for image in reviewed[:k]],
                         **{m: scores[m] for m in CURVE_METRICS},
                         "carried_to_held_out": sum(Path(path).name in held_out_names
                                                    for path in summary.get("carried", {})),
                         "seconds": round(time.perf_counter() - start, 1)}
        log(f"{label} corrections: {k} image(s) corrected -> box AP50 {_fmt(scores['box_ap50'])}, "
            f"mask AP50 {_fmt(scores['mask_ap50'])} on the {len(held_out)} others")
    return {"held_out": [image.file_name for image in held_out], "curve": curve}


def curve_spread(curves: list, metrics=CURVE_METRICS) -> dict:
    """{k: {metric: min / max / mean}} over several seeds' correction curves ({k: {metric: value}})."""
    return {k: {m: _min_max_mean([curve[k].get(m) for curve in curves]) for m in metrics} for k in curves[0]}


# ------------------------------------------------------------------------------------------------ driver


SPREAD_METRICS = ("corloc", "box_ap50", "mask_ap50", "miou")
SOURCE_MEAN_SPREAD = ("corloc", "box_ap50", "mask_ap50")


def _min_max_mean(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "max": max(values), "mean": round(float(np.mean(values)), 4)}


def seed_spread(results: list) -> dict:
    """Min / max / mean over several seeds' :func:`benchmark` results: the final stage of each run, and the
    correction curve's AP50s. A difference between two settings smaller than this spread is noise.
    (The seed reaches the ``segments`` proposals' k-means, clustering and the head's training.)"""
    spread = {"seeds": [r["seed"] for r in results], "runs": {}, "corrections": {}}
    for label in results[0]["runs"]:
        finals = [r["runs"][label].get("final", {}) for r in results]
        spread["runs"][label] = {m: _min_max_mean([final.get("total", {}).get(m) for final in finals])
                                 for m in SPREAD_METRICS}
        spread["runs"][label]["source_mean"] = {
            m: _min_max_mean([final.get("source_mean", {}).get(m) for final in finals]) for m in SOURCE_MEAN_SPREAD}
    if all(r.get("corrections") for r in results):
        spread["corrections"] = curve_spread([r["corrections"]["curve"] for r in results], ("box_ap50", "mask_ap50"))
    return spread


NOISE_GREY_LEVELS = 1  # the noise runs' largest change of a pixel's channel: invisible, and no smaller one exists


def noised_images(images: list, source: Path, folder: Path, seed: int) -> list:
    """``images`` copied from ``source`` into ``folder`` with each channel of each pixel moved by a uniform
    -NOISE_GREY_LEVELS..+NOISE_GREY_LEVELS (clipped to 0-255), written as PNG (lossless: a JPEG would add its own
    change) under the file name plus ``.png``; returns the images renamed to match, for scoring."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    renamed = []
    for image in images:
        pixels = np.asarray(Image.open(Path(source) / image.file_name).convert("RGB"), np.int16)
        noise = rng.integers(-NOISE_GREY_LEVELS, NOISE_GREY_LEVELS + 1, pixels.shape)
        target = folder / f"{image.file_name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(target)
        renamed.append(replace(image, file_name=f"{image.file_name}.png"))
    return renamed


def noisy_run(source: Path, images: list, folder: Path, config, noise_seed: int) -> tuple:
    """The engine run with ``config`` on copies of ``images`` (from ``source``) noised with ``noise_seed``
    (:func:`noised_images`, into ``folder/images``; project ``folder/project``, both made afresh). Returns the
    renamed images and the final stage's predictions keyed by their names (the final stage alone is scored)."""
    from engine.orchestration.pipeline import run

    shutil.rmtree(folder, ignore_errors=True)
    noised = noised_images(images, source, folder / "images", seed=noise_seed)
    run(folder / "images", folder / "project", config)
    return noised, _keyed(project_stages(folder / "project")["final"], noised)


def noise_spread(real_dev: Path, images: list, recurring: list, out: Path, config, unperturbed: dict, runs: int,
                 log=print) -> dict:
    """Min / max / mean of the default run's final figures (pooled and source mean) over ``unperturbed`` (its
    final stage's scores) and ``runs`` runs on noised copies of the images (``OUT/noise-N``, noise seed N);
    ``images_predicted``: per noisy run, the images its predictions were scored for (a name that did not match would
    score as a miss)."""
    finals, predicted = [unperturbed], []
    for index in range(runs):
        noised, final = noisy_run(real_dev / "images", images, out / f"noise-{index}",
                                  replace(config, num_classes=None), noise_seed=index)
        finals.append(score_stage(noised, final, recurring))
        predicted.append(len(final))
        log(f"real-dev, noise run {index}: final CorLoc {_fmt(finals[-1]['total']['corloc'])}, mask AP50 "
            f"{_fmt(finals[-1]['total']['mask_ap50'])}")
    return {"runs": runs, "grey_levels": NOISE_GREY_LEVELS, "seed": config.seed, "images_predicted": predicted,
            **{m: _min_max_mean([final["total"].get(m) for final in finals]) for m in SPREAD_METRICS},
            "source_mean": {m: _min_max_mean([final["source_mean"].get(m) for final in finals])
                            for m in SOURCE_MEAN_SPREAD}}


def benchmark(real_dev, out, config=None, log=print, corrections_curve: bool = True, seeds: int = 1,
              noise_runs: int = 0) -> dict:
    """Run the engine on real-dev (default K, then the given K) and score each stage; writes OUT/results.json.

    seeds: with more than one, the whole benchmark also runs for the next seeds (``OUT/seed-N``), and
        ``seed_spread`` gives the range of the final figures and the correction curve over all of them; the
        headline figures stay those of ``config.seed``.
    noise_runs: the default run again on that many noised copies of the images (:func:`noise_spread`).
    Returns ``{"skipped": reason}`` when ``real_dev`` has no ground truth.
    """
    from engine.orchestration.pipeline import RunConfig, run

    real_dev, out = Path(real_dev), Path(out)
    missing = real_dev_missing(real_dev)
    if missing:
        log(missing)
        return {"skipped": missing, "path": str(real_dev)}
    config = config or RunConfig()
    every_image = load_ground_truth(real_dev)
    images = [image for image in every_image if image.source not in DENSE_SOURCES]
    moved = {source: n for source in DENSE_SOURCES if (n := sum(i.source == source for i in every_image))}
    image_folder = stage_images(real_dev / "images", [image.file_name for image in images], out / "images")
    recurring = recurring_classes(images)
    categories = {c["id"]: c["name"] for c in json.loads((real_dev / "ground_truth.json").read_text())["categories"]}
    project = out / "project"
    runs = {}
    corrections = None
    for label, k in (("k_given", len(recurring)), ("k_suggested", None)):  # the default run last: the curve uses it
        start = time.perf_counter()
        result = run(image_folder, project, replace(config, num_classes=k))
        seconds = time.perf_counter() - start
        scores = score_project(project, images, recurring)
        runs[label] = {"num_classes": k, "k": result.clusters, "suggested_k": result.suggested_k,
                       "masks": result.masks, "seconds": round(seconds, 1),
                       "distillation": read_json(project / "report.json").get("distillation", {}), **scores}
        log(f"real-dev, {label} (K = {result.clusters}): {seconds:.0f} s")
    pool = tree_pool_recall(project, images)
    if corrections_curve:
        corrections = correction_curve(project, out, images, log=log)
    default = runs["k_suggested"]

    def headline(stage_scores):
        return {**stage_scores["total"], "per_source": stage_scores["per_source"]}

    results = {
        "path": str(real_dev.resolve()),
        "images": len(images),
        "sources": {s: sum(i.source == s for i in images) for s in sorted({i.source for i in images})},
        "moved_to_dense": moved,  # {source: images}: scored in quality.dense.trees, not here
        "recurring_classes": [categories.get(c, str(c)) for c in recurring],
        "k_given": len(recurring),
        "k_suggested": default["suggested_k"],
        "default_run": "k_suggested",
        **{stage: headline(default[stage]) for stage in STAGES if stage in default},
        # every source weighs alike: a source with many images or objects no longer decides the figure
        "source_mean": {stage: {m: default[stage]["source_mean"][m] for m in SOURCE_MEAN_SPREAD}
                        for stage in STAGES if stage in default},
        "runs": {label: runs[label] for label in ("k_suggested", "k_given")},
        "pool": pool,  # the candidate tree's recall before any ranking: what no ranking of it can exceed
        "corrections": corrections,
        "seed": config.seed,
    }
    if seeds > 1:
        others = [benchmark(real_dev, out / f"seed-{seed}", replace(config, seed=seed), log, corrections_curve)
                  for seed in range(config.seed + 1, config.seed + seeds)]
        results["seed_spread"] = seed_spread([results, *others])
    if noise_runs:
        results["noise_spread"] = noise_spread(real_dev, images, recurring, out, config, default["final"],
                                               noise_runs, log)
    atomic_write_json(out / "results.json", results)
    return results


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: dict) -> str:
    """One block per run: rows = stage x (total, each source), columns = the metrics."""
    if "skipped" in results:
        return results["skipped"]
    columns = ("corloc", "box_ap50", "mask_ap50", "box_recall50", "mask_recall50", "miou")
    lines = []
    for label, run_ in results["runs"].items():
        lines.append(f"real-dev ({results['images']} images), {label}: K = {run_['k']} "
                     f"(given {results['k_given']}, suggested {run_['suggested_k']}), {run_['masks']} proposals")
        names = ["total", *results["sources"]]
        width = max(len(f"{stage} {name}") for stage in STAGES for name in [*names, "source mean"]) + 2
        lines.append(f"{'stage / source':<{width}}" + "".join(f"{c:>14}" for c in columns))
        for stage in STAGES:
            if stage not in run_:
                continue
            for name in names:
                row = run_[stage]["total"] if name == "total" else run_[stage]["per_source"][name]
                lines.append(f"{stage + ' ' + name:<{width}}" + "".join(f"{_fmt(row.get(c)):>14}" for c in columns))
            row = run_[stage].get("source_mean", {})
            lines.append(f"{stage + ' source mean':<{width}}" + "".join(f"{_fmt(row.get(c)):>14}" for c in columns))
        lines.append("")
    if results.get("moved_to_dense"):
        lines.append("scored in the dense section instead: " + ", ".join(
            f"{source} ({n} images)" for source, n in results["moved_to_dense"].items()))
        lines.append("")
    pool = results.get("pool") or {}
    if pool.get("tree_mask_recall50") is not None:
        lines += [f"candidate tree before any ranking ({pool['tree_nodes_per_image']} nodes per image, "
                  f"{pool['objects']} masks): mask recall@0.5 {_fmt(pool['tree_mask_recall50'])}", ""]
    if results.get("corrections"):
        lines.append(f"what a correction buys (default run; scored on the {len(results['corrections']['held_out'])} "
                     "images never corrected)")
        lines.append(f"{'images corrected':<18}{'box_ap50':>12}{'mask_ap50':>12}{'corloc':>10}")
        for k, row in results["corrections"]["curve"].items():
            lines.append(f"{k:<18}{_fmt(row['box_ap50']):>12}{_fmt(row['mask_ap50']):>12}{_fmt(row['corloc']):>10}")

    def cell(value):
        return "-" if value is None else f"{value['min']:.3f}-{value['max']:.3f}"

    spread = results.get("seed_spread")
    if spread:
        lines += ["", f"seed spread of the final stage, min-max over seeds {spread['seeds']} (differences inside "
                  "it are noise)", f"{'run':<14}" + "".join(f"{m:>14}" for m in SPREAD_METRICS)]
        for label, row in spread["runs"].items():
            lines.append(f"{label:<14}" + "".join(f"{cell(row[m]):>14}" for m in SPREAD_METRICS))
            lines.append(f"{'  source mean':<14}" + "".join(
                f"{cell(row['source_mean'].get(m)) if m in SOURCE_MEAN_SPREAD else '':>14}" for m in SPREAD_METRICS))
        if spread["corrections"]:
            lines.append(f"{'images corrected':<18}{'box_ap50':>14}{'mask_ap50':>14}")
            for k, row in spread["corrections"].items():
                lines.append(f"{k:<18}{cell(row['box_ap50']):>14}{cell(row['mask_ap50']):>14}")
    noise = results.get("noise_spread")
    if noise:
        lines += ["", f"noise spread of the default run's final stage, min-max over seed {noise['seed']} unperturbed "
                  f"and {noise['runs']} runs with +-{noise['grey_levels']} grey level of noise (differences inside it "
                  "are noise)", f"{'':<14}" + "".join(f"{m:>14}" for m in SPREAD_METRICS),
                  f"{'pooled':<14}" + "".join(f"{cell(noise[m]):>14}" for m in SPREAD_METRICS),
                  f"{'source mean':<14}" + "".join(
                      f"{cell(noise['source_mean'][m]) if m in SOURCE_MEAN_SPREAD else '':>14}"
                      for m in SPREAD_METRICS)]
    return "\n".join(lines).rstrip()


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The engine settings a real-image benchmark (this one, benchmarks.domains) runs with."""
    from engine.orchestration.pipeline import RunConfig

    parser.add_argument("--device", default="auto")
    parser.add_argument("--proposals", default=RunConfig.proposals)
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="backbone arithmetic (default auto: float32 on CPUs, mixed on GPUs)")
    parser.add_argument("--weights", default=None, help="checkpoint or 'random' (default: the real weights)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--second-scale", type=int, default=None,
                        help="the whole method again at this input size, its objects added overlapping")
    parser.add_argument("--mirror-view", action="store_true",
                        help="the whole method again on the images mirrored, its objects added overlapping")
    parser.add_argument("--seed", type=int, default=0)


def run_config(args: argparse.Namespace):
    """The RunConfig of :func:`add_run_options`' settings."""
    from engine.orchestration.pipeline import RunConfig

    return RunConfig(device=args.device, proposals=args.proposals, weights=args.weights,
                     input_size=args.input_size, second_scale=args.second_scale, seed=args.seed,
                     precision=args.precision, mirror_view=args.mirror_view)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-real"))
    parser.add_argument("--real-dev", type=Path, default=DEFAULT_REAL_DEV,
                        help="folder with ground_truth.json and images/ (default: ../shared/data/real-dev)")
    add_run_options(parser)
    parser.add_argument("--seeds", type=int, default=1,
                        help="also run the next seeds and report the spread of the final figures (default 1: no)")
    parser.add_argument("--noise-runs", type=int, default=0,
                        help="also run the default settings on this many copies of the images with +-1 grey level "
                             "of noise and report that spread (default 0: no)")
    args = parser.parse_args(argv)
    config = run_config(args)
    results = benchmark(args.real_dev, args.out.resolve(), config, seeds=args.seeds, noise_runs=args.noise_runs)
    if "skipped" not in results:
        print(table(results))
        print(f"\nwritten: {args.out.resolve() / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
