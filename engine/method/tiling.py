"""Object scale and tiled feature extraction: small objects over several patches, any image size.

A ViT sees an object only if it covers a few patches. ``--object-size PX`` (the typical object diameter
in image pixels) becomes a *scale* (network pixels per image pixel) by :func:`scale_for_object_size`;
the image is resized by that scale (:func:`scaled_input_hw`, both sides multiples of the patch) and, when
the result is larger than one tile, cut into overlapping square tiles that the backbone sees one batch at a
time (:func:`extract_tiled`). Network memory is that of one tile batch whatever the image size; what grows
with the image is the resized uint8 image (3 bytes per network pixel) and the stitched float16 keys and
tokens (4 * D bytes per patch, about 6 bytes per network pixel for ViT-S/16).

Layout and stitching, in patch units so every tile lies exactly on the global patch grid:

- tiles of ``tile`` patches (fewer along an axis shorter than a tile) start every ``tile - overlap``
  patches; the last tile along an axis is moved back to end at the border, so every tile has the same
  shape and a batch is one tensor;
- each global patch is taken from the tile whose centre is nearest (per axis; ties to the earlier tile).
  That tile contains the patch, and the patch is at least ``overlap // 2`` patches from that tile's inner
  borders, so it is seen with context on all sides. No blending: every stitched vector is one real output
  of the network, and a feature that depends only on a patch's own pixels stitches back exactly
  (``tests/test_features_tiling.py``).

The CLS token of a tiled image is the CLS token of one downscaled whole-image pass (the untiled input size
of the extractor): a global descriptor needs the whole image. The CLS attention row is stitched from the
tiles like the keys (each tile's row is a softmax over its own patches) and then divided by its sum per
head, so it stays a distribution over the whole grid: a map of local saliency at the tiled resolution,
which is what the seed proposals need to find many small objects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

DEFAULT_PATCHES_ACROSS = 3.0  # an object should span at least this many patches
DEFAULT_MAX_SCALE = 4.0


def scale_for_object_size(object_size_px: float, patch_size: int, patches_across: float = DEFAULT_PATCHES_ACROSS,
                          min_scale: float = 0.0, max_scale: float = DEFAULT_MAX_SCALE) -> float:
    """Network pixels per image pixel so that an object of ``object_size_px`` spans ``patches_across`` patches.

    ``scale = patches_across * patch_size / object_size_px``, clipped to ``[min_scale, max_scale]``
    (the upper bound stops a 2-pixel estimate from asking for a 24x upsampling). Objects larger than
    ``patches_across`` patches give a scale below 1: the image is shrunk, which is cheaper and loses nothing
    at the object's scale. Pass ``min_scale=1`` to never shrink.
    """
    if not (object_size_px > 0 and math.isfinite(object_size_px)):
        raise ValueError(f"object size must be a positive number of pixels, got {object_size_px!r}")
    if patches_across <= 0 or patch_size <= 0:
        raise ValueError("patches_across and patch_size must be positive")
    scale = patches_across * patch_size / float(object_size_px)
    return float(min(max(scale, min_scale), max_scale))


def scaled_input_hw(height: int, width: int, scale: float, patch_size: int) -> tuple:
    """The image's size times ``scale``, each side rounded to a multiple of the patch (at least 2 patches)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")

    def snap(side):
        return max(2, int(round(side * scale / patch_size))) * patch_size

    return snap(height), snap(width)


def resize_uint8(image: np.ndarray, input_hw: tuple) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (h, w, 3), bicubic (antialiased when shrinking); a no-op at the same size."""
    height, width = input_hw
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


@dataclass(frozen=True)
class Tile:
    row: int  # first patch row of the tile in the global grid
    col: int
    keep_rows: tuple  # (start, stop) global patch rows this tile supplies
    keep_cols: tuple


def axis_tiles(length: int, tile: int, overlap: int) -> list:
    """[(start, keep_start, keep_stop)] along one axis of ``length`` patches; see the module docstring."""
    if length <= 0:
        raise ValueError("length must be positive")
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    if length <= tile:
        return [(0, 0, length)]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    centres = np.array([s + tile / 2 for s in starts])
    owner = np.argmin(np.abs(np.arange(length)[:, None] + 0.5 - centres[None, :]), axis=1)  # ties: earlier
    out = []
    for index, start in enumerate(starts):
        kept = np.flatnonzero(owner == index)
        if kept.size:  # contiguous by construction (centres are increasing)
            out.append((start, int(kept[0]), int(kept[-1]) + 1))
    return out


def tile_layout(grid_hw: tuple, tile: int, overlap: int) -> tuple:
    """Tiles covering a patch grid and the tile shape in patches: ``(tiles, (tile_rows, tile_cols))``."""
    rows = axis_tiles(grid_hw[0], tile, overlap)
    cols = axis_tiles(grid_hw[1], tile, overlap)
    tiles = [Tile(r, c, (r0, r1), (c0, c1)) for r, r0, r1 in rows for c, c0, c1 in cols]
    return tiles, (min(tile, grid_hw[0]), min(tile, grid_hw[1]))


# forward(tiles uint8 (B, h, w, 3)) -> (keys (B, n, Dk), tokens (B, n, D), cls_attention (B, heads, n)),
# n = (h / patch) * (w / patch) patches in row-major order, prefix tokens already removed.
TileForward = Callable[[np.ndarray], tuple]


def extract_tiled(pixels: np.ndarray, forward: TileForward, patch_size: int, tile: int, overlap: int,
                  batch_size: int = 4, progress: Callable | None = None) -> tuple:
    """Run ``forward`` over overlapping tiles of ``pixels`` (uint8, already at network size) and stitch.

    ``tile`` and ``overlap`` are in patches. Returns ``(keys, tokens, cls_attention)`` on the whole patch
    grid: keys and tokens ``(N, D)`` float16, the attention ``(heads, N)`` float32 summing to 1 per head.
    Only one batch of tiles is in the network at a time.
    """
    height, width = pixels.shape[:2]
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch_size}")
    grid = (height // patch_size, width // patch_size)
    tiles, (tile_rows, tile_cols) = tile_layout(grid, tile, overlap)
    stitched: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # keys, tokens, attention
    for start in range(0, len(tiles), batch_size):
        chunk = tiles[start:start + batch_size]
        batch = np.stack([
            pixels[t.row * patch_size:(t.row + tile_rows) * patch_size,
                   t.col * patch_size:(t.col + tile_cols) * patch_size]
            for t in chunk
        ])
        tile_keys, tile_tokens, tile_attention = (np.asarray(a) for a in forward(batch))
        if stitched is None:  # allocate once the widths are known
            stitched = (np.zeros(grid + tile_keys.shape[-1:], np.float16),
                        np.zeros(grid + tile_tokens.shape[-1:], np.float16),
                        np.zeros(tile_attention.shape[1:2] + grid, np.float32))
        keys, tokens, attention = stitched
        for t, k, f, a in zip(chunk, tile_keys, tile_tokens, tile_attention):
            (r0, r1), (c0, c1) = t.keep_rows, t.keep_cols
            local = (slice(r0 - t.row, r1 - t.row), slice(c0 - t.col, c1 - t.col))
            keys[r0:r1, c0:c1] = k.reshape(tile_rows, tile_cols, -1)[local]
            tokens[r0:r1, c0:c1] = f.reshape(tile_rows, tile_cols, -1)[local]
            attention[:, r0:r1, c0:c1] = a.reshape(-1, tile_rows, tile_cols)[(slice(None),) + local]
        if progress is not None:
            progress(min(start + batch_size, len(tiles)), len(tiles))
    n = grid[0] * grid[1]
    attention = attention.reshape(attention.shape[0], n)
    attention /= np.maximum(attention.sum(axis=1, keepdims=True), 1e-12)
    return keys.reshape(n, -1), tokens.reshape(n, -1), attention
