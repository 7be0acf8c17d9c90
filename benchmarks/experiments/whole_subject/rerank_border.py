"""With the solidity weight (docs/decisions.md#d-compact), does touching the image's sides also tell background
from objects? A finished project's final objects (scored before the solidity weight) are re-ranked by the weight
times 0.5 where the object touches at least N of the image's four sides; nothing is written. Run from the
repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/rerank_border.py PROJECT GROUND_TRUTH_FOLDER"""
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
    solidity = np.array([regionprops(m.astype(np.uint8))[0].solidity if m.sum() > 2 else 1.0 for m in masks])
    sides = np.array([int(m[0].any()) + int(m[-1].any()) + int(m[:, 0].any()) + int(m[:, -1].any()) for m in masks])
    loaded[image.file_name] = (masks, np.asarray(p.scores, float) * np.minimum(1.0, solidity / 0.7), sides)
for min_sides in (5, 4, 3, 2):
    stage = {name: real_dev.StagePrediction(m, s * np.where(sides >= min_sides, 0.5, 1.0), None)
             for name, (m, s, sides) in loaded.items()}
    r = real_dev.score_images(images, stage)
    print(f"x0.5 touching >= {min_sides} sides: " + " / ".join(
        f"{r[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")), flush=True)
