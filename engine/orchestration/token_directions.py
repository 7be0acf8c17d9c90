"""The dominant directions of a folder's patch tokens (engine.method.clustering.dominant_directions), read from the
project's feature cache: the pseudo-classes' clustering compares pooled mask embeddings without them. (The
typicality ranking keeps them: without them feral_cats lost 15 images of CorLoc, docs/decisions.md#d-dominant.)"""
from __future__ import annotations

import numpy as np

from engine.method.clustering import dominant_directions
from engine.method.features import FeatureCache
from engine.state.project import Project

DIRECTION_SAMPLE_IMAGES = 64  # images whose tokens give the folder's dominant directions
DIRECTION_SAMPLE_TOKENS = 4096  # at most this many tokens of each (a tiled image holds many more)


def folder_directions(project: Project, entries: list) -> np.ndarray:
    """The dominant directions of the folder's patch tokens (engine.method.clustering.dominant_directions), from
    the cached features of up to DIRECTION_SAMPLE_IMAGES images evenly spread over the folder; an image whose
    cache file is gone is passed over (none left: no directions)."""
    cache = FeatureCache(project.features_dir)
    picks = np.unique(np.linspace(0, len(entries) - 1, min(len(entries), DIRECTION_SAMPLE_IMAGES)).round())

    def token_blocks():  # one image's tokens in memory at a time
        for index in picks.astype(int):
            features = cache.get(entries[index]["feature_key"])
            if features is not None:
                yield features.tokens[::max(1, len(features.tokens) // DIRECTION_SAMPLE_TOKENS)]

    return dominant_directions(token_blocks())
