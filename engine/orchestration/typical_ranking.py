"""The folder's staged final objects ranked by how typical they are of what its images put first
(engine.method.typicality): a first pass takes each image's top object's embedding and the prototype is their
score-weighted mean; a second pass weighs every object not the user's by its typicality and, given a crop embedder,
sees the new first objects of each image as masked crops (:class:`CropTypicality`); a third weighs those by the
crops' own prototype and writes the image again, best first. Passes over the staging folder, one image at a time,
as the group cut's. With the run's views the crops wait for the views' objects: the overlapping objects' pass
(engine.orchestration.overlapping) looks at each image's first objects of all of them together."""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

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


class _Looked(NamedTuple):
    """One image's objects as CropTypicality saw them."""
    objects: int  # the number of the image's objects
    chosen: np.ndarray  # the positions of those looked at, its first first
    vectors: np.ndarray  # their crops' CLS tokens
    users: list  # the positions of the user's objects
    top_score: float  # the first looked at's score


class CropTypicality:
    """Each image's first objects (its CROP_TYPICAL_OBJECTS best scored, not the user's) seen as masked crops, then
    weighed by the crops' folder prototype (engine.method.typicality.crop_typicality_weights). ``embed_crops(entry,
    masks)`` -> the (m, D) CLS tokens of the masks' crops. Keeps the tokens, never the masks."""

    def __init__(self, embed_crops):
        self.embed_crops = embed_crops
        self.looked: dict[str, _Looked] = {}
        self.seconds = 0.0

    def look(self, image_id, entry: dict, masks: np.ndarray, scores: np.ndarray, users=()) -> None:
        """See an image's first objects (``masks`` (m, H, W) and ``scores`` (m,) of all its objects; ``users``: the
        positions of the user's objects, never looked at)."""
        started = time.perf_counter()
        users = sorted(int(u) for u in users if 0 <= int(u) < len(scores))
        chosen = np.array([i for i in np.argsort(-np.asarray(scores), kind="stable")
                           if i not in users][:CROP_TYPICAL_OBJECTS], int)
        if len(chosen):  # an image of the user's objects alone has none to look at
            self.looked[image_id] = _Looked(len(scores), chosen, self.embed_crops(entry, np.asarray(masks)[chosen]),
                                            users, float(scores[chosen[0]]))
        self.seconds += time.perf_counter() - started

    @property
    def objects(self) -> int:
        """The objects looked at (each seen as one crop a way of cutting)."""
        return sum(len(looked.chosen) for looked in self.looked.values())

    def factors(self) -> dict | None:
        """{image id: (m,) weights of its objects}: the crops' typicality for those looked at; the objects after
        them take the image's lowest, so they keep their order below; the user's 1. None without a prototype
        (under MIN_TYPICAL_IMAGES images looked at)."""
        found = crop_typicality_weights([looked.vectors for looked in self.looked.values()],
                                        [looked.top_score for looked in self.looked.values()])
        if found is None:
            return None
        factors = {}
        for (image_id, looked), weights in zip(self.looked.items(), found):
            factor = np.full(looked.objects, weights.min(), np.float32)
            factor[looked.chosen] = weights
            factor[looked.users] = 1.0
            factors[image_id] = factor
        return factors


def rank_by_typicality(staging: Path, images: dict, features_of, crop_embedder=None) -> dict | None:
    """``images``: {image id: (images.json entry, positions of the user's objects in the staged order)};
    ``features_of(entry)``: the image's cached features; ``crop_embedder()``: called once, only when the prototype
    is used, returns ``embed_crops(entry, masks)`` -> the (m, D) CLS tokens of the masks' masked crops, or None
    when they cannot be had (None, or no crop_embedder: the pooled typicality alone). Returns {"used": whether
    the prototype was (under ``min_images`` = MIN_TYPICAL_IMAGES images with objects it is not), "images": images
    with objects, "min_images", "top_cosine": the top objects' mean cosine to the prototype, "images_reordered":
    images whose top object changed, "crops": objects seen as crops (None: not looked at), "crop_seconds",
    "seconds", "user_objects": {image id: the user's objects' positions as written} for images with some}; None
    without images."""
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
                "seconds": round(time.perf_counter() - started, 2),
                "user_objects": {i: sorted(users) for i, (_, users) in images.items() if users}}
    embed_crops = crop_embedder() if crop_embedder is not None else None
    crops = CropTypicality(embed_crops) if embed_crops is not None else None
    ranked = {}  # image id -> (original top, weighted scores)
    for image_id, (entry, users) in images.items():
        _, stored, _, scores = load_image_predictions(staging / f"{image_id}.npz")
        if not len(stored):
            continue
        weights = typicality_weights(object_embeddings(features_of(entry), stored), prototype)
        weights[sorted(users)] = 1.0  # the user's objects keep their scores
        ranked[image_id] = (int(np.argmax(scores)), np.asarray(scores, np.float32) * weights)
        if crops is not None:
            crops.look(image_id, entry, stored, ranked[image_id][1], users)
    crop_weights = crops.factors() if crops is not None else None
    reordered, user_objects = 0, {}
    for image_id, (original_top, weighted) in ranked.items():
        path = staging / f"{image_id}.npz"
        _, stored, classes, _ = load_image_predictions(path)
        if crop_weights is not None and image_id in crop_weights:
            weighted = weighted * crop_weights[image_id]
        order = np.argsort(-weighted, kind="stable")
        masks = LabelMasks.from_stack(stored)
        masks = LabelMasks(masks.labels, masks.ids[order])
        save_image_predictions(path, masks.painted(classes[order]), masks, classes[order], weighted[order])
        reordered += int(order[0] != original_top)
        if images[image_id][1]:
            user_objects[image_id] = np.flatnonzero(np.isin(order, sorted(images[image_id][1]))).tolist()
    top_cosine = round(float(np.mean(np.array(tops) @ prototype)), 3)
    looked = crops.objects if crops is not None and crop_weights is not None else None
    return {"used": True, "images": len(tops), "min_images": MIN_TYPICAL_IMAGES, "top_cosine": top_cosine,
            "images_reordered": reordered, "crops": looked,
            "crop_seconds": round(crops.seconds, 2) if crops is not None else None,
            "seconds": round(time.perf_counter() - started, 2), "user_objects": user_objects}


def typical_crop_embedder(project_config: dict, images, device: str):
    """embed_crops(entry, masks) for :class:`CropTypicality`: the objects' masked crops' CLS tokens
    (engine.method.closer_look.object_crop_embedder, ``images``: the project's ImageSource); None when the weights
    cannot be loaded now."""
    from engine.method.closer_look import object_crop_embedder

    embed = object_crop_embedder(project_config.get("config", {}), device)
    return None if embed is None else (lambda entry, masks: embed(images.load(entry), masks))
