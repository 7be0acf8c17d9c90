"""Can offsets to the centre (centres_offsets.py) cut groups better than the predicted depth's watershed? Panoptic-
DeepLab's grouping replayed on a project predicted without the centres: a ridge (strength 30,000) from the
engine's patch inputs to each patch's offset to its object's centre over the object's radius (common.offset_examples),
the group's own deepest distance to its edge standing for a member's radius. Variants of the engine's cut (a concave
object wherever it holds two centres, a compact one where its pieces agree better; then the engine's ranking):
    depth centres + offset assignment: the engine's centres, each pixel to the centre nearest where it points;
    vote centres + watershed (vote peak V): each pixel votes where it points, votes smoothed by a quarter of the
        centres' spacing, peaks of V of the highest are the centres, the depth's watershed draws the pieces.
Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_voting.py PROJECT GROUND_TRUTH_FOLDER"""
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

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.instances import COMPACT_SOLIDITY, mask_solidity  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)
model = fitted.fit.model
x, y, _ = common.offset_examples(fitted)
ridge = Ridge(alpha=30000.0).fit(x, y)
offsets = {}
for name, masks in fitted.label_masks.items():
    features = fitted.features[name]
    grid = ridge.predict(centres.patch_inputs(features.tokens, features.grid_hw)).reshape(*features.grid_hw, 2)
    offsets[name] = resize(grid.astype(np.float32), masks.labels.shape + (2,), order=1, preserve_range=True,
                           anti_aliasing=False)


def pieces_from(mask, depth, offset, min_distance, variant, vote_peak):
    """Pieces 1..k of a bool crop (0 outside) by ``variant``, pieces under MIN_PIECE_SHARE merged into the rest;
    None where fewer than two remain."""
    rows, cols = np.nonzero(mask)
    radius = float(ndimage.distance_transform_edt(np.pad(mask, 1)).max())
    aim = np.stack([rows + offset[rows, cols, 0] * radius, cols + offset[rows, cols, 1] * radius], axis=1)
    if variant == "vote centres + watershed":
        votes = np.zeros(mask.shape, np.float32)
        at = np.clip(np.round(aim).astype(int), 0, np.array(mask.shape) - 1)
        np.add.at(votes, (at[:, 0], at[:, 1]), 1.0)
        votes = ndimage.gaussian_filter(votes, sigma=max(1.0, min_distance / 4))
        peaks = peak_local_max(votes / votes.max(), min_distance=min_distance, threshold_abs=vote_peak,
                               labels=mask.astype(np.int32), exclude_border=False)
    else:
        peaks = peak_local_max(np.where(mask, depth, 0.0), min_distance=min_distance, threshold_abs=centres.PEAK_DEPTH,
                               labels=mask.astype(np.int32), exclude_border=False)
    for _ in range(2):  # the second time with only the large pieces' centres
        if len(peaks) < 2:
            return None
        if variant == "vote centres + watershed":
            markers = np.zeros(mask.shape, np.int32)
            markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
            pieces = watershed(-depth, markers, mask=mask)
        else:
            pieces = np.zeros(mask.shape, np.int32)
            nearest = ((aim[:, None, :] - peaks[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
            pieces[rows, cols] = nearest + 1
        areas = np.bincount(pieces.ravel(), minlength=len(peaks) + 1)[1:]
        large = areas >= centres.MIN_PIECE_SHARE * mask.sum()
        if large.all():
            return pieces
        peaks = peaks[large]
    return None


def replay(variant, vote_peak=None) -> dict:
    stage = {}
    for name, masks in fitted.label_masks.items():
        depth, offset = fitted.depth[name], offsets[name]
        min_distance = model.min_centre_distance(masks.labels.shape)

        def pieces_at(position, box, crop):
            pieces = pieces_from(crop, depth[box], offset[box], min_distance, variant, vote_peak)
            if pieces is not None and mask_solidity(crop) >= COMPACT_SOLIDITY \
                    and not centres.pieces_agree_better(crop, depth[box], pieces):
                return None
            return pieces

        cut, classes, scores, _ = centres.cut_where(masks, np.ones(len(masks), int), loaded[name][1], pieces_at)
        cut, _, scores = centres.rank_by_depth_agreement(cut, classes, scores, depth)
        stage[name] = real_dev.StagePrediction(np.asarray(cut), np.asarray(scores, float), None)
    return stage


print("depth centres + offset assignment:", common.figures(images, replay("depth centres + offset assignment")))
for vote_peak in (0.2, 0.3, 0.5):
    print(f"vote centres + watershed (vote peak {vote_peak}):",
          common.figures(images, replay("vote centres + watershed", vote_peak)), flush=True)
