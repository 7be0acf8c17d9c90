"""Which objects the learnt centres may cut (engine.method.centres, docs/decisions.md#d-centres), decided by the
model instead of by solidity: an object with two or more predicted centres is cut where its pieces' depths agree
with the prediction better (area-weighted mean) than the whole's does, by at least MARGIN; then every object is
ranked by its depth agreement, as the engine does. Run on a project predicted without the cut; nothing is written.
Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_cut_by_agreement.py PROJECT GROUND_TRUTH_FOLDER"""
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


def pieces_agree_better(masks, position, depth_map, min_distance, margin) -> bool:
    box, crop = masks.crop(position)
    pieces = centres.centre_pieces(crop, depth_map[box], min_distance)
    centres.CUT_AGREEMENT_MARGIN = margin  # the engine's rule with this variant's margin
    return pieces is not None and centres.pieces_agree_better(crop, depth_map[box], pieces)


def variant(rule: str, margin: float) -> tuple:
    """rule: "solidity 0.7" (the engine's rule before), "agreement" (any object, where its pieces agree better),
    "either" (concave, or its pieces agree better)."""
    stage, cut_total = {}, 0
    for name, masks in label_masks.items():
        scores = loaded[name][1]
        classes = np.zeros(len(masks), int)
        distance = fit.model.min_centre_distance(masks.labels.shape)
        concave = set(centres.group_candidates(masks, solidity[name]))
        agreeing = set() if rule == "solidity 0.7" else \
            {p for p in range(len(masks)) if pieces_agree_better(masks, p, depth[name], distance, margin)}
        candidates = {"solidity 0.7": concave, "agreement": agreeing, "either": concave | agreeing}[rule]
        masks_out, classes_out, scores, cut = centres.cut_groups(masks, classes, scores, depth[name], distance,
                                                                 candidates)
        cut_total += cut
        masks_out, _, scores = centres.rank_by_depth_agreement(masks_out, classes_out, scores, depth[name])
        stage[name] = real_dev.StagePrediction(np.asarray(masks_out), np.asarray(scores, float), None)
    return stage, cut_total


for rule, margin in (("solidity 0.7", 0.0), ("agreement", 0.0), ("agreement", 0.05), ("agreement", 0.1),
                     ("either", 0.05)):
    stage, cut = variant(rule, margin)
    print(f"cut where {rule} (margin {margin}): {cut} objects cut; {common.figures(images, stage)}", flush=True)
