"""Agreement learnt across the folder (issue 20, item 4): whether the second scale finds a first-run object again
(engine.method.second_scale) is one noisy vote per object; what the folder's objects that the scales agree on look
like is learnt, so that an object like them ranks as they do even where this image's second scale missed it. A
logistic model over each object's shape and its typicality embedding (engine.method.typicality, reduced by a PCA
fitted on the folder's objects) predicts "found again", fitted two-fold over the folder's images (each half scored
by the other's model, so no object's own vote scores it); an object weighs as found again by the share
FOUND_SHARE x found + (1 - FOUND_SHARE) x p (engine.method.second_scale.agreement_weights).
Used from MIN_TYPICAL_IMAGES images with objects, as the folder's other learnt rankings are: on fewer, each image's
own vote stands (docs/decisions.md#d-learnt-agreement). Pure functions over arrays; scikit-learn."""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from engine.method.second_scale import agreement_weights
from engine.method.typicality import MIN_TYPICAL_IMAGES

EMBEDDING_COMPONENTS = 16  # the PCA of the embeddings: 16 and 48 measured alike (docs/decisions.md#d-learnt-agreement)
FOUND_SHARE = 0.5  # the image's own vote beside the folder's model: 1 (the vote alone), 0.5 and 0 measured
SHAPE_FEATURES = 6


def shape_features(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(m, 6) per object of an image ((m, H, W) bool stack, scores as predicted): log area share, its box's fill,
    touching the border, score, rank in the image (0 first), log of the image's object count."""
    if not len(masks):
        return np.zeros((0, SHAPE_FEATURES), np.float32)
    height, width = masks.shape[1:]
    rows: np.ndarray = np.any(masks, axis=2)  # (m, H)
    cols: np.ndarray = np.any(masks, axis=1)  # (m, W)
    area = masks.sum((1, 2)).astype(np.float64)
    heights = np.where(rows.any(1), rows.shape[1] - rows[:, ::-1].argmax(1) - rows.argmax(1), 1)
    widths = np.where(cols.any(1), cols.shape[1] - cols[:, ::-1].argmax(1) - cols.argmax(1), 1)
    border = rows[:, 0] | rows[:, -1] | cols[:, 0] | cols[:, -1]
    rank = np.argsort(np.argsort(-np.asarray(scores, np.float64), kind="stable"), kind="stable") / len(masks)
    return np.stack([np.log(area / (height * width) + 1e-6), area / (heights * widths), border, scores, rank,
                     np.full(len(masks), np.log(len(masks)))], 1).astype(np.float32)


def learnt_found(shapes: list, embeddings: list, found: list, seed: int = 0) -> list | None:
    """Per image (lists of one array each: (m, 6) :func:`shape_features`, (m, D) embeddings, (m,) bool found
    again), each object's probability of being found again by a model fitted on the other half of the folder's
    images; None under MIN_TYPICAL_IMAGES images with objects, or when a half's objects are all found or none."""
    with_objects = [i for i, f in enumerate(found) if len(f)]
    if len(with_objects) < MIN_TYPICAL_IMAGES:
        return None
    pca = PCA(min(EMBEDDING_COMPONENTS, sum(len(found[i]) for i in with_objects) - 1), random_state=seed)
    pca.fit(np.concatenate([embeddings[i] for i in with_objects]))
    inputs = {i: np.concatenate([shapes[i], pca.transform(embeddings[i])], 1) for i in with_objects}
    halves = (with_objects[0::2], with_objects[1::2])
    out = [np.zeros(len(f), np.float32) for f in found]
    for fit, use in ((halves[0], halves[1]), (halves[1], halves[0])):
        labels = np.concatenate([found[i] for i in fit])
        if labels.all() or not labels.any():
            return None
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(np.concatenate([inputs[i] for i in fit]), labels)
        for i in use:
            out[i] = model.predict_proba(inputs[i])[:, 1].astype(np.float32)
    return out


def learnt_agreement_weights(found: np.ndarray, p: np.ndarray) -> np.ndarray:
    """An image's objects' weights from their own vote and the folder model's probability."""
    share = FOUND_SHARE * np.asarray(found, np.float32) + (1 - FOUND_SHARE) * np.asarray(p, np.float32)
    return agreement_weights(share)
