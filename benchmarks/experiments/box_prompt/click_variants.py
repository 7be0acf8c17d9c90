"""Variants of clicks after a box for click_loop.py: the clicks as labelled cells of the box's classifier
(``labelled``: the sweep behind prompt.CLICK_SPREAD / CLICK_WEIGHT, now production's) and earlier crops of the
folder as memory (``memory``, not kept); docs/decisions.md#d-box-clicks.

.venv/bin/python benchmarks/experiments/box_prompt/click_loop.py CROPS.pkl click_variants.labelled
Settings from the environment: CLICK_WEIGHT (sample weight of a clicked cell, default 10), CLICK_SPREAD (a
clicked cell's neighbours within the graph's radius join its label when their cosine to the click's key is at
least this; default 1.1: none), CLICK_EXCLUDE (1: negative clicks also exclude production's linked cells)."""
import os

import numpy as np
from scipy import ndimage

from engine.masks import resize_nearest
from engine.method import prompt as P

WEIGHT = float(os.environ.get("CLICK_WEIGHT", 10))
SPREAD = float(os.environ.get("CLICK_SPREAD", 1.1))
EXCLUDE = os.environ.get("CLICK_EXCLUDE", "0") == "1"
RADIUS_CLICK = int(os.environ.get("CLICK_RADIUS", 1))


def classified(graph, flat, inside, positive, negative, weights, smoothing, rounds=P.BOX_ROUNDS, extra=None):
    """The box's classifier as production's before its warm start, ``weights`` per cell; ``extra`` (vectors,
    labels, weight): more labelled rows fitted beside the crop's (``memory``)."""
    from sklearn.linear_model import LogisticRegression

    target = P._box_middle(flat, inside)
    probability = target.astype(np.float64)
    for _ in range(rounds):
        target[positive] = True
        target[negative] = False
        if extra is None and target.sum() < P.MIN_OBJECT_PATCHES:
            break
        rows, labels, row_weights = flat, target, weights
        if extra is not None:
            rows, labels = np.concatenate([flat, extra[0]]), np.concatenate([target, extra[1]])
            row_weights = np.concatenate([weights, np.full(len(extra[0]), extra[2])])
        model = LogisticRegression(class_weight="balanced", max_iter=200).fit(rows, labels, sample_weight=row_weights)
        probability = P._smoothed(graph, model.predict_proba(flat)[:, 1], smoothing)
        probability[~inside] = 0.0
        probability[negative] = 0.0
        probability[positive] = 1.0
        if np.array_equal(probability > 0.5, target):
            break
        target = probability > 0.5
    return probability


def labelled_mask(features, grid_hw, image, box, positive, negative, eps=1e-3):
    height, width = image.shape[:2]
    gh, gw = grid_hw
    unit = P.unit_rows(features, True).reshape(gh, gw, -1)
    to_grid = np.array([gh / height, gw / width])
    cell_box = P._box_cells(box, to_grid, (gh, gw), (height, width))
    margin = max(2, int(np.ceil(P.BOX_CONTEXT * max(cell_box[2] - cell_box[0], cell_box[3] - cell_box[1]))))
    top, left, bottom, right = P._window([], cell_box, (gh, gw), P.WINDOW_PATCHES, margin)
    local = unit[top:bottom, left:right]
    lh, lw = local.shape[:2]
    flat = local.reshape(-1, local.shape[-1])
    graph = P.window_graph(local, 2)
    inside = P._box_cells_in_window(cell_box, (top, left, bottom, right), 1).ravel()

    def cell_id(point):
        r, c = P._point_cell(point, to_grid, (gh, gw), (height, width))
        return (r - top) * lw + (c - left)

    def region(point):
        index = cell_id(point)
        r, c = divmod(index, lw)
        key = flat[index]
        ids = [index]
        for dr in range(-RADIUS_CLICK, RADIUS_CLICK + 1):
            for dc in range(-RADIUS_CLICK, RADIUS_CLICK + 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < lh and 0 <= cc < lw and float(flat[rr * lw + cc] @ key) >= SPREAD:
                    ids.append(rr * lw + cc)
        return ids

    pos = sorted({i for p in positive for i in region(p)})
    neg = sorted({i for p in negative for i in region(p)} - set(pos))
    weights = np.ones(len(flat))
    weights[pos] = WEIGHT
    weights[neg] = WEIGHT
    probability = classified(graph, flat, inside, pos, neg, weights, P.BOX_SMOOTHING)
    if EXCLUDE and negative:
        seeds = pos or [int(np.argmax(np.where(inside, probability, -np.inf)))]
        likeness = np.max([P._relative_affinity(graph, flat, s, 3) for s in seeds], axis=0)
        neg_ids = [cell_id(p) for p in negative]
        excluded = P._excluded(graph, likeness, neg_ids, [P._relative_affinity(graph, flat, n, 3) for n in neg_ids])
        excluded[pos] = False
        probability = np.where(excluded, 0.0, probability)
    cells = np.zeros((gh, gw), np.float32)
    cells[top:bottom, left:right] = probability.reshape(lh, lw)
    mask = P._refined(image, cells, eps)
    x0, y0, x1, y1 = P._pixel_box(box, (height, width))
    in_box = np.zeros((height, width), bool)
    in_box[y0:y1, x0:x1] = True
    mask &= in_box
    labels, count = ndimage.label(mask)
    if not count:
        return resize_nearest(cells > 0.5, height, width) & in_box
    keep = {1 + int(np.argmax(np.bincount(labels.ravel())[1:]))}
    for x, y in positive:
        k = labels[P._clip(y, height), P._clip(x, width)]
        if k:
            keep.add(int(k))
    return np.isin(labels, sorted(keep))


def labelled(it):
    def mask_of(positive, negative):
        return labelled_mask(it["block8"], it["grid"], it["crop"], it["box"], positive, negative)
    return mask_of


# ---- memory: earlier corrected objects of the folder as extra labelled cells for the box's classifier
MEMORY = int(os.environ.get("CLICK_MEMORY", 5))
MEMORY_WEIGHT = float(os.environ.get("CLICK_MEMORY_WEIGHT", 0.5))
_bank: dict = {}


def _cells_of(it):
    """(unit centred vectors, the annotation pooled to binary cells) of a crop."""
    gh, gw = it["grid"]
    gt = it["gt"].astype(np.float32)
    H, W = gt.shape
    rows = np.minimum(np.arange(H) * gh // H, gh - 1)
    cols = np.minimum(np.arange(W) * gw // W, gw - 1)
    share = np.zeros((gh, gw))
    np.add.at(share, (rows[:, None], cols[None, :]), gt)
    count = np.zeros((gh, gw))
    np.add.at(count, (rows[:, None], cols[None, :]), 1)
    return P.unit_rows(it["block8"], True), (share / count).ravel() > 0.5


def memory(it):
    """Box and clicks as production, the classifier also fitting the cells of the MEMORY crops of the same folder
    made before this one (their annotation: the objects the reviewer corrected), each weighing MEMORY_WEIGHT."""
    folder = it["folder"]
    earlier = _bank.setdefault(folder, [])
    extra = earlier[-MEMORY:]
    production_fit = P._box_classified

    def memory_classified(graph, flat, inside, positive, negative, smoothing, rounds=P.BOX_ROUNDS):
        if not extra:
            return production_fit(graph, flat, inside, positive, negative, smoothing, rounds)
        weights = np.ones(len(flat))
        weights[list(positive) + list(negative)] = P.CLICK_WEIGHT
        rows = (np.concatenate([x for x, _ in extra]), np.concatenate([y for _, y in extra]), MEMORY_WEIGHT)
        return classified(graph, flat, inside, positive, negative, weights, smoothing, rounds, extra=rows)

    def mask_of(positive, negative):
        P._box_classified = memory_classified
        try:
            return P.points_mask(it["block8"], it["grid"], it["crop"], positive=positive, negative=negative,
                                 box=it["box"])
        finally:
            P._box_classified = production_fit

    earlier.append(_cells_of(it))
    return mask_of
