"""A closer look at an object: its crop embedded anew at the backbone's input size, the object cut there.

The cached tokens are 14-pixel patches of the whole image (DINOv2 at 448 px): a cat covering 2 % of a photo is
about 20 patches, and no mask made of them follows its outline (the best candidate-tree node reaches IoU 0.8 for
9.9 % of feral_cats' cats). A crop of ``CROP_FACTOR`` times the box, fed to the backbone at its input size, gives
the same object 20-40 times more patches; :func:`engine.method.prompt.points_mask` then finds it from the crop's
own patch vectors (the outputs of the block :func:`crop_block` names; a box's object learnt by a classifier from
the box and its surroundings) and refines it to the crop's edges. One network pass per prompt, in bfloat16 on
CPUs with native units (:func:`crop_precision`): a box takes about 0.4 s on 2 CPU cores.

Measured on feral_cats' first 30 images (126 cats; a development folder), a box with the cat's interior point,
IoU >= 0.8 with the cat: 22 % from the cached tokens, 44 % from a crop 1.5x the box, 40 % at 2x, 28 % at 3x
(docs/decisions.md#d-closer-look). A click without a box gains nothing at IoU 0.8 that way (10 % -> 12-14 %):
only boxed prompts take the closer look.

The final objects of a run take it too (:func:`recut_objects`): each object smaller than ``RECUT_MAX_SHARE`` of
the image is cut again from a crop around its box, at ``RECUT_INPUT_SHARE`` of the run's input size. Measured on
the default projects (feral_cats, 195 photos, 442 objects recut in 112 s, 65 s since crops go in bfloat16
batches of ``CROP_BATCH``; real-dev, 11 photos), CorLoc / box AP50
/ mask AP50 / mask recall@0.5: feral_cats 0.492 / 0.118 / 0.128 / 0.232 -> 0.533 / 0.142 / 0.135 / 0.250,
real-dev 0.273 / 0.063 / 0.096 / 0.151 -> 0.364 / 0.092 / 0.096 / 0.151 (docs/decisions.md#d-recut).
"""
from __future__ import annotations

import functools
import hashlib
import logging
from collections import OrderedDict

import numpy as np
from scipy import ndimage

from engine.method.backbones import DEFAULT_BACKBONE, get_backbone_spec
from engine.method.prompt import points_mask

logger = logging.getLogger(__name__)

CROP_FACTOR = 1.5  # the crop's side over the object's box's longer side (measured: 1.5 best of 1.5 / 2 / 3)
MIN_CROP_PIXELS = 32  # a smaller crop is grown to this side: a few image pixels hold no object to cut
RECUT_MAX_SHARE = 0.1  # final objects up to this share of the image are recut (all of them: real-dev's masks lost)
# the crops' centre cut takes objects up to this share: a group of cats of 2-5 % each spans 0.1-0.3 of the image, and
# its crop at 336 px still holds more patches than the whole image's grid (docs/decisions.md#d-crop-centres)
CROP_CUT_MAX_SHARE = 0.3
RECUT_INPUT_SHARE = 0.75  # their crops go in at 3/4 of the run's input (336 px at 448: 224 px kept little gain)
RECUT_MAX_OBJECTS = 20  # at most this many per image, the best scored first: the time stays bounded
RECUT_MIN_PIXELS = 16  # a recut smaller than this keeps the object as it was
SHARED_CROP_SIDE = 1.25  # objects whose boxes fit in a box this much larger than the smallest share one crop
# (feral_cats 539 -> 482 crops, generated 277 -> 228, real-dev 45 -> 42, each folder's final figures within an object)
CROP_REUSE_SIDE = SHARED_CROP_SIDE  # the crops' centre cut reads a recut's crop at most this much larger than the
# object's own, as crops are shared (at 2x, pieces read their group's crop: the crops' model fell to R^2 0.30-0.33)
CROP_BATCH = 4  # same-sized crops per forward pass (on 2 CPU cores, 4 in bfloat16: 140 ms a crop against 206 alone)
CROP_DEPTH = 0.75  # a crop's object is cut from the patch outputs of the block at this share of the depth
# (block 9 of DINOv2 ViT-S's 12): less abstract than the final tokens; measured per block, see crop_block
RECENT_CROPS = 8  # crops whose vectors an embedder keeps: a click after a box cuts the same crop again (on the
# demo's cat face, 0.87 of a click's 1.53 s was that crop's network pass)


def crop_block(depth: int) -> int:
    """Index (from 0) of the block whose patch outputs a closer look cuts from, of ``depth`` blocks.

    Measured on the crops of 179 annotated boxes (docs/decisions.md#d-box-layer; DINOv2 ViT-S), a person's box,
    masks at IoU >= 0.5 / >= 0.8, feral_cats then real-dev: final tokens 0.82 / 0.44 and 0.64 / 0.19; block 8
    0.85 / 0.45 and 0.66 / 0.26; blocks 5-7, 9 and 10 between (a smooth peak, not one lucky layer). The final
    objects' recut from block 8: real-dev mask AP50 0.096 -> 0.114 (seed 0) and 0.073 -> 0.113 (seed 1),
    feral_cats level (0.150 -> 0.152)."""
    return max(0, min(depth - 1, int(round(CROP_DEPTH * depth)) - 1))


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

    embed: [crop (h, w[, 3]) uint8, ...] -> [(tokens (gh * gw, D), grid_hw), ...]: the backbone on each crop
    alone (:func:`crop_embedder`). Negative points outside the crop cannot be on the object and are left out.
    """
    (x0, y0, x1, y1), crop_mask = windowed_mask(embed, image, box, positive, negative, centre, factor)
    out = np.zeros(image.shape[:2], bool)
    out[y0:y1, x0:x1] = crop_mask
    return out


def windowed_mask(embed, image: np.ndarray, box, positive=(), negative=(), centre: bool = True,
                  factor: float = CROP_FACTOR) -> tuple:
    """:func:`closer_look_mask` as (window (x0, y0, x1, y1), the mask inside the window): what a memo keeps."""
    positive = [tuple(map(float, p)) for p in positive]
    window = crop_window(image.shape[:2], box, positive, factor)
    crop = cropped(image, window)
    (tokens, grid_hw), = embed([crop])
    return window, _cut_in_window(tokens, grid_hw, crop, window, box, positive, negative, centre)


def cropped(image: np.ndarray, window: tuple) -> np.ndarray:
    """The pixels of ``image`` in ``window`` (x0, y0, x1, y1), contiguous."""
    x0, y0, x1, y1 = window
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def _cut_in_window(tokens, grid_hw, crop: np.ndarray, window: tuple, box, positive=(), negative=(),
                   centre: bool = True, learn_box: bool = True) -> np.ndarray:
    """The prompt (image pixels) answered from the tokens of ``crop``, the image's pixels in ``window``, as a
    mask of the window (``learn_box``: :func:`engine.method.prompt.points_mask`'s)."""
    x0, y0, x1, y1 = window

    def shifted(points):
        return [(x - x0, y - y0) for x, y in points if x0 <= x < x1 and y0 <= y < y1]

    crop_box = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    return points_mask(tokens, grid_hw, crop, positive=shifted(positive),
                       negative=shifted(tuple(map(float, p)) for p in negative), box=crop_box, centre=centre,
                       learn_box=learn_box)


def recut_objects(embed, image: np.ndarray, labels: np.ndarray, ids, skip=(), centre: bool = True,
                  max_share: float = RECUT_MAX_SHARE, max_objects: int = RECUT_MAX_OBJECTS,
                  memo: dict | None = None, tokens: dict | None = None) -> np.ndarray:
    """A copy of the label map ``labels`` (H, W; 0 background) with its small objects cut again, each from a
    crop around its box (:func:`closer_look_mask`): the objects ``ids`` in that order (best first), except those
    in ``skip``, smaller than ``max_share`` of the image, at most ``max_objects``. A recut object takes its own
    pixels and free ones only, so the map stays disjoint and no other object loses a pixel; one whose recut
    keeps fewer than RECUT_MIN_PIXELS stays as it was. The crops not in the memo go through ``embed`` in one
    call (same-sized crops share a forward pass); objects with boxes of a size that overlap share one crop
    (:func:`shared_crops`).

    memo: {box (x0, y0, x1, y1): :func:`windowed_mask`'s answer}, read and filled: a box cut before (the same
    object after a retrain) costs no network pass. tokens: {window: (patch vectors, grid_hw)}, filled with every
    crop embedded here (the crops' centre cut reads them again: engine.orchestration.group_cutting).
    """
    out = np.array(labels, copy=True)
    memo = {} if memo is None else memo
    chosen = small_objects(out, ids, skip, max_share, max_objects)
    groups = shared_crops(list(dict.fromkeys(box for _, box in chosen if box not in memo)))
    windows = [crop_window(image.shape[:2], _union(group)) for group in groups]
    crops = [cropped(image, w) for w in windows]
    embedded = embed(crops) if crops else []
    for group, window_px, crop, (vectors, grid_hw) in zip(groups, windows, crops, embedded):
        if tokens is not None:
            tokens[window_px] = (vectors, grid_hw)
        for box in group:
            # the box is the found object's own extent: its cut follows that object (learn_box=False)
            memo[box] = (window_px, _cut_in_window(vectors, grid_hw, crop, window_px, box, centre=centre,
                                                   learn_box=False))
    for value, box in chosen:
        (x0, y0, x1, y1), crop_mask = memo[box]
        window = out[y0:y1, x0:x1]  # a view; it holds the whole box, so every pixel of the object
        own = window == value
        recut = crop_mask & (own | (window == 0))
        if recut.sum() < RECUT_MIN_PIXELS:
            continue
        window[own & ~recut] = 0
        window[recut] = value
    return out


def small_object_windows(labels: np.ndarray, ids, skip=(), known=(), max_share: float = RECUT_MAX_SHARE) -> dict:
    """{label value: window (x0, y0, x1, y1)} of the objects :func:`small_objects` takes, the crops the centres
    learnt on crops read (engine.method.centres.cut_in_crops): for each, the smallest window of ``known`` (the
    crops already embedded: the recut's) holding its box at most CROP_REUSE_SIDE times the side of its own crop;
    for the others, crops of CROP_FACTOR times their boxes (:func:`crop_window`; boxes of a size that overlap share
    one, :func:`shared_crops`, as the recut's do)."""
    out, rest = {}, []
    for value, box in small_objects(labels, ids, skip, max_share):
        own_side = _side(crop_window(labels.shape[:2], box))
        holding = [w for w in known if w[0] <= box[0] and w[1] <= box[1] and w[2] >= box[2] and w[3] >= box[3]
                   and _side(w) <= CROP_REUSE_SIDE * own_side]
        if holding:
            out[value] = min(holding, key=_side)
        else:
            rest.append((value, box))
    window_of = {box: crop_window(labels.shape[:2], _union(group))
                 for group in shared_crops(list(dict.fromkeys(box for _, box in rest))) for box in group}
    out.update((value, window_of[box]) for value, box in rest)
    return out


def small_objects(labels: np.ndarray, ids, skip=(), max_share: float = RECUT_MAX_SHARE,
                  max_objects: int = RECUT_MAX_OBJECTS) -> list:
    """[(label value, its box (x0, y0, x1, y1)), ...] of the objects of the label map ``labels`` a closer look
    takes: ``ids`` in that order (best first) except those in ``skip``, smaller than ``max_share`` of the image,
    at most ``max_objects``."""
    boxes = ndimage.find_objects(labels)
    chosen: list[tuple[int, tuple]] = []
    for value in ids:
        value = int(value)
        if len(chosen) >= max_objects:
            break
        if value in skip or value > len(boxes) or boxes[value - 1] is None:
            continue
        rows, cols = boxes[value - 1]
        if (labels[rows, cols] == value).sum() < max_share * labels.size:
            chosen.append((value, (cols.start, rows.start, cols.stop, rows.stop)))
    return chosen


def _union(boxes: list) -> tuple:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _side(box: tuple) -> int:
    return max(box[2] - box[0], box[3] - box[1])


def shared_crops(boxes: list, max_growth: float = SHARED_CROP_SIDE) -> list:
    """The boxes (x0, y0, x1, y1) in groups that one crop serves: a box joins the first group whose boxes and it
    fit in one box at most ``max_growth`` times the side of the smallest of them, so no object is cut from patches
    more than that much coarser than its own crop's (pieces of one object, overlapping boxes of a size)."""
    groups: list = []
    for box in boxes:
        for group in groups:
            if _side(_union(group + [box])) <= max_growth * min(_side(b) for b in group + [box]):
                group.append(box)
                break
        else:
            groups.append([box])
    return groups


@functools.lru_cache(maxsize=2)  # the prompts' input size and the recuts'
def crop_extractor(backbone: str, weights, device: str, input_size, precision: str):
    """The network a closer look embeds crops with, loaded once per process and setting (a memo of a loaded
    model, as timm's and torch.hub's caches are: an engine process answers many prompts with it)."""
    from engine.method.features import FeatureExtractor

    return FeatureExtractor(backbone, weights, device, input_size, batch_size=CROP_BATCH, precision=precision)


def crop_precision(precision: str | None, device: str = "auto") -> str:
    """The crops' arithmetic: the run's ``precision``, except that ``auto`` on a CPU with native bfloat16 units
    is bfloat16. A crop's cut ranks nothing, so rounding cannot flip it as it flips the proposals' ranking
    (the reason float32 is the CPU default): on 179 annotated boxes (feral_cats, real-dev) bfloat16 crops gave
    the same share of masks at IoU 0.5 and one cat fewer at 0.8, and embedded 1.6x faster in batches of 4."""
    from engine.device import cpu_supports_bfloat16, resolve_device

    if (precision or "auto") == "auto" and resolve_device(device).type == "cpu" and cpu_supports_bfloat16():
        return "bfloat16"
    return precision or "auto"


def crop_embedder(config: dict, input_share: float = 1.0, device: str = "auto"):
    """embed([crop, ...]) -> [(patch vectors, grid_hw), ...]: the :func:`crop_block`'s outputs of the backbone and
    weights of a project's stored run settings (project.json's ``config``), at :func:`crop_precision`, crops fed
    at ``input_share`` of the run's input size, on ``device`` (chosen by the command, as every command does: never
    the one stored with a project made elsewhere)."""
    settings = _crop_settings(config, input_share, device)
    extractor = crop_extractor(*settings)

    def extract(crops: list) -> list:
        return extractor.block_tokens(crops, crop_block(extractor.depth))

    return remembering(extract, _recent_crops(*settings))


def _crop_settings(config: dict, input_share: float, device: str) -> tuple:
    """:func:`crop_extractor`'s arguments for a project's stored run settings."""
    backbone = config.get("backbone") or DEFAULT_BACKBONE
    input_size = config.get("input_size") or get_backbone_spec(backbone).default_input_size
    return (backbone, config.get("weights"), device, int(round(input_size * input_share)),
            crop_precision(config.get("precision"), device))


OBJECT_CROP_SIDE = 224  # an object's crops, as the masked_crop_cls / crop_cls clustering embeddings feed them


def object_crop_embedder(config: dict, device: str = "auto"):
    """embed(image, masks) -> (m, 2, D): the CLS tokens of two crops of each mask's box, one with the pixels outside
    the mask painted grey (the ``masked_crop_cls`` embedding: the object alone) and one as the image has it with a
    tenth's margin (``crop_cls``: the object in its surroundings), fed at OBJECT_CROP_SIDE px through the recut's
    network (one model in memory) at :func:`crop_precision`; None when the weights cannot be loaded now. Both
    measured on feral_cats: docs/decisions.md#d-crop-typical."""
    from engine.method.clustering import box_crop
    from engine.method.weights import WeightsNotFoundError

    try:
        extractor = crop_extractor(*_crop_settings(config, RECUT_INPUT_SHARE, device))
    except (WeightsNotFoundError, OSError, ValueError) as error:
        logger.warning("Objects not looked at as crops (%s); the typicality ranking uses the cached features.",
                       error)
        return None

    def embed(image: np.ndarray, masks) -> np.ndarray:
        masks = [np.asarray(mask, bool) for mask in masks]
        crops = [box_crop(image, mask, mask_background=True) for mask in masks] + \
            [box_crop(image, mask) for mask in masks]
        vectors = extractor.cls_embeddings(crops, OBJECT_CROP_SIDE)
        return np.stack([vectors[:len(masks)], vectors[len(masks):]], axis=1)

    return embed


@functools.lru_cache(maxsize=2)  # one per crop_extractor
def _recent_crops(*settings) -> OrderedDict:
    """The memo of :func:`remembering` for the crop extractor of these settings, kept as long as it is."""
    return OrderedDict()


def remembering(extract, recent: OrderedDict, size: int = RECENT_CROPS):
    """``extract`` ([crop, ...] -> [answer, ...]) that answers a crop it has seen among the last ``size`` from
    ``recent`` ({crop's pixel hash: answer}, read and filled) instead of the network: the clicks that refine a
    boxed object cut the same crop again and again."""
    def embed(crops: list) -> list:
        keys = [hashlib.sha1(np.ascontiguousarray(c).tobytes() + repr(c.shape).encode()).hexdigest() for c in crops]
        unseen: dict = {}  # each new crop once, in order
        for key, crop in zip(keys, crops):
            if key not in recent:
                unseen.setdefault(key, crop)
        if unseen:
            recent.update(zip(unseen, extract(list(unseen.values()))))
        answers = [recent[k] for k in keys]
        for key in keys:
            recent.move_to_end(key)
        while len(recent) > size:
            recent.popitem(last=False)
        return answers

    return embed


def loadable_crop_embedder(config: dict, input_share: float = 1.0, device: str = "auto"):
    """:func:`crop_embedder`, or None when its weights cannot be loaded now (e.g. a --weights file that has
    moved): the caller then keeps the cached tokens' answer, and the log says why."""
    from engine.method.weights import WeightsNotFoundError

    try:
        return crop_embedder(config, input_share, device)
    except (WeightsNotFoundError, OSError, ValueError) as error:
        logger.warning("No closer look (%s); the masks come from the cached features.", error)
        return None
