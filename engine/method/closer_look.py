"""A closer look at a boxed object: its crop embedded anew at the backbone's input size, the prompt answered there.

The cached tokens are 14-pixel patches of the whole image (DINOv2 at 448 px): a cat covering 2 % of a photo is
about 20 patches, and no mask made of them follows its outline (the best candidate-tree node reaches IoU 0.8 for
9.9 % of feral_cats' cats). A crop of ``CROP_FACTOR`` times the box, fed to the backbone at its input size, gives
the same object 20-40 times more patches; :func:`engine.method.prompt.points_mask` then cuts it from the crop's
own tokens and refines it to the crop's edges. One network pass per prompt (about 0.5 s on 2 CPU cores).

Measured on feral_cats' first 30 images (126 cats; a development folder), a box with the cat's interior point,
IoU >= 0.8 with the cat: 22 % from the cached tokens, 44 % from a crop 1.5x the box, 40 % at 2x, 28 % at 3x
(docs/decisions.md#d-closer-look). A click without a box gains nothing at IoU 0.8 that way (10 % -> 12-14 %):
only boxed prompts take the closer look.
"""
from __future__ import annotations

import functools

import numpy as np

from engine.method.backbones import DEFAULT_BACKBONE
from engine.method.prompt import points_mask

CROP_FACTOR = 1.5  # the crop's side over the object's box's longer side (measured: 1.5 best of 1.5 / 2 / 3)
MIN_CROP_PIXELS = 32  # a smaller crop is grown to this side: a few image pixels hold no object to cut


def crop_window(image_hw: tuple, box, points=(), factor: float = CROP_FACTOR,
                min_side: int = MIN_CROP_PIXELS) -> tuple:
    """(x0, y0, x1, y1) integer pixels: a square of ``factor`` times the longer side of the box around ``box``
    (x0, y0, x1, y1) and ``points`` (x, y), centred on them and moved inside the image; along a side of the
    image shorter than the square, the whole side (a rectangle, never a cut through the object)."""
    height, width = image_hw
    xs = [box[0], box[2]] + [p[0] for p in points]
    ys = [box[1], box[3]] + [p[1] for p in points]
    side = max(int(round(max(max(xs) - min(xs), max(ys) - min(ys), 1) * factor)), min_side)
    side_x, side_y = min(side, width), min(side, height)
    x0 = int(np.clip(round((min(xs) + max(xs) - side_x) / 2), 0, width - side_x))
    y0 = int(np.clip(round((min(ys) + max(ys) - side_y) / 2), 0, height - side_y))
    return x0, y0, x0 + side_x, y0 + side_y


def closer_look_mask(embed, image: np.ndarray, box, positive=(), negative=(), centre: bool = True,
                     factor: float = CROP_FACTOR) -> np.ndarray:
    """(H, W) bool: the object in ``box`` (and at the ``positive`` points, not at the ``negative`` ones; image
    pixels), cut from the tokens of a crop around it.

    embed: crop (h, w[, 3]) uint8 -> (tokens (gh * gw, D), grid_hw): the backbone on that crop alone.
    Negative points outside the crop cannot be on the object and are left out.
    """
    positive = [tuple(map(float, p)) for p in positive]
    x0, y0, x1, y1 = crop_window(image.shape[:2], box, positive, factor)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    tokens, grid_hw = embed(crop)

    def shifted(points):
        return [(x - x0, y - y0) for x, y in points if x0 <= x < x1 and y0 <= y < y1]

    crop_box = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    mask = points_mask(tokens, grid_hw, crop, positive=shifted(positive),
                       negative=shifted(tuple(map(float, p)) for p in negative), box=crop_box, centre=centre)
    out = np.zeros(image.shape[:2], bool)
    out[y0:y1, x0:x1] = mask
    return out


@functools.lru_cache(maxsize=1)
def crop_extractor(backbone: str, weights, device: str, input_size, precision: str):
    """The network a closer look embeds crops with, loaded once per process and setting (a memo of a loaded
    model, as timm's and torch.hub's caches are: an engine process answers many prompts with it)."""
    from engine.method.features import FeatureExtractor

    return FeatureExtractor(backbone, weights, device, input_size, batch_size=1, precision=precision)


def crop_embedder(config: dict):
    """embed(crop) -> (tokens, grid_hw) with the backbone, weights, device and precision of a project's stored
    run settings (project.json's ``config``)."""
    extractor = crop_extractor(config.get("backbone") or DEFAULT_BACKBONE, config.get("weights"),
                               config.get("device") or "auto", config.get("input_size"),
                               config.get("precision") or "auto")

    def embed(crop: np.ndarray) -> tuple:
        features = extractor.extract([crop])[0]
        return features.tokens, features.grid_hw

    return embed
