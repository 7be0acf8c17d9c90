"""The learnt centres (engine.method.centres) taught background too: each lone object's examples are its inside
patches (target: depth) and, as today's model never sees, the ring of patches up to RING cells outside it that no
other final object covers (target 0). A model that knows where no object is should rank background regions and
parts down. Measured: the held-out R^2 (inside patches only, to compare with today's, and inside + ring), and the
pipeline's figures with each model (cut below solidity 0.7, then ranked by an agreement). Agreements: today's
correlation; the correlation times how much of the object's own depth the prediction holds (mean predicted /
mean own, at most 1). Run on a project predicted without the cut; nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_ring.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GroupKFold, cross_val_predict  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.masks import coverage_on_grid  # noqa: E402
from engine.method import centres  # noqa: E402

RING = int(os.environ.get("RING", "2"))
images, loaded, fitted = common.fitted_from_command_line(sys.argv)
label_masks, solidity, depth_today, fit = fitted.label_masks, fitted.solidity, fitted.depth, fitted.fit

rng = np.random.default_rng(0)
rows, targets, groups, inside_flag = [], [], [], []
for name, masks in label_masks.items():
    features = fitted.features[name]
    grid_hw = features.grid_hw
    inputs = centres.patch_inputs(features.tokens, grid_hw)
    covered = coverage_on_grid(masks.labels > 0, grid_hw)
    for position, object_id in enumerate(masks.ids):
        box, crop = masks.crop(position)
        if box is None or solidity[name].get(int(object_id), 0) < centres.LONE_SOLIDITY \
                or crop.sum() < centres.MIN_EXAMPLE_PIXELS:
            continue
        full = masks.labels == object_id
        cover = coverage_on_grid(full, grid_hw)
        deep = coverage_on_grid(np.where(full, centres.object_depth(full), 0), grid_hw)
        inside = cover >= 0.5
        ring = ndimage.binary_dilation(cover > 0, iterations=RING) & (cover == 0) & (covered - cover < 0.1)
        cells_in, cells_ring = np.flatnonzero(inside), np.flatnonzero(ring)
        if len(cells_in) > 48:
            cells_in = np.sort(rng.choice(cells_in, 48, replace=False))
        if len(cells_ring) > 48:
            cells_ring = np.sort(rng.choice(cells_ring, 48, replace=False))
        group = len(groups)  # each object's patches in one fold
        for cells, target, flag in ((cells_in, np.clip(deep.ravel()[cells_in] / cover.ravel()[cells_in], 0, 1), 1),
                                    (cells_ring, np.zeros(len(cells_ring)), 0)):
            rows.append(inputs[cells])
            targets.append(target)
            groups.append(np.full(len(cells), group))
            inside_flag.append(np.full(len(cells), flag))
x, y = np.concatenate(rows), np.concatenate(targets).astype(np.float32)
g, flag = np.concatenate(groups), np.concatenate(inside_flag).astype(bool)
print(f"{int(flag.sum())} inside rows, {int((~flag).sum())} ring rows", flush=True)


def r2(true, pred):
    return 1 - np.mean((true - pred) ** 2) / np.var(true)


best = None
for alpha in (1000.0, 3000.0, 10000.0):
    pred = cross_val_predict(Ridge(alpha=alpha), x, y, groups=g, cv=GroupKFold(5))
    print(f"alpha {alpha}: held-out R^2 inside + ring {r2(y, pred):.3f}, inside only {r2(y[flag], pred[flag]):.3f}",
          flush=True)
    if best is None or r2(y, pred) > best[0]:
        best = (r2(y, pred), alpha)
ridge = Ridge(alpha=best[1]).fit(x, y)
model = centres.CentreModel(ridge, fit.model.radius_share)
depth_ring = {name: model.depth_map(fitted.features[name].tokens, fitted.features[name].grid_hw, m.labels.shape)
              for name, m in label_masks.items()}


def held_fraction(crop, depth_crop):
    own = centres.object_depth(crop)[crop]
    return float(np.clip(depth_crop[crop].mean() / max(own.mean(), 1e-6), 0, 1))


def variant(depth, agreement) -> dict:
    stage = {}
    for name, masks in label_masks.items():
        scores = loaded[name][1]
        classes = np.zeros(len(masks), int)
        masks_out, _, scores, _ = centres.cut_groups(masks, classes, scores, depth[name],
                                                     fit.model.min_centre_distance(masks.labels.shape),
                                                     set(centres.group_candidates(masks, solidity[name])))
        factors = []
        for position in range(len(masks_out)):
            box, crop = masks_out.crop(position)
            factors.append(1.0 if box is None else max(0.05, agreement(crop, depth[name][box])))
        stage[name] = real_dev.StagePrediction(np.asarray(masks_out), np.asarray(scores) * np.array(factors), None)
    return stage


for label, depth in (("today's model", depth_today), (f"with a {RING}-cell background ring", depth_ring)):
    for agreement_name, agreement in (("correlation", centres.depth_agreement),
                                      ("correlation x depth held", lambda c, d: centres.depth_agreement(c, d)
                                       * held_fraction(c, d))):
        print(f"{label}, {agreement_name}: {common.figures(images, variant(depth, agreement))}", flush=True)
