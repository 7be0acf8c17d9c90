"""Does an object's shape tell one object from a group of touching ones, or from background? (issue 20: on
feral_cats the top final object is a group of touching cats in about 50 of the 195 images.) A finished project's
final objects (scored before the solidity weight) are re-ranked and scored; nothing is written. The weights: a
power of the solidity (area over convex-hull area: a lone cat is compact, two or three touching ones leave
concavities), min(1, solidity / T) (docs/decisions.md#d-compact), and that weight times 0.5 where the object
touches at least N of the image's four sides. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/rerank_shape.py PROJECT GROUND_TRUTH_FOLDER"""
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
loaded = {}
for name, (masks, scores) in common.final_objects(project, images).items():
    solidity = np.array([common.solidity(m) for m in masks])
    sides = np.array([int(m[0].any()) + int(m[-1].any()) + int(m[:, 0].any()) + int(m[:, -1].any()) for m in masks])
    loaded[name] = (masks, scores, solidity, sides)

variants = {f"solidity^{g}": (lambda sol, sides, g=g: np.power(sol, g)) for g in (0.0, 0.5, 1.0, 2.0)}
variants.update({f"min(1, solidity / {t})": (lambda sol, sides, t=t: np.minimum(1.0, sol / t))
                 for t in (0.6, 0.7, 0.8)})
variants.update({f"min(1, solidity / 0.7), x0.5 touching >= {n} sides":
                 (lambda sol, sides, n=n: np.minimum(1.0, sol / 0.7) * np.where(sides >= n, 0.5, 1.0))
                 for n in (4, 3, 2)})
for label, weight in variants.items():
    stage = {name: real_dev.StagePrediction(m, s * weight(sol, sides), None)
             for name, (m, s, sol, sides) in loaded.items()}
    print(f"{label}: {common.figures(images, stage)}", flush=True)
