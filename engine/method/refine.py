"""Patch-grid masks to full-resolution masks with edges snapped to the image (guided filter).

A dense CRF costs about 0.5 s per image here; the guided filter (He et al., 2010) costs milliseconds
and follows colour edges well enough to turn 14-pixel patch staircases into object outlines.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from engine.masks import resize_nearest

REFINE_MAX_SIDE = 1024  # refine at most at this resolution; huge images get the result upsampled


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of ``source`` following the edges of the grey ``guide`` (both float, same shape)."""
    return guided_filter_many(guide, source[None], radius, eps)[0]


def guided_filter_many(guide: np.ndarray, sources: np.ndarray, radius: int, eps: float,
                       subsample: int = 1) -> np.ndarray:
    """:func:`guided_filter` of several maps with one guide: the guide's statistics are computed once.

    subsample: compute the linear coefficients on every ``subsample``-th pixel and interpolate them back
    (the fast guided filter, He & Sun 2015): the box filters then cost ``subsample``**2 times less.
    """
    small_guide = guide[::subsample, ::subsample]
    size = 2 * max(1, radius // subsample) + 1

    def box(x):
        return uniform_filter(x, size=size, mode="reflect")

    def full(x):
        return x if subsample == 1 else upsample_soft(x, *guide.shape)

    mean_i = box(small_guide)
    var_i = box(small_guide * small_guide) - mean_i * mean_i + eps
    out = np.empty((len(sources), *guide.shape), dtype=np.float32)
    for index, source in enumerate(sources):
        small = source[::subsample, ::subsample]
        mean_p = box(small)
        a = (box(small_guide * small) - mean_i * mean_p) / var_i
        b = mean_p - a * mean_i
        out[index] = full(box(a)) * guide + full(box(b))
    return out


def grey_guide(image: np.ndarray, height: int, width: int) -> np.ndarray:
    small = Image.fromarray(image).convert("L")
    if small.size != (width, height):
        small = small.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.float32) / 255.0


def upsample_soft(patch_mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a float patch-grid mask to (height, width)."""
    grid = Image.fromarray(patch_mask.astype(np.float32), mode="F")
    return np.asarray(grid.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def working_size(height: int, width: int) -> tuple:
    scale = min(1.0, REFINE_MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def refine_soft(image: np.ndarray, grids: np.ndarray, eps: float = 1e-3, fast: bool = False) -> np.ndarray:
    """(n, gh, gw) soft maps on the patch grid -> (n, h, w) at the working resolution, following image edges.

    fast: guided-filter coefficients on every 2nd pixel (a third less time, slightly different edges). Used for
    the segmentation head's probabilities, not for proposals: their masks feed the clustering, which such small
    changes of the masks can move (docs/decisions.md, "the fast guided filter").
    """
    work_h, work_w = working_size(*image.shape[:2])
    guide = grey_guide(image, work_h, work_w)
    # the filter reaches about one patch cell: far enough to move a staircase edge onto the object edge
    radius = max(2, int(round(work_h / grids.shape[1])))
    if not len(grids):
        return np.zeros((0, work_h, work_w), np.float32)
    subsample = 2 if fast and min(work_h, work_w) >= 128 else 1
    return guided_filter_many(guide, np.stack([upsample_soft(g, work_h, work_w) for g in grids]), radius, eps,
                              subsample)


def refine_masks(image: np.ndarray, patch_masks: np.ndarray, eps: float = 1e-3) -> tuple:
    """Full-resolution masks for the (n, gh, gw) patch masks of ``image``.

    Returns (refined, coarse): both (n, H, W) boolean; ``coarse`` is the plain upsampled mask, so a
    caller can drop masks that refinement changed too much (MaskCut's CRF check).
    """
    height, width = image.shape[:2]
    sharp = refine_soft(image, patch_masks.astype(np.float32), eps) > 0.5
    refined = np.stack([resize_nearest(m, height, width) for m in sharp]) if len(sharp) else \
        np.zeros((0, height, width), bool)
    coarse = np.stack([resize_nearest(m.astype(bool), height, width) for m in patch_masks]) if len(patch_masks) \
        else np.zeros((0, height, width), bool)
    return refined, coarse
