"""Where are the objects no final object finds? (issue 20.) Per annotated object of a folder: its share of the
image, its best IoU with the project's final objects, and how much of it lies under any final object; printed by
size. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/missed_objects.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402

project, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = [image for image in common.scored_images(folder) if image.masks is not None]
final = common.final_objects(project, images)
rows = []
for image in images:
    masks = final.get(image.file_name, (np.zeros((0, image.height, image.width), bool),))[0]
    best = (real_dev._mask_iou_matrix(masks, image.masks).max(axis=0) if len(masks)
            else np.zeros(len(image.masks)))
    under = masks.any(axis=0) if len(masks) else np.zeros((image.height, image.width), bool)
    for g, best_iou in zip(image.masks, best):
        rows.append((g.sum() / g.size, best_iou, (under & g).sum() / g.sum(), len(image.masks)))
r = np.array(rows)
print(len(r), "objects")
for lo, hi in ((0, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 1)):
    sel = (r[:, 0] >= lo) & (r[:, 0] < hi)
    print(f"area {lo:.3f}-{hi:.3f}: {sel.sum():4d} objects, found@0.5 {np.mean(r[sel, 1] >= 0.5):.2f}, "
          f"none@0.1 {np.mean(r[sel, 1] < 0.1):.2f}, mean share under some object {r[sel, 2].mean():.2f}")
miss = r[:, 1] < 0.1
print("missed at 0.1:", miss.sum(), "of which under objects >50 % of their pixels:", (r[miss, 2] > 0.5).sum(),
      ", <10 %:", (r[miss, 2] < 0.1).sum())
