"""The real-image benchmark: the engine on ``real-dev`` (13 real photos with human annotations), scored per source.

    .venv/bin/python -m benchmarks.real_dev [--out runs/benchmark-real] [--real-dev PATH] [--device auto]
                                            [--weights FILE|random] [--input-size N] [--seeds N]

``real-dev`` (default ``../shared/data/real-dev`` next to the repository; see its README) is one COCO file,
``ground_truth.json``, with two image-level fields: ``source`` (where the photo comes from) and ``annotation``
(``mask``: instance masks; ``box``: boxes only). The engine runs twice on its images into one project folder
(``OUT/project``; the second run reuses the features and proposals): with the default K (``num_classes=None``,
the silhouette's suggestion) and with the given K (the number of ground-truth classes that recur, i.e. are
annotated in at least two images). Each run is scored at three stages:

* ``proposals``: the class-agnostic proposal masks, scored by their proposal score;
* ``clustered``: the same masks with their pseudo-classes (adds the Hungarian mIoU);
* ``final``: the distilled model's predictions (``predictions/``).

Metrics, per source and in total (all class-agnostic except mIoU):

* ``corloc``: share of images whose highest-scoring mask has a tight box with IoU >= 0.5 with some ground-truth
  box (every image, box-only ones included);
* ``box_ap50``: COCO box AP at IoU 0.5, ``useCats = 0``, predicted box = the mask's tight box (every image);
* ``mask_ap50``: COCO mask AP at IoU 0.5, ``useCats = 0`` (mask images only; ``None`` for a source without);
* ``box_recall50`` / ``mask_recall50``: share of annotated objects that some predicted box / mask matches at
  IoU >= 0.5 (not every object is annotated, so AP counts correct masks of unannotated objects as false
  positives; recall does not);
* ``miou`` (clustered and final): pseudo-classes matched one-to-one to ground-truth classes by the Hungarian
  algorithm on the pixel IoU over all mask images (engine.evaluation.hungarian_match, background 0 included
  as in engine.evaluation); pixels of classes that do not recur are ignored, and the mean runs over background
  and the recurring classes present. Per source, the same dataset-level matching is used and the mean runs
  over the classes present in that source (``None`` where no recurring class is annotated: background alone
  says nothing about classes). ``miou_objects`` leaves background out of the mean.

``--seeds N`` runs the whole benchmark for N seeds (the first one's figures stay the headline) and adds
``seed_spread``: min / max / mean of each run's final figures and of the correction curve. ``make benchmark``
uses the synthetic set's seeds (3).

Results go to OUT/results.json (``quality.real`` of ``make benchmark``) and a table is printed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from engine.atomic import atomic_write_json, read_json  # noqa: E402
from engine.method.distill import paint_label_map  # noqa: E402
from engine.evaluation import hungarian_match  # noqa: E402
from engine.masks import bbox_xywh, encode_rle  # noqa: E402
from engine.state.project import Project, load_image_predictions, load_image_proposals  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL_DEV = REPO_ROOT.parent / "shared" / "data" / "real-dev"
STAGES = ("proposals", "clustered", "final")
IGNORE = -1


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


def real_dev_missing(path) -> str | None:
    """Why ``path`` cannot be scored (a sentence), or None when it holds ground_truth.json and images/."""
    path = Path(path)
    if not (path / "ground_truth.json").is_file():
        return f"real-dev skipped: {path / 'ground_truth.json'} not found"
    if not (path / "images").is_dir():
        return f"real-dev skipped: {path / 'images'} not found"
    return None


def load_real_dev(path) -> list:
    """The images of ``path/ground_truth.json`` with boxes, classes and (for mask images) decoded masks."""
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
        images.append(RealImage(info["file_name"], str(info.get("source", "unknown")), kind, h, w, boxes,
                                np.array([int(a["category_id"]) for a in anns], int), masks))
    return images


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


def project_stages(project_dir) -> dict:
    """{stage: {relative path: StagePrediction}} read from a finished project's files."""
    project = Project(project_dir)
    entries = read_json(project.images_path)
    clusters = read_json(project.clusters_path)
    labels: dict = {}
    for m in clusters["masks"]:
        labels.setdefault(m["image_id"], {})[m["index"]] = m["cluster"] + 1
    stages: dict = {stage: {} for stage in STAGES}
    for entry in entries:
        hw = (entry["height"], entry["width"])
        proposals, _, _ = load_image_proposals(project.proposals_path(entry["image_id"]), hw)
        classes = [labels[entry["image_id"]][i] for i in range(len(proposals))]
        scores = np.asarray(proposals.scores, float)
        name = entry["relative_path"]
        stages["proposals"][name] = StagePrediction(proposals.masks, scores, None)
        stages["clustered"][name] = StagePrediction(proposals.masks, scores,
                                                    paint_label_map(hw, proposals.masks, classes))
        path = project.predictions_path(entry["image_id"])
        if path.exists():
            semantic, masks, _, pred_scores = load_image_predictions(path)
            stages["final"][name] = StagePrediction(masks, np.asarray(pred_scores, float), semantic.astype(np.int64))
    if not stages["final"]:
        del stages["final"]
    return stages


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


def _coco_ap50(images: list, predictions: dict, iou_type: str) -> float | None:
    """Class-agnostic COCO AP at IoU 0.5 (``useCats = 0``); None without ground truth, 0.0 without detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    doc_images, anns, results = [], [], []
    for image_id, image in enumerate(images, start=1):
        doc_images.append({"id": image_id, "file_name": image.file_name, "height": image.height,
                           "width": image.width})
        for i, box in enumerate(image.boxes):
            ann = {"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                   "bbox": [float(v) for v in box], "area": float(box[2] * box[3])}
            if iou_type == "segm":
                ann["segmentation"] = encode_rle(image.masks[i])
                ann["area"] = float(image.masks[i].sum())
            anns.append(ann)
        prediction = predictions.get(image.file_name)
        if prediction is None:
            continue
        for mask, score in zip(prediction.masks, prediction.scores):
            record = {"image_id": image_id, "category_id": 1, "score": float(score)}
            if iou_type == "segm":
                record["segmentation"] = encode_rle(mask)
            else:
                record["bbox"] = [float(v) for v in bbox_xywh(mask)]
            results.append(record)
    if not anns:
        return None
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": doc_images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType=iou_type)
        evaluator.params.useCats = 0
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return max(float(evaluator.stats[1]), 0.0)


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


def score_images(images: list, predictions: dict, matching: dict | None = None, confusion=None) -> dict:
    """Every metric of the module docstring on ``images`` (one source or all) for one stage's predictions."""
    hits, corloc_images = 0, 0
    box_found, box_total, mask_found, mask_total = 0, 0, 0, 0
    for image in images:
        prediction = predictions.get(image.file_name)
        masks = prediction.masks if prediction is not None else np.zeros((0, image.height, image.width), bool)
        boxes = np.array([bbox_xywh(m) for m in masks], float).reshape(-1, 4)
        if len(image.boxes):
            corloc_images += 1
            if len(masks):
                top = int(np.argmax(prediction.scores))
                hits += bool((_box_iou_matrix(boxes[top:top + 1], image.boxes) >= 0.5).any())
        box_total += len(image.boxes)
        if len(masks) and len(image.boxes):
            box_found += int((_box_iou_matrix(boxes, image.boxes) >= 0.5).any(axis=0).sum())
        if image.annotation == "mask":
            mask_total += len(image.masks)
            if len(masks) and len(image.masks):
                mask_found += int((_mask_iou_matrix(masks, image.masks) >= 0.5).any(axis=0).sum())
    mask_images = [image for image in images if image.annotation == "mask"]
    result = {
        "images": len(images),
        "objects": box_total,
        "corloc": hits / corloc_images if corloc_images else None,
        "box_ap50": _coco_ap50(images, predictions, "bbox"),
        "mask_ap50": _coco_ap50(mask_images, predictions, "segm") if mask_images else None,
        "box_recall50": box_found / box_total if box_total else None,
        "mask_recall50": mask_found / mask_total if mask_total else None,
        "predicted_masks": int(sum(len(p.masks) for name, p in predictions.items()
                                   if name in {i.file_name for i in images})),
    }
    if matching is not None:  # a stage with pseudo-classes: mIoU, None where no mask image has them
        result["miou"], result["miou_objects"], result["per_class_iou"] = (
            miou_from_confusion(confusion, matching) if confusion is not None else (None, None, {}))
    return result


def score_stage(images: list, predictions: dict, recurring: list) -> dict:
    """{"total": metrics, "per_source": {source: metrics}} of one stage."""
    semantic = any(p.semantic is not None for p in predictions.values())
    matching = per_image = total = None
    if semantic:
        matching, per_image, total = semantic_scores(images, predictions, recurring)
    sources = sorted({image.source for image in images})
    per_source = {}
    for source in sources:
        subset = [image for image in images if image.source == source]
        confusion = None
        if semantic:
            confusion = sum((per_image[i.file_name] for i in subset if i.file_name in per_image),
                            np.zeros_like(total))
            confusion = confusion if confusion.any() else None
        per_source[source] = score_images(subset, predictions, matching, confusion)
    result = {"total": score_images(images, predictions, matching, total), "per_source": per_source}
    if semantic:
        result["matching"] = {str(p): int(g) for p, g in sorted(matching.items())}
    return result


def _keyed(predictions: dict, images: list) -> dict:
    """Predictions keyed by ground-truth file name (exact relative path, else the bare file name)."""
    by_name = {Path(k).name: v for k, v in predictions.items()}
    return {image.file_name: predictions.get(image.file_name, by_name.get(Path(image.file_name).name))
            for image in images if image.file_name in predictions or Path(image.file_name).name in by_name}


def score_project(project_dir, images: list, recurring: list) -> dict:
    """Every stage of a finished project, scored against ``images``."""
    return {stage: score_stage(images, _keyed(predictions, images), recurring)
            for stage, predictions in project_stages(project_dir).items()}


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


def correction_curve(project_dir, out, images: list, counts=CORRECTED_COUNTS, log=print) -> dict:
    """Box / mask AP50 on the images no simulated reviewer touched, after correcting k images with their
    ground truth (through engine.api, as a user would) and retraining, for each k in ``counts``.

    Works on a copy of the project; the held-out images are the same for every k (all but the first
    max(counts) images of :func:`reviewer_order`), so the curve shows what corrections buy elsewhere.
    """
    import shutil

    from engine.api import current_instances, distill, set_image_masks

    reviewed = reviewer_order(images)[:max(counts)]
    held_out = [image for image in images if image.file_name not in {r.file_name for r in reviewed}]
    copy = Path(out) / "corrections-project"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(project_dir, copy, ignore=shutil.ignore_patterns(".lock", ".state.lock"))
    ids = {Path(e["relative_path"]).name: e["image_id"] for e in read_json(Project(copy).images_path)}
    curve = {}
    for k in counts:
        shutil.rmtree(copy / "corrections", ignore_errors=True)
        for image in reviewed[:k]:
            image_id = ids[Path(image.file_name).name]
            masks, classes, _, _ = current_instances(copy, image_id)
            set_image_masks(copy, image_id, image.masks, _reviewer_categories(masks, classes, image.masks))
        distill(copy)
        final = _keyed(project_stages(copy)["final"], held_out)
        scores = score_images(held_out, final)
        curve[str(k)] = {"corrected": [image.file_name for image in reviewed[:k]],
                         **{m: scores[m] for m in ("corloc", "box_ap50", "mask_ap50", "box_recall50",
                                                   "mask_recall50")}}
        log(f"real-dev corrections: {k} image(s) corrected -> box AP50 {_fmt(scores['box_ap50'])}, "
            f"mask AP50 {_fmt(scores['mask_ap50'])} on the {len(held_out)} others")
    return {"held_out": [image.file_name for image in held_out], "curve": curve}


# ------------------------------------------------------------------------------------------------ driver


SPREAD_METRICS = ("corloc", "box_ap50", "mask_ap50", "miou")


def _min_max_mean(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "max": max(values), "mean": round(float(np.mean(values)), 4)}


def seed_spread(results: list) -> dict:
    """Min / max / mean over several seeds' :func:`benchmark` results: the final stage of each run, and the
    correction curve's AP50s. A difference between two settings smaller than this spread is noise.
    (The ``segments`` proposals do not depend on the seed; clustering and the head's training do.)"""
    spread = {"seeds": [r["seed"] for r in results], "runs": {}, "corrections": {}}
    for label in results[0]["runs"]:
        finals = [r["runs"][label].get("final", {}).get("total", {}) for r in results]
        spread["runs"][label] = {m: _min_max_mean([final.get(m) for final in finals]) for m in SPREAD_METRICS}
    if all(r.get("corrections") for r in results):
        for k in results[0]["corrections"]["curve"]:
            spread["corrections"][k] = {m: _min_max_mean([r["corrections"]["curve"][k][m] for r in results])
                                        for m in ("box_ap50", "mask_ap50")}
    return spread


def benchmark(real_dev, out, config=None, log=print, corrections_curve: bool = True, seeds: int = 1) -> dict:
    """Run the engine on real-dev (default K, then the given K) and score each stage; writes OUT/results.json.

    seeds: with more than one, the whole benchmark also runs for the next seeds (``OUT/seed-N``), and
        ``seed_spread`` gives the range of the final figures and the correction curve over all of them; the
        headline figures stay those of ``config.seed``.
    Returns ``{"skipped": reason}`` when ``real_dev`` has no ground truth.
    """
    from engine.orchestration.pipeline import RunConfig, run

    real_dev, out = Path(real_dev), Path(out)
    missing = real_dev_missing(real_dev)
    if missing:
        log(missing)
        return {"skipped": missing, "path": str(real_dev)}
    config = config or RunConfig()
    images = load_real_dev(real_dev)
    recurring = recurring_classes(images)
    categories = {c["id"]: c["name"] for c in json.loads((real_dev / "ground_truth.json").read_text())["categories"]}
    project = out / "project"
    runs = {}
    corrections = None
    for label, k in (("k_given", len(recurring)), ("k_suggested", None)):  # the default run last: the curve uses it
        start = time.perf_counter()
        result = run(real_dev / "images", project, replace(config, num_classes=k))
        seconds = time.perf_counter() - start
        scores = score_project(project, images, recurring)
        runs[label] = {"num_classes": k, "k": result.clusters, "suggested_k": result.suggested_k,
                       "masks": result.masks, "seconds": round(seconds, 1),
                       "distillation": read_json(project / "report.json").get("distillation", {}), **scores}
        log(f"real-dev, {label} (K = {result.clusters}): {seconds:.0f} s")
    if corrections_curve:
        corrections = correction_curve(project, out, images, log=log)
    default = runs["k_suggested"]

    def headline(stage_scores):
        return {**stage_scores["total"], "per_source": stage_scores["per_source"]}

    results = {
        "path": str(real_dev.resolve()),
        "images": len(images),
        "sources": {s: sum(i.source == s for i in images) for s in sorted({i.source for i in images})},
        "recurring_classes": [categories.get(c, str(c)) for c in recurring],
        "k_given": len(recurring),
        "k_suggested": default["suggested_k"],
        "default_run": "k_suggested",
        **{stage: headline(default[stage]) for stage in STAGES if stage in default},
        "runs": {label: runs[label] for label in ("k_suggested", "k_given")},
        "corrections": corrections,
        "seed": config.seed,
    }
    if seeds > 1:
        others = [benchmark(real_dev, out / f"seed-{seed}", replace(config, seed=seed), log, corrections_curve)
                  for seed in range(config.seed + 1, config.seed + seeds)]
        results["seed_spread"] = seed_spread([results, *others])
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
        width = max(len(f"{stage} {name}") for stage in STAGES for name in names) + 2
        lines.append(f"{'stage / source':<{width}}" + "".join(f"{c:>14}" for c in columns))
        for stage in STAGES:
            if stage not in run_:
                continue
            for name in names:
                row = run_[stage]["total"] if name == "total" else run_[stage]["per_source"][name]
                lines.append(f"{stage + ' ' + name:<{width}}" + "".join(f"{_fmt(row.get(c)):>14}" for c in columns))
        lines.append("")
    if results.get("corrections"):
        lines.append(f"what a correction buys (default run; scored on the {len(results['corrections']['held_out'])} "
                     "images never corrected)")
        lines.append(f"{'images corrected':<18}{'box_ap50':>12}{'mask_ap50':>12}{'corloc':>10}")
        for k, row in results["corrections"]["curve"].items():
            lines.append(f"{k:<18}{_fmt(row['box_ap50']):>12}{_fmt(row['mask_ap50']):>12}{_fmt(row['corloc']):>10}")
    spread = results.get("seed_spread")
    if spread:
        def cell(value):
            return "-" if value is None else f"{value['min']:.3f}-{value['max']:.3f}"
        lines += ["", f"seed spread of the final stage, min-max over seeds {spread['seeds']} (differences inside "
                  "it are noise)", f"{'run':<14}" + "".join(f"{m:>14}" for m in SPREAD_METRICS)]
        for label, row in spread["runs"].items():
            lines.append(f"{label:<14}" + "".join(f"{cell(row[m]):>14}" for m in SPREAD_METRICS))
        if spread["corrections"]:
            lines.append(f"{'images corrected':<18}{'box_ap50':>14}{'mask_ap50':>14}")
            for k, row in spread["corrections"].items():
                lines.append(f"{k:<18}{cell(row['box_ap50']):>14}{cell(row['mask_ap50']):>14}")
    return "\n".join(lines).rstrip()


def main(argv=None) -> int:
    from engine.orchestration.pipeline import RunConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-real"))
    parser.add_argument("--real-dev", type=Path, default=DEFAULT_REAL_DEV,
                        help="folder with ground_truth.json and images/ (default: ../shared/data/real-dev)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--proposals", default=RunConfig.proposals)
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="backbone arithmetic (default auto: float32 on CPUs, mixed on GPUs)")
    parser.add_argument("--weights", default=None, help="checkpoint or 'random' (default: the real weights)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1,
                        help="also run the next seeds and report the spread of the final figures (default 1: no)")
    args = parser.parse_args(argv)
    config = RunConfig(device=args.device, proposals=args.proposals, weights=args.weights,
                       input_size=args.input_size, seed=args.seed, precision=args.precision)
    results = benchmark(args.real_dev, args.out.resolve(), config, seeds=args.seeds)
    if "skipped" not in results:
        print(table(results))
        print(f"\nwritten: {args.out.resolve() / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
