"""Split final objects much larger than the folder's typical object into candidate-tree nodes of the typical size
(issue 20: touching cats come out as one "group" object). Run from the repository root:
    .venv/bin/python benchmarks/experiments/group_split/split_groups.py PROJECT GROUND_TRUTH_FOLDER OUT [LARGE MIN MAX COVER]
PROJECT: a finished project (never modified; predictions are rewritten in a copy OUT). Typical size: the median
patch count of the folder's final objects. An object over LARGE x typical is replaced by disjoint tree nodes
lying >= 90 % inside it of MIN..MAX x typical (largest first), when at least two of them cover COVER of it."""
import os, shutil, sys
from pathlib import Path
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np
from benchmarks import real_dev
from engine.atomic import read_json
from engine.masks import resize_nearest
from engine.method.features import FeatureCache
from engine.method.hierarchy import candidate_tree
from engine.state.project import Project, load_image_predictions, save_image_predictions

project_dir, truth, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
LARGE, LOW, HIGH, COVER = (float(v) for v in (sys.argv[4:8] if len(sys.argv) > 4 else (2.5, 0.4, 2.0, 0.5)))
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(project_dir, out, ignore=shutil.ignore_patterns("features", "closer_look"))
os.symlink(project_dir.resolve() / "features", out / "features")
project = Project(out)
entries = read_json(project.images_path)
cache = FeatureCache(project.features_dir)


def patch_share(masks, grid):
    return np.stack([resize_nearest(m, *grid) for m in masks]).reshape(len(masks), -1) if len(masks) else np.zeros((0, grid[0] * grid[1]), bool)


sizes = []
loaded = {}
for entry in entries:
    path = project.predictions_path(entry["image_id"])
    if not path.exists():
        continue
    semantic, masks, classes, scores = load_image_predictions(path)
    features = cache.get(entry["feature_key"])
    cells = patch_share(masks, features.grid_hw)
    sizes.extend(cells.sum(1).tolist())
    loaded[entry["image_id"]] = (entry, features, semantic, masks, classes, scores, cells)
typical = float(np.median([s for s in sizes if s > 0]))
print(f"typical object: {typical:.0f} patches", flush=True)
split_objects = 0
for image_id, (entry, features, semantic, masks, classes, scores, cells) in loaded.items():
    large = [i for i in range(len(masks)) if cells[i].sum() > LARGE * typical]
    if not large:
        continue
    tree = candidate_tree(features.tokens, features.grid_hw, centre=True)
    node_masks = None
    new_masks, new_classes, new_scores = [], [], []
    for i in range(len(masks)):
        if i not in large:
            new_masks.append(masks[i]); new_classes.append(classes[i]); new_scores.append(scores[i])
            continue
        inside_obj = cells[i]
        candidates = np.flatnonzero((tree.sizes >= LOW * typical) & (tree.sizes <= HIGH * typical))
        picked, used = [], np.zeros(tree.patches, bool)
        for node in sorted(candidates, key=lambda n: -tree.sizes[n]):
            members = tree.members(node)
            if inside_obj[members].mean() < 0.9 or used[members].any():
                continue
            picked.append(node); used[members] = True
        if len(picked) >= 2 and used[inside_obj].mean() >= COVER:
            split_objects += 1
            for node in picked:
                pixel = resize_nearest(tree.patch_mask(node), *masks[i].shape) & masks[i]
                if pixel.sum() >= 16:
                    new_masks.append(pixel); new_classes.append(classes[i]); new_scores.append(scores[i])
        else:
            new_masks.append(masks[i]); new_classes.append(classes[i]); new_scores.append(scores[i])
    save_image_predictions(project.predictions_path(image_id), semantic, np.stack(new_masks),
                           np.asarray(new_classes), np.asarray(new_scores, np.float32))
print(f"objects split: {split_objects}", flush=True)
images = sorted(real_dev.load_ground_truth(truth, default_source="x"), key=lambda i: i.file_name)
images = [i for i in images if i.source not in real_dev.DENSE_SOURCES]
per_source = len({i.source for i in images}) > 1
scores = real_dev.score_project(out, images, recurring=None, per_source=per_source)
for part in ("total", "source_mean"):
    if part in scores["final"]:
        s = scores["final"][part]
        print(f"final {part}: " + " ".join(f"{k} {s[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50") if s.get(k) is not None))
