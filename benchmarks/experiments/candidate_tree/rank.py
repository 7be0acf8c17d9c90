"""Rank Ward-tree nodes: per-image rules vs a node classifier trained on the folder's own pseudo-objects."""
import os as _os
import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:0] = [str(_HERE), str(_HERE.parents[2])]  # these scripts and the repository (engine)
WORK = _Path(_os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))  # features and nodes go here
import os, sys, json
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
import numpy as np
import torch

R = 160


def load(name):
    imgs = []
    for p in sorted((WORK / "nodes" / name).glob("*.npz")):
        z = dict(np.load(p))
        z["up"] = np.unpackbits(z["up"], axis=-1)[..., :R].astype(bool)
        z["name"] = p.stem
        imgs.append(z)
    return imgs


def boxes_of(up):
    rows, cols = up.any(2), up.any(1)
    b = np.zeros((len(up), 4))
    for i in range(len(up)):
        r, c = np.where(rows[i])[0], np.where(cols[i])[0]
        if len(r):
            b[i] = [c[0], r[0], c[-1] + 1, r[-1] + 1]
    return b


def box_iou(a, b):
    x0 = np.maximum(a[:, None, 0], b[None, :, 0]); y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2]); y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]); bb = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(aa[:, None] + bb[None] - inter, 1e-9)


def mask_iou_matrix(up):
    U = up.reshape(len(up), -1).astype(np.float32)
    inter = U @ U.T
    a = U.sum(1)
    return inter / np.maximum(a[:, None] + a[None] - inter, 1)


def nms(z, scores, thr=0.5, top=100):
    order = np.argsort(-scores)
    if "_iou" not in z:
        z["_iou"] = mask_iou_matrix(z["masks"])
    M = z["_iou"]
    keep = []
    for i in order:
        if all(M[i, j] <= thr for j in keep):
            keep.append(i)
            if len(keep) >= top:
                break
    return np.array(keep, int)


def evaluate(imgs, scorer, thr=0.5):
    corloc, preds, n_gt, recall = [], [], 0, []
    for z in imgs:
        s = scorer(z)
        keep = nms(z, s, thr)
        ious = z["ious"].astype(np.float32)  # (nodes, gt)
        gtb = z["gt_boxes"].copy()
        h, w = z["hw"]
        gtb = np.stack([gtb[:, 0] * R / w, gtb[:, 1] * R / h, (gtb[:, 0] + gtb[:, 2]) * R / w, (gtb[:, 1] + gtb[:, 3]) * R / h], 1)
        if len(keep):
            pb = boxes_of(z["up"][keep[:1]])
            corloc.append(bool((box_iou(pb, gtb) >= 0.5).any()))
        else:
            corloc.append(False)
        masked = z["gt_masked"]
        n_gt += int(masked.sum())
        used = np.zeros(len(masked), bool)
        for i in keep:
            iou = np.where(masked & ~used, ious[i], 0)
            j = int(iou.argmax()) if len(iou) else 0
            tp = len(iou) > 0 and iou[j] >= 0.5
            if tp:
                used[j] = True
            preds.append((s[i], tp))
        recall.append(used.sum())
    preds.sort(key=lambda p: -p[0])
    tp = np.cumsum([p[1] for p in preds]); fp = np.cumsum([not p[1] for p in preds])
    rec = tp / max(n_gt, 1); prec = tp / np.maximum(tp + fp, 1)
    ap = np.mean([prec[rec >= t].max() if (rec >= t).any() else 0 for t in np.linspace(0, 1, 101)])
    return {"corloc": round(float(np.mean(corloc)), 3), "mask_ap50": round(float(ap), 3), "recall50": round(sum(recall) / max(n_gt, 1), 3)}


def lifetime(z):
    return np.log1p(z["par_h"]) - np.log1p(z["node_h"])


def contrast(z):
    m = z["mean_tok"].astype(np.float32); r = z["ring_tok"].astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True) + 1e-6; r /= np.linalg.norm(r, axis=1, keepdims=True) + 1e-6
    return 1 - (m * r).sum(1)


def descriptors(z):
    m = z["mean_tok"].astype(np.float32); r = z["ring_tok"].astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True) + 1e-6; r /= np.linalg.norm(r, axis=1, keepdims=True) + 1e-6
    geo = np.stack([z["area"], np.sqrt(z["area"]), z["border_frac"], np.log(z["att_ratio"] + 1e-3), lifetime(z),
                    (m * r).sum(1)], 1)
    return np.concatenate([m, r, geo], 1).astype(np.float32)


def train_classifier(X, y, w, epochs=300, wd=1e-3, seed=0):
    torch.manual_seed(seed)
    X = torch.tensor(X); y = torch.tensor(y, dtype=torch.float32); w = torch.tensor(w, dtype=torch.float32)
    mu_, sd = X.mean(0), X.std(0) + 1e-6
    Xn = (X - mu_) / sd
    lin = torch.nn.Linear(X.shape[1], 1)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=wd)
    for _ in range(epochs):
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(lin(Xn)[:, 0], y, reduction="none") * w).sum() / w.sum()
        loss.backward(); opt.step()
    return lambda D: lin(((torch.tensor(D) - mu_) / sd)).detach().numpy()[:, 0]


def pseudo_labels(imgs, scorer, per_image=1, min_score=None):
    """positives: top nodes after NMS; negatives: nodes overlapping a positive partially (its parts and
    supersets: IoU 0.05-0.5); everything else ignored (DropLoss)."""
    X, y, w = [], [], []
    for z in imgs:
        s = scorer(z)
        keep = nms(z, s)
        pos = [i for i in keep[:per_image]] + ([i for i in keep[per_image:] if s[i] >= min_score] if min_score is not None else [])
        M = z["_iou"]
        D = descriptors(z)
        lab = np.full(len(D), -1)
        for i in pos:
            partial = (M[i] > 0.05) & (M[i] < 0.5)
            lab[partial & (lab != 1)] = 0
        lab[pos] = 1
        sel = lab >= 0
        X.append(D[sel]); y.append(lab[sel]); w.append(np.where(lab[sel] == 1, 1.0, 1.0))
    X, y, w = np.concatenate(X), np.concatenate(y), np.concatenate(w)
    w = np.where(y == 1, 0.5 / max(y.mean(), 1e-6), 0.5 / max(1 - y.mean(), 1e-6))
    return X, y, w


if __name__ == "__main__":
    names = sys.argv[1:] or ["feral_cats", "real_dev"]
    for name in names:
        imgs = load(name)
        print(name, len(imgs), "images")
        rules = {"attention": lambda z: np.log(z["att_ratio"] + 1e-3), "lifetime": lifetime,
                 "att+life": lambda z: np.log(z["att_ratio"] + 1e-3) + lifetime(z),
                 "oracle": lambda z: z["ious"].astype(np.float32).max(1) if z["ious"].size else np.zeros(len(z["area"]))}
        rules["contrast"] = lambda z: contrast(z)
        rules["att+life+con"] = lambda z: np.log(z["att_ratio"] + 1e-3) + lifetime(z) + 3 * contrast(z)
        rules["life+con"] = lambda z: lifetime(z) + 3 * contrast(z)
        for k, f in rules.items():
            print(f"  {k:12s}", evaluate(imgs, f))
        base = rules["att+life"]
        scorer = base
        for rnd in range(3):
            X, y, w = pseudo_labels(imgs, scorer, per_image=1 if rnd == 0 else 1, min_score=None if rnd == 0 else 0.0)
            clf = train_classifier(X, y, w)
            scorer = (lambda c: (lambda z: c(descriptors(z))))(clf)
            print(f"  learned r{rnd}  ", evaluate(imgs, scorer), f"train {len(y)} pos {int(y.sum())}")
