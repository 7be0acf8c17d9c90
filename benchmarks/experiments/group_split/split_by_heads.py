"""Split a final object holding several of the folder's most salient recurring part (one per object: a cat's head)
into one piece per such part (issue 20: touching cats come out as one "group" object). Run from the repository
root:
    .venv/bin/python benchmarks/experiments/group_split/split_by_heads.py PROJECT GROUND_TRUTH_FOLDER OUT [LARGE]
PROJECT: a finished project (never modified; predictions rewritten in a copy OUT). The salient part: of the
folder's K = 8 token clusters (``$TREE_EXPERIMENT_DIR/<folder>_labels_K8.npy`` from ../folder_foreground/fg.py,
over the 448-px tokens and CLS attention in ``$TREE_EXPERIMENT_DIR/feats/<folder>/``), the one with the highest
mean CLS-attention ratio over the folder. An object larger than LARGE x the folder's median object (patches; 0:
any size) holding two or more of its blobs (8-connected, >= 2 patches, mostly inside the object) is cut into one
piece per blob: each of its patches goes to the blob nearest along the object's patch graph (4-neighbours,
edge cost 1 - cosine of the centred tokens)."""
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage, sparse  # noqa: E402
from scipy.sparse.csgraph import dijkstra  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from engine.atomic import read_json  # noqa: E402
from engine.masks import resize_nearest  # noqa: E402
from engine.state.project import Project, load_image_predictions, save_image_predictions  # noqa: E402

project_dir, truth, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
LARGE = float(sys.argv[4]) if len(sys.argv) > 4 else 1.5
folder = truth.name
data = Path(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(project_dir, out, ignore=shutil.ignore_patterns("features", "closer_look"))
os.symlink(project_dir.resolve() / "features", out / "features")
project = Project(out)
entries = read_json(project.images_path)
stems = sorted(p.stem for p in (data / "feats" / folder).glob("*.npz"))  # fg.py's image order
labels_all = np.load(data / f"{folder}_labels_K8.npy", allow_pickle=True)
feats = {s: np.load(data / "feats" / folder / f"{s}.npz") for s in stems}
ratio = np.zeros(8)
count = np.zeros(8)
for s, labels in zip(stems, labels_all):
    attention = feats[s]["cls_attention"].mean(0)
    attention = attention / attention.mean()
    ratio += np.bincount(labels, attention, minlength=8)
    count += np.bincount(labels, minlength=8)
salient = int(np.argmax(ratio / np.maximum(count, 1)))
print("salient cluster", salient, "attention ratio", np.round(ratio / np.maximum(count, 1), 2), flush=True)
part_of = dict(zip(stems, labels_all))


def unit(x):
    x = x - x.mean(0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def grid_graph(tokens, grid, inside):
    """Sparse 4-neighbour graph over the object's cells, cost 1 - cosine (+ a small step so distance counts)."""
    h, w = grid
    ids = np.arange(h * w).reshape(h, w)
    rows, cols, costs = [], [], []
    for a, b in (((slice(None), slice(0, w - 1)), (slice(None), slice(1, w))),
                 ((slice(0, h - 1), slice(None)), (slice(1, h), slice(None)))):
        ia, ib = ids[a].ravel(), ids[b].ravel()
        keep = inside[ia] & inside[ib]
        ia, ib = ia[keep], ib[keep]
        rows.append(ia)
        cols.append(ib)
        costs.append(1.01 - np.einsum("ij,ij->i", tokens[ia], tokens[ib]))
    r, c, d = (np.concatenate(v) for v in (rows, cols, costs))
    g = sparse.coo_matrix((d, (r, c)), shape=(h * w, h * w))
    return (g + g.T).tocsr()


objects = []
loaded = {}
for entry in entries:
    path = project.predictions_path(entry["image_id"])
    stem = Path(entry["relative_path"]).stem
    if not path.exists() or stem not in feats:
        continue
    semantic, masks, classes, scores = load_image_predictions(path)
    grid = tuple(int(v) for v in feats[stem]["grid_hw"])
    cells = np.stack([resize_nearest(m, *grid).ravel() for m in masks]) if len(masks) else np.zeros((0, grid[0] * grid[1]), bool)
    objects.extend(cells.sum(1).tolist())
    loaded[entry["image_id"]] = (stem, grid, semantic, masks, classes, scores, cells)
typical = float(np.median([n for n in objects if n > 0]))
print(f"typical object: {typical:.0f} patches", flush=True)
split = pieces_made = 0
for image_id, (stem, grid, semantic, masks, classes, scores, cells) in loaded.items():
    part = (part_of[stem] == salient).reshape(grid)
    blobs, n = ndimage.label(part, structure=np.ones((3, 3)))
    tokens = unit(feats[stem]["tokens"].astype(np.float32))
    new_masks, new_classes, new_scores = [], [], []
    for i in range(len(masks)):
        inside = cells[i]
        heads = [k for k in range(1, n + 1) if (blobs.ravel() == k).sum() >= 2
                 and inside[blobs.ravel() == k].mean() >= 0.5]
        if inside.sum() <= LARGE * typical or len(heads) < 2:
            new_masks.append(masks[i]); new_classes.append(classes[i]); new_scores.append(scores[i])
            continue
        graph = grid_graph(tokens, grid, inside)
        sources = [np.flatnonzero((blobs.ravel() == k) & inside) for k in heads]
        distance = np.full((len(heads), inside.size), np.inf)
        for j, src in enumerate(sources):
            distance[j] = dijkstra(graph, indices=src, min_only=True)
        owner = np.where(np.isfinite(distance.min(0)), distance.argmin(0), -1)
        owner[~inside] = -1
        pixel_owner = resize_nearest(owner.reshape(grid).astype(np.int32) + 1, *masks[i].shape) - 1
        made = 0
        for j in range(len(heads)):
            piece = masks[i] & (pixel_owner == j)
            if piece.sum() >= 16:
                new_masks.append(piece); new_classes.append(classes[i]); new_scores.append(scores[i]); made += 1
        rest = masks[i] & (pixel_owner < 0)
        if rest.sum() >= 16 and made:  # cells no head reaches stay with the largest piece
            largest = int(np.argmax([m.sum() for m in new_masks[-made:]]))
            new_masks[len(new_masks) - made + largest] = new_masks[len(new_masks) - made + largest] | rest
        if made:
            split += 1
            pieces_made += made
        else:
            new_masks.append(masks[i]); new_classes.append(classes[i]); new_scores.append(scores[i])
    if len(new_masks):
        save_image_predictions(project.predictions_path(image_id), semantic, np.stack(new_masks),
                               np.asarray(new_classes), np.asarray(new_scores, np.float32))
print(f"objects split: {split} into {pieces_made} pieces", flush=True)
images = sorted(real_dev.load_ground_truth(truth, default_source="x"), key=lambda i: i.file_name)
images = [i for i in images if i.source not in real_dev.DENSE_SOURCES]
scores = real_dev.score_project(out, images, recurring=None, per_source=False)
s = scores["final"]["total"]
print("final: " + " ".join(f"{k} {s[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")
                           if s.get(k) is not None), flush=True)
