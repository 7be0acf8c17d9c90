"""Small pure helpers on binary masks: RLE, boxes, IoU, connected components, resizing."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a 2-D boolean mask, with ``counts`` as str so it can go into JSON."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    counts = rle["counts"]
    rle = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def bbox_xywh(mask: np.ndarray) -> list:
    """Tight box [x, y, width, height] in pixels (COCO convention); zeros for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def component_containing(mask: np.ndarray, seed: tuple) -> np.ndarray:
    """The 4-connected component of ``mask`` that contains ``seed`` (empty if the seed is outside)."""
    labels, _ = ndimage.label(mask)
    seed_label = labels[seed]
    return labels == seed_label if seed_label else np.zeros_like(mask, dtype=bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask by index arithmetic (no interpolation library needed)."""
    rows = (np.arange(height) * mask.shape[0] / height).astype(int)
    cols = (np.arange(width) * mask.shape[1] / width).astype(int)
    return mask[rows[:, None], cols[None, :]]


def coverage_on_grid(mask: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """Fraction of each patch-grid cell that ``mask`` covers, as float32 (grid_h, grid_w)."""
    gh, gw = grid_hw
    rows = np.minimum((np.arange(mask.shape[0]) * gh) // mask.shape[0], gh - 1)
    cols = np.minimum((np.arange(mask.shape[1]) * gw) // mask.shape[1], gw - 1)
    cells = (rows[:, None] * gw + cols[None, :]).ravel()
    sums = np.bincount(cells, weights=mask.ravel().astype(np.float64), minlength=gh * gw)
    counts = np.bincount(cells, minlength=gh * gw)
    return (sums / np.maximum(counts, 1)).reshape(gh, gw).astype(np.float32)


def mask_identity(image_id: str, mask: np.ndarray) -> str:
    """A key naming one mask of one image by its pixels, not its position in a list: the same mask gets the
    same key in every run, so the user's decisions about it (split assignments, pins) follow it."""
    import hashlib

    rle = encode_rle(np.asarray(mask, bool))
    digest = hashlib.sha1(f"{rle['size']}|{rle['counts']}".encode()).hexdigest()[:16]
    return f"{image_id}:{digest}"
