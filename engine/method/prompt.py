"""One click (or a box) on an image -> one object mask, from the image's cached patch features.

A pure function over arrays (no network pass: the features are already on disk), fast enough for a click. It
works on any per-patch vectors; the plugin's clicks use the cached final tokens (every cache format keeps them;
"keys" below means those vectors):

1. **Window**: the patches within ``window`` patches of the click (a box: the box and a margin around it);
   a window larger than ``max_patches`` is pooled to a coarser grid first, so the cost stays bounded. The
   window's graph links neighbouring patches (within ``radius``) by how alike their keys are (keys centred
   on the image's mean key for DINOv2 / v3, see :mod:`engine.method.proposals`).
2. **Affinity to the clicked patch**: cosine of each patch's key to the clicked patch's key (averaged with its
   like neighbours: one patch is noisy). A box without a click: how much more a patch is like the box's
   object (the half of the box's middle least like the surroundings) than like the box's surroundings.
   Smoothed by a few random-walk steps on the graph.
3. **Seeded cut**: patches taken in order of that affinity, only those above a floor (a positive similarity,
   MaskDistill's / LOST's rule, and for a click at least ``SEED_SHARE`` of the seed's own); of all these nested
   sets (each holding the seed), the one of lowest normalized cut cost on the graph is the object (a sweep
   cut, as in local graph partitioning: Andersen, Chung & Lang, 2006), so the cut follows the object's outline
   where the keys change.
   **A box** (with surroundings in the window) is answered by a classifier instead, as GrabCut answers a box
   with colour models: a logistic regression on the patch vectors, the cells around the box as background and
   the box's middle as the object, relabelled from its own smoothed answer until it settles
   (:func:`_box_classified`); a click with a box labels its cell and the like cells around it, object (left) or
   not (right), weighted in the fit, so the classifier learns from it.
4. **Refined** to the image's edges with the guided filter of :mod:`engine.method.refine`, on a crop around
   the object; the connected part under the click is kept (a box: inside the box).

Imports numpy, scipy, PIL (through refine) and, for a box, scikit-learn: no torch, so a click costs
milliseconds and a box about 0.1 s.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from engine.masks import resize_nearest
from engine.method.refine import guided_filter_many, upsample_soft

WINDOW_PATCHES = 64  # side of the window around a click, in patches (at DINOv2's 448 px input: the whole photo)
MAX_PATCHES = 4096  # a larger window (a big box on tiled features) is pooled to about this many cells
MIN_OBJECT_PATCHES = 2  # the smallest set the cut may choose
SEED_SHARE = 0.3  # a cell joins a click's object only with at least this share of the seed's own affinity
NEGATIVE_MARGIN = 0.1  # a cell leaves for a negative point only if that much more like it than like the object
SHARPNESS = 0.1  # link weight exp((cosine - 1) / SHARPNESS): alike neighbours ~0.1-1, an object edge ~0.0003
BOX_CONTEXT = 0.5  # a box's surroundings: this share of its longer side around it (a closer look: its whole crop)
BOX_ROUNDS = 4  # relabelling rounds of a box's classifier (it settles in 2-3)
BOX_SMOOTHING = 12  # random-walk steps smoothing the box classifier's answer on the patch graph (a click's: 3);
# on 179 annotated boxes, IoU >= 0.8: 1, 3, 5, 8, 12, 20 steps 44, 45, 45, 48, 51, 50 % of feral_cats' cats,
# real-dev 26 % from 1 to 20 (docs/decisions.md#d-box-layer)
CLICK_SPREAD = 0.5  # a click after a box labels its cell and the neighbours with at least this cosine to it
CLICK_WEIGHT = 10.0  # a clicked cell weighs this many cells in the box's classifier; spread 0.3-0.7 and weight
# 3-30 all within 0.2 clicks of each other on 179 boxes (docs/decisions.md#d-box-clicks)


def prompt_mask(patch_features: np.ndarray, grid_hw: tuple, image: np.ndarray, point=None, box=None,
                centre: bool = True, window: int = WINDOW_PATCHES, radius: int = 2, smoothing: int = 3,
                max_patches: int = MAX_PATCHES, eps: float = 1e-3) -> np.ndarray:
    """The object at ``point`` and/or in ``box``, as a (H, W) bool mask of ``image``.

    patch_features: (gh * gw, D) one vector per patch, row-major on ``grid_hw`` (the grid covers the whole
        image): the cached final tokens (``ImageFeatures.tokens``, in every cache format) or the last-block
        keys. image: (H, W, 3) or (H, W) uint8, the image the features were computed from (its edges).
    point: (x, y) in image pixels (column, row). box: (x0, y0, x1, y1) in image pixels. At least one of them.
    centre: subtract the image's mean vector first (DINOv2 / v3 features share a large common component).
    window: side of the window searched around a point, in patches. radius: patches further apart than this
        (in the window's grid) are not linked in the graph. smoothing: random-walk steps applied to the
        affinity before the sweep (0: raw cosine; a learnt box's classifier takes BOX_SMOOTHING). eps: the
        guided filter's regulariser (edge strength).
    """
    if point is None and box is None:
        raise ValueError("Give a point (x, y) or a box (x0, y0, x1, y1) to find an object.")
    return points_mask(patch_features, grid_hw, image, positive=[] if point is None else [point], box=box,
                       centre=centre, window=window, radius=radius, smoothing=smoothing, max_patches=max_patches,
                       eps=eps)


def points_mask(patch_features: np.ndarray, grid_hw: tuple, image: np.ndarray, positive=(), negative=(),
                box=None, centre: bool = True, window: int = WINDOW_PATCHES, radius: int = 2, smoothing: int = 3,
                max_patches: int = MAX_PATCHES, eps: float = 1e-3, learn_box: bool = True) -> np.ndarray:
    """The object shown by several clicks (micro-sam's positive and negative points) and / or a box, as a (H, W)
    bool mask of ``image``; the arguments as :func:`prompt_mask`'s.

    positive: (x, y) points on the object: each seeds a cut as one click does, the object is their union (a
        positive point on a part the first click missed adds that part, even apart from it).
    negative: (x, y) points off the object: the patch under each, and the patches around it more like it than
        like any positive point (linked to it on the graph: "near it"), are forced outside the object.
    With one positive point, no negative one: exactly :func:`prompt_mask` of that point.
    learn_box: a box's object learnt by a classifier from the box and its surroundings (a box drawn around an
        object); False: the seeded cut from the box's affinity (a box that is an object's own extent, as when a
        found object is cut again: there the classifier lost feral_cats' final objects 0.021 CorLoc).
    """
    height, width = image.shape[:2]
    gh, gw = int(grid_hw[0]), int(grid_hw[1])
    if not len(positive) and box is None:
        raise ValueError("Give a positive point (x, y) or a box (x0, y0, x1, y1) to find an object.")
    unit = unit_rows(patch_features, centre).reshape(gh, gw, -1)
    to_grid = np.array([gh / height, gw / width])  # (row, col) image pixels -> patch-grid cells
    cell_box = None if box is None else _box_cells(box, to_grid, (gh, gw), (height, width))
    seeds = [_point_cell(p, to_grid, (gh, gw), (height, width)) for p in positive]
    avoided = [_point_cell(p, to_grid, (gh, gw), (height, width)) for p in negative]
    margin = 2
    if learn_box and cell_box is not None:  # the classifier learns the background from the box's surroundings
        margin = max(2, int(np.ceil(BOX_CONTEXT * max(cell_box[2] - cell_box[0], cell_box[3] - cell_box[1]))))
    top, left, bottom, right = _window(seeds, cell_box, (gh, gw), window, margin)
    factor = max(1, int(np.ceil(np.sqrt((bottom - top) * (right - left) / max_patches))))
    local = _pooled(unit[top:bottom, left:right], factor)
    flat = local.reshape(-1, local.shape[-1])
    graph = window_graph(local, radius)
    inside = None if cell_box is None else _box_cells_in_window(cell_box, (top, left, bottom, right), factor)

    def cell_id(cell) -> int:  # a grid cell -> its index in the (pooled) window
        return ((cell[0] - top) // factor) * local.shape[1] + (cell[1] - left) // factor

    seed_ids = [cell_id(c) for c in seeds]
    if seeds:
        affinities, floors = map(list, zip(*(_click_affinity(graph, flat, s, centre, smoothing) for s in seed_ids)))
    else:
        assert inside is not None, "a prompt is a point or a box"
        affinities = [_smoothed(graph, _box_affinity(flat, inside.ravel()), smoothing)]
        seed_ids = [int(np.argmax(np.where(inside.ravel(), affinities[0], -np.inf)))]
        floors = [0.0]
    negative_ids = [cell_id(c) for c in avoided if top <= c[0] < bottom and left <= c[1] < right]
    clicks: list = [(_clip(p[1], height), _clip(p[0], width)) for p in positive] or [None]

    def on_grid(chosen: np.ndarray) -> np.ndarray:  # window cells -> (gh, gw) float cells of the whole image
        cells = np.zeros((gh, gw), np.float32)
        upsampled = np.repeat(np.repeat(chosen.reshape(local.shape[:2]), factor, axis=0), factor, axis=1)
        cells[top:bottom, left:right] = upsampled[:bottom - top, :right - left]
        return cells

    if learn_box and inside is not None and not inside.all():  # a box with surroundings: its object learnt,
        # each click a labelled cell of the classifier, with its like neighbours
        taken = sorted({c for s in (seed_ids if seeds else []) for c in _clicked_cells(local, s)})
        refused = sorted({c for n in negative_ids for c in _clicked_cells(local, n)} - set(taken))
        probability = _box_classified(graph, flat, inside.ravel(), taken, refused, BOX_SMOOTHING)
        cells = on_grid(probability)  # soft: the refinement puts the edge where the probability crosses 0.5
        if len(positive):
            clicks.append(None)  # with its clicks' parts, the part the box holds
        cuts = [probability > 0.5] * len(clicks)
        excluded = np.zeros(len(flat), bool)
        excluded[refused] = True
    else:
        avoided_likeness = [_relative_affinity(graph, flat, n, smoothing) for n in negative_ids]
        if inside is not None and not seeds and negative_ids:  # a box: its seed is, of its object-like cells,
            # the one least like a negative
            box_affinity = np.where(inside.ravel(), affinities[0], -np.inf)
            object_like = box_affinity >= 0.5 * float(box_affinity.max())
            seed_ids = [int(np.argmax(np.where(object_like, -np.max(avoided_likeness, axis=0), -np.inf)))]
            affinity, floor = _click_affinity(graph, flat, seed_ids[0], centre, smoothing)  # then as a click
            affinities, floors = [affinity], [floor]
        # how like the object each cell is: its best affinity to a seed, relative to that seed's own
        likeness = np.max([_relative_affinity(graph, flat, s, smoothing) for s in seed_ids], axis=0)
        excluded = _excluded(graph, likeness, negative_ids, avoided_likeness)
        excluded[seed_ids] = False  # a point both ways: the positive one wins
        allowed = ~excluded if inside is None else inside.ravel() & ~excluded
        cuts = [seeded_cut(graph, a, s, f, allowed) for a, s, f in zip(affinities, seed_ids, floors)]
        cells = on_grid(np.logical_or.reduce(cuts))
    mask = _refined(image, cells, eps) & ~resize_nearest(on_grid(excluded) > 0.5, height, width)
    in_box = np.ones((height, width), bool)
    if box is not None:
        x0, y0, x1, y1 = _pixel_box(box, (height, width))
        in_box[:] = False
        in_box[y0:y1, x0:x1] = True
        mask &= in_box
    parts = np.zeros((height, width), bool)
    for click, cut in zip(clicks, cuts):  # each cut's part, kept apart: a second object is not a crumb
        parts |= _part_at(mask, click, resize_nearest(on_grid(cut) > 0.5, height, width) & in_box)
    return parts


def _click_affinity(graph, flat: np.ndarray, seed: int, centre: bool, smoothing: int) -> tuple:
    """(affinity (n,), floor) of a click on cell ``seed``: each cell's smoothed cosine to the seed's key; a cell
    joins only above the floor (a positive similarity, and SEED_SHARE of the seed's own)."""
    affinity = _smoothed(graph, flat @ _seed_key(flat, graph, seed), smoothing)
    return affinity, max(0.0 if centre else float(affinity.mean()), SEED_SHARE * float(affinity[seed]))


def _relative_affinity(graph, flat: np.ndarray, index: int, smoothing: int) -> np.ndarray:
    """(n,) each cell's smoothed cosine to the key of cell ``index``, over that cell's own."""
    affinity = _smoothed(graph, flat @ _seed_key(flat, graph, index), smoothing)
    return affinity / max(float(affinity[index]), 1e-6)


def _excluded(graph, positive: np.ndarray, negative_ids: list, negative_likeness: list) -> np.ndarray:
    """(n,) bool: the cells negative points force outside: for each, the cells linked to it (on the graph,
    through such cells) more like it (``negative_likeness``, relative to its own) than like the object
    (``positive``, on the same scale) by NEGATIVE_MARGIN (a cell as like both stays: an object touching one
    of its kind keeps its own cells), and at least SEED_SHARE as like it as itself."""
    excluded = np.zeros(len(positive), bool)
    for index, likeness in zip(negative_ids, negative_likeness):
        candidates = (likeness > positive + NEGATIVE_MARGIN) & (likeness > SEED_SHARE)
        candidates[index] = True
        linked = graph.multiply(candidates[:, None]).multiply(candidates[None, :]).tocsr()
        _, parts = connected_components(linked, directed=False)
        excluded |= candidates & (parts == parts[index])
    return excluded


def seeded_cut(graph, affinity: np.ndarray, seed: int, floor: float = 0.0, allowed=None) -> np.ndarray:
    """(n,) bool over the graph's cells: of the nested sets made of the cells most like the seed (in order of
    ``affinity``, the seed first), the one of lowest normalized cut cost on ``graph`` (a sparse (n, n)
    weight matrix), then only its connected part holding the seed (linked by the graph's edges).

    Only cells whose affinity is above ``floor`` may join (for a click: a positive similarity of vectors
    centred on their mean, MaskDistill's / LOST's rule, and SEED_SHARE of the seed's own), so the cut finds the
    object the click is on rather than all of the foreground it belongs to; ``allowed`` (n,) bool excludes
    further cells (outside a box).
    """
    n = len(affinity)
    candidates = affinity > floor
    if allowed is not None:
        candidates &= allowed
    candidates[seed] = True
    ranked = np.where(candidates, affinity, -np.inf)
    ranked[seed] = np.inf
    order = np.argsort(-ranked, kind="stable")
    degree = np.asarray(graph.sum(axis=1)).ravel()
    size = _cheapest_prefix(graph, degree, order, min(int(candidates.sum()), n - 1))
    chosen = np.zeros(n, bool)
    chosen[order[:size]] = True
    linked = graph.multiply(chosen[:, None]).multiply(chosen[None, :]).tocsr()
    _, parts = connected_components(linked, directed=False)
    return chosen & (parts == parts[seed])


def _cheapest_prefix(graph, degree: np.ndarray, order: np.ndarray, limit: int) -> int:
    """The number k of leading cells of ``order`` whose set has the lowest normalized cut cost
    (cut / vol(S) + cut / vol(rest)), MIN_OBJECT_PATCHES <= k <= limit. One pass over the edges: an edge is
    inside the first k cells from k = (the later of its two cells' ranks) + 1 on."""
    if limit < 1:
        return 1
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    edges = graph.tocoo()
    joins = np.maximum(rank[edges.row], rank[edges.col])
    inner = np.cumsum(np.bincount(joins, weights=edges.data, minlength=len(order))) / 2  # each edge stored twice
    volume = np.cumsum(degree[order])
    cut = volume - 2 * inner
    cost = cut / np.maximum(volume, 1e-12) + cut / np.maximum(volume[-1] - volume, 1e-12)
    low = min(MIN_OBJECT_PATCHES, limit)
    return low + int(np.argmin(cost[low - 1:limit]))


def window_graph(unit: np.ndarray, radius: int):
    """Sparse (n, n) weights over the (h, w, D) unit keys' cells: for two cells at most ``radius`` apart on the
    grid, exp((cosine - 1) / SHARPNESS) of their keys; no other links."""
    h, w = unit.shape[:2]
    ids = np.arange(h * w).reshape(h, w)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy, dx) <= (0, 0):  # each pair once; mirrored below
                continue
            a = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
            b = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
            similarity = np.einsum("ijk,ijk->ij", unit[a], unit[b])
            rows.append(ids[a].ravel())
            cols.append(ids[b].ravel())
            weights.append(np.exp((similarity.ravel() - 1.0) / SHARPNESS))
    row_ids, col_ids, pair_weights = (np.concatenate(x) if x else np.zeros(0) for x in (rows, cols, weights))
    graph = sparse.coo_matrix((pair_weights, (row_ids, col_ids)), shape=(h * w, h * w))
    return (graph + graph.T).tocsr()


def _seed_key(flat: np.ndarray, graph, index: int) -> np.ndarray:
    """The seed's unit key averaged with its linked neighbours' keys, weighted by how alike they are."""
    weights = graph.getrow(index).toarray().ravel()
    weights[index] = 1.0
    key = weights @ flat
    return key / max(float(np.linalg.norm(key)), 1e-6)


def _box_affinity(flat: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """How much more each cell is like the box's object than like its surroundings: cosine to the object's
    mean key minus cosine to the mean key of the cells around the box. The object's key: of the cells in the
    box, the half least like the surroundings (an object fills the middle of its box, the rest is background
    like the surroundings). Without surroundings (a box over the whole window): cosine to the box's mean."""
    if inside.all():
        key = flat.mean(axis=0)
        return flat @ (key / max(float(np.linalg.norm(key)), 1e-6)) - float((flat @ key).mean())
    object_key = flat[_box_middle(flat, inside)].mean(axis=0)
    return flat @ object_key - flat @ flat[~inside].mean(axis=0)


def _box_middle(flat: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """(n,) bool: the half of the box's cells least like the mean of the cells around it (an object fills the
    middle of its box, the rest is background like the surroundings)."""
    likeness = flat[inside] @ flat[~inside].mean(axis=0)
    middle = np.zeros(len(flat), bool)
    middle[np.flatnonzero(inside)[likeness <= np.median(likeness)]] = True
    return middle


def _clicked_cells(cells: np.ndarray, index: int) -> list:
    """The cell a click is on (an index of the (h, w, D) unit ``cells``, row-major) and its 8 neighbours whose
    vectors have a cosine of at least CLICK_SPREAD with its own: what one click labels for a box's classifier."""
    h, w = cells.shape[:2]
    row, col = divmod(int(index), w)
    taken = [int(index)]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r, c = row + dr, col + dc
            if (dr or dc) and 0 <= r < h and 0 <= c < w and float(cells[r, c] @ cells[row, col]) >= CLICK_SPREAD:
                taken.append(r * w + c)
    return taken


def _box_classified(graph, flat: np.ndarray, inside: np.ndarray, positive: list, negative: list,
                    smoothing: int, rounds: int = BOX_ROUNDS) -> np.ndarray:
    """(n,) probability that each cell is the box's object, learnt from the box as GrabCut learns its colour
    models, here over the patch vectors: the cells around the box are background; inside it, the half least
    like them start as the object (an object fills the middle of its box). The ``positive`` cells (clicked on
    the object) always are, the ``negative`` ones (clicked off it) never, each weighing CLICK_WEIGHT cells in the
    fit, so a click moves the classifier's boundary, not only its own cell. A logistic regression learns the two
    from the vectors; its answer, smoothed on the graph, relabels the cells inside the box, and again until
    nothing changes.

    Measured on the closer look's crops of 179 annotated boxes (feral_cats' first 30 images, real-dev's mask
    images; docs/decisions.md#d-box-classifier), masks at IoU >= 0.5: 0.71 -> 0.82 and 0.60 -> 0.64 against the
    seeded cut from the box's affinity; at IoU >= 0.8: 0.40 -> 0.44 and 0.19 -> 0.19."""
    from sklearn.linear_model import LogisticRegression

    target = _box_middle(flat, inside)
    probability = target.astype(np.float64)
    weights = np.ones(len(flat))
    weights[list(positive) + list(negative)] = CLICK_WEIGHT
    model = LogisticRegression(class_weight="balanced", max_iter=200, warm_start=True)  # a round starts from the last
    for _ in range(rounds):
        target[positive] = True
        target[negative] = False
        if target.sum() < MIN_OBJECT_PATCHES:
            break
        model.fit(flat, target, sample_weight=weights)
        probability = _smoothed(graph, model.predict_proba(flat)[:, 1], smoothing)
        probability[~inside] = 0.0
        probability[negative] = 0.0
        probability[positive] = 1.0
        if np.array_equal(probability > 0.5, target):
            break
        target = probability > 0.5
    return probability


def _smoothed(graph, affinity: np.ndarray, steps: int) -> np.ndarray:
    """A few lazy random-walk steps on the graph: neighbours vote, so one odd patch neither joins nor leaves
    the object alone."""
    degree = np.asarray(graph.sum(axis=1)).ravel()
    walk = sparse.diags(1.0 / np.maximum(degree, 1e-12)) @ graph
    for _ in range(steps):
        affinity = 0.5 * affinity + 0.5 * (walk @ affinity)
    return affinity


def unit_rows(vectors: np.ndarray, centre: bool) -> np.ndarray:
    """Rows as unit float32 vectors, after subtracting their mean when ``centre`` (DINOv2 / v3 features share a
    large common component)."""
    x = np.asarray(vectors, np.float32)
    if centre:
        x = x - x.mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def _pooled(cells: np.ndarray, factor: int) -> np.ndarray:
    """(h, w, D) averaged over factor x factor blocks (edges padded by repetition); unit rows for keys."""
    if factor == 1:
        return cells
    h, w, d = cells.shape
    ph, pw = -h % factor, -w % factor
    padded = np.pad(cells, ((0, ph), (0, pw), (0, 0)), mode="edge")
    pooled = padded.reshape((h + ph) // factor, factor, (w + pw) // factor, factor, d).mean(axis=(1, 3))
    if d > 1:
        pooled /= np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-6)
    return pooled


def _clip(value: float, size: int) -> int:
    return int(min(max(int(np.floor(value)), 0), size - 1))


def _point_cell(point, to_grid: np.ndarray, grid_hw: tuple, image_hw: tuple) -> tuple:
    x, y = float(point[0]), float(point[1])
    if not (0 <= x < image_hw[1] and 0 <= y < image_hw[0]):
        raise ValueError(f"The point (x={x:.0f}, y={y:.0f}) is outside the {image_hw[1]}x{image_hw[0]} image.")
    return (min(int(y * to_grid[0]), grid_hw[0] - 1), min(int(x * to_grid[1]), grid_hw[1] - 1))


def _pixel_box(box, image_hw: tuple) -> tuple:
    """(x0, y0, x1, y1) sorted and clipped to the image, as integers (x1, y1 exclusive)."""
    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    height, width = image_hw
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        corners = ", ".join(f"{float(v):.0f}" for v in box)  # rounded: a dragged box has fractional corners
        raise ValueError(f"The box ({corners}) has no area inside the {width}x{height} image.")
    return x0, y0, x1, y1


def _box_cells(box, to_grid: np.ndarray, grid_hw: tuple, image_hw: tuple) -> tuple:
    """(top, left, bottom, right) grid cells the box covers (bottom / right exclusive, at least one cell)."""
    x0, y0, x1, y1 = _pixel_box(box, image_hw)
    top, left = int(y0 * to_grid[0]), int(x0 * to_grid[1])
    bottom = max(top + 1, min(grid_hw[0], int(np.ceil(y1 * to_grid[0]))))
    right = max(left + 1, min(grid_hw[1], int(np.ceil(x1 * to_grid[1]))))
    return top, left, bottom, right


def _box_cells_in_window(cells: tuple, window: tuple, factor: int) -> np.ndarray:
    """(h, w) bool on the (pooled) window grid: the cells of the box."""
    top, left, bottom, right = window
    inside = np.zeros((bottom - top, right - left, 1), np.float32)
    inside[cells[0] - top:cells[2] - top, cells[1] - left:cells[3] - left] = 1.0
    return _pooled(inside, factor)[..., 0] > 0.5


def _window(seeds: list, box_cells, grid_hw: tuple, window: int, margin: int) -> tuple:
    """(top, left, bottom, right) of the cells searched: the box grown by ``margin`` cells (and holding the
    seeds, if any), else ``window`` cells around each seed (their bounding rectangle)."""
    gh, gw = grid_hw
    rows, cols = [s[0] for s in seeds], [s[1] for s in seeds]
    if box_cells is not None:
        top, left, bottom, right = box_cells
        top, left = min([top, *rows]), min([left, *cols])
        bottom, right = max([bottom, *(r + 1 for r in rows)]), max([right, *(c + 1 for c in cols)])
        top, left, bottom, right = top - margin, left - margin, bottom + margin, right + margin
    else:
        half = max(2, window // 2)
        top, left, bottom, right = min(rows) - half, min(cols) - half, max(rows) + half, max(cols) + half
    return max(0, top), max(0, left), min(gh, bottom), min(gw, right)


def _refined(image: np.ndarray, cells: np.ndarray, eps: float) -> np.ndarray:
    """The chosen cells snapped to the image's edges: a guided filter on the pixels of their bounding box
    (plus a cell around it), thresholded at 0.5, as a full-size (H, W) mask."""
    height, width = image.shape[:2]
    gh, gw = cells.shape
    mask = np.zeros((height, width), bool)
    rows, cols = np.nonzero(cells > 0.5)
    if not len(rows):
        return mask
    top, left = max(0, rows.min() - 1), max(0, cols.min() - 1)
    bottom, right = min(gh, rows.max() + 2), min(gw, cols.max() + 2)
    y0, y1 = int(round(top * height / gh)), int(round(bottom * height / gh))
    x0, x1 = int(round(left * width / gw)), int(round(right * width / gw))
    soft = upsample_soft(cells[top:bottom, left:right], y1 - y0, x1 - x0)
    crop = image[y0:y1, x0:x1].astype(np.float32) / 255.0
    guide = crop[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if crop.ndim == 3 else crop
    # the filter reaches about one patch cell: far enough to move a staircase edge onto the object edge; on
    # large crops its coefficients are computed on every 2nd pixel (the fast guided filter)
    radius = max(2, int(round(height / gh)))
    subsample = 2 if min(y1 - y0, x1 - x0) >= 128 else 1
    mask[y0:y1, x0:x1] = guided_filter_many(guide, soft[None], radius, eps, subsample)[0] > 0.5
    return mask


def _part_at(mask: np.ndarray, click, coarse: np.ndarray) -> np.ndarray:
    """The connected part of ``mask`` under the click, else the part overlapping the coarse cells most; the
    coarse cells themselves when refinement lost the object."""
    labels, count = ndimage.label(mask)
    if click is not None and labels[click]:
        return labels == labels[click]
    overlap = np.bincount(labels[coarse], minlength=count + 1)
    overlap[0] = 0
    return labels == int(np.argmax(overlap)) if overlap.any() else coarse
