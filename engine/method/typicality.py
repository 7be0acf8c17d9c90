"""What recurs across a folder's top objects is its object (issue 20). On feral_cats the top final object is salient
background -- a bin, a shelter, a wheel -- in 21 of the 57 images CorLoc misses at seed 0, and a cat is often the
second object. A user's folder holds hundreds of images of one kind, so the images' top objects are mostly that kind:
their score-weighted mean embedding is the folder's prototype, and every object is scored times
((1 + cosine to the prototype) / 2) ** TYPICAL_POWER, so an object unlike what the folder's images put first ranks
down (docs/decisions.md#d-typical). An object's embedding is its pooled tokens (the clustering's
:func:`engine.method.clustering.pooled_embeddings`) less the image's mean token, unit length: what sets it apart in
its image. Pure functions over arrays."""
from __future__ import annotations

import numpy as np

from engine.method.clustering import pooled_embeddings

TYPICAL_POWER = 2.0  # 1 / 2 / 4 / 8 measured: docs/decisions.md#d-typical
# images with objects needed before the prototype is used: a few images' top objects are each one image's say
# (real-dev's 11 mixed photos lost an image of CorLoc); the centres' model asks the same of lone objects
MIN_TYPICAL_IMAGES = 50


def object_embeddings(features, masks) -> np.ndarray:
    """(m, D) float32: each mask's pooled tokens less the image's mean token, unit length (``masks``: a stack or
    LabelMasks of the image's objects)."""
    vectors = pooled_embeddings(features, masks) - features.tokens.mean(axis=0, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)


def folder_prototype(tops: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
    """The unit score-weighted mean of the images' top objects' embeddings ((n, D), one per image with objects);
    None under MIN_TYPICAL_IMAGES images or when they cancel out."""
    if len(tops) < MIN_TYPICAL_IMAGES:
        return None
    mean = (np.asarray(tops, np.float32) * np.clip(np.asarray(scores, np.float32), 0, None)[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 1e-8 else None


def typicality_weights(embeddings: np.ndarray, prototype: np.ndarray) -> np.ndarray:
    """((1 + cosine to the prototype) / 2) ** TYPICAL_POWER per object: 1 for the prototype itself, 0 opposite."""
    cosine = np.asarray(embeddings, np.float32) @ np.asarray(prototype, np.float32)
    return np.power(np.clip((1.0 + cosine) / 2.0, 0.0, 1.0), TYPICAL_POWER).astype(np.float32)
