"""Known-answer tests for engine.method.clustering on planted Gaussian blobs (no model, no weights)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from engine.method.clustering import (
    cluster_masks,
    dominant_direction_count,
    dominant_directions,
    fitted_rows,
    kmeans,
    project_out,
    silhouette,
    stack_rows,
    suggest_k,
    top_rows,
    whiten,
)

D = 384


def planted_blobs(k=4, sizes=(20, 40), seed=0, extra=None):
    """k blobs in 384-d; each dimension in its own units (scales 0.01 .. 100) and 24 dimensions of
    pure high-variance noise, so raw Euclidean k-means fails and per-dimension whitening is needed."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(sizes[0], sizes[1] + 1, size=k)
    centres = rng.normal(size=(k, D))
    labels = np.repeat(np.arange(k), counts)
    x = centres[labels] + 0.3 * rng.normal(size=(len(labels), D))
    noise_dims = rng.choice(D, 24, replace=False)
    x[:, noise_dims] = 30 * rng.normal(size=(len(labels), 24))
    scales = np.exp(rng.uniform(np.log(0.01), np.log(100), size=D))
    return (x * scales).astype(np.float32), labels, centres, scales, noise_dims


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cluster_masks_recovers_planted_blobs_exactly(seed):
    x, truth, *_ = planted_blobs(k=4, seed=seed)
    result = cluster_masks(x, k=4, seed=0)
    assert result.labels.shape == truth.shape
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1.0)
    # each planted group maps to exactly one label and the labels are distinct
    mapping = {int(g): set(result.labels[truth == g].tolist()) for g in range(4)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len({next(iter(v)) for v in mapping.values()}) == 4
    assert sorted(result.sizes) == sorted(np.bincount(truth).tolist())
    assert result.centres.shape == (4, D)


def test_whitening_is_what_makes_the_blobs_separable():
    x, truth, *_ = planted_blobs(k=4, seed=0)
    raw_labels, _, _ = kmeans(x, 4, seed=0)
    assert adjusted_rand_score(truth, raw_labels) < 0.5
    white_labels, _, _ = kmeans(whiten(x), 4, seed=0)
    assert adjusted_rand_score(truth, white_labels) == pytest.approx(1.0)


def test_whiten_standardises_then_normalises():
    x, *_ = planted_blobs(k=3, seed=4)
    w = whiten(x)
    assert w.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-5)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    np.testing.assert_allclose(w, z / np.linalg.norm(z, axis=1, keepdims=True), atol=1e-4)


def test_cluster_masks_is_deterministic_for_a_seed():
    x, *_ = planted_blobs(k=3, seed=7)
    x = x + np.random.default_rng(1).normal(size=x.shape).astype(np.float32) * x.std(axis=0) * 3  # ambiguous
    first = cluster_masks(x, k=5, seed=3)
    second = cluster_masks(x, k=5, seed=3)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.centres, second.centres)
    np.testing.assert_array_equal(first.confidence, second.confidence)
    assert first.representatives == second.representatives
    assert first.suggestion == second.suggestion


@pytest.mark.parametrize("k", [3, 4])
def test_suggest_k_finds_the_planted_number(k):
    x, *_ = planted_blobs(k=k, seed=k)
    suggestion = suggest_k(whiten(x), seed=0)
    assert suggestion.k == k and suggestion.stands_out
    scores = suggestion.silhouettes
    assert set(scores) == set(range(2, 13))
    assert scores[k] == max(scores.values())
    result = cluster_masks(x, k=None, seed=0)
    assert result.suggestion.k == k
    assert len(result.sizes) == k  # k=None uses the suggestion


def test_suggested_k_leaves_a_few_masks_per_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(19, 16)).astype(np.float32)  # no structure: the silhouette alone drifts upwards
    suggestion = suggest_k(whiten(x), seed=0)
    assert max(suggestion.silhouettes) == 19 // 3 and suggestion.k <= 6


def test_a_flat_silhouette_gives_the_largest_k_not_a_draw():
    """Masks with no cluster structure: no K stands out, so K is the largest allowed (one class per 3 masks, at
    most 12), and rounding-sized changes to the embeddings (what bfloat16 does) cannot move it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(65, 32)).astype(np.float32)
    suggestion = suggest_k(whiten(x), seed=0)
    assert not suggestion.stands_out and suggestion.k == 12
    rounded = x + rng.normal(size=x.shape).astype(np.float32) * 1e-3
    assert suggest_k(whiten(rounded), seed=0).k == 12
    assert suggest_k(whiten(x), seed=7).k == 12  # nor can the seed
    assert suggest_k(whiten(x[:20]), seed=0).k == 20 // 3


@pytest.mark.parametrize("curve, expected, stands_out", [
    (lambda k, run: 1.0 if k == 4 else 0.2, 4, True),  # a peak every run finds
    (lambda k, run: 0.1 * k, 12, False),  # still rising at the range's end: no peak in the range
    (lambda k, run: 0.5 if k == 3 + run else 0.2, 12, False),  # each run its own best: a draw
    (lambda k, run: 0.5 if k == 5 + (run == 4) else 0.2, 5, True),  # four runs of five agree
])
def test_the_suggestion_reads_the_silhouette_curves(monkeypatch, curve, expected, stands_out):
    from engine.method import clustering
    seeds = []

    def fake_kmeans(x, k, restarts, seed):
        seeds.append(seed)
        return np.arange(len(x)) % k, None, None
    monkeypatch.setattr(clustering, "kmeans", fake_kmeans)
    monkeypatch.setattr(clustering, "silhouette", lambda x, labels: curve(int(labels.max()) + 1, seeds[-1]))
    x = np.random.default_rng(0).normal(size=(65, 8)).astype(np.float32)
    suggestion = suggest_k(whiten(x), seed=0)
    assert (suggestion.k, suggestion.stands_out) == (expected, stands_out)



def test_no_class_is_left_empty():
    x = np.repeat(np.eye(3, 8, dtype=np.float32), [6, 6, 1], axis=0)  # 3 distinct embeddings, K = 5 asked
    result = cluster_masks(x, k=5, seed=0)
    assert len(result.sizes) == 3 and all(size > 0 for size in result.sizes)
    assert sorted(result.sizes) == [1, 6, 6] and set(result.labels.tolist()) == {0, 1, 2}


def test_confidence_is_low_midway_between_centres():
    x, truth, centres, scales, noise_dims = planted_blobs(k=4, seed=0)
    at_centres = centres.copy()
    at_centres[:, noise_dims] = 0.0
    midway = (at_centres[0] + at_centres[1]) / 2
    extra = np.vstack([at_centres, midway[None]]) * scales
    data = np.vstack([x, extra.astype(np.float32)])
    result = cluster_masks(data, k=4, seed=0)
    confidence = result.confidence
    assert confidence.dtype == np.float32
    assert np.all((confidence >= 0) & (confidence <= 1))
    n = len(x)
    centre_conf, mid_conf = confidence[n:n + 4], confidence[n + 4]
    assert mid_conf < 0.1
    assert centre_conf.min() > 3 * mid_conf
    assert centre_conf.min() > np.median(confidence[:n])  # the centres are surer than their members
    # the centre points still land in their own planted cluster
    for g in range(4):
        assert result.labels[n + g] == np.bincount(result.labels[:n][truth == g]).argmax()


def test_confidence_is_one_for_a_single_cluster():
    x, *_ = planted_blobs(k=2, seed=2)
    result = cluster_masks(x, k=1)
    assert np.all(result.labels == 0)
    np.testing.assert_array_equal(result.confidence, np.ones(len(x), np.float32))


def test_representatives_are_members_nearest_first():
    x, truth, *_ = planted_blobs(k=4, seed=1)
    result = cluster_masks(x, k=4, seed=0, n_representatives=5)
    w = whiten(x)
    assert len(result.representatives) == 4
    for j, reps in enumerate(result.representatives):
        members = np.flatnonzero(result.labels == j)
        assert len(reps) == min(5, len(members))
        assert set(reps) <= set(members.tolist())
        dist = np.linalg.norm(w[members] - result.centres[j], axis=1)
        rep_dist = np.linalg.norm(w[reps] - result.centres[j], axis=1)
        assert np.all(np.diff(rep_dist) >= -1e-6)  # nearest first
        assert rep_dist[-1] <= np.sort(dist)[len(reps) - 1] + 1e-6  # and they are the nearest ones


def test_kmeans_rejects_k_larger_than_the_points():
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"Cannot make 5 clusters from 3 masks"):
        kmeans(x, 5)
    with pytest.raises(ValueError, match=r"1 <= K <= 3"):
        kmeans(x, 0)


def test_cluster_masks_clamps_k_to_the_number_of_masks():
    # cluster_masks does not raise for k > n (documented behaviour: k = min(k, n)); each mask its own class
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    result = cluster_masks(x, k=5)
    assert sorted(result.labels.tolist()) == [0, 1, 2]
    assert result.sizes == [1, 1, 1]
    with pytest.raises(ValueError, match="K"):
        cluster_masks(x, k=0)


def test_cluster_masks_rejects_empty_input():
    with pytest.raises(ValueError, match="No object masks"):
        cluster_masks(np.zeros((0, D), np.float32), k=3)


def _silhouette_by_hand(x, labels):
    n = len(x)
    values = []
    for i in range(n):
        own = [j for j in range(n) if labels[j] == labels[i] and j != i]
        if not own:
            values.append(0.0)
            continue
        a = np.mean([np.linalg.norm(x[i] - x[j]) for j in own])
        b = min(np.mean([np.linalg.norm(x[i] - x[j]) for j in range(n) if labels[j] == c])
                for c in set(labels) if c != labels[i])
        values.append((b - a) / max(a, b))
    return float(np.mean(values))


def test_silhouette_on_four_points_in_two_pairs():
    x = np.array([[0.0], [1.0], [10.0], [11.0]], np.float32)
    labels = np.array([0, 0, 1, 1])
    # point 0: a = 1, b = (10 + 11) / 2 = 10.5 -> 9.5 / 10.5; point 1: a = 1, b = 9.5 -> 8.5 / 9.5
    expected = (9.5 / 10.5 + 8.5 / 9.5) / 2
    assert silhouette(x, labels) == pytest.approx(expected, rel=1e-5)
    assert silhouette(x, labels) == pytest.approx(_silhouette_by_hand(x, labels), rel=1e-5)
    # a bad split scores negative
    bad = np.array([0, 1, 0, 1])
    assert silhouette(x, bad) == pytest.approx(_silhouette_by_hand(x, bad), rel=1e-5)
    assert silhouette(x, bad) < 0


def test_silhouette_singletons_and_one_cluster():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0], [100.0, 0.0]], np.float32)
    labels = np.array([2, 7, 7, 9])  # arbitrary label values, two singletons score 0
    assert silhouette(x, labels) == pytest.approx(_silhouette_by_hand(x, labels), rel=1e-5)
    assert silhouette(x, np.zeros(4, int)) == 0.0


def test_kmeans_best_restart_is_no_worse_than_one_restart():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 5)).astype(np.float32)  # structureless: many local minima
    inertias = []
    for seed in range(4):
        labels, centres, best = kmeans(x, 8, restarts=10, seed=seed)
        _, _, single = kmeans(x, 8, restarts=1, seed=seed)  # the same first restart
        assert best <= single + 1e-6
        # the reported inertia is that of the returned labels and centres
        assert best == pytest.approx(float(((x - centres[labels]) ** 2).sum()), rel=1e-5)
        assert np.array_equal(labels, np.linalg.norm(x[:, None] - centres[None], axis=2).argmin(1))
        inertias.append((best, single))
    assert any(b < s - 1e-3 for b, s in inertias)  # restarts do help somewhere


def test_large_sets_are_clustered_in_chunks_with_the_same_result(monkeypatch):
    """Whitening, seeding and the distance steps work on a few rows at a time (memory of a chunk, not of the
    data): with chunks of 7 rows the clustering is exactly the one computed with all rows at once."""
    import engine.method.clustering as clustering

    x, *_ = planted_blobs(k=4, seed=2)
    whole = cluster_masks(x, k=4, seed=1)
    monkeypatch.setattr(clustering, "ROWS_PER_CHUNK", 7)
    assert len(x) > 7 * 3
    copy = x.copy()
    chunked = cluster_masks(copy, k=4, seed=1, in_place=True)
    np.testing.assert_array_equal(chunked.labels, whole.labels)
    np.testing.assert_allclose(chunked.centres, whole.centres, atol=1e-6)
    np.testing.assert_allclose(copy, whiten(x), atol=1e-6)  # whitened in its own array
    with pytest.raises(TypeError, match="float32"):
        whiten(x.astype(np.float64), in_place=True)


def test_stack_rows_allocates_once_and_grows_or_trims():
    blocks = [np.full((n, 3), n, np.float32) for n in (2, 0, 5, 1)]
    for expected in (0, 3, 8, 100):
        stacked = stack_rows(iter(blocks), expected)
        np.testing.assert_array_equal(stacked, np.concatenate(blocks))
    assert stack_rows(iter([]), 5).shape == (0, 0)


def test_top_rows_takes_each_images_best_masks_ties_in_row_order():
    groups = ["b", "a", "b", "a", "a", "c"]
    scores = [0.1, 0.5, 0.9, 0.7, 0.7, 0.2]
    assert top_rows(groups, scores, per_group=2).tolist() == [True, False, True, True, True, True]
    assert top_rows(groups, scores, per_group=1).tolist() == [False, False, True, True, False, True]
    assert top_rows([], [], per_group=2).tolist() == []


def test_fitted_rows_give_every_class_three_masks():
    groups = np.repeat(np.arange(11), 6)  # real-dev: 11 photos, about 6 proposals each
    scores = np.tile(np.linspace(1, 0, 6), 11)
    assert fitted_rows(groups, scores, k=5).sum() == 22  # 2 an image give 5 classes 15
    assert fitted_rows(groups, scores, k=None).sum() == 44  # up to 12 suggested: 36 needed, 4 an image
    assert fitted_rows(groups, scores, k=None)[:6].tolist() == [True] * 4 + [False] * 2
    many = np.repeat(np.arange(200), 5)
    assert fitted_rows(many, np.tile(np.linspace(1, 0, 5), 200), k=None).sum() == 400


def test_classes_fitted_on_the_objects_are_not_spent_on_the_pieces():
    """Three kinds of object (one fitted row each per image) among many scattered pieces (background, parts):
    fitted on every row, k-means gives classes to the pieces and merges kinds; fitted on the objects, each kind
    is one class and every piece takes its nearest."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32))
    kinds = np.repeat(np.arange(3), 10)
    objects = centres[kinds] + 0.05 * rng.normal(size=(30, 32))
    pieces = 1.5 * rng.normal(size=(120, 32))
    x = np.concatenate([objects, pieces]).astype(np.float32)
    fitted = np.r_[np.ones(30, bool), np.zeros(120, bool)]
    on_all = cluster_masks(x, k=3, seed=0)
    assert adjusted_rand_score(kinds, on_all.labels[:30]) < 0.9
    on_objects = cluster_masks(x, k=3, seed=0, fit_rows=fitted)
    assert adjusted_rand_score(kinds, on_objects.labels[:30]) == pytest.approx(1.0)
    assert len(on_objects.labels) == 150 and sum(on_objects.sizes) == 150
    suggested = cluster_masks(x, seed=0, fit_rows=fitted)  # the K suggestion reads the fitted rows too
    assert suggested.suggestion.k == 3



def _tokens_with_shared_directions(rng, shared: int, rows: int = 4000, dim: int = 64):
    """Tokens of a folder: ``shared`` large orthonormal directions every region varies along (position, light)
    over small isotropic content; returns (tokens, the shared directions as rows)."""
    basis = np.linalg.qr(rng.normal(size=(dim, shared)))[0].T
    loads = rng.normal(size=(rows, shared)) * np.linspace(20, 10, shared)
    return (loads @ basis + rng.normal(size=(rows, dim))).astype(np.float32), basis


def test_dominant_directions_recover_the_shared_ones_from_blocks():
    rng = np.random.default_rng(0)
    tokens, shared = _tokens_with_shared_directions(rng, 3)
    found = dominant_directions(np.array_split(tokens, 7), 3)  # summed block by block
    assert found.shape == (3, 64)
    np.testing.assert_allclose(found @ found.T, np.eye(3), atol=1e-5)
    # the same subspace: each shared direction lies in the span of the found ones
    assert np.linalg.norm(shared @ found.T, axis=1) == pytest.approx(np.ones(3), abs=1e-2)
    assert dominant_directions([], 3).shape[0] == 0
    assert dominant_directions(np.array_split(tokens, 2)).shape == (1, 64)  # 64 dims: one per 100, at least 1
    assert [dominant_direction_count(d) for d in (64, 384, 768, 1024)] == [1, 4, 8, 10]


def test_kinds_show_once_the_shared_directions_are_projected_out():
    """Three kinds of mask (small offsets of content) whose pooled tokens also vary along the folder's large
    shared directions: the whitened k-means splits them by the shared directions; without those, by kind."""
    rng = np.random.default_rng(1)
    tokens, shared = _tokens_with_shared_directions(rng, 4)
    kinds = np.repeat(np.arange(3), 40)
    kind_offsets = 3.0 * rng.normal(size=(3, 64))
    masks = (kind_offsets[kinds] + rng.normal(size=(120, 4)) * 20 @ shared + rng.normal(size=(120, 64)))
    masks = masks.astype(np.float32)
    assert adjusted_rand_score(kinds, cluster_masks(masks.copy(), k=3, seed=0).labels) < 0.5
    directions = dominant_directions([tokens], 4)
    cleaned = project_out(masks.copy(), directions)
    np.testing.assert_allclose(cleaned @ directions.T, 0, atol=1e-3)
    assert adjusted_rand_score(kinds, cluster_masks(cleaned, k=3, seed=0).labels) == pytest.approx(1.0)
    untouched = masks.copy()
    assert project_out(untouched, directions[:0]) is untouched and np.array_equal(untouched, masks)
