"""Variants of the learnt-centres group cut (engine.method.centres, docs/decisions.md#d-centres) on a project
predicted without it: which objects may be cut (solidity under 0.7, 0.8, any), and a ranking by how well an
object's own depth agrees with the depth the model predicts inside it (a lone object's does; a group's, a part's
or a background region's should not). Nothing is written. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_variants.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)
label_masks, solidity, depth, fit = fitted.label_masks, fitted.solidity, fitted.depth, fitted.fit


def variant(max_solidity: float | None, agree_weight: float) -> dict:
    stage = {}
    for name, masks in label_masks.items():
        scores = loaded[name][1]
        classes = np.zeros(len(masks), int)
        if max_solidity is not None:
            candidates = {p for p, i in enumerate(masks.ids) if solidity[name].get(int(i), 1.0) < max_solidity}
            masks_out, _, scores, _ = centres.cut_groups(masks, classes, scores, depth[name],
                                                         fit.model.min_centre_distance(masks.labels.shape), candidates)
        else:
            masks_out = masks
        stack = np.asarray(masks_out)
        if agree_weight:
            factor = np.array([agree_weight * max(0.0, centres.depth_agreement(m, depth[name])) + (1 - agree_weight)
                               for m in stack])
            scores = np.asarray(scores) * factor
        stage[name] = real_dev.StagePrediction(stack, np.asarray(scores, float), None)
    return stage


for max_solidity in (None, 0.7, 0.8, 1.01):
    for agree_weight in (0.0, 0.5, 1.0):
        print(f"cut below solidity {max_solidity}, depth agreement weight {agree_weight}: "
              f"{common.figures(images, variant(max_solidity, agree_weight))}", flush=True)
