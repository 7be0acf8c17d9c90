"""What recurs across a folder's top objects is its object (issue 20). On feral_cats the top final object is salient
background -- a bin, a shelter, a wheel -- in 21 of the 57 images CorLoc misses at seed 0, and a cat is often the
second object. A user's folder holds hundreds of images of one kind, so the images' top objects are mostly that kind:
their score-weighted mean embedding is the folder's prototype, and every object is scored times
((1 + cosine to the prototype) / 2) ** TYPICAL_POWER, so an object unlike what the folder's images put first ranks
down (docs/decisions.md#d-typical). An object's embedding is its pooled tokens (the clustering's
:func:`engine.method.clustering.pooled_embeddings`) less the image's mean token, unit length: what sets it apart in
its image. Then the images' first objects are looked at again as crops: each one's box, the pixels outside its mask
painted grey, through the backbone at 224 px; the CLS token describes the object as a whole where pooled patches
describe its stuff, so it tells a cat from a bin, its face or a patch of fur better. The crops' vectors less the
folder's mean crop vector give a second prototype and a second weight ((1 + cosine) / 2) ** CROP_TYPICAL_POWER
(docs/decisions.md#d-crop-typical). Pure functions over arrays."""
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


def typicality_weights(embeddings: np.ndarray, prototype: np.ndarray, power: float = TYPICAL_POWER) -> np.ndarray:
    """((1 + cosine to the prototype) / 2) ** power per object: 1 for the prototype itself, 0 opposite."""
    cosine = np.asarray(embeddings, np.float32) @ np.asarray(prototype, np.float32)
    return np.power(np.clip((1.0 + cosine) / 2.0, 0.0, 1.0), power).astype(np.float32)


CROP_TYPICAL_POWER = 1.0  # 0.5 / 1 / 1.5 / 2 measured: docs/decisions.md#d-crop-typical
CROP_TYPICAL_OBJECTS = 4  # each image's first objects seen as crops (8 measured: the same CorLoc, AP +0.004)


def crop_typicality_weights(crops: list, top_scores) -> list | None:
    """``crops``: per image the CLS tokens of its first objects' crops, its first object first: (m, D), or (m, V,
    D) for V ways of cutting each (m may be 0); ``top_scores``: each image's first object's score. Each way's
    vectors less the folder's mean crop vector of that way, unit length; its prototype is the first objects'
    score-weighted mean (:func:`folder_prototype`, the same MIN_TYPICAL_IMAGES gate); returns per image the objects'
    geometric mean over the ways of ((1 + cosine) / 2), to the power CROP_TYPICAL_POWER, or None when there is no
    prototype."""
    crops = [np.asarray(c, np.float32) for c in crops]
    crops = [c[:, None] if c.ndim == 2 else c for c in crops]  # one way of cutting
    present = [c for c in crops if len(c)]
    if not present:
        return None
    mean = np.concatenate(present).mean(axis=0)  # (V, D)

    def centred(vectors):
        vectors = vectors.reshape(-1, *mean.shape) - mean
        return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-8)

    firsts = np.array([centred(c)[0] for c in present])  # (images, V, D)
    scores = np.array([float(score) for c, score in zip(crops, top_scores) if len(c)])
    found = [folder_prototype(firsts[:, way], scores) for way in range(mean.shape[0])]
    prototypes = [prototype for prototype in found if prototype is not None]
    if len(prototypes) < len(found):
        return None
    share = CROP_TYPICAL_POWER / len(prototypes)
    return [np.prod([typicality_weights(centred(c)[:, way], prototype, share)
                     for way, prototype in enumerate(prototypes)], axis=0).reshape(len(c)) for c in crops]
