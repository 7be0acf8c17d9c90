"""The candidate tree of one image: its patch grid merged bottom-up into ever larger regions.

Connectivity-constrained Ward merging (agglomerative clustering where only regions that touch on the grid may
merge): every patch starts as a region; the two touching regions whose merge raises the within-region sum of
squares least, size_a * size_b / (size_a + size_b) * |mean_a - mean_b|^2, are merged, until one region is left.
The vectors are the image's cached patch tokens, centred on their mean (DINOv2 / v3) and scaled to unit length
(:func:`engine.method.prompt.unit_rows`, as a click's prompt reads them), so nested regions follow the object
parts and wholes the tokens tell apart. The review's grow and shrink walk this tree (engine.state.object_edits).

A pure function over arrays, numpy only: a heap of the touching pairs' costs; each merge re-costs only the new
region's neighbours, so ~1,000 patches take some tens of milliseconds.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from engine.method.prompt import unit_rows

GROW_STEP = 1.25  # grow / shrink move to a region at least this many times larger / smaller (see larger())


@dataclass(frozen=True)
class CandidateTree:
    """A binary tree over a (gh, gw) patch grid. Node ids: 0..n-1 are the patches (row-major), n..2n-2 the
    merges in the order they happened, so a parent's id is above its children's and the root is the last."""

    grid_hw: tuple  # (gh, gw)
    parent: np.ndarray  # (2n-1,) int: parent node, -1 for the root
    children: np.ndarray  # (2n-1, 2) int: the two merged nodes, -1 for a patch
    sizes: np.ndarray  # (2n-1,) int: patches under the node
    heights: np.ndarray  # (2n-1,) float: the Ward cost of the merge that made the node (0 for a patch)
    order: np.ndarray  # (n,) patches in an order where every node's members are one run
    start: np.ndarray  # (2n-1,) where that run begins

    @property
    def patches(self) -> int:
        return len(self.order)

    @property
    def root(self) -> int:
        return len(self.parent) - 1

    def members(self, node: int) -> np.ndarray:
        """The node's patches (flat indices into the grid), in the tree's order."""
        node = self._checked(node)
        return self.order[self.start[node]:self.start[node] + self.sizes[node]]

    def patch_mask(self, node: int) -> np.ndarray:
        """(gh, gw) bool: the node's patches."""
        mask = np.zeros(self.patches, bool)
        mask[self.members(node)] = True
        return mask.reshape(self.grid_hw)

    def ious(self, mask: np.ndarray) -> np.ndarray:
        """(2n-1,) IoU of every node with a (gh, gw) patch mask: bool, or float coverage in [0, 1] per patch (a
        soft IoU, so an object smaller than a patch still matches the patch it lies in)."""
        weights = np.asarray(mask, np.float64).reshape(-1)
        if weights.shape != (self.patches,):
            raise ValueError(f"a mask of {np.shape(mask)} cells for a tree over a {self.grid_hw} grid")
        running = np.concatenate([[0.0], np.cumsum(weights[self.order])])
        inside = running[self.start + self.sizes] - running[self.start]
        union = self.sizes + weights.sum() - inside
        return inside / np.maximum(union, 1e-12)

    def node_matching(self, mask: np.ndarray) -> int:
        """The node of highest IoU with a (gh, gw) patch mask (bool or coverage); ties: the smallest id."""
        return int(np.argmax(self.ious(mask)))

    def ancestors(self, node: int) -> list:
        """The node's parent, its parent, ... up to the root."""
        found, node = [], int(self.parent[self._checked(node)])
        while node >= 0:
            found.append(node)
            node = int(self.parent[node])
        return found

    def larger(self, node: int, step: float = GROW_STEP) -> list:
        """The node's ancestors with at least ``step`` times its patches, nearest first. The tree is binary and a
        merge often adds a single stray patch; a grow that moves to the bare parent would change nothing
        visible, so the first of these is the parent a user means."""
        return [a for a in self.ancestors(node) if self.sizes[a] >= step * self.sizes[node]]

    def smaller(self, node: int, step: float = GROW_STEP) -> list:
        """The chain of largest children below the node with at most 1 / ``step`` of its patches, nearest
        first (its largest child; when that is barely smaller, the largest child's largest child, ...)."""
        found, current = [], self._checked(node)
        while self.children[current, 0] >= 0:
            a, b = self.children[current]
            current = int(a if self.sizes[a] >= self.sizes[b] else b)
            if self.sizes[current] * step <= self.sizes[node]:
                found.append(current)
        return found

    def _checked(self, node: int) -> int:
        if not 0 <= int(node) < len(self.parent):
            raise IndexError(f"No node {node} in a tree of {len(self.parent)} nodes")
        return int(node)


def candidate_tree(patch_features: np.ndarray, grid_hw: tuple, centre: bool = True) -> CandidateTree:
    """The Ward tree of an image's (gh * gw, D) patch vectors (row-major on ``grid_hw``); ``centre``: subtract
    their mean first (DINOv2 / v3 features share a large common component)."""
    gh, gw = int(grid_hw[0]), int(grid_hw[1])
    if len(patch_features) != gh * gw or gh * gw == 0:
        raise ValueError(f"{len(patch_features)} patch vectors for a {gh} x {gw} grid")
    parent, children, sizes, heights = ward_merges(unit_rows(patch_features, centre).astype(np.float64), (gh, gw))
    order, start = _contiguous_order(children, sizes, gh * gw)
    return CandidateTree((gh, gw), parent, children, sizes, heights, order, start)


def ward_merges(vectors: np.ndarray, grid_hw: tuple) -> tuple:
    """(parent, children, sizes, heights) of the connectivity-constrained Ward merging of (n, D) vectors on a
    4-connected (gh, gw) grid; see :class:`CandidateTree` for the node ids."""
    gh, gw = grid_hw
    n = gh * gw
    total = 2 * n - 1
    means = np.zeros((total, vectors.shape[1]))
    means[:n] = vectors
    sizes = np.zeros(total, np.int64)
    sizes[:n] = 1
    parent = np.full(total, -1, np.int64)
    children = np.full((total, 2), -1, np.int64)
    heights = np.zeros(total)
    neighbours = _grid_neighbours(gh, gw)
    first, second = _grid_pairs(gh, gw)
    costs = 0.5 * ((vectors[first] - vectors[second]) ** 2).sum(axis=1)  # sizes 1 and 1: 1 * 1 / 2
    heap = list(zip(costs.tolist(), first.tolist(), second.tolist()))
    heapq.heapify(heap)
    alive = np.zeros(total, bool)
    alive[:n] = True
    new = n
    while heap and new < total:
        cost, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):  # a stale pair: one side merged since it was costed
            continue
        sizes[new] = sizes[a] + sizes[b]
        means[new] = (sizes[a] * means[a] + sizes[b] * means[b]) / sizes[new]
        parent[[a, b]] = new
        children[new] = (a, b)
        heights[new] = cost
        alive[[a, b]] = False
        alive[new] = True
        around = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        neighbours[new] = around
        if around:
            others = np.fromiter(around, np.int64, len(around))
            for other in others.tolist():
                neighbours[other] -= {a, b}
                neighbours[other].add(new)
            gaps = ((means[others] - means[new]) ** 2).sum(axis=1)
            weights = sizes[others] * sizes[new] / (sizes[others] + sizes[new])
            for cost_, other in zip((weights * gaps).tolist(), others.tolist()):
                heapq.heappush(heap, (cost_, other, new))
        new += 1
    if new < total:  # cannot happen on a full grid (it is connected); guards a caller's odd grid
        raise ValueError(f"the {gh} x {gw} grid fell apart into regions that do not touch")
    return parent, children, sizes, heights


def _grid_pairs(gh: int, gw: int) -> tuple:
    """(first, second) flat indices of every pair of 4-neighbouring cells, once each."""
    ids = np.arange(gh * gw).reshape(gh, gw)
    first = np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()])
    second = np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()])
    return first, second


def _grid_neighbours(gh: int, gw: int) -> dict:
    """{cell: set of its 4-neighbouring cells}."""
    neighbours: dict = {cell: set() for cell in range(gh * gw)}
    for a, b in zip(*(side.tolist() for side in _grid_pairs(gh, gw))):
        neighbours[a].add(b)
        neighbours[b].add(a)
    return neighbours


def _contiguous_order(children: np.ndarray, sizes: np.ndarray, n: int) -> tuple:
    """(order, start): the patches ordered so that every node's members are order[start[node]:][:size]. Parents
    have higher ids than their children, so one pass from the root down places every node."""
    start = np.zeros(len(sizes), np.int64)
    for node in range(len(sizes) - 1, n - 1, -1):
        a, b = children[node]
        start[a] = start[node]
        start[b] = start[node] + sizes[a]
    order = np.empty(n, np.int64)
    order[start[:n]] = np.arange(n)
    return order, start
