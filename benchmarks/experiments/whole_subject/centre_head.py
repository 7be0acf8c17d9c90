"""A small convolution over the token grid for the learnt centres, against the engine's ridge regression
(docs/decisions.md#d-centres-ceiling): is the ridge's R^2 (0.37-0.41 on feral_cats' annotated cats) the limit of
the patch grid, or of a linear read of it? Both fitted on a finished project's lone final objects (solidity >=
0.8, every patch at least half inside), scored by R^2 on the folder's annotated objects' patches (their depth: the
distance to their edge over their deepest). The head: 1x1 to 64 channels, two 3x3 layers, a sigmoid (a 7x7
receptive field); trained with a masked squared error where a lone object lies, AdamW, flips; with copy-paste
(``--paste``): a lone object's token block pasted beside another's, both depths as targets, the seam between
them a low depth the ridge never sees. Then what the engine does with a depth map: the annotated objects' unions
(touching objects joined) cut by engine.method.centres.centre_pieces at PEAK_DEPTH 0.4-0.6 and centres 0.75-1.5
typical lone radii apart, for the ridge's and the head's maps: lone objects kept whole, groups cut into as many
pieces as objects (more, fewer). Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centre_head.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.transform import resize  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402

from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.masks import LabelMasks  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.instances import object_solidities  # noqa: E402


def depth_map(stack: np.ndarray, grid_hw: tuple, keep) -> tuple:
    """(depth (gh, gw), where (gh, gw) bool) over the masks ``keep`` takes: a patch's depth in the object it lies
    at least half inside (the deepest where two overlap)."""
    masks = LabelMasks.from_stack(stack)
    depth, where = np.zeros(grid_hw[0] * grid_hw[1], np.float32), np.zeros(grid_hw[0] * grid_hw[1], bool)
    for position in range(len(masks.ids)):
        box, crop = masks.crop(position)
        if box is None or crop.sum() < centres.MIN_EXAMPLE_PIXELS or not keep(masks, position):
            continue
        cells, depths = centres.depth_targets(crop, box, masks.labels.shape, grid_hw)
        depth[cells] = np.maximum(depth[cells], depths)
        where[cells] = True
    return depth.reshape(grid_hw), where.reshape(grid_hw)


class Head(torch.nn.Module):
    def __init__(self, channels: int, width: int = 64, dropout: float = 0.2):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Dropout2d(dropout), torch.nn.Conv2d(channels, width, 1), torch.nn.GELU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x):
        return torch.sigmoid(self.layers(x))[:, 0]


def pasted(grids, depths, wheres, rng):
    """An image's grid with another image's lone-object block pasted where that image has no lone object; the
    pasted block's depths as targets there."""
    a, b = rng.choice(len(grids), 2, replace=False)
    grid, depth, where = grids[a].clone(), depths[a].clone(), wheres[a].clone()
    rows, cols = np.nonzero(wheres[b].numpy())
    if not len(rows):
        return grid, depth, where
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    h, w = r1 - r0, c1 - c0
    gh, gw = where.shape
    if h >= gh or w >= gw:
        return grid, depth, where
    # beside a lone object of image a where one exists: the seam is what the head should learn
    ar, ac = np.nonzero(wheres[a].numpy())
    if len(ar):
        top = int(np.clip(ar.min() + rng.integers(-h // 2, h // 2 + 1), 0, gh - h))
        left = int(np.clip(ac.max() + 1 - w // 3 if rng.random() < 0.5 else ac.min() - 2 * w // 3, 0, gw - w))
    else:
        top, left = int(rng.integers(0, gh - h + 1)), int(rng.integers(0, gw - w + 1))
    block = wheres[b][r0:r1, c0:c1]
    region = (slice(top, top + h), slice(left, left + w))
    grid[:, region[0], region[1]] = torch.where(block, grids[b][:, r0:r1, c0:c1], grid[:, region[0], region[1]])
    depth[region] = torch.where(block, depths[b][r0:r1, c0:c1], depth[region])
    where[region] = where[region] | block
    return grid, depth, where


def train(grids, depths, wheres, paste: bool, epochs: int, seed: int = 0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = Head(grids[0].shape[0])
    optimiser = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=0.05)
    order = [i for i in range(len(grids)) if wheres[i].any()]
    steps = epochs * (len(order) // 8)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 2e-3, total_steps=steps)
    head.train()
    for step in range(steps):
        batch = rng.choice(order, 8, replace=False)
        items = [(grids[i], depths[i], wheres[i]) for i in batch]
        if paste:
            items = items[:4] + [pasted(grids, depths, wheres, rng) for _ in range(4)]
        x = torch.stack([g for g, _, _ in items])
        y = torch.stack([d for _, d, _ in items])
        m = torch.stack([w for _, _, w in items]).float()
        if rng.random() < 0.5:
            x, y, m = x.flip(-1), y.flip(-1), m.flip(-1)
        loss = (((head(x) - y) ** 2) * m).sum() / m.sum().clamp(min=1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    head.eval()
    return head


def lone_radius_share(stack: np.ndarray) -> list:
    """Each lone final object's deepest point over sqrt(image area) (as the engine's typical radius is taken)."""
    masks = LabelMasks.from_stack(stack)
    solidity = object_solidities(masks)
    return [float(ndimage.distance_transform_edt(np.pad(masks.labels == i, 1)).max()) / np.sqrt(masks.labels.size)
            for i in masks.ids if solidity.get(int(i), 0.0) >= centres.LONE_SOLIDITY
            and (masks.labels == i).sum() >= centres.MIN_EXAMPLE_PIXELS]


def cut_decisions(stacks: list, grids: list, radius_share: float, spacing: float) -> tuple:
    """(lone objects kept whole, lone objects, groups cut into as many pieces as objects, into more, into fewer,
    groups) over the annotated objects' unions cut at the depth ``grids`` predict."""
    kept = lone = exact = more = fewer = groups = 0
    for stack, grid in zip(stacks, grids):
        depth = resize(grid, stack.shape[1:], order=1, preserve_range=True, anti_aliasing=False).astype(np.float32)
        distance = max(2, int(spacing * radius_share * np.sqrt(stack.shape[1] * stack.shape[2])))
        unions, count = ndimage.label(stack.any(0))
        for label in range(1, count + 1):
            region = unions == label
            objects = sum(1 for m in stack if m.sum() and (m & region).sum() > 0.5 * m.sum())
            rows, cols = np.nonzero(region)
            box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
            pieces = centres.centre_pieces(region[box], depth[box], distance)
            found = 1 if pieces is None else int(pieces.max())
            if objects == 1:
                kept, lone = kept + (found == 1), lone + 1
            elif objects > 1:
                exact, more, fewer, groups = exact + (found == objects), more + (found > objects), \
                    fewer + (found < objects), groups + 1
    return kept, lone, exact, more, fewer, groups


def main(project: Path, folder: Path, paste_too: bool) -> None:
    torch.set_num_threads(2)
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    loaded = common.final_objects(project, images)
    features_of = common.project_features(project)
    grids, lone_depths, lone_where, true_depths, true_where, ridge_inputs = [], [], [], [], [], []
    stacks, radii = [], []
    for image in images:
        features = features_of(image.file_name)
        gh, gw = features.grid_hw
        grid = np.asarray(features.tokens, np.float32).reshape(gh, gw, -1)
        grids.append(torch.from_numpy((grid - grid.mean(axis=(0, 1))).transpose(2, 0, 1).copy()))
        masks, _ = loaded[image.file_name]
        solidity = object_solidities(LabelMasks.from_stack(masks))
        d, w = depth_map(masks, (gh, gw), lambda m, p: solidity.get(int(m.ids[p]), 0.0) >= centres.LONE_SOLIDITY)
        lone_depths.append(torch.from_numpy(d))
        lone_where.append(torch.from_numpy(w))
        radii += lone_radius_share(masks)
        stacks.append(np.asarray(image.masks, bool))
        d, w = depth_map(stacks[-1], (gh, gw), lambda m, p: True)
        true_depths.append(d)
        true_where.append(w)
        ridge_inputs.append(centres.patch_inputs(features.tokens, (gh, gw)))
    print(f"{len(images)} images, {sum(int(w.sum()) for w in lone_where)} lone patches, "
          f"{sum(int(w.sum()) for w in true_where)} annotated patches", flush=True)
    y_true = np.concatenate([d[w] for d, w in zip(true_depths, true_where)])
    x_lone = np.concatenate([x[w.numpy().ravel()] for x, w in zip(ridge_inputs, lone_where)])
    y_lone = np.concatenate([d.numpy()[w.numpy()] for d, w in zip(lone_depths, lone_where)])
    x_true = np.concatenate([x[w.ravel()] for x, w in zip(ridge_inputs, true_where)])
    for alpha in (1000.0, 3000.0, 10000.0):
        r2 = r2_score(y_true, Ridge(alpha=alpha).fit(x_lone, y_lone).predict(x_true))
        print(f"ridge (the engine's inputs), alpha {alpha:g}: R^2 {r2:.3f}", flush=True)
    ridge = Ridge(alpha=3000.0).fit(x_lone, y_lone)
    maps = {"ridge": [ridge.predict(x).reshape(g.shape[1:]) for x, g in zip(ridge_inputs, grids)]}
    for paste in ((False, True) if paste_too else (False,)):
        for epochs in (10, 20, 30, 60):
            started = time.time()
            head = train(grids, lone_depths, lone_where, paste, epochs)
            with torch.no_grad():
                predicted = np.concatenate([head(g[None])[0].numpy()[w] for g, w in zip(grids, true_where)])
            print(f"conv head, {epochs} epochs, copy-paste {paste}: R^2 {r2_score(y_true, predicted):.3f} "
                  f"({time.time() - started:.0f} s)", flush=True)
            if epochs == 20 and not paste:
                with torch.no_grad():
                    maps["head, 20 epochs"] = [head(g[None])[0].numpy() for g in grids]
    radius_share = float(np.median(radii))
    print("cut decisions on the annotated objects' unions: lone kept whole / groups cut into as many (more, fewer)")
    for peak in (0.4, 0.5, 0.6):
        centres.PEAK_DEPTH = peak
        for spacing in (0.75, 1.0, 1.5):
            for name, predicted_maps in maps.items():
                kept, lone, exact, more, fewer, groups = cut_decisions(stacks, predicted_maps, radius_share, spacing)
                print(f"  peak {peak}, spacing {spacing}, {name}: {kept}/{lone}, {exact}/{groups} ({more}, {fewer})",
                      flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), "--paste" in sys.argv)
