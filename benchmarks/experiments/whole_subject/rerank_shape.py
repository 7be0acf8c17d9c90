"""Does an object's shape tell one object from a group of touching ones? (issue 20: on feral_cats the top final
object is a group of touching cats in about 50 of the 195 images.) A finished project's final objects are
re-ranked by score x a weight of its solidity (area over convex-hull area: a lone cat is compact, two or three touching
ones leave concavities) and scored; nothing is written. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/rerank_shape.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from skimage.measure import regionprops  # noqa: E402

from benchmarks import real_dev  # noqa: E402

project, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = [i for i in real_dev.load_ground_truth(folder, default_source=folder.name)
          if i.source not in real_dev.DENSE_SOURCES]
final = real_dev._keyed(real_dev.project_stages(project)["final"], images)
loaded = {}
for image in images:
    p = final.get(image.file_name)
    if p is None:
        continue
    masks = np.asarray(p.masks, bool)
    solidity = np.array([regionprops(m.astype(np.uint8))[0].solidity if m.sum() > 2 else 0.0 for m in masks])
    loaded[image.file_name] = (masks, np.asarray(p.scores, float), solidity)
variants = {f"solidity^{g}": (lambda sol, g=g: np.power(sol, g)) for g in (0.0, 0.5, 1.0, 2.0)}
variants.update({f"min(1, solidity / {t})": (lambda sol, t=t: np.minimum(1.0, sol / t)) for t in (0.6, 0.7, 0.8)})
for label, weight in variants.items():
    stage = {name: real_dev.StagePrediction(m, s * weight(sol), None) for name, (m, s, sol) in loaded.items()}
    r = real_dev.score_images(images, stage)
    print(f"{label}: " + " / ".join(f"{r[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")))
