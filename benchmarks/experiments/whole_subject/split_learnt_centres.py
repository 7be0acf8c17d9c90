"""Cut a concave final object where a model of the folder's lone objects sees two or more centres (issue 20:
groups of touching cats cut as one; the waist cut of split_concave.py cut people and chairs as well).

The folder's compact final objects (solidity >= 0.8: mostly one object each) teach a ridge regression from a
patch's token (and the mean of its 3x3 neighbours) to its depth inside its object (the distance transform over
the object's largest depth, per patch). Inside each concave object (solidity < 0.7) the predicted depth's
peaks (at least PEAK high, at least half the typical compact object's radius apart) are its objects' centres;
two or more cut it by a watershed of the predicted depth. A group of like objects shows one centre per
object; a person or a chair, which the lone objects did not teach, should show one or none. Nothing is written.
Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/split_learnt_centres.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.feature import peak_local_max  # noqa: E402
from skimage.segmentation import watershed  # noqa: E402
from skimage.transform import resize  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GroupKFold, cross_val_score  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402

project_dir, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = common.scored_images(folder)
features_of = common.project_features(project_dir)
loaded = common.final_objects(project_dir, images)


def patch_inputs(name: str) -> tuple:
    features = features_of(name)
    gh, gw = features.grid_hw
    tokens = features.tokens.astype(np.float32).reshape(gh, gw, -1)
    tokens = tokens - tokens.mean((0, 1))
    context = ndimage.uniform_filter(tokens, size=(3, 3, 1), mode="nearest")
    return np.concatenate([tokens, context], 2).reshape(gh * gw, -1), (gh, gw)


def on_grid(mask: np.ndarray, grid_hw: tuple) -> np.ndarray:
    return resize(mask.astype(np.float32), grid_hw, order=1, anti_aliasing=True)


inputs = {name: patch_inputs(name) for name in loaded}
solidities = {name: [common.solidity(m) for m in masks] for name, (masks, _) in loaded.items()}
rows, targets, radii, groups = [], [], [], []
for name, (masks, _) in loaded.items():
    x, grid_hw = inputs[name]
    for m, sol in zip(masks, solidities[name]):
        if sol < 0.8 or m.sum() < 50:
            continue
        depth = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        radii.append(depth.max())
        cover = on_grid(m, grid_hw).reshape(-1)
        depth_grid = on_grid(depth / depth.max(), grid_hw).reshape(-1) / np.maximum(cover, 1e-6)
        inside = cover >= 0.5
        rows.append(x[inside])
        targets.append(np.clip(depth_grid[inside], 0, 1))
        groups.append(np.full(int(inside.sum()), len(radii)))
x_train, y_train = np.concatenate(rows), np.concatenate(targets)
held_out = {}
for alpha in (100.0, 1000.0, 3000.0, 10000.0):
    r2 = cross_val_score(Ridge(alpha=alpha), x_train, y_train, groups=np.concatenate(groups), cv=GroupKFold(5),
                         scoring="r2")
    held_out[alpha] = r2.mean()
    print(f"alpha {alpha}: R^2 on held-out objects {r2.mean():.2f} ({r2.min():.2f}-{r2.max():.2f})")
alpha = float(sys.argv[3]) if len(sys.argv) > 3 else max(held_out, key=held_out.get)
model = Ridge(alpha=alpha).fit(x_train, y_train)
typical_radius = float(np.median(radii))
print(f"alpha {alpha}: trained on {len(radii)} compact objects, {len(y_train)} patches; "
      f"typical radius {typical_radius:.0f} px; fit R^2 {model.score(x_train, y_train):.2f}")


def centre_pieces(mask: np.ndarray, name: str, peak: float) -> list:
    x, grid_hw = inputs[name]
    predicted = model.predict(x).reshape(grid_hw)
    depth = resize(predicted, mask.shape, order=1) * mask
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop, mask_crop = depth[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    peaks = peak_local_max(crop, min_distance=max(2, int(typical_radius * 0.5)), threshold_abs=peak,
                           labels=mask_crop.astype(int), exclude_border=False)
    if len(peaks) < 2:
        return [mask]
    markers = np.zeros(crop.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-crop, markers, mask=mask_crop)
    area = mask.sum()
    big = [i for i in range(1, len(peaks) + 1) if (labels == i).sum() >= 0.15 * area]
    if len(big) < 2:
        return [mask]
    markers[~np.isin(markers, big)] = 0  # pieces under 15 % go to their neighbours
    labels = watershed(-crop, markers, mask=mask_crop)
    out = []
    for i in big:
        full = np.zeros_like(mask)
        full[y0:y1, x0:x1] = labels == i
        out.append(full)
    return out


for peak in (None, 0.3, 0.35, 0.4, 0.45, 0.5):
    stage, cut = {}, 0
    for name, (masks, scores) in loaded.items():
        out_masks, out_scores = [], []
        for m, s, sol in zip(masks, scores, solidities[name]):
            parts = centre_pieces(m, name, peak) if peak is not None and sol < 0.7 else [m]
            cut += len(parts) > 1
            for part in parts:
                out_masks.append(part)
                # the project's scores hold the solidity weight already: a piece's replaces its object's
                out_scores.append(s * min(1.0, common.solidity(part) / 0.7) / min(1.0, sol / 0.7) if len(parts) > 1
                                  else s)
        stage[name] = real_dev.StagePrediction(np.array(out_masks) if out_masks else masks, np.array(out_scores), None)
    print(f"centres at least {peak} deep ({cut} objects cut): {common.figures(images, stage)}", flush=True)
