"""Cut a concave final object at its waists (issue 20: groups of touching cats cut as one). A finished project's
final objects (before the solidity weight) are scored with the weight (docs/decisions.md#d-compact) and, as the
variant, each object under solidity T is cut by a watershed of its distance transform from the peaks that are at
least half as deep as its deepest (pieces under 15 % of it go back to their neighbour), each piece keeping the
object's score times its own weight (optionally only objects at least N times the folder's median compact
object); nothing is written. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/split_concave.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402

project, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = common.scored_images(folder)


def weight(s):
    return min(1.0, s / 0.7)


loaded = common.final_objects(project, images)
compact = [m.sum() for masks, _ in loaded.values() for m in masks if common.solidity(m) >= 0.8]
typical = float(np.median(compact)) if compact else 0.0
print(f"the folder's typical compact object: {typical:.0f} pixels "
      f"(median of {len(compact)} objects of solidity >= 0.8)")
VARIANTS = ((None, None, 0, 0), (0.7, 0.5, 0, 0), (0.7, 0.5, 1.6, 0), (0.5, 0.5, 0, 0), (0.4, 0.5, 0, 0),
            (0.7, 0.5, 0, 2.0), (0.7, 0.5, 0, 1.5))
for threshold, depth, min_size, max_ratio in VARIANTS:
    stage, split = {}, 0
    for name, (masks, scores) in loaded.items():
        out_masks, out_scores = [], []
        for m, s in zip(masks, scores):
            sol = common.solidity(m)
            cut = threshold is not None and sol < threshold and m.sum() >= min_size * typical
            parts = common.waist_pieces(m, depth) if cut else [m]
            if len(parts) > 1 and max_ratio and max(p.sum() for p in parts) > max_ratio * min(p.sum() for p in parts):
                parts = [m]  # pieces of very different sizes: not a group of like objects
            split += len(parts) > 1
            for part in parts:
                out_masks.append(part)
                out_scores.append(s * weight(common.solidity(part) if len(parts) > 1 else sol))
        stage[name] = real_dev.StagePrediction(np.array(out_masks) if out_masks else masks, np.array(out_scores), None)
    print(f"cut below solidity {threshold}, peaks >= {depth} of the deepest, objects >= {min_size}x typical, "
          f"pieces within {max_ratio or 'any'}x of each other ({split} objects cut): "
          f"{common.figures(images, stage)}", flush=True)
