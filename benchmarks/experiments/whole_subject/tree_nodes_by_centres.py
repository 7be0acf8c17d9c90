"""Can the learnt centres pick the missed objects out of the candidate tree? Each image's candidate tree
(engine.method.hierarchy, Ward over its cached tokens; nodes of 4 patches up to 80 % of the grid) scored by the
agreement of each node's own depth with the depth the centre model predicts (engine.method.centres, fitted on the
project's final objects; both at 4x the patch grid), then three ways to use the nodes, beside the project's final
objects (CorLoc / box AP50 / mask AP50 / recall@0.5):

* ``alone``: the best-agreeing nodes, greedily, none more than 20 % under one already taken, top 10;
* ``added``: the same top 20 added below every final object, except those matching one at IoU 0.5 (they may
  overlap final objects, which the project's label map cannot hold: an upper bound);
* ``free``: nodes at most 20 % under the final objects, their free pixels only, added below them (a label map can);
* ``carved``: inside each final object whose own agreement is under 0.5, its nodes (>= 80 % inside, at most 60 %
  of it, agreement >= 0.6) cut out as objects of their own.

Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/tree_nodes_by_centres.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from skimage.transform import resize  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.hierarchy import candidate_tree  # noqa: E402

UP = 4  # node agreement at 4x the patch grid: a node of 4 patches has 64 pixels to correlate over

images, loaded, fitted = common.fitted_from_command_line(sys.argv)
model = fitted.fit.model


def scored_nodes(name: str) -> dict:
    """The image's tree nodes of 4 patches to 80 % of the grid: their (n, gh, gw) patch masks, agreements and
    sizes."""
    features = fitted.features[name]
    gh, gw = features.grid_hw
    tree = candidate_tree(features.tokens, features.grid_hw)
    fine = model.depth_map(features.tokens, features.grid_hw, (gh * UP, gw * UP))
    nodes = [v for v in range(len(tree.parent)) if 4 <= tree.sizes[v] <= 0.8 * tree.patches]
    masks = np.stack([tree.patch_mask(v) for v in nodes])
    agree = []
    for patch_mask in masks:
        ys, xs = np.nonzero(patch_mask)
        window = slice(ys.min() * UP, (ys.max() + 1) * UP), slice(xs.min() * UP, (xs.max() + 1) * UP)
        agree.append(centres.depth_agreement(np.kron(patch_mask, np.ones((UP, UP), bool))[window], fine[window]))
    return {"masks": masks, "agree": np.array(agree), "sizes": tree.sizes[nodes]}


def upsampled(patch_mask: np.ndarray, hw: tuple) -> np.ndarray:
    return resize(patch_mask.astype(np.float32), hw, order=1, preserve_range=True, anti_aliasing=False) >= 0.5


def greedy(nodes: dict, top: int, allowed=lambda i: True) -> list:
    """The best-agreeing nodes, none more than 20 % under those already taken, at most ``top``."""
    used, picked = np.zeros(nodes["masks"].shape[1:], bool), []
    for i in np.argsort(-nodes["agree"]):
        mask = nodes["masks"][i]
        if len(picked) >= top:
            break
        if (mask & used).sum() > 0.2 * mask.sum() or not allowed(i):
            continue
        picked.append(i)
        used |= mask
    return picked


def stacked(masks, scores, extra, extra_scores, hw) -> real_dev.StagePrediction:
    extra = np.array(extra, bool).reshape((-1,) + hw)
    return real_dev.StagePrediction(np.concatenate([masks, extra]), np.concatenate([scores, extra_scores]), None)


def variant(kind: str, nodes_of: dict) -> dict:
    stage = {}
    for image in images:
        name = image.file_name
        if name not in loaded:
            continue
        masks, scores = loaded[name]
        nodes, hw = nodes_of[name], image.masks.shape[1:]
        floor = 0.5 * (scores.min() if len(scores) else 1.0)  # added objects rank below every final object
        if kind == "alone":
            picked = greedy(nodes, 10)
            extra = [upsampled(nodes["masks"][i], hw) for i in picked]
            stage[name] = stacked(np.zeros((0,) + hw, bool), np.zeros(0), extra, nodes["agree"][picked], hw)
        elif kind == "added":
            picked = greedy(nodes, 20)
            extra = [upsampled(nodes["masks"][i], hw) for i in picked]
            keep = [k for k, m in enumerate(extra)
                    if not len(masks) or real_dev._mask_iou_matrix(m[None], masks).max() < 0.5]
            stage[name] = stacked(masks, scores, [extra[k] for k in keep], floor * nodes["agree"][picked][keep], hw)
        elif kind == "free":
            taken = masks.any(0) if len(masks) else np.zeros(hw, bool)
            on_grid = resize(taken.astype(np.float32), nodes["masks"].shape[1:], order=1, anti_aliasing=True)
            picked = greedy(nodes, 10, lambda i, grid=on_grid, cells=nodes["masks"]: grid[cells[i]].sum()
                            <= 0.2 * cells[i].sum())
            extra = []
            for i in picked:
                free = upsampled(nodes["masks"][i], hw) & ~taken
                extra.append(free)
                taken |= free
            stage[name] = stacked(masks, scores, extra, floor * nodes["agree"][picked], hw)
        else:  # carved
            depth = fitted.depth[name]
            masks, extra, extra_scores = masks.copy(), [], []
            for j in range(len(masks)):
                ys, xs = np.nonzero(masks[j])
                if not len(ys):
                    continue
                box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
                if centres.depth_agreement(masks[j][box], depth[box]) >= 0.5:
                    continue
                on_grid = resize(masks[j].astype(np.float32), nodes["masks"].shape[1:], order=1, anti_aliasing=True)
                inside = [i for i in np.argsort(-nodes["agree"]) if nodes["agree"][i] >= 0.6
                          and on_grid[nodes["masks"][i]].sum() >= 0.8 * nodes["sizes"][i]
                          and nodes["sizes"][i] <= 0.6 * on_grid.sum()]
                used = np.zeros(on_grid.shape, bool)
                for i in inside:
                    if (nodes["masks"][i] & used).any():
                        continue
                    used |= nodes["masks"][i]
                    piece = upsampled(nodes["masks"][i], hw) & masks[j]
                    if piece.sum() >= 50:
                        masks[j] &= ~piece
                        extra.append(piece)
                        extra_scores.append(0.5 * float(scores.max()) * nodes["agree"][i])
            stage[name] = stacked(masks, scores, extra, np.array(extra_scores), hw)
    return stage


nodes_of = {image.file_name: scored_nodes(image.file_name) for image in images if image.file_name in loaded}
final = {name: real_dev.StagePrediction(masks, scores, None) for name, (masks, scores) in loaded.items()}
print(f"final objects: {common.figures(images, final)}")
for kind in ("alone", "added", "free", "carved"):
    print(f"tree nodes {kind}: {common.figures(images, variant(kind, nodes_of))}", flush=True)
