"""The user's corrected objects, carried to the near-duplicate images of the folder when predicting.

A correction otherwise reaches other images only through the retrained head, which re-ranks their proposals but
cannot draw a mask no proposal holds (docs/decisions.md, "a correction's objects carried"). In a folder of video
frames or bursts the same objects recur in nearly the same place, and DINO's patch features carry the corrected
masks there (engine.method.propagate). The carried objects are generated results, shown and reviewed like any
prediction.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from engine.method.propagate import NEAR_DUPLICATE, propagate_instances
from engine.state.corrections import CorruptCorrectionError
from engine.state.label_state import LabelState

MIN_CLS_COSINE = 0.95  # cheap pre-filter, looser than the patch match that follows (docs/decisions.md)
MAX_SOURCES = 3  # corrected images tried per image (the most alike by CLS token)


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _reviewed(found) -> np.ndarray:
    """The objects of a correction the user reviewed (drew, edited or accepted): only those are carried; the
    generated masks a correction keeps are predicted on the other frames anyway."""
    if found.object_reviewed is not None:
        return np.asarray(found.object_reviewed, bool)
    return np.full(len(found.masks), bool(found.reviewed))


class CorrectedScenes:
    """The project's corrected images, to carry their reviewed objects to images of the same scene."""

    def __init__(self, state: LabelState, entries: list, load_features: Callable):
        self.state = state
        self.load_features = load_features
        self.sources = []  # (entry, unit CLS token, grid)
        for entry in entries:
            try:
                found = state.instances(entry, "corrections")
            except CorruptCorrectionError:  # named where the image is read; nothing to carry from it
                found = None
            if found is not None and _reviewed(found).any():
                features = load_features(entry)
                self.sources.append((entry, _unit(features.cls_token), tuple(features.grid_hw)))
        self.corrected_ids = {source["image_id"] for source, _, _ in self.sources}

    def reviewed_objects(self):
        """(entry, its features, its masks: an (m, H, W) stack) of each corrected image's objects the user
        reviewed."""
        for entry, _, _ in self.sources:
            corrected = self.state.instances(entry, "corrections")
            if corrected is not None:
                yield entry, self.load_features(entry), corrected.masks[_reviewed(corrected)]

    def objects_for(self, entry: dict, features, image: np.ndarray) -> tuple:
        """(masks (m, H, W), resolved category ids (m,), scores (m,)) carried to ``entry`` from the corrected image
        of the same scene that matches it best; empty when none does (or ``entry`` is corrected itself)."""
        height, width = image.shape[:2]
        empty = np.zeros((0, height, width), bool), np.zeros(0, int), np.zeros(0, np.float32)
        if entry["image_id"] in self.corrected_ids:  # the user's own masks stand for it
            return empty
        cls = _unit(features.cls_token)
        alike = sorted(((float(unit @ cls), source) for source, unit, grid in self.sources
                        if grid == tuple(features.grid_hw)), key=lambda item: -item[0])
        best = None
        for cosine, source in alike[:MAX_SOURCES]:
            if cosine < MIN_CLS_COSINE:
                break
            corrected = self.state.instances(source, "corrections")
            if corrected is None:  # its correction was removed since: nothing to carry from it
                continue
            reviewed = _reviewed(corrected)
            masks, origin, confidences, match = propagate_instances(
                self.load_features(source).tokens, corrected.masks[reviewed], features.tokens, image,
                features.grid_hw, NEAR_DUPLICATE)
            if len(masks) and (best is None or match > best[3]):
                best = (masks, corrected.categories[reviewed][origin], confidences, match)
        if best is None:
            return empty
        masks, categories, confidences, match = best
        resolved = self.state.resolved(categories)
        keep = resolved > 0  # a category the user discarded is not carried
        return masks[keep], resolved[keep], (confidences * match)[keep].astype(np.float32)
