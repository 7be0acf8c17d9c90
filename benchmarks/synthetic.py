"""Deterministic synthetic benchmark made from real photo pixels.

Objects ("sprites") are cut out of scikit-image's bundled photos, one
category each, and pasted with random scale, rotation, flip and colour
jitter onto random crops of other bundled photos.  Ground truth is exact:
every pasted pixel belongs to the instance mask, later instances occlude
earlier ones and the stored masks are the visible parts only.

Only ``skimage.data`` images that ship with scikit-image are used (no
download), so the dataset is generated on the fly and nothing big has to be
committed.

Categories (id = index + 1):

* ``coin``  - real coins segmented from ``data.coins()`` (local threshold,
  hole filling, convex hull of each well-formed single coin), tinted gold,
  silver or copper; at most 30% of the canvas across.
* ``cat``   - an elliptical cut of Chelsea's face (``data.chelsea()``).
* ``cup``   - the red espresso cup on its saucer from ``data.coffee()``
  (union of hand-placed ellipses for saucer, cup rim and cup body).
* ``horse`` - the ``data.horse()`` silhouette filled with the astronaut's
  orange space-suit fabric (``data.astronaut()``).
* ``face``  - an elliptical cut of the astronaut's head (face and hair).

Backgrounds are random crops of grass, gravel, brick, moon, page, the sky of
``rocket``, ``hubble_deep_field`` and ``immunohistochemistry``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

CATEGORIES: list[str] = ["coin", "cat", "cup", "horse", "face"]

MIN_INSTANCES = 2
MAX_INSTANCES = 6
MIN_SCALE = 0.18  # longest sprite side as a fraction of the canvas
MAX_SCALE = 0.45
# the coin photos are small (about 55 px across): cap their size to avoid blurry upsampling
CATEGORY_MAX_SCALE = {"coin": 0.30}
MAX_HIDDEN = 0.30  # a placement may hide at most this fraction of an earlier instance
# drop instances whose visible area is under this fraction of the canvas
MIN_VISIBLE = 0.01


@dataclass
class SyntheticImage:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    instance_masks: np.ndarray  # (n, H, W) bool, visible parts, non-overlapping
    classes: np.ndarray  # (n,) int, category ids >= 1


@dataclass
class _Sprite:
    category: int  # category id (>= 1)
    rgb: np.ndarray  # (h, w, 3) float32 in [0, 255]
    mask: np.ndarray  # (h, w) bool


# --------------------------------------------------------------------------
# sprite and background sources (native resolution, cached once)
# --------------------------------------------------------------------------


def _ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _crop_to_mask(rgb, mask, pad=1):
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, mask.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, mask.shape[1])
    return rgb[r0:r1, c0:c1], mask[r0:r1, c0:c1]


def _as_rgb(img):
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def _coin_sprites():
    from skimage import data, filters, measure, morphology

    coins = data.coins()
    binary = coins > filters.threshold_local(coins, 101, offset=-5)
    binary = morphology.opening(binary, morphology.disk(2))
    binary = ndi.binary_fill_holes(binary)
    labels = measure.label(binary)
    rgb = _as_rgb(coins)
    out = []
    for region in measure.regionprops(labels):
        if region.area < 900 or region.solidity < 0.93 or region.eccentricity > 0.55:
            continue
        r0, c0, r1, c1 = region.bbox
        if r0 == 0 or c0 == 0 or r1 == coins.shape[0] or c1 == coins.shape[1]:
            continue  # touches the border: possibly cut
        hull = np.zeros(coins.shape, bool)
        hull[r0:r1, c0:c1] = region.image_convex
        out.append(_crop_to_mask(rgb, hull))
    return out


def _cat_sprite():
    from skimage import data

    img = data.chelsea()
    mask = _ellipse(img.shape[:2], 150, 222, 142, 170)
    return _crop_to_mask(img, mask)


def _cup_sprite():
    from skimage import data

    img = data.coffee()
    shape = img.shape[:2]
    saucer = _ellipse(shape, 232, 278, 158, 201)
    rim = _ellipse(shape, 112, 291, 96, 119)
    body = np.zeros(shape, bool)
    body[112:280, 178:404] = True
    body &= _ellipse(shape, 180, 291, 125, 119)
    handle = _ellipse(shape, 268, 228, 38, 34)
    mask = saucer | rim | body | handle
    return _crop_to_mask(img, mask)


def _horse_sprite():
    from skimage import data

    silhouette = ~data.horse()  # True = background in skimage's image
    # plain orange space-suit fabric (with its real folds), upscaled 2x
    suit = data.astronaut()[290:470, 62:128].astype(np.float32)
    suit = ndi.zoom(suit, (2, 2, 1), order=1)
    h, w = silhouette.shape
    reps_y = math.ceil(h / suit.shape[0])
    reps_x = math.ceil(w / suit.shape[1])
    # mirror-tile so there are no hard seams
    row = np.concatenate(
        [suit if i % 2 == 0 else suit[:, ::-1] for i in range(reps_x)], axis=1
    )
    tile = np.concatenate(
        [row if i % 2 == 0 else row[::-1] for i in range(reps_y)], axis=0
    )
    texture = tile[:h, :w]
    return _crop_to_mask(texture, silhouette)


def _face_sprite():
    from skimage import data

    img = data.astronaut()
    mask = _ellipse(img.shape[:2], 100, 226, 88, 70)
    return _crop_to_mask(img, mask)


@functools.lru_cache(maxsize=1)
def _native_sprites() -> tuple[tuple[_Sprite, ...], ...]:
    builders = {
        "coin": _coin_sprites,
        "cat": lambda: [_cat_sprite()],
        "cup": lambda: [_cup_sprite()],
        "horse": lambda: [_horse_sprite()],
        "face": lambda: [_face_sprite()],
    }
    per_category = []
    for cid, name in enumerate(CATEGORIES, start=1):
        sprites = tuple(
            _Sprite(cid, np.asarray(rgb, np.float32), np.asarray(mask, bool))
            for rgb, mask in builders[name]()
        )
        if not sprites:
            raise RuntimeError(f"no sprite could be built for category {name!r}")
        per_category.append(sprites)
    return tuple(per_category)


@functools.lru_cache(maxsize=1)
def _native_backgrounds() -> tuple[np.ndarray, ...]:
    from skimage import data

    sources = [
        data.grass(),
        data.gravel(),
        data.brick(),
        data.moon(),
        data.page(),
        data.rocket()[0:118, 95:555],  # dusk sky, no towers
        data.hubble_deep_field(),
        data.immunohistochemistry(),
    ]
    return tuple(np.ascontiguousarray(_as_rgb(s)) for s in sources)


def _resize(img, shape):
    from skimage.transform import resize

    return resize(img, shape, order=1, anti_aliasing=True, preserve_range=True)


@functools.lru_cache(maxsize=8)
def _sprites_for_size(size: int) -> tuple[tuple[_Sprite, ...], ...]:
    """Sprites downscaled once so their longest side is just above the largest target."""
    target = math.ceil(MAX_SCALE * size) + 2
    out = []
    for sprites in _native_sprites():
        scaled = []
        for sp in sprites:
            f = target / max(sp.mask.shape)
            if f < 1:
                shape = (
                    max(round(sp.mask.shape[0] * f), 1),
                    max(round(sp.mask.shape[1] * f), 1),
                )
                rgb = _resize(sp.rgb, shape).astype(np.float32)
                mask = _resize(sp.mask.astype(np.float32), shape) >= 0.5
                scaled.append(_Sprite(sp.category, rgb, mask))
            else:
                scaled.append(sp)
        out.append(tuple(scaled))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _backgrounds_for_size(size: int):
    """Backgrounds as PIL images, downscaled once so their short side is at most twice the canvas."""
    from PIL import Image

    out = []
    for bg in _native_backgrounds():
        f = 2 * size / min(bg.shape[:2])
        if f < 1:
            shape = (round(bg.shape[0] * f), round(bg.shape[1] * f))
            bg = np.clip(np.rint(_resize(bg.astype(np.float32), shape)), 0, 255)
        out.append(Image.fromarray(np.asarray(bg, np.uint8)))
    return tuple(out)


# --------------------------------------------------------------------------
# per-image generation
# --------------------------------------------------------------------------


def _background(rng, size):
    from PIL import Image

    backgrounds = _backgrounds_for_size(size)
    src = backgrounds[rng.integers(len(backgrounds))]
    w, h = src.size
    side = max(round(min(h, w) * rng.uniform(0.5, 1.0)), 8)
    r0 = int(rng.integers(0, h - side + 1))
    c0 = int(rng.integers(0, w - side + 1))
    crop = np.asarray(
        src.resize((size, size), Image.BILINEAR, box=(c0, r0, c0 + side, r0 + side)),
        np.float32,
    )
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.85, 1.15)
    return np.clip(crop * gain, 0, 255)


_COIN_TINTS = np.array(
    [
        [1.00, 1.00, 1.00],  # silver
        [1.12, 0.95, 0.62],  # gold
        [1.08, 0.90, 0.74],  # copper
    ],
    np.float32,
)


def _transform_sprite(rng, sprite: _Sprite, longest: float):
    """Scale, rotate, flip and colour-jitter a sprite; return (rgb patch, mask patch)."""
    rgb, mask = sprite.rgb, sprite.mask
    if rng.random() < 0.5:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    h, w = mask.shape
    s = longest / max(h, w)
    theta = rng.uniform(0, 2 * np.pi)
    cos, sin = math.cos(theta), math.sin(theta)
    # output patch size = bounding box of the rotated, scaled sprite
    oh = math.ceil(s * (abs(cos) * h + abs(sin) * w)) + 2
    ow = math.ceil(s * (abs(sin) * h + abs(cos) * w)) + 2
    # output (r, c) -> input: R^-1 (p_out - c_out) / s + c_in
    inv = np.array([[cos, sin], [-sin, cos]]) / s
    c_in = np.array([(h - 1) / 2, (w - 1) / 2])
    c_out = np.array([(oh - 1) / 2, (ow - 1) / 2])
    offset = c_in - inv @ c_out
    if s < 1:
        sigma = max((1 / s - 1) / 2, 0)
        rgb = ndi.gaussian_filter(rgb, (sigma, sigma, 0), mode="nearest")
    channels = [
        ndi.affine_transform(
            rgb[..., k], inv, offset, output_shape=(oh, ow), order=1, mode="nearest"
        )
        for k in range(3)
    ]
    out_rgb = np.stack(channels, axis=-1)
    out_mask = (
        ndi.affine_transform(
            mask.astype(np.float32),
            inv,
            offset,
            output_shape=(oh, ow),
            order=1,
            mode="constant",
            cval=0.0,
        )
        >= 0.5
    )
    if not out_mask.any():
        return None
    # colour jitter (mild, the category must stay recognisable)
    if sprite.category == CATEGORIES.index("coin") + 1:
        out_rgb = out_rgb * _COIN_TINTS[rng.integers(len(_COIN_TINTS))]
    mean = out_rgb[out_mask].mean(axis=0)
    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(0.8, 1.2)
    saturation = rng.uniform(0.75, 1.25)
    out_rgb = (out_rgb - mean) * contrast + mean * brightness
    grey = out_rgb.mean(axis=-1, keepdims=True)
    out_rgb = grey + (out_rgb - grey) * saturation
    out_rgb = np.clip(out_rgb, 0, 255)
    rgb_c, mask_c = _crop_to_mask(out_rgb, out_mask, pad=0)
    return rgb_c, mask_c


def _generate_one(index: int, seed: int, size: int) -> SyntheticImage:
    rng = np.random.default_rng([seed, index])
    sprites = _sprites_for_size(size)
    canvas_area = size * size
    for _attempt in range(20):
        canvas = _background(rng, size)
        # index into the placed instances, -1 = background
        owner = np.full((size, size), -1, np.int32)
        placed_cls: list[int] = []
        placed_area: list[int] = []
        target = int(rng.integers(MIN_INSTANCES, MAX_INSTANCES + 1))
        tries = 0
        while len(placed_cls) < target and tries < 40:
            tries += 1
            cat = int(rng.integers(len(CATEGORIES)))
            choices = sprites[cat]
            sprite = choices[rng.integers(len(choices))]
            longest = (
                rng.uniform(
                    MIN_SCALE, CATEGORY_MAX_SCALE.get(CATEGORIES[cat], MAX_SCALE)
                )
                * size
            )
            res = _transform_sprite(rng, sprite, longest)
            if res is None:
                continue
            prgb, pmask = res
            ph, pw = pmask.shape
            if ph > size or pw > size:
                continue
            r0 = int(rng.integers(0, size - ph + 1))
            c0 = int(rng.integers(0, size - pw + 1))
            region = owner[r0 : r0 + ph, c0 : c0 + pw]
            covered = region[pmask]
            covered = covered[covered >= 0]
            if covered.size:
                hidden = np.bincount(covered, minlength=len(placed_cls))
                visible_now = np.bincount(owner[owner >= 0], minlength=len(placed_cls))
                after = visible_now - hidden
                if np.any(after < (1 - MAX_HIDDEN) * np.asarray(placed_area)):
                    continue
                if np.any(after < MIN_VISIBLE * canvas_area):
                    continue
            k = len(placed_cls)
            region[pmask] = k
            canvas[r0 : r0 + ph, c0 : c0 + pw][pmask] = prgb[pmask]
            placed_cls.append(sprite.category)
            placed_area.append(int(pmask.sum()))
        visible = np.bincount(owner[owner >= 0], minlength=len(placed_cls))
        keep = [
            k for k in range(len(placed_cls)) if visible[k] >= MIN_VISIBLE * canvas_area
        ]
        if len(keep) < MIN_INSTANCES:
            continue
        masks = (
            np.stack([owner == k for k in keep])
            if keep
            else np.zeros((0, size, size), bool)
        )
        classes = np.array([placed_cls[k] for k in keep], dtype=np.int64)
        image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        return SyntheticImage(f"synth_{index:04d}.png", image, masks, classes)
    raise RuntimeError(f"could not place {MIN_INSTANCES} instances in image {index}")


def generate(n_images: int, seed: int = 0, size: int = 256) -> list[SyntheticImage]:
    """Generate ``n_images`` images; deterministic for a given ``seed`` and ``size``.

    Image ``i`` depends only on ``(seed, i, size)``, so ``generate(k)`` is a
    prefix of ``generate(n)`` for ``k <= n``.
    """
    if n_images < 0:
        raise ValueError("n_images must be >= 0")
    if size < 32:
        raise ValueError("size must be >= 32")
    return [_generate_one(i, seed, size) for i in range(n_images)]


# --------------------------------------------------------------------------
# on-disk dataset
# --------------------------------------------------------------------------


def _mask_bbox(mask):
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return [
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    ]


def to_coco(samples: list[SyntheticImage]) -> dict:
    """COCO ground truth (compressed RLE, ids >= 1) for generated samples."""
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    ann_id = 1
    for img_id, s in enumerate(samples, start=1):
        h, w = s.image.shape[:2]
        images.append(
            {"id": img_id, "file_name": s.name, "width": int(w), "height": int(h)}
        )
        for m, c in zip(s.instance_masks, s.classes):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": int(c),
                    "segmentation": rle,
                    "area": float(m.sum()),
                    "bbox": _mask_bbox(m),
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    categories = [
        {"id": i, "name": n, "supercategory": "object"}
        for i, n in enumerate(CATEGORIES, start=1)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def semantic_labels(sample: SyntheticImage) -> np.ndarray:
    """uint8 (H, W): 0 background, else category id."""
    out = np.zeros(sample.image.shape[:2], np.uint8)
    for m, c in zip(sample.instance_masks, sample.classes):
        out[m] = c
    return out


def instance_labels(sample: SyntheticImage) -> np.ndarray:
    """uint16 (H, W): 0 background, instance k -> k + 1."""
    out = np.zeros(sample.image.shape[:2], np.uint16)
    for k, m in enumerate(sample.instance_masks):
        out[m] = k + 1
    return out


def write_dataset(folder, n_images: int, seed: int = 0, size: int = 256) -> dict:
    """Write images/, labels/ (semantic uint8), instances/ (uint16) and ground_truth.json (COCO)."""
    from PIL import Image

    folder = Path(folder)
    for sub in ("images", "labels", "instances"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    samples = generate(n_images, seed=seed, size=size)
    for s in samples:
        Image.fromarray(s.image).save(folder / "images" / s.name, compress_level=1)
        Image.fromarray(semantic_labels(s)).save(
            folder / "labels" / s.name, compress_level=1
        )
        Image.fromarray(instance_labels(s)).save(
            folder / "instances" / s.name, compress_level=1
        )
    coco = to_coco(samples)
    tmp = folder / "ground_truth.json.tmp"
    with open(tmp, "w") as f:
        json.dump(coco, f)
    os.replace(tmp, folder / "ground_truth.json")
    per_category = {name: 0 for name in CATEGORIES}
    for s in samples:
        for c in s.classes:
            per_category[CATEGORIES[int(c) - 1]] += 1
    return {
        "folder": str(folder),
        "images": len(samples),
        "instances": int(sum(len(s.classes) for s in samples)),
        "per_category": per_category,
        "size": size,
        "seed": seed,
    }
