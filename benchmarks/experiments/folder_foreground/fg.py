"""Folder-level foreground: k-means of all patch tokens of the folder; which clusters are objects; node scores."""
import os, sys, json, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(__import__("pathlib").Path(__file__).resolve().parents[1] / "candidate_tree"), str(__import__("pathlib").Path(__file__).resolve().parents[3])]
os.environ.setdefault("TREE_EXPERIMENT_DIR", "runs/tree-experiment")
from pathlib import Path
import numpy as np
from rank import load, evaluate, lifetime, contrast
from sklearn.cluster import KMeans

name = sys.argv[1]
imgs = load(name)
feats = [np.load(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + f"/feats/{name}/{z['name']}.npz") for z in imgs]
T = [f["tokens"].astype(np.float32) for f in feats]
A = [f["cls_attention"].mean(0) for f in feats]
def unit(x): return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
mu = np.concatenate(T).mean(0)
U = [unit(t - mu) for t in T]
rng = np.random.default_rng(0)
allU = np.concatenate(U)
sample = allU[rng.choice(len(allU), min(60000, len(allU)), replace=False)]
# GT foreground at patch level: union of node masks with IoU>=0.5? use best node per gt as proxy
def gt_fg(z):
    g = np.zeros(z["masks"].shape[1:], bool)
    ious = z["ious"].astype(np.float32)
    for j in range(ious.shape[1]):
        if ious[:, j].max() > 0.3:
            g |= z["masks"][int(ious[:, j].argmax())]
    return g
G = [gt_fg(z) for z in imgs]
for K in [2, 3, 4, 6, 8, 12]:
    km = KMeans(K, n_init=3, random_state=0).fit(sample)
    labs = [km.predict(u) for u in U]
    stats = []
    for c in range(K):
        inside = sum(((l == c) & g.ravel()).sum() for l, g in zip(labs, G)); tot = sum((l == c).sum() for l in labs)
        att = np.mean(np.concatenate([a[l == c] / a.mean() for a, l in zip(A, labs)]))
        border = []
        for l, z in zip(labs, imgs):
            m = (l == c).reshape(z["masks"].shape[1:])
            b = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]]).mean()
            border.append(b / max(m.mean(), 1e-6))
        stats.append((c, round(inside / max(tot, 1), 3), round(float(att), 2), round(float(np.mean(border)), 2), round(tot / sum(map(len, labs)), 3)))
    print(K, "cluster, fg-precision, att ratio, border ratio, share:", stats, flush=True)
    np.save(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + f"/{name}_labels_K{K}.npy", np.stack([l for l in labs]) if len(set(map(len, labs))) == 1 else np.array(labs, dtype=object), allow_pickle=True)
