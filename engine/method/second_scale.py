"""A second scale's final objects beside the first's (RunConfig.second_scale): which of them to add, at what score
and of which category. Pure functions over RLEs and arrays; numpy and pycocotools only.

The whole method run at a larger input size finds small objects inside what the first run keeps as one group or as
background, and loses the first run's top objects (feral_cats: 672 px alone CorLoc 0.641 against 0.718). Kept
together, each object of the first run on top and the finer objects no first object holds added at half their
score, mask AP50 rose by 0.037-0.039 and recall at IoU 0.5 by 0.11 at two seeds (whole runs, seeds 0-2: 0.301-0.316 ->
0.340-0.352 and 0.417-0.450 -> 0.531-0.553); added only where their pixels are
free (one label map) it was +0.006 (docs/decisions.md#d-two-scales). So they are added as overlapping objects.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

HELD_IOU = 0.5  # a finer object at IoU >= this with an object of the first scale is that object, found again
SCORE_WEIGHT = 0.5  # a finer object's score is halved: the first scale's ranking stays on top where both agree
UNCONFIRMED_WEIGHT = 0.7  # a first-scale object the second scale does not find again ranks below those it does


def scale_iou(first_rles: list, finer_rles: list) -> np.ndarray:
    """(len(finer_rles), len(first_rles)) IoUs of every finer object with every first-scale one."""
    if not finer_rles or not first_rles:
        return np.zeros((len(finer_rles), len(first_rles)))
    overlap = np.asarray(mask_utils.iou(list(finer_rles), list(first_rles), [0] * len(first_rles)))
    return overlap.reshape(len(finer_rles), len(first_rles))


def unheld(first_rles: list, finer_rles: list, threshold: float = HELD_IOU) -> np.ndarray:
    """Indices of ``finer_rles`` whose IoU with every RLE of ``first_rles`` is under ``threshold``."""
    return unheld_in(scale_iou(first_rles, finer_rles), threshold)


def unheld_in(overlap: np.ndarray, threshold: float = HELD_IOU) -> np.ndarray:
    """:func:`unheld` from the IoUs :func:`scale_iou` gives (the rows no column holds)."""
    return np.flatnonzero((overlap.max(1) if overlap.shape[1] else np.zeros(len(overlap))) < threshold)


def found_again(overlap: np.ndarray, threshold: float = HELD_IOU) -> np.ndarray:
    """One bool per first-scale object (the columns of :func:`scale_iou`): a finer object is it found again (IoU >=
    ``threshold``)."""
    return overlap.max(0) >= threshold if overlap.shape[0] else np.zeros(overlap.shape[1], bool)


def agreement_weights(found: np.ndarray) -> np.ndarray:
    """One weight per first-scale object from how surely the second scale finds it again (``found``: bool, or a
    share in [0, 1], engine.method.learnt_agreement): 1 where found, ``UNCONFIRMED_WEIGHT`` where not. An object
    both scales find is more likely an object than one a single scale finds (VoteCut's consensus, across scales):
    feral_cats mask AP50 +0.007 to +0.014 and CorLoc +0.015 to +0.036 at two seeds
    (docs/decisions.md#d-scale-agreement)."""
    return (UNCONFIRMED_WEIGHT + (1 - UNCONFIRMED_WEIGHT) * np.asarray(found, np.float32)).astype(np.float32)


def categories_under(category_map: np.ndarray, masks) -> np.ndarray:
    """Each mask's most frequent non-zero value of ``category_map`` (the first run's objects painted: 0 background)
    under it; where it lies on background only, the image's most frequent category (0 when the image has no object:
    such a mask is not added)."""
    values, counts = np.unique(category_map[category_map > 0], return_counts=True)
    image_category = int(values[np.argmax(counts)]) if len(values) else 0
    found = np.zeros(len(masks), int)
    for i, mask in enumerate(masks):
        under = category_map[np.asarray(mask, bool)]
        under = under[under > 0]
        found[i] = int(np.bincount(under).argmax()) if under.size else image_category
    return found
