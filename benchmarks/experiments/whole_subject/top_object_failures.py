"""Why the top-ranked final object misses (issue 20, CorLoc). Per image whose highest-scoring final object's box has
IoU < 0.5 with every annotated box: what that object is (a group holding two or more objects, a part of one object,
near one, or mostly background), and whether a right object (box IoU >= 0.5) is among the image's final objects and
at which rank. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/top_object_failures.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402


def box_of(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], float)


project, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = [image for image in common.scored_images(folder) if image.masks is not None]
final = common.final_objects(project, images)
kinds, ranks, shares = Counter(), Counter(), []
for image in images:
    masks, scores = final.get(image.file_name, (np.zeros((0, image.height, image.width), bool), np.zeros(0)))
    if not len(masks):
        kinds["no object"] += 1
        continue
    order = np.argsort(-scores)
    boxes = np.stack([box_of(m) for m in masks])
    hit = (real_dev._box_iou_matrix(boxes, image.boxes) >= 0.5).any(axis=1)
    top = order[0]
    if hit[top]:
        kinds["hit"] += 1
        continue
    truth = np.asarray(image.masks, bool)
    inside = (truth & masks[top]).reshape(len(truth), -1).sum(1) / truth.reshape(len(truth), -1).sum(1)
    own = (truth & masks[top]).reshape(len(truth), -1).sum(1) / masks[top].sum()
    best_box = real_dev._box_iou_matrix(boxes[top:top + 1], image.boxes).max()
    if (inside > 0.5).sum() >= 2:
        kind = "group"
    elif own.max() > 0.8:
        kind = "part"
    elif best_box >= 0.3:
        kind = "near"
    elif own.sum() < 0.3:
        kind = "background"
    else:
        kind = "other"
    kinds[kind] += 1
    shares.append(masks[top].sum() / masks[top].size)
    right = [rank for rank, i in enumerate(order) if hit[i]]
    ranks[(kind, "right object at rank " + (str(right[0] + 1) if right and right[0] < 3 else
                                              ">3" if right else "none"))] += 1
print(dict(kinds))
for key, n in sorted(ranks.items()):
    print(key, n)
print("failing top objects' share of the image: quartiles", np.round(np.percentile(shares, [25, 50, 75]), 3))
