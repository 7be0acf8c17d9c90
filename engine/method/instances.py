"""Instances from the segmentation head's output, and per-instance agreement of a mask with the model.

Pure functions over arrays. The head is a per-patch semantic classifier; a person draws objects, so
instances are grouped class-agnostically: a connected foreground region is one object whatever pseudo-classes
its parts fall into (a face and a coat stay one person), and it is classified as a whole by the class with
the most probability mass inside it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from engine.masks import LabelMasks, mask_crop, resize_crop_nearest, resize_nearest


def _at(mask: np.ndarray, shape: tuple) -> np.ndarray:
    return mask if mask.shape == tuple(shape) else resize_nearest(mask, *shape)


def instance_agreement(prediction: np.ndarray, mask: np.ndarray, cls: int) -> float:
    """IoU of ``mask`` with the model's instance(s) of class ``cls`` that it overlaps.

    The model's instances are the connected regions of ``prediction == cls``; only those the mask touches
    count, so two objects of one class in an image no longer halve each other's agreement (as an IoU with the
    whole class region of the image does). 0 when the mask overlaps no region of its class.
    """
    mask = _at(mask, prediction.shape)
    regions, _ = ndimage.label(prediction == cls)
    touched = np.unique(regions[mask])
    touched = touched[touched > 0]
    if not touched.size:
        return 0.0
    instance = np.isin(regions, touched)
    union = np.logical_or(mask, instance).sum()
    return float(np.logical_and(mask, instance).sum() / union) if union else 0.0


def _class_and_foreground(probs: np.ndarray, box: tuple, crop: np.ndarray, image_hw: tuple) -> tuple | None:
    """(class with the most probability mass, mean foreground probability) inside a mask given by its crop,
    on the probabilities' grid (as ``_at`` resizes the full mask); None when no probability pixel samples it.
    The pixels are taken in the same (row-major) order as a full-size boolean index, so the sums are equal."""
    small_box, small = resize_crop_nearest(crop, box, image_hw, probs.shape[1:])
    if small_box is None or not small.any():
        return None
    window = probs[(slice(None),) + small_box]
    return int(np.argmax(window[1:, small].sum(axis=1))) + 1, float(1.0 - window[0][small].mean())


MAX_REGION_SHARE = 0.1  # a region of the head's own over a tenth of the image is background it confuses


def foreground_instances(semantic: np.ndarray, probs: np.ndarray, min_area_fraction: float = 0.002,
                         max_area_fraction: float = MAX_REGION_SHARE, connectivity: int = 1) -> tuple:
    """One instance per connected region of the foreground (``semantic > 0``), whatever its classes, of an
    object's size.

    Each instance takes the class with the largest probability mass inside it; its score is the mean
    foreground probability (1 - background) inside it, so whole, confidently segmented objects rank first.
    min_area_fraction: regions of at most this share of the image are noise (the semantic rule's 0.2 %).
    max_area_fraction: regions of more than this share are left out: on the generated set the final head painted
        background areas as objects (final mIoU 0.236 with them, 0.263 with no region at all, clustering 0.251),
        while its regions under a tenth of the image found feral_cats' small cats the proposals missed
        (docs/decisions.md#d-head-regions-small).
    connectivity: 1 (4-connected) keeps objects touching only at a corner apart.
    Returns (masks (m, H, W) bool, classes (m,), scores (m,)), best score first; the masks are an
    engine.masks.LabelMasks over the region map (each region measured on its bounding box).
    """
    structure = ndimage.generate_binary_structure(2, connectivity)
    regions, count = ndimage.label(semantic > 0, structure=structure)
    areas = np.bincount(regions.ravel(), minlength=count + 1)
    boxes = ndimage.find_objects(regions)
    ids, classes, scores = [], [], []
    min_pixels, max_pixels = min_area_fraction * semantic.size, max_area_fraction * semantic.size
    for region in range(1, count + 1):
        if not min_pixels < areas[region] <= max_pixels:
            continue
        box = boxes[region - 1]
        found = _class_and_foreground(probs, box, regions[box] == region, semantic.shape)
        if found is None:
            continue
        ids.append(region)
        classes.append(found[0])
        scores.append(found[1])
    if not ids:
        return np.zeros((0, *semantic.shape), bool), np.zeros(0, int), np.zeros(0, np.float32)
    order = np.argsort(-np.asarray(scores), kind="stable")
    masks = LabelMasks(regions, np.asarray(ids)[order], boxes)
    return masks, np.asarray(classes)[order], np.asarray(scores, np.float32)[order]


class _Candidate(NamedTuple):
    """One mask offered to the final objects by :func:`combine_with_proposals`."""

    stack: object  # the masks it is one of (an array stack or LabelMasks)
    position: int  # in its stack
    score: float
    weight: float = 1.0  # its score is multiplied by this
    only_if_new: bool = False  # left out when more than max_covered of it is taken already
    category: int | None = None  # None: the head's class
    rescore: bool = False  # the head's foreground re-scores it (model_share)
    least_foreground: float = 0.0  # left out when the head's mean foreground inside is lower


DROPPED_WEIGHT = 0.1  # a proposal the filter dropped ranks a tier below the kept ones and the model's own
READMIT_FOREGROUND = 0.85  # ... and comes back only where the final model's mean foreground inside is this sure


def combine_with_proposals(proposal_masks: np.ndarray, proposal_scores: np.ndarray, model_masks: np.ndarray,
                           model_scores: np.ndarray, probs: np.ndarray, max_covered: float = 0.5,
                           model_weight: float = 0.5, model_share: float = 0.5, proposal_classes=None,
                           carried=None, dropped=None, dropped_weight: float = DROPPED_WEIGHT,
                           readmit_foreground: float = READMIT_FOREGROUND) -> tuple:
    """Final instances: objects carried from the user's corrections (first, as given), the kept proposals
    (whole objects, as cut), then the dropped proposals the final model readmits (``dropped``), then the model's
    own instances that the proposals missed, in the pixels no proposal holds.

    dropped: (masks, scores, classes) of the proposals the filter left out of the final model's training. One
        the final model (trained on the clean set) is sure of, its mean foreground inside at least
        ``readmit_foreground``, comes back where still free (before the model's own instances), re-scored like
        the kept ones and weighted by ``dropped_weight``, so it ranks below them: the filter cleans what the
        model learns from, and the model readmits the objects it finds among them
        (docs/decisions.md#d-dropped-kept).

    carried: (masks, classes, scores) of objects carried from a corrected image of the same scene
        (engine.orchestration.carried_corrections); they take their pixels first and keep class and score, and
        a proposal more than ``max_covered`` of which they hold is left out (it is the same object).

    proposal_classes: each kept proposal's category as the label state has it (clustering, merges, the user's
        assignments); the head then only scores the proposal. None: the head classifies each proposal as a
        whole (the class with the most probability mass inside); why the label state's category is the
        default: docs/decisions.md, "a kept proposal keeps the label state's category".

    max_covered: a model instance more than this share of which lies under proposals adds nothing new.
    model_weight: the model-only instances' scores are multiplied by this, ranking them below the proposals.
    model_share: a kept proposal's final score is its proposal score ** (1 - share) times the model's mean
        foreground probability inside it ** share, so distillation re-ranks what the cuts found (0: the proposal
        order unchanged; 0.5: the geometric mean). The measurements: docs/decisions.md.
    Returns (masks (m, H, W) bool, classes (m,), scores (m,)), best score first; masks do not overlap.
    Memory: every mask is handled on its bounding box (engine.masks.mask_crop) and the result is one label
    map (engine.masks.LabelMasks), so thousands of objects of a large image never become an (m, H, W) stack.
    """
    shape = tuple(proposal_masks.shape[1:] if len(proposal_masks) else model_masks.shape[1:])
    claimed = np.zeros(shape, np.int32)  # 0: free, k: taken by the k-th kept mask
    ids: list[int] = []
    classes: list[int] = []
    scores: list[float] = []
    ranked = sorted(range(len(proposal_masks)), key=lambda i: -float(proposal_scores[i]))  # stable, as before
    given = [None] * len(proposal_masks) if proposal_classes is None else [int(c) for c in proposal_classes]
    candidates: list[_Candidate] = []  # in the order they claim pixels
    carried_count = 0
    if carried is not None:
        carried_masks, carried_classes, carried_scores = carried
        candidates += [_Candidate(carried_masks, i, float(carried_scores[i]), category=int(carried_classes[i]))
                       for i in range(len(carried_masks))]
        carried_count = len(carried_masks)
    candidates += [_Candidate(proposal_masks, i, float(proposal_scores[i]), category=given[i], rescore=True)
                   for i in ranked]
    if dropped is not None:
        dropped_masks, dropped_scores, dropped_classes = dropped
        candidates += [_Candidate(dropped_masks, i, float(dropped_scores[i]), dropped_weight, only_if_new=True,
                                  category=int(dropped_classes[i]), rescore=True, least_foreground=readmit_foreground)
                       for i in sorted(range(len(dropped_masks)), key=lambda i: -float(dropped_scores[i]))]
    candidates += [_Candidate(model_masks, i, float(model_scores[i]), model_weight, only_if_new=True)
                   for i in range(len(model_masks))]
    for stack, index, score, weight, only_if_new, cls, rescore, least_foreground in candidates:
        box, crop = mask_crop(stack, index)
        if box is None:
            continue
        free = claimed[box] == 0
        if only_if_new and (crop & ~free).sum() > max_covered * crop.sum():
            continue
        under_carried = crop & (claimed[box] > 0) & (claimed[box] <= carried_count)
        if rescore and under_carried.sum() > max_covered * crop.sum():
            continue  # a proposal of the object a correction was carried onto: only its edges would be left
        crop = crop & free
        found = _class_and_foreground(probs, box, crop, shape)
        if found is None or found[1] < least_foreground:
            continue
        ids.append(len(ids) + 1)
        claimed[box][crop] = ids[-1]
        classes.append(found[0] if cls is None else cls)
        if rescore and model_share:
            score = score ** (1.0 - model_share) * found[1] ** model_share
        scores.append(score * weight)
    if not ids:
        return np.zeros((0, *shape), bool), np.zeros(0, int), np.zeros(0, np.float32)
    order = np.argsort(-np.asarray(scores), kind="stable")
    return (LabelMasks(claimed, np.asarray(ids)[order]), np.asarray(classes)[order],
            np.asarray(scores, np.float32)[order])


COMPACT_SOLIDITY = 0.7  # an object less solid than this (area over its convex hull's) ranks down in proportion


def object_solidities(masks: LabelMasks) -> dict:
    """{object id: solidity (area over convex-hull area)} of every object; specks of two pixels or fewer: 1."""
    present = set(masks.ids.tolist())
    return {int(region.label): float(region.solidity) if region.area > 2 else 1.0
            for region in regionprops(masks.labels) if region.label in present}


def mask_solidity(mask: np.ndarray) -> float:
    """One bool mask's solidity (1 for a speck of two pixels or fewer)."""
    regions = regionprops(np.asarray(mask, np.uint8))
    return float(regions[0].solidity) if regions and regions[0].area > 2 else 1.0


def compactness_weight(solidity: float) -> float:
    """The score factor of an object of this solidity: min(1, solidity / COMPACT_SOLIDITY)."""
    return min(1.0, solidity / COMPACT_SOLIDITY)


def rank_by_compactness(masks: LabelMasks, classes: np.ndarray, scores: np.ndarray, skip=(),
                        solidity: dict | None = None) -> tuple:
    """The final objects re-ranked with each score times min(1, solidity / COMPACT_SOLIDITY), best first; the
    objects ``skip`` (label values: those carried from the user's corrections) keep their scores.

    Why: a lone object is compact, while two or three touching ones cut as one, and background wrapped around
    objects, leave concavities. feral_cats' top object was such a group in about 50 of 195 images; with this
    weight its CorLoc / box AP50 / mask AP50 rose 0.559 / 0.149 / 0.154 -> 0.574 / 0.168 / 0.173 and real-dev's
    three seeds' rose or held (docs/decisions.md#d-compact). The masks themselves do not change. ``solidity``:
    :func:`object_solidities` of ``masks`` when the caller has it. Returns (masks, classes, scores) in the new
    order.
    """
    if not len(masks):
        return masks, classes, scores
    solidity = object_solidities(masks) if solidity is None else solidity
    weights = np.array([1.0 if int(i) in skip else compactness_weight(solidity.get(int(i), 1.0)) for i in masks.ids])
    scores = (np.asarray(scores, np.float32) * weights).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return masks[order], np.asarray(classes)[order], scores[order]
