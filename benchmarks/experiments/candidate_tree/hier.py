"""Connectivity-constrained Ward merging of patch features: a binary tree of regions."""
import heapq
import numpy as np


def ward_tree(x: np.ndarray, grid_hw: tuple):
    """x (n, d) features of a (gh, gw) patch grid. Returns (parent (2n-1,), children (n-1, 2), sizes (2n-1,),
    heights (2n-1,)): node i < n is patch i; node n + t is the t-th merge."""
    gh, gw = grid_hw
    n = gh * gw
    x = x.astype(np.float64)
    mean = {i: x[i].copy() for i in range(n)}
    size = np.ones(2 * n - 1)
    parent = np.full(2 * n - 1, -1)
    children = np.zeros((n - 1, 2), int)
    height = np.zeros(2 * n - 1)
    idx = np.arange(n).reshape(gh, gw)
    adj = {i: set() for i in range(n)}
    for a, b in list(zip(idx[:, :-1].ravel(), idx[:, 1:].ravel())) + list(zip(idx[:-1].ravel(), idx[1:].ravel())):
        adj[a].add(b); adj[b].add(a)

    def cost(a, b):
        d = mean[a] - mean[b]
        return size[a] * size[b] / (size[a] + size[b]) * float(d @ d)

    heap = [(cost(a, b), a, b) for a in adj for b in adj[a] if a < b]
    heapq.heapify(heap)
    alive = set(range(n))
    nxt = n
    while heap and nxt < 2 * n - 1:
        c, a, b = heapq.heappop(heap)
        if a not in alive or b not in alive:
            continue
        new = nxt; nxt += 1
        size[new] = size[a] + size[b]
        mean[new] = (size[a] * mean[a] + size[b] * mean[b]) / size[new]
        parent[a] = parent[b] = new
        children[new - n] = (a, b)
        height[new] = c
        alive -= {a, b}; alive.add(new)
        nb = (adj.pop(a) | adj.pop(b)) - {a, b}
        adj[new] = nb
        for m in nb:
            adj[m] -= {a, b}; adj[m].add(new)
            heapq.heappush(heap, (cost(new, m), min(new, m), max(new, m)))
        del mean[a], mean[b]
    return parent, children, size, height


def node_masks(children: np.ndarray, n: int, grid_hw: tuple, min_size: int, max_size: int):
    """Patch masks (k, gh, gw) of tree nodes with min_size <= size <= max_size, and their node ids."""
    members = {}
    out, ids = [], []
    for t, (a, b) in enumerate(children):
        node = n + t
        ma = members.pop(a) if a >= n else [a]
        mb = members.pop(b) if b >= n else [b]
        m = ma + mb
        members[node] = m
        if min_size <= len(m) <= max_size:
            mask = np.zeros(n, bool); mask[m] = True
            out.append(mask.reshape(grid_hw)); ids.append(node)
    return (np.stack(out) if out else np.zeros((0, *grid_hw), bool)), ids
