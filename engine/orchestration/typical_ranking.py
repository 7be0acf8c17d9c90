"""The folder's staged final objects ranked by how typical they are of what its images put first
(engine.method.typicality): a first pass takes each image's top object's embedding and the prototype is their
score-weighted mean; a second pass weighs every object not the user's by its typicality and, given a crop embedder,
sees the new first objects of each image as masked crops; a third weighs those by the crops' own prototype and
writes the image again, best first. Passes over the staging folder, one image at a time, as the group cut's."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.masks import LabelMasks
from engine.method.typicality import (
    CROP_TYPICAL_OBJECTS,
    MIN_TYPICAL_IMAGES,
    crop_typicality_weights,
    folder_prototype,
    object_embeddings,
    typicality_weights,
)
from engine.state.project import load_image_predictions, save_image_predictions


def rank_by_typicality(staging: Path, images: dict, features_of, crop_embedder=None) -> dict | None:
    """``images``: {image id: (images.json entry, positions of the user's objects in the staged order)};
    ``features_of(entry)``: the image's cached features; ``crop_embedder()``: called once, only when the prototype
    is used, returns ``embed_crops(entry, masks)`` -> the (m, D) CLS tokens of the masks' masked crops, or None
    when they cannot be had (None, or no crop_embedder: the pooled typicality alone). Returns {"used": whether
    the prototype was (under ``min_images`` = MIN_TYPICAL_IMAGES images with objects it is not), "images": images
    with objects, "min_images", "top_cosine": the top objects' mean cosine to the prototype, "images_reordered":
    images whose top object changed, "crops": objects seen as crops (None: not looked at), "crop_seconds",
    "seconds"}; None without images."""
    if not images:
        return None
    started = time.perf_counter()
    tops, top_scores = [], []
    for image_id, (entry, _) in images.items():
        _, stored, _, scores = load_image_predictions(staging / f"{image_id}.npz")
        if len(stored):
            top = int(np.argmax(scores))
            tops.append(object_embeddings(features_of(entry), stored[top:top + 1])[0])
            top_scores.append(float(scores[top]))
    prototype = folder_prototype(np.array(tops), np.array(top_scores)) if tops else None
    if prototype is None:
        return {"used": False, "images": len(tops), "min_images": MIN_TYPICAL_IMAGES, "top_cosine": None,
                "images_reordered": 0, "crops": None, "crop_seconds": None,
                "seconds": round(time.perf_counter() - started, 2)}
    embed_crops = crop_embedder() if crop_embedder is not None else None
    ranked, crops, crop_seconds = {}, {}, 0.0  # image id -> (original top, weighted scores); crops' CLS tokens
    for image_id, (entry, users) in images.items():
        _, stored, _, scores = load_image_predictions(staging / f"{image_id}.npz")
        if not len(stored):
            continue
        weights = typicality_weights(object_embeddings(features_of(entry), stored), prototype)
        weights[sorted(users)] = 1.0  # the user's objects keep their scores
        ranked[image_id] = (int(np.argmax(scores)), np.asarray(scores, np.float32) * weights)
        if embed_crops is not None:
            crop_start = time.perf_counter()
            chosen = np.array([i for i in np.argsort(-ranked[image_id][1], kind="stable")
                               if i not in users][:CROP_TYPICAL_OBJECTS], int)
            if len(chosen):  # an image of the user's objects alone has none to look at
                crops[image_id] = (chosen, embed_crops(entry, stored[chosen]))
            crop_seconds += time.perf_counter() - crop_start
    crop_weights = None
    if crops:
        found = crop_typicality_weights([vectors for _, vectors in crops.values()],
                                        [ranked[i][1][chosen[0]] for i, (chosen, _) in crops.items()])
        crop_weights = None if found is None else dict(zip(crops, found))
    reordered = 0
    for image_id, (original_top, weighted) in ranked.items():
        path = staging / f"{image_id}.npz"
        _, stored, classes, _ = load_image_predictions(path)
        if crop_weights is not None and image_id in crops:
            chosen, weights = crops[image_id][0], crop_weights[image_id]
            # the objects past the crops' keep their order below them: each takes the image's lowest crop weight
            factor = np.full(len(weighted), weights.min(), np.float32)
            factor[chosen] = weights
            factor[sorted(images[image_id][1])] = 1.0
            weighted = weighted * factor
        order = np.argsort(-weighted, kind="stable")
        masks = LabelMasks.from_stack(stored)
        masks = LabelMasks(masks.labels, masks.ids[order])
        save_image_predictions(path, masks.painted(classes[order]), masks, classes[order], weighted[order])
        reordered += int(order[0] != original_top)
    top_cosine = round(float(np.mean(np.array(tops) @ prototype)), 3)
    looked = sum(len(chosen) for chosen, _ in crops.values()) if crop_weights is not None else None
    return {"used": True, "images": len(tops), "min_images": MIN_TYPICAL_IMAGES, "top_cosine": top_cosine,
            "images_reordered": reordered, "crops": looked,
            "crop_seconds": round(crop_seconds, 2) if embed_crops is not None else None,
            "seconds": round(time.perf_counter() - started, 2)}
