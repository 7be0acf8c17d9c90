"""Known groups: two of the folder's lone objects pasted side by side in pixels, so that the centre model sees what
the border between two touching objects of the folder's kind looks like (CutLER's copy-paste, in pixels: a group
whose members are known). A lone object's examples only teach the border between an object and its surroundings;
at the border of two touching cats the model, never having seen one, predicts a cat's inside and keeps the group
whole. Pure functions over arrays.

Measured on feral_cats (docs/decisions.md#d-known-groups): see KNOWN_GROUPS."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skimage.transform import resize

from engine.masks import mask_box
from engine.method.closer_look import crop_window, cropped

KNOWN_GROUPS = 150  # pairs pasted per folder, each one crop more to embed

MIN_VISIBLE = 0.6  # a member less visible than this (under the other, or outside the image) makes no known group
OVERLAP = (0.0, 0.3)  # how far (a share of the pasted object's width) it overlaps the other beyond touching it
SCALE_LIMITS = (0.5, 2.0)  # the pasted object is scaled to the other's size, at most this much


def paste_beside(image_a: np.ndarray, mask_a: np.ndarray, image_b: np.ndarray, box_b: tuple, crop_b: np.ndarray,
                 rng: np.random.Generator):
    """``image_a`` (H, W, 3) uint8 with the object of ``image_b`` given by its bool crop ``crop_b`` at ``box_b``
    (x0, y0, x1, y1) scaled to the size of ``mask_a``'s object (an (H, W) bool mask) and pasted touching it on the
    left or right (chosen by ``rng``), overlapping it by a share of its width drawn from OVERLAP, one of the two in
    front. Returns (pixels (H, W, 3) uint8, labels (H, W) int32: 1 where ``mask_a``'s object shows, 2 where the
    pasted one does, 0 elsewhere), or None when a member would show less than MIN_VISIBLE of itself."""
    height, width = mask_a.shape
    scale = float(np.clip(np.sqrt(mask_a.sum() / max(crop_b.sum(), 1)), *SCALE_LIMITS))
    out_h, out_w = max(2, int(round(crop_b.shape[0] * scale))), max(2, int(round(crop_b.shape[1] * scale)))
    x0, y0, x1, y1 = box_b
    pixels_b = resize(image_b[y0:y1, x0:x1], (out_h, out_w), order=1, preserve_range=True,
                      anti_aliasing=scale < 1).astype(np.uint8)
    shape_b = resize(crop_b.astype(np.float32), (out_h, out_w), order=1) >= 0.5
    if not shape_b.any():
        return None
    rows_a = np.flatnonzero(mask_a.any(axis=1))
    # vertically the pasted object's middle goes near the other's (touching objects of a kind stand side by side)
    top = int(round((rows_a[0] + rows_a[-1]) / 2 - out_h / 2 + rng.uniform(-0.2, 0.2) * out_h))
    right = bool(rng.integers(2))
    left = _touching_offset(mask_a, shape_b, top, right)
    if left is None:
        return None
    shift = int(round(rng.uniform(*OVERLAP) * out_w))
    left += -shift if right else shift
    pasted = np.zeros((height, width), bool)
    source = np.zeros((height, width, 3), np.uint8)
    ys, xs = slice(max(top, 0), min(top + out_h, height)), slice(max(left, 0), min(left + out_w, width))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return None
    inner = (slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left))
    pasted[ys, xs] = shape_b[inner]
    source[ys, xs] = pixels_b[inner]
    pasted_in_front = bool(rng.integers(2))
    shown_a = mask_a & ~pasted if pasted_in_front else mask_a
    shown_b = pasted if pasted_in_front else pasted & ~mask_a
    if shown_a.sum() < MIN_VISIBLE * mask_a.sum() or shown_b.sum() < MIN_VISIBLE * shape_b.sum():
        return None
    pixels = image_a.copy()
    pixels[shown_b] = source[shown_b]
    labels = shown_a.astype(np.int32)
    labels[shown_b] = 2
    return pixels, labels


def _touching_offset(mask_a: np.ndarray, shape_b: np.ndarray, top: int, right: bool):
    """The column of ``shape_b``'s left edge, its top at row ``top``, where it just touches ``mask_a``'s object on
    the right (``right``) or the left; None where no row of the two meets."""
    height = mask_a.shape[0]
    rows = [r for r in range(shape_b.shape[0]) if 0 <= top + r < height and shape_b[r].any() and mask_a[top + r].any()]
    if not rows:
        return None
    offsets = []
    for r in rows:
        cols_a, cols_b = np.flatnonzero(mask_a[top + r]), np.flatnonzero(shape_b[r])
        offsets.append(cols_a.max() + 1 - cols_b.min() if right else cols_a.min() - 1 - cols_b.max())
    return int(max(offsets) if right else min(offsets))


def known_group_crops(lone: list, image_of: Callable, count: int, rng: np.random.Generator) -> list:
    """Up to ``count`` known groups, each as a closer look would crop it: [(pixels (h, w, 3) uint8, labels (h, w)
    int32: 1 and 2 the members), ...]. ``lone``: [(image key, window (x0, y0, x1, y1), the object's bool mask in
    the window), ...] of the folder's lone objects; ``image_of(key)``: that image's RGB pixels. Pairs are drawn from
    two images, shuffled by ``rng``; a pair :func:`paste_beside` finds no room for is left out."""
    order = rng.permutation(len(lone))
    made: list = []
    for first, second in zip(order[0::2], order[1::2]):
        if len(made) >= count:
            break
        (key_a, window_a, own_a), (key_b, window_b, own_b) = lone[first], lone[second]
        if key_a == key_b:
            continue
        image_a, image_b = image_of(key_a), image_of(key_b)
        mask_a = np.zeros(image_a.shape[:2], bool)
        mask_a[window_a[1]:window_a[3], window_a[0]:window_a[2]] = own_a
        rows, cols = mask_box(own_b)
        box_b = (window_b[0] + cols.start, window_b[1] + rows.start, window_b[0] + cols.stop, window_b[1] + rows.stop)
        pasted = paste_beside(image_a, mask_a, image_b, box_b, own_b[rows, cols], rng)
        if pasted is None:
            continue
        pixels, labels = pasted
        rows, cols = mask_box(labels > 0)
        window = crop_window(labels.shape, (cols.start, rows.start, cols.stop, rows.stop))
        made.append((cropped(pixels, window), cropped(labels, window)))
    return made
