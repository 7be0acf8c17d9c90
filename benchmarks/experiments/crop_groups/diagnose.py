"""Diagnostic (issue 20): for final objects that are groups of touching cats (>= 2 annotated objects mostly inside,
no annotation at IoU 0.5), does a crop's own candidate tree (1.5x the box, block-8 outputs at the full input size)
hold the single objects, and the whole image's tree? Run from the repository root:
    .venv/bin/python benchmarks/experiments/crop_groups/diagnose.py PROJECT GROUND_TRUTH_FOLDER [LIMIT]"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from engine.atomic import read_json  # noqa: E402
from engine.device import configure_cpu_threads  # noqa: E402
from engine.io.images import ImageSource  # noqa: E402
from engine.masks import resize_nearest  # noqa: E402
from engine.method.closer_look import crop_embedder, crop_window  # noqa: E402
from engine.method.features import FeatureCache  # noqa: E402
from engine.method.hierarchy import candidate_tree  # noqa: E402
from engine.state.project import Project, load_image_predictions  # noqa: E402

project_dir, truth = Path(sys.argv[1]), Path(sys.argv[2])
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 10**9
configure_cpu_threads()
project = Project(project_dir)
config = read_json(project.config_path)
entries = read_json(project.images_path)
images = {i.file_name: i for i in real_dev.load_ground_truth(truth, default_source="x")}
cache = FeatureCache(project.features_dir)
source = ImageSource(Path(config["image_root"]))
embed = crop_embedder(config["config"], 1.0, "cpu")


def tree_best(tree, shape, targets, window=None):
    """best IoU per target among the tree's nodes (patch masks to ``shape`` by nearest)."""
    best = np.zeros(len(targets))
    for node in range(len(tree.sizes)):
        m = resize_nearest(tree.patch_mask(node), *shape)
        if window is not None:
            full = np.zeros(targets.shape[1:], bool)
            x0, y0, x1, y1 = window
            full[y0:y1, x0:x1] = m
            m = full
        inter = (targets & m).sum((1, 2))
        union = (targets | m).sum((1, 2))
        best = np.maximum(best, inter / np.maximum(union, 1))
    return best


groups = cats = 0
crop_hits = image_hits = 0
for entry in entries:
    gt = images.get(Path(entry["relative_path"]).name)
    path = project.predictions_path(entry["image_id"])
    if gt is None or gt.masks is None or not path.exists():
        continue
    _, masks, _, _ = load_image_predictions(path)
    image = None
    for mask in masks:
        area = gt.masks.sum((1, 2))
        inside = (gt.masks & mask).sum((1, 2)) / np.maximum(area, 1)
        iou = (gt.masks & mask).sum((1, 2)) / np.maximum((gt.masks | mask).sum((1, 2)), 1)
        members = np.flatnonzero(inside >= 0.5)
        if len(members) < 2 or iou.max() >= 0.5:
            continue
        if image is None:
            image = source.load(entry)
            features = cache.get(entry["feature_key"])
            whole = candidate_tree(features.tokens.astype(np.float32), features.grid_hw)
        ys, xs = np.nonzero(mask)
        window = crop_window(mask.shape, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        x0, y0, x1, y1 = window
        (tokens, grid), = embed([image[y0:y1, x0:x1]])
        crop_tree = candidate_tree(np.asarray(tokens, np.float32), grid)
        targets = gt.masks[members]
        c = tree_best(crop_tree, (y1 - y0, x1 - x0), targets, window)
        w = tree_best(whole, mask.shape, targets)
        groups += 1
        cats += len(members)
        crop_hits += int((c >= 0.5).sum())
        image_hits += int((w >= 0.5).sum())
        print(f"{entry['relative_path']}: {len(members)} cats, crop tree best {np.round(c, 2)}, "
              f"image tree best {np.round(w, 2)}", flush=True)
        if groups >= limit:
            break
    if groups >= limit:
        break
print(f"groups {groups}, cats {cats}: crop tree holds {crop_hits} at IoU 0.5, the image's tree {image_hits}")
