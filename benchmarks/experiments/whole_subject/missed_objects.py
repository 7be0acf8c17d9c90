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

project, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = [i for i in real_dev.load_ground_truth(folder, default_source=folder.name)
          if i.source not in real_dev.DENSE_SOURCES and i.masks is not None]
final = real_dev._keyed(real_dev.project_stages(project)["final"], images)
rows = []
for im in images:
    p = final.get(im.file_name)
    masks = np.asarray(p.masks, bool) if p is not None and len(p.masks) else np.zeros((0, im.height, im.width), bool)
    for g in im.masks:
        area = g.sum() / g.size
        if len(masks):
            inter = (masks & g).reshape(len(masks), -1).sum(1)
            union = (masks | g).reshape(len(masks), -1).sum(1)
            best = (inter / union).max()
            covered = (masks.any(0) & g).sum() / g.sum()
        else:
            best, covered = 0.0, 0.0
        rows.append((area, best, covered, len(im.masks)))
r = np.array(rows)
print(len(r), "objects")
for lo, hi in ((0, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 1)):
    sel = (r[:, 0] >= lo) & (r[:, 0] < hi)
    print(f"area {lo:.3f}-{hi:.3f}: {sel.sum():4d} objects, found@0.5 {np.mean(r[sel, 1] >= 0.5):.2f}, "
          f"none@0.1 {np.mean(r[sel, 1] < 0.1):.2f}, mean share under some object {r[sel, 2].mean():.2f}")
miss = r[:, 1] < 0.1
print("missed at 0.1:", miss.sum(), "of which under objects >50 % of their pixels:", (r[miss, 2] > 0.5).sum(),
      ", <10 %:", (r[miss, 2] < 0.1).sum())
