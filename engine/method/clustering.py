"""Mask embeddings and their clustering into pseudo-classes.

Embeddings: ``masked_crop_cls`` (CLS token of the mask's box crop with the pixels outside the mask set to
the mean colour), ``crop_cls`` (the paper's: the same crop with its background) or ``pooled`` (mean of the
final patch tokens under the mask, the default: free, from cached features, and on real photos it clusters best;
the folder's dominant token directions are projected out of it first (:func:`dominant_directions`, without which
the generated set's pasted objects cluster at ARI 0.06 against their kinds, 0.50 with; docs/decisions.md#d-dominant).
The crop variants cost one extra forward per mask. All are whitened per dimension and L2-normalised, then grouped
by scikit-learn's k-means (k-means++ seeding, several restarts, deterministic for a seed), fitted on each image's
best proposals (:func:`fitted_rows`), every mask then given its nearest class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.masks import bbox_xywh, coverage_of_crop, coverage_on_grid, mask_crop
from engine.method.features import FeatureCache, ImageFeatures

# ImageNet mean colour: what the backbone sees as "nothing" after normalisation
NEUTRAL_RGB = (124, 116, 104)
MAX_SUGGESTED_K = 12  # the most classes the silhouette suggests
FIT_TOP_PER_IMAGE = 2  # k-means learns the classes from each image's best proposals (docs/decisions.md#d-fit-top)
DIRECTION_SAMPLE_IMAGES = 64  # images whose cached tokens give the folder's dominant directions
DIRECTION_SAMPLE_TOKENS = 4096  # at most this many tokens of each (a tiled image holds many more)


def fitted_rows(groups, scores, k: int | None) -> np.ndarray:
    """(n,) bool: the masks k-means learns the classes from (``groups``: each mask's image id; ``scores``: its
    proposal score; ``k``: the classes, None when suggested). Each image's best proposals are mostly its objects,
    the rest parts and background pieces, and k-means fitted on every mask spends its classes on the pieces (the
    generated set: 60 % of the masks). So: each image's FIT_TOP_PER_IMAGE best, or as many more as give every
    class (``k``, else the most suggested) MIN_MASKS_PER_CLASS of them (real-dev's 11 photos: 4 each)."""
    images = max(len(set(groups)), 1)
    wanted = MIN_MASKS_PER_CLASS * (k or MAX_SUGGESTED_K)
    return top_rows(groups, scores, max(FIT_TOP_PER_IMAGE, -(-wanted // images)))


def top_rows(groups, scores, per_group: int) -> np.ndarray:
    """(n,) bool: the ``per_group`` highest ``scores`` of each group (``groups``: its id per row), ties in row
    order."""
    groups, scores = np.asarray(groups), np.asarray(scores, np.float64)
    order = np.lexsort((-scores, groups))  # by group, best first (a stable sort: ties in row order)
    sorted_groups = groups[order]
    group_start = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - group_start
    return rank < per_group


def pooled_embedding(features: ImageFeatures, mask: np.ndarray) -> np.ndarray:
    """Mean patch token weighted by how much of each patch the full-resolution mask covers."""
    weights = coverage_on_grid(mask, features.grid_hw).ravel()
    if weights.sum() == 0:
        weights = np.ones_like(weights)
    return (weights @ features.tokens.astype(np.float32)) / weights.sum()


def pooled_embeddings(features: ImageFeatures, masks) -> np.ndarray:
    """:func:`pooled_embedding` of every mask of a stack (n, H, W), float32 (n, D); each from the mask's
    bounding box and the tokens of the cells it touches, so a small object of a large image costs what it
    covers, not the whole frame and token grid (on a 4,000 x 4,000 image: 16 million pixels and 360,000
    tokens per mask)."""
    out = np.empty((len(masks), features.tokens.shape[1]), np.float32)
    for index in range(len(masks)):
        box, crop = mask_crop(masks, index)
        if box is None:  # as pooled_embedding: an empty mask weighs every patch alike
            out[index] = features.tokens.mean(axis=0, dtype=np.float32)
            continue
        cells, weights = coverage_of_crop(crop, box, masks.shape[1:], features.grid_hw)
        out[index] = (weights @ features.tokens[cells].astype(np.float32)) / weights.sum()
    return out


def box_crop(image: np.ndarray, mask: np.ndarray, margin: float = 0.1, mask_background: bool = False) -> np.ndarray:
    """The mask's bounding box plus a margin; the background inside the box is kept (the paper) or, with
    ``mask_background``, painted in the neutral colour so that only the object is described."""
    x, y, w, h = bbox_xywh(mask)
    if w == 0:
        return image
    dx, dy = int(w * margin), int(h * margin)
    rows, cols = slice(max(0, y - dy), y + h + dy), slice(max(0, x - dx), x + w + dx)
    crop = image[rows, cols]
    if mask_background:
        crop = crop.copy()
        crop[~mask[rows, cols]] = NEUTRAL_RGB
    return crop


ROWS_PER_CHUNK = 4096  # rows handled at once where a step needs a temporary as large as the data


def _chunks(n: int):
    return (slice(start, min(start + ROWS_PER_CHUNK, n)) for start in range(0, n, ROWS_PER_CHUNK))


def stack_rows(blocks, expected_rows: int = 0) -> np.ndarray:
    """(m, d) arrays stacked into one float32 (n, d) array, allocated once for ``expected_rows`` (grown if more
    arrive, trimmed if fewer): a project's embeddings are never held twice, as a list and its concatenation."""
    out, filled = None, 0
    for block in blocks:
        block = np.asarray(block, np.float32)
        if out is None:
            out = np.empty((max(expected_rows, len(block)), block.shape[1]), np.float32)
        if filled + len(block) > len(out):
            out = np.concatenate([out[:filled], np.empty((max(len(out), len(block)), out.shape[1]), np.float32)])
        out[filled:filled + len(block)] = block
        filled += len(block)
    return np.empty((0, 0), np.float32) if out is None else out[:filled]


def dominant_directions(token_blocks, count: int | None = None) -> np.ndarray:
    """(count, d) orthonormal rows: the main principal directions of a folder's patch tokens (``token_blocks``:
    (m, d) arrays, e.g. a sample of its images' tokens), covariance summed block by block in float64; ``count``
    None: :func:`dominant_direction_count` of d.

    Pooled over a mask, the final tokens of DINO-like backbones are dominated by a few directions every region of
    every image shares (where in the image a token lies, light and texture), and the whitened k-means then splits
    masks along those instead of by kind; removing the top directions (All-but-the-Top, Mu & Viswanath 2018)
    lets the kinds show: on the generated set the proposals' ARI against the kinds goes from 0.056 to 0.50
    (docs/decisions.md#d-dominant)."""
    total: np.ndarray | None = None  # sum of outer products
    total_sum = np.zeros(0)
    rows = 0
    for block in token_blocks:
        block = np.asarray(block, np.float64)
        if total is None:
            total, total_sum = np.zeros((block.shape[1], block.shape[1])), np.zeros(block.shape[1])
        total += block.T @ block
        total_sum += block.sum(axis=0)
        rows += len(block)
    if total is None:
        return np.empty((0, 0), np.float32)
    count = dominant_direction_count(len(total)) if count is None else count
    if rows < 2 or not count:
        return np.empty((0, len(total)), np.float32)
    mean = total_sum / rows
    covariance = total / rows - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(covariance)
    return vectors[:, np.argsort(values)[::-1][:count]].T.astype(np.float32)


def folder_directions(cache: FeatureCache, feature_keys: list) -> np.ndarray:
    """:func:`dominant_directions` of a folder, from the cached tokens of up to DIRECTION_SAMPLE_IMAGES of its
    images evenly spread over ``feature_keys`` (one image in memory at a time); an image whose cache file is gone
    is passed over (none left: no directions, and the embeddings are compared as they are)."""
    picks = np.unique(np.linspace(0, len(feature_keys) - 1, min(len(feature_keys), DIRECTION_SAMPLE_IMAGES)).round())

    def token_blocks():
        for index in picks.astype(int):
            features = cache.get(feature_keys[index])
            if features is not None:
                yield features.tokens[::max(1, len(features.tokens) // DIRECTION_SAMPLE_TOKENS)]

    return dominant_directions(token_blocks())


def comparable(embeddings: np.ndarray, embedding: str, cache: FeatureCache, feature_keys: list) -> np.ndarray:
    """A project's mask embeddings (float32, changed in place) as its clustering and a review split compare them:
    ``pooled`` ones (engine.method.names.EMBEDDINGS) without the folder's dominant token directions
    (:func:`folder_directions`), crop ones as they are."""
    if embedding == "pooled":
        project_out(embeddings, folder_directions(cache, feature_keys))
    return embeddings


def dominant_direction_count(dim: int) -> int:
    """How many dominant directions are removed: one per 100 dimensions (All-but-the-Top's rule; 4 for a
    384-d ViT-S). Measured on the generated set (ARI of the proposals against the kinds): 4 -> 0.50, 8 -> 0.47,
    16 -> 0.69, 24 -> 0.21 (too many take the kinds with them); on real-dev's annotated masks 4 -> 0.32 against
    0.28 without."""
    return max(1, round(dim / 100))


def project_out(x: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``x`` (float32 (n, d)) without its components along ``directions`` (orthonormal rows), in place, a chunk
    of rows at a time; returns ``x``."""
    if len(directions):
        for rows in _chunks(len(x)):
            x[rows] -= (x[rows] @ directions.T) @ directions
    return x


def whiten(embeddings: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Standardise each dimension over the masks, then L2-normalise each mask (float32, computed in float64).

    Temporaries are a chunk of rows, not the whole data; ``in_place`` (a float32 array) overwrites the input
    instead of returning a copy, so a project's embeddings are held once.
    """
    x = embeddings if in_place else np.array(embeddings, np.float32)
    if x.dtype != np.float32:
        raise TypeError(f"whiten in place needs float32 embeddings, not {x.dtype}")
    n = max(len(x), 1)
    mean = x.sum(axis=0, dtype=np.float64) / n
    squares = sum(((x[rows].astype(np.float64) - mean) ** 2).sum(axis=0) for rows in _chunks(len(x)))
    std = np.sqrt(squares / n)
    for rows in _chunks(len(x)):
        part = (x[rows].astype(np.float64) - mean) / (std + 1e-6)
        part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        x[rows] = part
    return x


def _distances(data: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(n, k) Euclidean distances, a chunk of rows at a time (torch.cdist of all rows at once makes a temporary
    as large as the data)."""
    out = torch.empty(len(data), len(centres), dtype=data.dtype)
    for rows in _chunks(len(data)):
        out[rows] = torch.cdist(data[rows], centres)
    return out


def kmeans(x: np.ndarray, k: int, restarts: int = 10, iterations: int = 100, seed: int = 0):
    """Lloyd's k-means with k-means++ seeding (scikit-learn's); the best of ``restarts`` runs by inertia.

    scikit-learn's rather than a hand-written one: the same clusterings within the seed spread, and faster, for
    the project's clustering and the segments proposals alike (docs/decisions.md#d-kmeans-library).
    Returns (labels (n,), centres (k, d), inertia).
    """
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    if not 1 <= k <= len(x):
        raise ValueError(f"Cannot make {k} clusters from {len(x)} masks; choose 1 <= K <= {len(x)}.")
    data = np.ascontiguousarray(x, dtype=np.float32)
    if not data.flags.writeable:
        data = data.copy()
    # copy_x=False: scikit-learn centres the data in place and restores it (last-bit differences) instead of
    # copying a project's embeddings
    model = KMeans(n_clusters=k, init="k-means++", n_init=restarts, max_iter=iterations, random_state=seed,
                   copy_x=False)
    with warnings.catch_warnings():  # fewer distinct points than K: cluster_masks drops the empty classes
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data)
    return model.labels_, model.cluster_centers_.astype(np.float32), float(model.inertia_)


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Euclidean, scikit-learn's); 0 when there is a single cluster or every mask
    is its own (a singleton scores 0). The hand-written one it replaced gave the same values and was slightly
    faster, by hundredths of a second per K on the 2,000-mask sample: not a margin that matters."""
    from sklearn.metrics import silhouette_score

    clusters = len(np.unique(labels))
    if clusters < 2 or clusters == len(x):
        return 0.0
    return float(silhouette_score(x, labels, metric="euclidean"))


MIN_MASKS_PER_CLASS = 3  # a suggested class has this many masks on average: with 19 masks the silhouette
# kept rising to the cap (K = 12, classes of one or two masks), which no reviewer wants to name
SILHOUETTE_RUNS = 5  # k-means runs per K (one k-means++ start each: the runs are the restarts, and 3 starts each
# decided alike on 7 projects at 2-4x the time); one run's curve is jagged enough to move the best K by 4
MIN_AGREEMENT = 4  # of those runs, how many must find the suggested K best on their own for it to stand out
# (real-dev's mixed photos: 1-3 of 5 in both precisions; feral_cats, the generated set and the demo: 5 of 5)


@dataclass(frozen=True)
class KSuggestion:
    k: int
    silhouettes: dict  # K -> mean silhouette over SILHOUETTE_RUNS k-means seeds
    stands_out: bool  # False: no K stands out, and k is the largest allowed (steady under rounding)


def suggest_k(x: np.ndarray, k_range=(2, MAX_SUGGESTED_K), seed: int = 0, max_samples: int = 2000,
              masks: int | None = None) -> KSuggestion:
    """The K with the best mean silhouette over ``k_range`` (on a subsample for large sets), at most one class
    per MIN_MASKS_PER_CLASS of the ``masks`` the classes will hold (default: the rows of ``x``), if it stands
    out: best in at least MIN_AGREEMENT of the SILHOUETTE_RUNS k-means runs on its own, and not the range's last
    (the silhouette of structureless masks keeps rising with K). Otherwise the best is a draw that rounding flips
    (real-dev: K 8 in float32, 4 in bfloat16), and K is the largest allowed: classes a reviewer merges in one
    action each, where splitting a class is work (real-dev: mIoU 0.31-0.41 at K 8-12, 0.20-0.31 at K 5-6)."""
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= max_samples else x[rng.choice(len(x), max_samples, replace=False)]
    upper = min(k_range[1], len(sample) - 1, (len(x) if masks is None else masks) // MIN_MASKS_PER_CLASS)
    ks = list(range(k_range[0], upper + 1))
    if not ks:
        return KSuggestion(1, {}, True)
    runs = np.array([[silhouette(sample, kmeans(sample, k, restarts=1, seed=seed + run)[0]) for k in ks]
                     for run in range(SILHOUETTE_RUNS)])
    best = int(np.argmax(runs.mean(axis=0)))
    agreeing = int((runs.argmax(axis=1) == best).sum())
    scores = {k: float(v) for k, v in zip(ks, runs.mean(axis=0))}
    if agreeing >= MIN_AGREEMENT and (ks[best] < upper or len(ks) == 1):
        return KSuggestion(ks[best], scores, True)
    return KSuggestion(upper, scores, False)


@dataclass
class Clustering:
    labels: np.ndarray  # (n,) cluster id per mask
    confidence: np.ndarray  # (n,) in [0, 1]: margin between the nearest and second-nearest centre
    centres: np.ndarray  # (k, d) in the whitened space
    sizes: list  # masks per cluster
    representatives: list  # per cluster, mask indices nearest its centre, best first
    suggestion: KSuggestion  # the suggested K and the silhouettes behind it, for the report


def cluster_masks(embeddings: np.ndarray, k: int | None = None, seed: int = 0, restarts: int = 10,
                  n_representatives: int = 6, in_place: bool = False, fit_rows: np.ndarray | None = None) -> Clustering:
    """Cluster mask embeddings into ``k`` pseudo-classes (``None``: the K suggested on the fitted rows);
    ``fit_rows`` ((n,) bool, e.g. :func:`fitted_rows`): k-means (and the K suggestion) on those rows only, every
    mask then in the class of its nearest centre (None: all rows); ``in_place``: whiten the (float32) embeddings
    in their own array instead of a copy (:func:`whiten`)."""
    if len(embeddings) == 0:
        raise ValueError("No object masks to cluster: every image was skipped or gave no proposal.")
    x = whiten(embeddings, in_place=in_place)
    fit = x if fit_rows is None or fit_rows.all() else x[fit_rows]
    suggestion = suggest_k(fit, seed=seed, masks=len(x)) if len(fit) > 2 else KSuggestion(1, {}, True)
    k = suggestion.k if k is None else k
    k = min(k, len(fit))
    labels, centres, _ = kmeans(fit, k, restarts=restarts, seed=seed)
    dist = _distances(torch.from_numpy(x), torch.from_numpy(centres)).numpy()
    if fit is not x:
        labels = dist.argmin(axis=1)
    used = np.unique(labels)  # identical embeddings can leave a centre without members: no empty classes
    if len(used) < k:
        labels, centres, k, dist = np.searchsorted(used, labels), centres[used], len(used), dist[:, used]
    if k > 1:
        nearest = np.sort(dist, axis=1)
        confidence = (nearest[:, 1] - nearest[:, 0]) / np.maximum(nearest[:, 1] + nearest[:, 0], 1e-12)
    else:
        confidence = np.ones(len(x))
    sizes = [int((labels == j).sum()) for j in range(k)]
    representatives = []
    for j in range(k):
        members = np.flatnonzero(labels == j)
        representatives.append(members[np.argsort(dist[members, j])][:n_representatives].tolist())
    return Clustering(labels.astype(int), confidence.astype(np.float32), centres, sizes, representatives,
                      suggestion)
