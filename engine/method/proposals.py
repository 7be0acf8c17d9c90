"""Object mask proposals from last-block ViT features.

Five methods (:data:`engine.method.names.PROPOSAL_METHODS`), each a pure function over one image's
:class:`~engine.method.features.ImageFeatures`:

* ``segments`` (the default): over-segmentation: k-means of the centred unit keys at several K, every connected
  region of every segment is a candidate (whole objects at small K, parts at larger K), ranked by how much the
  CLS token attends to it.
* ``split``: one normalized cut for the foreground (all objects), then each connected foreground part
  is cut again with keys centred on that part, as long as the cut is cheap, so touching objects of different
  kinds separate.
* ``ncut``: MaskCut-style repeated normalized cuts, several masks per image.
* ``seed``: MaskDistill's attention-seed mask (adapted from LOST), one mask per image.
* ``dense``: many small objects (nuclei, cells, tree crowns): a foreground map from the keys' first principal
  component, split into instances by a seeded watershed on its distance transform (:mod:`engine.method.dense`).

Why ``segments`` is the default, and the figures behind each parameter below: docs/decisions.md ("Proposals").

DINOv2's last-block keys share a large common component, which makes every affinity positive and the
graph-based methods grow to the whole frame. Subtracting the image's mean key first restores them (see
``key_matrix``); DINO v1 keys are used as is.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse.linalg import eigsh

from engine.device import single_threaded_lapack
from engine.masks import Proposals, component_containing, iou
from engine.method.backbones import centres_keys
from engine.method.features import ImageFeatures
from engine.method.names import PROPOSAL_METHODS  # the registry of method names owns the list
from engine.method.refine import refine_masks


def _proposal_input(value: np.ndarray | None, name: str) -> np.ndarray:
    """One of ImageFeatures' proposal inputs; features read from the cache carry none (has_proposal_inputs)."""
    if value is None:
        raise ValueError(f"these features carry no {name} (read from the cache): proposals need a forward pass")
    return value


def key_matrix(features: ImageFeatures, centre: bool) -> np.ndarray:
    keys = _proposal_input(features.keys, "keys").astype(np.float32)
    return keys - keys.mean(axis=0, keepdims=True) if centre else keys


def mask_contrast(unit_keys: np.ndarray, mask: np.ndarray) -> float:
    """Mean key cosine similarity inside the mask minus that across its border, clipped to [0, 1]."""
    inside = mask.ravel()
    if inside.all() or not inside.any():
        return 0.0
    fg, bg = unit_keys[inside], unit_keys[~inside]
    fg_mean, bg_mean = fg.mean(axis=0), bg.mean(axis=0)
    within = float(fg_mean @ fg_mean)  # mean pairwise cosine inside, self pairs included
    across = float(fg_mean @ bg_mean)
    return float(np.clip(within - across, 0.0, 1.0))


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-6)


def attention_mass_filter(scores: np.ndarray, mass: float) -> np.ndarray:
    """Zero the scores outside the smallest set of patches holding ``mass`` of the total (DINO's rule)."""
    order = np.argsort(-scores)
    cumulative = np.cumsum(scores[order]) / max(scores.sum(), 1e-12)
    kept = np.zeros_like(scores)
    top = order[: int(np.searchsorted(cumulative, mass)) + 1]
    kept[top] = scores[top]
    return kept


def seed_patch_mask(features: ImageFeatures, centre: bool, candidate_fraction: float = 0.4,
                    attention_mass: float = 0.5) -> np.ndarray:
    """MaskDistill's single mask: expand the most-attended patch through key-Gram affinities.

    g = CLS attention (mean over heads, outside 50 % mass zeroed); P = top 40 % of patches by g; seed s =
    argmax g; S = {p in P : G[s, p] > 0}; mask = sum_{p in S} G[p, :] > 0, keeping s's component.
    """
    gh, gw = features.grid_hw
    keys = key_matrix(features, centre)
    g = attention_mass_filter(_proposal_input(features.cls_attention, "CLS attention").mean(axis=0), attention_mass)
    n_candidates = max(1, int(round(candidate_fraction * g.size)))
    candidates = np.argsort(-g)[:n_candidates]
    seed = int(np.argmax(g))
    gram_seed = keys[candidates] @ keys[seed]
    similar = candidates[gram_seed > 0]
    mask = ((keys[similar] @ keys.T).sum(axis=0) > 0).reshape(gh, gw)
    return component_containing(mask, np.unravel_index(seed, (gh, gw)))


def _corner_count(mask: np.ndarray) -> int:
    return int(mask[0, 0]) + int(mask[0, -1]) + int(mask[-1, 0]) + int(mask[-1, -1])


DENSE_EIGEN_MAX = 256  # patches; dense eigh of 256 x 256 takes a few ms


def second_eigenvector(affinity: np.ndarray) -> np.ndarray:
    """Fiedler vector of the normalized cut, from the sparse solver (ms, where dense eigh takes seconds)."""
    degree = affinity.sum(axis=1)
    d_inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    normalized = d_inv_sqrt[:, None] * affinity * d_inv_sqrt[None, :]
    with single_threaded_lapack():
        if len(affinity) <= DENSE_EIGEN_MAX:
            # ARPACK restarts from a random vector (its own process-wide seed) when the start vector spans an
            # invariant subspace, which the near-block graphs of small parts often do: the same features then
            # gave different masks from call to call. Small problems are solved exactly instead.
            values, vectors = np.linalg.eigh(normalized)
            values, vectors = values[-2:], vectors[:, -2:]
        else:
            values, vectors = eigsh(normalized, k=2, which="LA", v0=np.ones(len(affinity)))
    second = vectors[:, np.argsort(values)[0]]
    return d_inv_sqrt * second


def _object_side(vector: np.ndarray, index: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """Which side of a cut is the object: the one holding the most extreme eigenvector entry (MaskCut),
    unless it holds 3 or more image corners (an object rarely does)."""
    side = vector > vector.mean()
    if not side[int(np.argmax(np.abs(vector)))]:
        side = ~side
    full = np.zeros(grid_hw[0] * grid_hw[1], bool)
    full[index[side]] = True
    return ~side if _corner_count(full.reshape(grid_hw)) >= 3 else side


def _linked(keys: np.ndarray, tau: float, eps: float) -> np.ndarray:
    unit_keys = _unit(keys)
    return np.where(unit_keys @ unit_keys.T > tau, 1.0, eps)


def ncut_value(affinity: np.ndarray, side: np.ndarray) -> float:
    """Normalized cut cost of splitting a graph into ``side`` and the rest (0: no edge cut, 2: worst)."""
    cut = affinity[np.ix_(side, ~side)].sum()
    return float(cut / max(affinity[side].sum(), 1e-12) + cut / max(affinity[~side].sum(), 1e-12))


def _linked_scaled(keys: np.ndarray, scale: float, tau: float, eps: float) -> np.ndarray:
    """Link patches whose dot product, over the image-level mean squared key norm ``scale``, exceeds tau.

    Unlike the cosine, this does not blow up the noise left after centring a uniform part to unit length:
    noise-only dot products stay far below tau, the graph stays uniform and its cut stays expensive.
    """
    return np.where(keys @ keys.T / max(scale, 1e-12) > tau, 1.0, eps)


def _split_part(keys: np.ndarray, part: np.ndarray, min_size: int, max_cut: float, tau: float, eps: float,
                depth: int, scale: float | None = None) -> list:
    """Recursively bisect a set of patches while the cut, on keys centred on the set, costs < max_cut.

    scale: the image's mean squared (centred) key norm; the part's graph links patches by dot product over
    it (``_linked_scaled``), so a uniform part (noise only after centring) is not shattered.
    """
    if part.size < 2 * min_size or depth == 0:
        return [part]
    if scale is None:
        scale = float((keys ** 2).sum(axis=1).mean())
    local = keys[part] - keys[part].mean(axis=0)
    graph = _linked_scaled(local, scale, tau, eps)
    if (graph > eps).all() or not (graph[~np.eye(len(graph), dtype=bool)] > eps).any():
        return [part]
    vector = second_eigenvector(graph)
    side = vector > vector.mean()
    if min(side.sum(), (~side).sum()) < min_size or ncut_value(graph, side) > max_cut:
        return [part]
    return (_split_part(keys, part[side], min_size, max_cut, tau, eps, depth - 1, scale)
            + _split_part(keys, part[~side], min_size, max_cut, tau, eps, depth - 1, scale))


def split_patch_masks(features: ImageFeatures, centre: bool, tau: float = 0.15, max_cut: float = 0.1,
                      min_area_fraction: float = 0.01, max_depth: int = 3, eps: float = 1e-5) -> list:
    """Foreground by one normalized cut, then its connected parts bisected while the cut is cheap.

    max_cut: a part is split only if the normalized cut cost (``ncut_value``) is below this: touching objects
        of different kinds are cut, a single object is not.
    min_area_fraction: parts with at most this share of the patches are dropped.
    """
    gh, gw = features.grid_hw
    keys = key_matrix(features, centre)
    scale = float((keys.astype(np.float64) ** 2).sum(axis=1).mean())
    everything = np.arange(gh * gw)
    graph = _linked(keys, tau, eps)
    if (graph > eps).all():
        return []
    foreground = np.zeros(gh * gw, bool)
    foreground[_object_side(second_eigenvector(graph), everything, (gh, gw))] = True
    regions, count = ndimage.label(foreground.reshape(gh, gw), structure=np.ones((3, 3)))
    min_size = max(2, int(min_area_fraction * gh * gw) + 1)
    masks = []
    for region in range(1, count + 1):
        part = np.flatnonzero(regions.ravel() == region)
        if part.size < min_size:
            continue
        for piece in _split_part(keys, part, min_size, max_cut, tau, eps, max_depth, scale):
            mask = np.zeros(gh * gw, bool)
            mask[piece] = True
            masks.append(mask.reshape(gh, gw))
    return masks


def _kmeans_labels(x: np.ndarray, k: int, seed: int, iterations: int = 30, restarts: int = 2) -> np.ndarray:
    from engine.method.clustering import kmeans  # scikit-learn's (k-means++ seeding), deterministic for ``seed``
    return kmeans(x, k, restarts=restarts, iterations=iterations, seed=seed)[0]


def region_candidates(labels: np.ndarray, min_size: int, max_size: int, max_corners: int = 1) -> list:
    """Every 8-connected region of every label of a (gh, gw) label map, holes filled, as a candidate mask.

    min_size / max_size: regions outside [min_size, max_size] patches are skipped (noise / background).
    max_corners: regions touching more image corners than this are background (an object rarely does).
    """
    found = []
    for value in np.unique(labels):
        regions, count = ndimage.label(labels == value, structure=np.ones((3, 3)))
        for region in range(1, count + 1):
            mask = regions == region
            if not min_size <= mask.sum() <= max_size or _corner_count(mask) > max_corners:
                continue
            found.append(ndimage.binary_fill_holes(mask))
    return found


def dedupe_masks(masks: list, max_iou: float = 0.8) -> list:
    """Drop each mask overlapping an earlier kept one by IoU above ``max_iou`` (the same region at two K)."""
    kept: list = []
    for mask in masks:
        if all(iou(mask, other) <= max_iou for other in kept):
            kept.append(mask)
    return kept


def segment_patch_masks(features: ImageFeatures, centre: bool, ks=(2, 3, 4, 6, 8),
                        min_area_fraction: float = 0.004, max_area_fraction: float = 0.5,
                        seed: int = 0) -> list:
    """Candidates from an over-segmentation: k-means of the unit (centred) keys at each K in ``ks``, every
    connected region a candidate; duplicates across K dropped.

    ks: small K give whole objects, larger K their parts and small objects.
    min_area_fraction: regions of at most this share of the patches are noise (0.4 %: 4 patches at 32 x 32).
    max_area_fraction: regions larger than this share of the patches are background.
    """
    gh, gw = features.grid_hw
    unit_keys = _unit(key_matrix(features, centre))
    min_size = max(2, int(min_area_fraction * gh * gw) + 1)
    max_size = int(max_area_fraction * gh * gw)
    candidates = []
    for k in ks:
        if k >= len(unit_keys):
            continue
        labels = _kmeans_labels(unit_keys, k, seed).reshape(gh, gw)
        candidates += region_candidates(labels, min_size, max_size)
    return dedupe_masks(candidates)


def ncut_patch_masks(features: ImageFeatures, centre: bool, max_masks: int = 3, tau: float = 0.15,
                     min_area_fraction: float = 0.01, max_overlap_iou: float = 0.5,
                     eps: float = 1e-5) -> list:
    """MaskCut: repeated normalized cuts on the key-similarity graph, blanking each found object.

    tau: cosine similarity above which two patches are linked (MaskCut's 0.15).
    min_area_fraction: masks covering at most this share of the patches are dropped.
    max_overlap_iou: a mask overlapping an earlier one by more than this is dropped.
    """
    gh, gw = features.grid_hw
    linked = _linked(key_matrix(features, centre), tau, eps)
    remaining = np.ones(gh * gw, bool)
    found: list = []
    for _ in range(max_masks):
        index = np.flatnonzero(remaining)
        if index.size < 4:
            break
        graph = linked[np.ix_(index, index)]
        if (graph > eps).all():  # everything left is linked to everything: no structure to cut
            break
        vector = second_eigenvector(graph)
        full = np.zeros(gh * gw, bool)
        full[index[_object_side(vector, index, (gh, gw))]] = True
        inside = np.flatnonzero(full[index])
        if inside.size == 0:
            break
        seed = int(inside[np.argmax(np.abs(vector[inside]))])
        grid = component_containing(full.reshape(gh, gw), np.unravel_index(index[seed], (gh, gw)))
        remaining &= ~grid.ravel()
        if grid.sum() <= min_area_fraction * gh * gw:
            continue
        if any(iou(grid, earlier) > max_overlap_iou for earlier in found):
            continue
        found.append(grid)
    return found


def resolve_overlaps(proposals: Proposals, min_area_fraction: float) -> Proposals:
    """Each pixel goes to the highest-scoring mask covering it; masks left too small are dropped."""
    order = np.argsort(-proposals.scores, kind="stable")
    proposals = proposals.filter(order)
    claimed = np.zeros(proposals.masks.shape[1:], bool)
    masks = proposals.masks.copy()
    keep = []
    min_pixels = min_area_fraction * claimed.size
    for i in range(len(proposals)):
        masks[i] &= ~claimed
        if masks[i].sum() > min_pixels:
            keep.append(i)
            claimed |= masks[i]
    proposals.masks = masks
    return proposals.filter(keep)


def attention_ratio(features: ImageFeatures, patch_mask: np.ndarray) -> float:
    """Mean CLS attention inside the mask over the image's mean: above 1 for salient objects."""
    attention = _proposal_input(features.cls_attention, "CLS attention").mean(axis=0)
    return float(attention[patch_mask.ravel()].mean() / max(attention.mean(), 1e-12))


def propose(image: np.ndarray, features: ImageFeatures, family: str, method: str = "split",
            max_masks: int = 3, min_area_fraction: float = 0.01, min_refine_iou: float = 0.5,
            min_attention_ratio: float = 0.5, max_segments: int = 12,
            object_size: float | None = None, seed: int = 0) -> Proposals:
    """Full-resolution object masks for one image, each with a score and its source.

    family: the backbone family ("dino" / "dinov2" / "dinov3"): DINOv2 / v3 keys are centred first (module docstring).
    min_refine_iou: an ncut mask that edge refinement changes beyond this IoU is dropped (MaskCut's CRF check).
    min_attention_ratio: ncut masks after the first that the CLS token attends less than this times the
        image average are dropped as background (sky, table).
    max_segments: ``segments`` keeps at most this many masks per image, the best ranked (each is one more mask
        to embed and cluster).
    object_size: ``dense`` only: typical object diameter in image pixels (None: estimated per image).
    seed: ``segments`` only: its k-means seed (the run's seed, so a run's seed spread covers the proposals).
    """
    centre = centres_keys(family)
    if method == "seed":
        patch_masks = [seed_patch_mask(features, centre)]
        sources = ["seed"]
    elif method == "ncut":
        patch_masks = ncut_patch_masks(features, centre, max_masks=max_masks, min_area_fraction=min_area_fraction)
        patch_masks = patch_masks[:1] + [m for m in patch_masks[1:]
                                         if attention_ratio(features, m) >= min_attention_ratio]
        sources = [f"ncut:{i}" for i in range(len(patch_masks))]
    elif method == "split":
        patch_masks = split_patch_masks(features, centre, min_area_fraction=min_area_fraction)
        sources = [f"split:{i}" for i in range(len(patch_masks))]
    elif method == "segments":
        return segment_proposals(image, features, centre, max_masks=max_segments, seed=seed)
    elif method == "dense":
        from engine.method.dense import dense_proposals
        return dense_proposals(image, features, centre, object_size=object_size)
    else:
        raise ValueError(f"Unknown proposal method {method!r}; choose one of {', '.join(PROPOSAL_METHODS)}.")
    if not patch_masks:
        return Proposals.empty(image.shape[:2], features.grid_hw)
    stacked = np.stack(patch_masks)
    unit_keys = _unit(key_matrix(features, centre))
    scores = np.array([mask_contrast(unit_keys, m) for m in stacked], np.float32)
    refined, coarse = refine_masks(image, stacked)
    changed = np.array([iou(r, c) < min_refine_iou for r, c in zip(refined, coarse)])
    if method == "seed":  # the single seed mask is always kept; fall back to its blocky version
        refined[changed] = coarse[changed]
        changed[:] = False
    proposals = Proposals(refined, stacked, scores, sources).filter(~changed)
    return resolve_overlaps(proposals, min_area_fraction)


def segment_proposals(image: np.ndarray, features: ImageFeatures, centre: bool, max_masks: int = 12,
                      min_attention_ratio: float = 1.0, min_area_fraction: float = 0.001,
                      max_area_fraction: float = 0.8, seed: int = 0) -> Proposals:
    """``segments`` method: over-segmentation candidates, refined, ranked by CLS attention, overlaps resolved.

    Ranked by attention ratio: how much more than average the CLS token attends to the mask.
    min_attention_ratio: candidates the CLS token attends less than this times the image average are background.
    min_area_fraction: a mask left smaller than this share of the image after overlaps are resolved is dropped.
    max_area_fraction: regions larger than this share of the patches are background (0.8 keeps large objects).
    """
    patch_masks = segment_patch_masks(features, centre, max_area_fraction=max_area_fraction, seed=seed)
    if not patch_masks:
        return Proposals.empty(image.shape[:2], features.grid_hw)
    stacked = np.stack(patch_masks)
    scores = np.array([attention_ratio(features, m) for m in stacked], np.float32)
    keep = scores >= min_attention_ratio
    if not keep.any():
        return Proposals.empty(image.shape[:2], features.grid_hw)
    stacked, scores = stacked[keep], scores[keep]
    refined, _ = refine_masks(image, stacked)
    sources = [f"segments:{i}" for i in range(len(stacked))]
    proposals = resolve_overlaps(Proposals(refined, stacked, scores, sources), min_area_fraction)
    proposals = proposals.filter(np.arange(min(max_masks, len(proposals))))
    # scores stay in [0, 1] like the other methods: ratio r -> r / (1 + r) keeps the order
    proposals.scores = (proposals.scores / (1.0 + proposals.scores)).astype(np.float32)
    return proposals
