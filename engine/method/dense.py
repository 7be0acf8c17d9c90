"""``dense`` proposals: every object of a crowded image (nuclei, cells, grains, tree crowns) at once.

One normalized cut per object does not scale to hundreds of objects. Instead (pure functions over arrays):

1. **Foreground map** on the patch grid: the first principal component of the image's centred keys
   (:func:`foreground_grid`), thresholded by Otsu and oriented so that the foreground is the *minority*
   side (objects rarely cover more of the frame than the background), turned into a soft probability.
2. **Upsampled** to image resolution (at most ``REFINE_MAX_SIDE`` on a side) with the guided filter of
   :mod:`engine.method.refine`, so the coarse patch staircase snaps onto the intensity edges of the image.
3. **Instances** by a seeded watershed on the (smoothed) distance transform of the foreground
   (:func:`split_instances`): one seed per distance peak at least ``min_distance`` apart, derived from the
   object size; optionally the image's intensity edges are added to the elevation. Every connected
   foreground part gets at least one seed, so a small isolated object is never lost.
4. **Scores**: mean foreground probability inside the instance x its solidity (area over convex-hull
   area: a merged pair or a ragged background piece scores lower than a clean round or elongated cell).

Cost: a few numpy / scipy passes over the image plus one watershed; no per-object eigensolver, so an
image with 500 objects costs about what one with 5 does. The object size (diameter, image pixels) comes
from the caller (``--object-size``) or is estimated from the foreground's distance transform
(:func:`estimate_object_size`).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.device import single_threaded_lapack
from engine.masks import LabelMasks, Proposals, SparseMasks
from engine.method.refine import grey_guide, guided_filter, upsample_soft, working_size

MIN_OBJECT_SIZE = 3.0  # pixels: below this a "diameter" is noise


def principal_projection(keys: np.ndarray, chunk: int = 32768) -> np.ndarray:
    """Projection of each (centred) key on the first principal component: (N,) float32.

    The D x D covariance (384 x 384 for ViT-S) is solved once, single-threaded (see engine.device). It is
    summed over chunks of rows, so no float32 / float64 copy of all keys is made (360,000 keys of a
    4,000 x 4,000 image at object size 20: 0.55 / 1.1 GB each).
    """
    n, dim = keys.shape
    mean = np.zeros(dim, np.float64)
    for start in range(0, n, chunk):
        mean += keys[start:start + chunk].astype(np.float64).sum(axis=0)
    mean /= max(n, 1)
    cov = np.zeros((dim, dim), np.float64)
    largest = 0.0
    for start in range(0, n, chunk):
        x = keys[start:start + chunk].astype(np.float32) - mean.astype(np.float32)
        if not np.isfinite(x).all():
            return np.zeros(n, np.float32)
        largest = max(largest, float(np.abs(x).max(initial=0.0)))
        x = x.astype(np.float64)
        cov += x.T @ x
    if not largest > 0:
        return np.zeros(n, np.float32)
    cov /= max(n - 1, 1)
    with single_threaded_lapack():
        _, vectors = np.linalg.eigh(cov)
    top = vectors[:, -1].astype(np.float32)
    out = np.empty(n, np.float32)
    for start in range(0, n, chunk):
        out[start:start + chunk] = (keys[start:start + chunk].astype(np.float32) - mean.astype(np.float32)) @ top
    return out


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size == 0 or values.max() == values.min():
        return float(values.max()) if values.size else 0.0
    return float(threshold_otsu(values))


def foreground_grid(keys: np.ndarray, grid_hw: tuple, min_separation: float = 3.0) -> np.ndarray:
    """Soft foreground probability (gh, gw) float32 in [0, 1] from the patch keys.

    The keys' first principal component, split at its Otsu threshold; the side holding fewer patches is the
    foreground. Probability = logistic of the distance to the midpoint of the two sides' means in units of a quarter
    of the gap between the two sides' means. When the two sides are not separated (gap below ``min_separation`` times
    the mean within-side spread: one uniform texture, e.g. an empty field) everything is background.
    The default 3.0 lies between a unimodal projection and real two-sided ones (docs/decisions.md,
    ``min_separation``).
    """
    gh, gw = grid_hw
    projection = principal_projection(keys)
    if projection.size < 4 or not np.ptp(projection) > 0:
        return np.zeros((gh, gw), np.float32)
    threshold = _otsu(projection)
    high = projection > threshold
    if high.sum() > (~high).sum():  # the foreground is the minority side
        projection, threshold, high = -projection, -threshold, ~high
    if not high.any() or high.all():
        return np.zeros((gh, gw), np.float32)
    fg_mean, bg_mean = projection[high].mean(), projection[~high].mean()
    spread = 0.5 * (projection[high].std() + projection[~high].std())
    gap = fg_mean - bg_mean
    if gap < min_separation * max(spread, 1e-12):
        return np.zeros((gh, gw), np.float32)
    # the midpoint of the two sides, not Otsu's value: with two tight clusters Otsu's threshold sits at the
    # edge of one of them and would put that whole side at probability 0.5
    z = (projection - 0.5 * (fg_mean + bg_mean)) / max(gap / 4.0, 1e-12)
    return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).reshape(gh, gw).astype(np.float32)


def foreground_image(image: np.ndarray, grid: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """(gh, gw) probability -> (h, w) at the working resolution (``engine.method.refine.working_size``), following
    the image's edges (guided filter with a radius of about half a patch cell)."""
    work_h, work_w = working_size(*image.shape[:2])
    guide = grey_guide(image, work_h, work_w)
    soft = upsample_soft(grid.astype(np.float32), work_h, work_w)
    radius = max(1, int(round(0.5 * work_h / grid.shape[0])))
    return np.clip(guided_filter(guide, soft, radius, eps), 0.0, 1.0).astype(np.float32)


def intensity_refined(grey: np.ndarray, probability: np.ndarray, object_size: float | None,
                      sure: float = 0.25, smoothing: float = 1.0) -> np.ndarray:
    """Feature foreground sharpened by the image's intensity with a *local* threshold (float32 in [0, 1]).

    The feature map says which pixels are surely object (p > 1 - ``sure``) and surely background
    (p < ``sure``); around every pixel (Gaussian window of about two object sizes) the mean grey of each
    is taken, and the pixel's own grey value is compared with their midpoint, in units of a quarter of their
    difference (sign included: dark objects on a bright field work too). Where the two means do not differ
    (no intensity contrast: textured objects, RGB photos) the feature probability is kept. Uneven
    illumination moves both local means together, so the threshold follows it, which a global Otsu
    threshold does not.
    """
    sigma_window = max(4.0, 2.0 * (object_size or 0.05 * max(grey.shape)))
    image = ndimage.gaussian_filter(grey.astype(np.float32), smoothing)
    fg = (probability > 1.0 - sure).astype(np.float32)
    bg = (probability < sure).astype(np.float32)
    if fg.sum() < 1 or bg.sum() < 1:
        return probability

    def local_mean(values, weights):
        num = ndimage.gaussian_filter(values * weights, sigma_window)
        den = ndimage.gaussian_filter(weights, sigma_window)
        return num / np.maximum(den, 1e-6), den

    mu_fg, w_fg = local_mean(image, fg)
    mu_bg, w_bg = local_mean(image, bg)
    # where one side is absent nearby, fall back to that side's image-wide mean
    global_fg, global_bg = float((image * fg).sum() / fg.sum()), float((image * bg).sum() / bg.sum())
    mu_fg = np.where(w_fg > 1e-3, mu_fg, global_fg)
    mu_bg = np.where(w_bg > 1e-3, mu_bg, global_bg)
    contrast = mu_fg - mu_bg
    noise = float(np.std(image[bg > 0] - ndimage.gaussian_filter(image, 2.0)[bg > 0])) + 1e-3
    z = (image - 0.5 * (mu_fg + mu_bg)) / np.where(np.abs(contrast) > 1e-6, contrast / 4.0, np.inf)
    pixel = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    reliability = np.clip(np.abs(contrast) / (4.0 * noise), 0.0, 1.0)
    return (reliability * pixel + (1.0 - reliability) * probability).astype(np.float32)


def estimate_object_size(foreground: np.ndarray) -> float | None:
    """Typical object diameter (pixels) of a binary foreground: twice the median height of the distance
    transform's peaks (one per object centre). None when there is no foreground."""
    from skimage.feature import peak_local_max

    if not foreground.any():
        return None
    distance = ndimage.distance_transform_edt(foreground)
    labels, _ = ndimage.label(foreground)
    peaks = peak_local_max(distance, min_distance=2, labels=labels, exclude_border=False)
    heights = distance[tuple(peaks.T)] if len(peaks) else np.array([distance.max()])
    return float(max(MIN_OBJECT_SIZE, 2.0 * np.median(heights)))


def split_instances(foreground: np.ndarray, object_size: float | None = None, image_grey: np.ndarray | None = None,
                    edge_weight: float = 0.0, min_distance_fraction: float = 0.35,
                    min_area_fraction: float = 0.1) -> np.ndarray:
    """Instance label map (int32, 0 background) of a binary foreground: seeded watershed on the distance.

    object_size: typical diameter in pixels (None: :func:`estimate_object_size`).
    min_distance_fraction: seeds at least this times the diameter apart (0.35: two discs of radius r
        overlapping slightly have centres ~2r = 5.7 x that apart; an ellipse twice as long as wide keeps one
        seed after the smoothing below).
    edge_weight: > 0 adds the grey image's gradient magnitude (scaled to the distance range) to the
        elevation, so a dim line between two touching bright objects also separates them.
    min_area_fraction: instances smaller than this share of a disc of the object size are dropped.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    foreground = np.asarray(foreground, bool)
    if not foreground.any():
        return np.zeros(foreground.shape, np.int32)
    # estimate_object_size gives a size for any foreground, and there is one here
    size = max(MIN_OBJECT_SIZE, float(object_size or estimate_object_size(foreground) or MIN_OBJECT_SIZE))
    radius = size / 2.0
    distance = ndimage.distance_transform_edt(foreground)
    smooth = ndimage.gaussian_filter(distance, sigma=max(0.5, radius / 4.0))
    components, count = ndimage.label(foreground)
    min_distance = max(1, int(round(min_distance_fraction * size)))
    peaks = peak_local_max(smooth, min_distance=min_distance, labels=components, exclude_border=False,
                           threshold_abs=0.15 * radius)
    markers = np.zeros(foreground.shape, np.int32)
    if len(peaks):
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # every component gets a seed: its deepest point (small or thin objects have no peak above the floor)
    seeded = np.zeros(count + 1, bool)
    seeded[components[markers > 0]] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    if missing.size:
        deepest = ndimage.maximum_position(distance, components, missing)
        start = int(markers.max())
        for offset, position in enumerate(deepest, start=1):
            markers[position] = start + offset
    elevation = -smooth
    if edge_weight > 0 and image_grey is not None:
        from skimage.filters import sobel

        edges = sobel(ndimage.gaussian_filter(image_grey.astype(np.float32), 1.0))
        elevation = elevation + edge_weight * smooth.max() * edges / max(float(edges.max()), 1e-12)
    labels = watershed(elevation, markers, mask=foreground).astype(np.int32)
    min_area = max(4.0, min_area_fraction * np.pi * radius * radius)
    areas = np.bincount(labels.ravel())
    small = np.flatnonzero(areas < min_area)
    small = small[small > 0]
    if small.size:
        labels[np.isin(labels, small)] = 0
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    values = np.unique(labels)
    values = values[values > 0]
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[values] = np.arange(1, len(values) + 1)
    return lookup[labels]


def instance_scores(labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Per instance 1..n: mean foreground probability x solidity, float32 in [0, 1]."""
    from skimage.measure import regionprops

    n = int(labels.max())
    if n == 0:
        return np.zeros(0, np.float32)
    index = np.arange(1, n + 1)
    mean_probability = np.asarray(ndimage.mean(probability, labels, index), np.float64)
    solidity = np.ones(n)
    for region in regionprops(labels):
        solidity[region.label - 1] = region.solidity if region.area > 2 else 0.0
    return np.clip(mean_probability * solidity, 0.0, 1.0).astype(np.float32)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map."""
    if labels.shape == (height, width):
        return labels
    rows = np.minimum((np.arange(height) * labels.shape[0]) // height, labels.shape[0] - 1)
    cols = np.minimum((np.arange(width) * labels.shape[1]) // width, labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


def patch_cells_from_labels(labels: np.ndarray, grid_hw: tuple, band_rows: int = 256) -> SparseMasks:
    """Patch masks of a label map's instances 1..n as :class:`SparseMasks`: the cells each instance covers
    at least half of, plus the cell it covers most (so an object smaller than a patch still has one).

    (instance, cell) pixel counts are gathered over bands of ``band_rows`` rows and summed as a sparse
    matrix: neither an (n, cells) table (2 GB for 3,000 objects on 300 x 300) nor per-pixel int64 copies of
    a 16-million-pixel map are made.
    """
    from scipy import sparse

    n = int(labels.max(initial=0))
    gh, gw = grid_hw
    if n == 0:
        return SparseMasks(np.zeros(1, np.int64), np.zeros(0, np.int64), grid_hw)
    height, width = labels.shape
    rows = np.minimum((np.arange(height) * gh) // height, gh - 1)
    cols = np.minimum((np.arange(width) * gw) // width, gw - 1)
    pieces = []
    for start in range(0, height, band_rows):
        band = labels[start:start + band_rows]
        inside = band > 0
        cells = (rows[start:start + band_rows, None] * gw + cols[None, :])[inside]
        pairs, counts = np.unique((band[inside].astype(np.int64) - 1) * (gh * gw) + cells, return_counts=True)
        pieces.append((pairs, counts))
    pairs = np.concatenate([p for p, _ in pieces])
    counts = np.concatenate([c for _, c in pieces])
    table = sparse.coo_matrix((counts, np.divmod(pairs, gh * gw)), shape=(n, gh * gw)).tocsr()
    table.sum_duplicates()
    table.sort_indices()
    instance = np.repeat(np.arange(n), np.diff(table.indptr))
    cell, counts = table.indices.astype(np.int64), table.data
    cell_area = np.bincount(rows, minlength=gh)[cell // gw] * np.bincount(cols, minlength=gw)[cell % gw]
    half = counts >= 0.5 * cell_area
    # each instance's most-covered cell (ties: the first cell), found by sorting on (instance, -count)
    order = np.lexsort((-counts, instance))
    first = order[np.r_[True, instance[order][1:] != instance[order][:-1]]]
    return SparseMasks.from_pairs(np.r_[instance[half], instance[first]], np.r_[cell[half], cell[first]], n,
                                  grid_hw)


def dense_label_map(image: np.ndarray, keys: np.ndarray, grid_hw: tuple, object_size: float | None = None,
                    edge_weight: float = 0.0, intensity: bool = True) -> tuple:
    """(labels (H, W) int32 at image resolution, scores (n,), probability at working resolution).

    intensity: sharpen the feature foreground with the image's local intensity (:func:`intensity_refined`).
    """
    height, width = image.shape[:2]
    grid = foreground_grid(keys, grid_hw)
    probability = foreground_image(image, grid)
    work_h, work_w = probability.shape
    size = None
    if object_size:
        size = float(object_size) * work_h / height  # image pixels -> working pixels
    grey = grey_guide(image, work_h, work_w)
    if intensity and grid.max() > 0.5:
        probability = intensity_refined(grey, probability, size)
    labels = split_instances(probability > 0.5, size, grey, edge_weight)
    scores = instance_scores(labels, probability)
    return resize_labels(labels, height, width), scores, probability


def dense_proposals(image: np.ndarray, features, centre: bool = True, object_size: float | None = None,
                    edge_weight: float = 0.0):
    """``dense`` method of :func:`engine.method.proposals.propose`: one Proposals entry per instance, best score first.

    ``centre`` is accepted for symmetry with the other methods; the principal component is taken on centred
    keys in every case (PCA centres by definition).
    """
    labels, scores, _ = dense_label_map(image, features.keys, features.grid_hw, object_size, edge_weight)
    n = int(labels.max())
    if n == 0:
        return Proposals.empty(image.shape[:2], features.grid_hw)
    order = np.argsort(-scores, kind="stable")
    masks = LabelMasks(labels, order + 1)  # one label map, not n full-resolution masks
    patch = patch_cells_from_labels(labels, features.grid_hw)[order]  # cell lists, not n grids
    return Proposals(masks, patch, scores[order], [f"dense:{i}" for i in range(n)])
