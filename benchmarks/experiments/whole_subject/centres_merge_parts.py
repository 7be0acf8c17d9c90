"""Parts merged into wholes at the learnt centres (engine.method.centres, docs/decisions.md#d-centres): the
opposite of the group cut. Two touching final objects are merged where their union holds fewer than two predicted
centres and its depth agrees with the predicted depth better, by MARGIN, than the parts do (area-weighted); the
best pair first, again until none is left. A cat cut into face and fur is one object whose centre the model
knows. The union takes the better part's score with that part's agreement replaced by the union's. Run on a
finished project of the engine with the centres (the model refitted on its final objects); nothing is written.
From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_merge_parts.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)


def agreement(mask, depth):
    return max(centres.AGREEMENT_FLOOR, centres.depth_agreement(mask, depth))


def merged(masks: np.ndarray, scores: np.ndarray, depth: np.ndarray, distance: int, margin: float) -> tuple:
    masks, scores = [m for m in masks], list(scores)
    agree = [agreement(m, depth) for m in masks]
    raw = [s / a for s, a in zip(scores, agree)]
    merges = 0
    while True:
        best = None
        grown = [ndimage.binary_dilation(m, iterations=2) for m in masks]
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                if not (grown[i] & masks[j]).any():
                    continue
                union = masks[i] | masks[j]
                ys, xs = np.nonzero(union)
                box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
                if centres.centre_pieces(union[box], depth[box], distance) is not None:
                    continue  # two centres: two objects
                whole = agreement(union[box], depth[box])
                parts = np.average([agree[i], agree[j]], weights=[masks[i].sum(), masks[j].sum()])
                if whole > parts + margin and (best is None or whole - parts > best[0]):
                    best = (whole - parts, i, j, whole)
        if best is None:
            break
        _, i, j, whole = best
        keep = i if raw[i] * agree[i] >= raw[j] * agree[j] else j
        masks[i], raw[i], agree[i] = masks[i] | masks[j], raw[keep], whole
        del masks[j], raw[j], agree[j]
        merges += 1
    return np.array(masks), np.array([r * a for r, a in zip(raw, agree)]), merges


for margin in (0.05, 0.15):
    stage, total = {}, 0
    for name, (masks, scores) in loaded.items():
        depth = fitted.depth[name]
        if len(masks) > 1:
            masks, scores, count = merged(masks, scores, depth, fitted.fit.model.min_centre_distance(depth.shape),
                                          margin)
            total += count
        stage[name] = real_dev.StagePrediction(masks, np.asarray(scores, float), None)
    print(f"parts merged where the union agrees better by {margin}: {total} merges; {common.figures(images, stage)}",
          flush=True)
as_predicted = {name: real_dev.StagePrediction(masks, scores, None) for name, (masks, scores) in loaded.items()}
print(f"as predicted: {common.figures(images, as_predicted)}")
