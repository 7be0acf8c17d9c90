"""The candidate tree (engine.method.hierarchy) on a planted token grid with a known nesting: a background
around one object made of two distinct parts."""
from __future__ import annotations

import numpy as np
import pytest

from engine.method.hierarchy import candidate_tree

GRID = (12, 14)
PART_A = (slice(3, 9), slice(2, 7))  # 30 patches
PART_B = (slice(3, 9), slice(7, 10))  # 18 patches, beside A: together one object
DIM = 32


def nested_tokens(seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(gh * gw, DIM): background around one direction; the object's two parts share a direction and differ
    along another, so each part is closer to the other part than to the background."""
    rng = np.random.default_rng(seed)
    background, thing, part = (np.eye(DIM)[i] for i in range(3))
    grid = np.tile(3 * background, (*GRID, 1)).astype(np.float64)
    grid[PART_A] = 3 * thing + part
    grid[PART_B] = 3 * thing - part
    return (grid + rng.normal(0, noise, grid.shape)).reshape(-1, DIM).astype(np.float16)


def region(rows_cols) -> np.ndarray:
    mask = np.zeros(GRID, bool)
    mask[rows_cols] = True
    return mask


@pytest.fixture(scope="module")
def tree():
    return candidate_tree(nested_tokens(), GRID)


def test_the_object_node_has_the_two_parts_as_children(tree):
    part_a, part_b = region(PART_A), region(PART_B)
    node_a, node_b = tree.node_matching(part_a), tree.node_matching(part_b)
    node_object = tree.node_matching(part_a | part_b)
    assert tree.ious(part_a)[node_a] == 1.0 and tree.ious(part_b)[node_b] == 1.0
    assert tree.ious(part_a | part_b)[node_object] == 1.0  # each region is a node exactly
    assert tree.parent[node_a] == tree.parent[node_b] == node_object
    assert sorted(tree.children[node_object].tolist()) == sorted([node_a, node_b])
    assert tree.sizes[node_a] == 30 and tree.sizes[node_b] == 18 and tree.sizes[node_object] == 48
    # the object's sibling is the background, and the two make the root
    assert tree.parent[node_object] == tree.root
    background = tree.node_matching(~(part_a | part_b))
    assert np.array_equal(tree.patch_mask(background), ~(part_a | part_b))
    assert sorted(tree.children[tree.root].tolist()) == sorted([node_object, background])


def test_every_node_holds_exactly_its_childrens_patches(tree):
    n = GRID[0] * GRID[1]
    assert len(tree.parent) == 2 * n - 1 and tree.root == 2 * n - 2
    assert tree.parent[tree.root] == -1 and (tree.parent[:-1] > np.arange(2 * n - 2)).all()
    assert np.array_equal(np.sort(tree.members(tree.root)), np.arange(n))
    for leaf in range(n):
        assert tree.members(leaf).tolist() == [leaf] and (tree.children[leaf] == -1).all()
    for node in range(n, 2 * n - 1):
        a, b = tree.children[node]
        assert tree.parent[a] == tree.parent[b] == node
        joined = np.concatenate([tree.members(a), tree.members(b)])
        assert np.array_equal(np.sort(tree.members(node)), np.sort(joined))
        assert tree.sizes[node] == tree.sizes[a] + tree.sizes[b] == len(tree.members(node))
        assert tree.patch_mask(node).sum() == tree.sizes[node]
    merged = tree.heights[n:]
    assert (merged >= 0).all() and merged[-1] == merged.max()  # the background joins the object last


def test_grow_and_shrink_steps_walk_between_part_and_whole(tree):
    part_a, part_b = region(PART_A), region(PART_B)
    node_a, node_object = tree.node_matching(part_a), tree.node_matching(part_a | part_b)
    assert tree.larger(node_a)[0] == node_object
    assert tree.larger(node_object)[0] == tree.root
    assert tree.smaller(node_object)[0] == node_a  # the largest child
    # inside a part every merge adds little; the steps skip those to a region at least 1.25x smaller
    inside = tree.smaller(node_a)
    assert inside and all(tree.sizes[k] * 1.25 <= tree.sizes[node_a] for k in inside)
    assert set(tree.members(inside[0])) <= set(tree.members(node_a))
    assert tree.smaller(0) == [] and tree.larger(tree.root) == []


def test_a_mask_smaller_than_a_patch_matches_the_patch_it_lies_in(tree):
    coverage = np.zeros(GRID, np.float32)
    coverage[5, 4] = 0.3
    assert tree.node_matching(coverage) == 5 * GRID[1] + 4
    with pytest.raises(ValueError, match="grid"):
        tree.ious(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="patch vectors"):
        candidate_tree(nested_tokens()[:10], GRID)


def test_a_single_patch_grid_is_a_tree_of_one_node():
    single = candidate_tree(np.ones((1, 4), np.float32), (1, 1))
    assert single.root == 0 and single.members(0).tolist() == [0] and single.larger(0) == []


def brute_force_ward(vectors: np.ndarray, grid_hw: tuple) -> list:
    """The member sets of each merge, found by re-costing every touching pair of regions at every step."""
    gh, gw = grid_hw
    regions = {i: {i} for i in range(gh * gw)}
    merges = []
    while len(regions) > 1:
        best = None
        for a in regions:
            for b in regions:
                if a >= b or not any(_touch(p, q, gw) for p in regions[a] for q in regions[b]):
                    continue
                size_a, size_b = len(regions[a]), len(regions[b])
                gap = vectors[sorted(regions[a])].mean(0) - vectors[sorted(regions[b])].mean(0)
                cost = size_a * size_b / (size_a + size_b) * float(gap @ gap)
                if best is None or cost < best[0]:
                    best = (cost, a, b)
        _, a, b = best
        joined = regions.pop(a) | regions.pop(b)
        regions[max(regions, default=0) + 10_000 + len(merges)] = joined
        merges.append(frozenset(joined))
    return merges


def _touch(p: int, q: int, gw: int) -> bool:
    return abs(p // gw - q // gw) + abs(p % gw - q % gw) == 1


def test_the_merges_are_those_of_ward_recomputed_from_scratch():
    from engine.method.prompt import unit_rows

    vectors = np.random.default_rng(4).normal(size=(5 * 6, 8)).astype(np.float32)
    tree = candidate_tree(vectors, (5, 6))
    expected = brute_force_ward(unit_rows(vectors, True).astype(np.float64), (5, 6))
    found = [frozenset(tree.members(node).tolist()) for node in range(30, 59)]
    assert found == expected
