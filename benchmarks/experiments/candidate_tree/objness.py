"""Per-patch objectness head trained on the folder's own top nodes; nodes scored by objectness contrast."""
import os as _os
import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:0] = [str(_HERE), str(_HERE.parents[2])]  # these scripts and the repository (engine)
WORK = _Path(_os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))  # features and nodes go here
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
import numpy as np, torch
from rank import load, evaluate, nms, lifetime, contrast
from scipy import ndimage


def tokens_of(name, z):
    t = np.load(WORK / "feats" / name / f"{z['name']}.npz")["tokens"].astype(np.float32)
    return t / (np.linalg.norm(t, axis=1, keepdims=True) + 1e-6)


def rule(z):
    return np.log(z["att_ratio"] + 1e-3) + lifetime(z) + 3 * contrast(z)


def train_patch_head(X, y, epochs=200):
    X = torch.tensor(X); y = torch.tensor(y, dtype=torch.float32)
    lin = torch.nn.Linear(X.shape[1], 1)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    pw = torch.tensor((1 - y.mean()) / y.mean())
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(X)[:, 0], y, pos_weight=pw)
        loss.backward(); opt.step()
    return lambda T: torch.sigmoid(lin(torch.tensor(T))).detach().numpy()[:, 0]


for name in sys.argv[1:]:
    imgs = load(name)
    toks = [tokens_of(name, z) for z in imgs]
    scorer = rule
    for rnd in range(3):
        X, y = [], []
        for z, t in zip(imgs, toks):
            s = scorer(z)
            keep = nms(z, s)[:3]
            pos = z["masks"][keep].any(0).ravel()
            near = ndimage.binary_dilation(pos.reshape(z["masks"].shape[1:]), iterations=1).ravel()
            lab = np.where(pos, 1, np.where(near, -1, 0))
            X.append(t[lab >= 0]); y.append(lab[lab >= 0])
        head = train_patch_head(np.concatenate(X), np.concatenate(y))
        obj = [head(t) for t in toks]
        for z, o in zip(imgs, obj):
            g = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
            ring = np.array([ndimage.binary_dilation(m, iterations=1) & ~m for m in z["masks"]]).reshape(len(g), -1).astype(np.float32)
            inside = g @ o / g.sum(1); outside = ring @ o / np.maximum(ring.sum(1), 1)
            z["_obj"] = inside - outside + 0.5 * inside
        scorer = lambda z: z["_obj"]
        print(name, "round", rnd, evaluate(imgs, scorer), flush=True)
        comb = lambda z: z["_obj"] * 3 + rule(z) * 0.3
        print(name, "round", rnd, "obj+rule", evaluate(imgs, comb), flush=True)
