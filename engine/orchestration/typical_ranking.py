"""The folder's staged final objects ranked by how typical they are of what its images put first
(engine.method.typicality): a first pass takes each image's top object's embedding, the prototype is their
score-weighted mean, and a second pass scores every object not the user's times its typicality weight and writes
the image again, best first. Two passes over the staging folder, one image at a time, as the group cut's."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.masks import LabelMasks
from engine.method.typicality import MIN_TYPICAL_IMAGES, folder_prototype, object_embeddings, typicality_weights
from engine.state.project import load_image_predictions, save_image_predictions


def rank_by_typicality(staging: Path, images: dict, features_of) -> dict | None:
    """``images``: {image id: (images.json entry, positions of the user's objects in the staged order)};
    ``features_of(entry)``: the image's cached features. Returns {"used": whether the prototype was (under
    ``min_images`` = MIN_TYPICAL_IMAGES images with objects it is not), "images": images with objects, "min_images",
    "top_cosine": the top objects' mean cosine to the prototype, "images_reordered": images whose top object
    changed, "seconds"}; None without images."""
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
                "images_reordered": 0, "seconds": round(time.perf_counter() - started, 2)}
    reordered = 0
    for image_id, (entry, users) in images.items():
        path = staging / f"{image_id}.npz"
        _, stored, classes, scores = load_image_predictions(path)
        if not len(stored):
            continue
        weights = typicality_weights(object_embeddings(features_of(entry), stored), prototype)
        weights[sorted(users)] = 1.0  # the user's objects keep their scores
        ranked = np.asarray(scores, np.float32) * weights
        order = np.argsort(-ranked, kind="stable")
        masks = LabelMasks.from_stack(stored)
        masks = LabelMasks(masks.labels, masks.ids[order])
        save_image_predictions(path, masks.painted(classes[order]), masks, classes[order], ranked[order])
        reordered += int(order[0] != int(np.argmax(scores)))
    top_cosine = round(float(np.mean(np.array(tops) @ prototype)), 3)
    return {"used": True, "images": len(tops), "min_images": MIN_TYPICAL_IMAGES, "top_cosine": top_cosine,
            "images_reordered": reordered, "seconds": round(time.perf_counter() - started, 2)}
