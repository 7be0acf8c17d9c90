"""A user's corrected objects carried to near-duplicate images (consecutive video frames, bursts), by patch features.

DINO's own video method (Caron et al., 2021, DAVIS label propagation): each patch of the target image takes the
labels of its most similar source patches within a small spatial window, weighted by similarity. It is only valid
when the two images show the same scene from about the same place, so it is gated by how well the patches match:

* **match** = the median, over the target's patches, of the best cosine similarity (centred patch tokens) found
  within ``radius`` patches of the same position in the source. Frames of one scene match close to 1, other
  photos of the same size far lower; the :data:`NEAR_DUPLICATE` gate (0.9) sits in the gap between them
  (docs/decisions.md, "a correction's objects carried").

Pure numpy / scipy over cached patch tokens; the window is walked one offset at a time, so memory is
(patches x window cells), never (patches x patches).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.masks import resize_nearest
from engine.method.prompt import unit_rows
from engine.method.refine import refine_soft

NEAR_DUPLICATE = 0.9  # minimum match for two images to count as the same scene (module docstring)
RADIUS = 6  # patches: how far an object may move between the two images (84 px at DINOv2's 448 px input)
TOP_K = 5  # source patches voting for each target patch
TEMPERATURE = 0.1  # softmax temperature on the cosine similarities of the voters


def _at_patch_centres(mask: np.ndarray, grid_hw: tuple) -> np.ndarray:
    rows = ((np.arange(grid_hw[0]) + 0.5) * mask.shape[0] / grid_hw[0]).astype(int)
    cols = ((np.arange(grid_hw[1]) + 0.5) * mask.shape[1] / grid_hw[1]).astype(int)
    return mask[np.ix_(rows, cols)]


def _without_specks(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """The mask without its pieces smaller than ``min_pixels`` (one patch cell: the labels are carried patch by
    patch, so a smaller piece is the edge refinement's noise, not a part of the object)."""
    pieces, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    return np.isin(pieces, np.flatnonzero(sizes >= min_pixels)) & mask


def window_similarities(source_tokens: np.ndarray, target_tokens: np.ndarray, grid_hw: tuple,
                        radius: int = RADIUS) -> tuple:
    """(similarity (gh, gw, cells), source index (gh, gw, cells)): for every target patch, the cosine similarity to
    each source patch within ``radius`` (-inf outside the grid), and that source patch's flat index."""
    gh, gw = grid_hw
    source = unit_rows(source_tokens, centre=True).reshape(gh, gw, -1)
    target = unit_rows(target_tokens, centre=True).reshape(gh, gw, -1)
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    similarity = np.full((gh, gw, len(offsets)), -np.inf, np.float32)
    index = np.zeros((gh, gw, len(offsets)), np.int64)
    rows, cols = np.mgrid[0:gh, 0:gw]
    for cell, (dy, dx) in enumerate(offsets):
        if abs(dy) >= gh or abs(dx) >= gw:
            continue  # the window reaches past a small grid: no patch pairs at this offset
        # target patch (r, c) against source patch (r + dy, c + dx), where both are on the grid
        t_rows, s_rows = slice(max(0, -dy), gh - max(0, dy)), slice(max(0, dy), gh + min(0, dy))
        t_cols, s_cols = slice(max(0, -dx), gw - max(0, dx)), slice(max(0, dx), gw + min(0, dx))
        similarity[t_rows, t_cols, cell] = np.einsum("ijd,ijd->ij", target[t_rows, t_cols], source[s_rows, s_cols])
        index[..., cell] = np.clip(rows + dy, 0, gh - 1) * gw + np.clip(cols + dx, 0, gw - 1)
    return similarity, index


def scene_match(similarity: np.ndarray) -> float:
    """The median over target patches of their best match in the window (module docstring)."""
    return float(np.median(similarity.max(axis=-1)))


def propagate_labels(source_labels: np.ndarray, similarity: np.ndarray, index: np.ndarray, num_labels: int,
                     top_k: int = TOP_K, temperature: float = TEMPERATURE) -> np.ndarray:
    """(num_labels, gh, gw) label probabilities on the target grid from the source's (gh, gw) label map (0 =
    background, 1..num_labels - 1 objects): each target patch averages the one-hot labels of its ``top_k`` most
    similar source patches in the window, weighted by a softmax of their similarities."""
    top = np.argpartition(-similarity, top_k - 1, axis=-1)[..., :top_k]
    weights = np.take_along_axis(similarity, top, axis=-1)
    weights = np.exp((weights - weights.max(axis=-1, keepdims=True)) / temperature)
    weights /= weights.sum(axis=-1, keepdims=True)
    voters = source_labels.ravel()[np.take_along_axis(index, top, axis=-1)]
    probabilities = np.stack([(weights * (voters == label)).sum(axis=-1) for label in range(num_labels)])
    return probabilities.astype(np.float32)


def propagate_instances(source_tokens: np.ndarray, source_masks: np.ndarray, target_tokens: np.ndarray,
                        target_image: np.ndarray, grid_hw: tuple, min_match: float = NEAR_DUPLICATE) -> tuple:
    """The source image's instance masks carried to the target image, or nothing when the two are not the same
    scene (match below ``min_match``).

    source_masks: (n, H, W) bool, the source image's objects (any resolution: sampled on the patch grid).
    Returns (masks (m, H', W') bool of the target image, source instance of each (m,), confidence of each (m,):
    the mean label probability inside the mask, match): objects that vanish on the target are left out.
    """
    height, width = target_image.shape[:2]
    similarity, index = window_similarities(source_tokens, target_tokens, grid_hw)
    match = scene_match(similarity)
    if match < min_match or not len(source_masks):
        return np.zeros((0, height, width), bool), np.zeros(0, int), np.zeros(0, np.float32), match
    labels = np.zeros(grid_hw, np.int64)
    for number, mask in enumerate(source_masks, start=1):
        labels[_at_patch_centres(np.asarray(mask, bool), grid_hw)] = number
    probabilities = propagate_labels(labels, similarity, index, len(source_masks) + 1)
    soft = refine_soft(target_image, probabilities)  # edges of the target image
    winner = soft.argmax(axis=0)
    winner = resize_nearest(winner, height, width) if winner.shape != (height, width) else winner
    masks, sources, confidences = [], [], []
    cell_pixels = height * width / (grid_hw[0] * grid_hw[1])
    for number in range(1, len(source_masks) + 1):
        mask = _without_specks(winner == number, cell_pixels)
        if mask.any():
            small = resize_nearest(mask, *soft.shape[1:])
            masks.append(mask)
            sources.append(number - 1)
            confidences.append(float(soft[number][small].mean()) if small.any() else 0.0)
    if not masks:
        return np.zeros((0, height, width), bool), np.zeros(0, int), np.zeros(0, np.float32), match
    return np.stack(masks), np.array(sources), np.array(confidences, np.float32), match
