import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(__import__("pathlib").Path(__file__).resolve().parents[1] / "candidate_tree"), str(__import__("pathlib").Path(__file__).resolve().parents[3])]
os.environ.setdefault("TREE_EXPERIMENT_DIR", "runs/tree-experiment")
import numpy as np
from scipy import ndimage
from rank import load, evaluate, lifetime, contrast
name, K = sys.argv[1], int(sys.argv[2])
imgs = load(name)
feats = [np.load(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + f"/feats/{name}/{z['name']}.npz") for z in imgs]
A = [f["cls_attention"].mean(0) for f in feats]
labs = list(np.load(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + f"/{name}_labels_K{K}.npy", allow_pickle=True))
att = np.array([np.mean(np.concatenate([a[l == c] / a.mean() for a, l in zip(A, labs) if (l == c).any()])) for c in range(K)])
print("cluster att", att.round(2))
fgc = att > float(sys.argv[3]) if len(sys.argv) > 3 else att > 1.0
for z, l in zip(imgs, labs):
    fg = fgc[l].reshape(z["masks"].shape[1:])
    z["fg"] = fg
    comp, n = ndimage.label(fg, structure=np.ones((3, 3)))
    z["comp"], z["ncomp"] = comp, n
    soft = np.clip((att[l] - 0.5) / 2.0, 0, 1).reshape(fg.shape)
    z["soft"] = soft
def s_iou(z):
    M = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    fg = z["fg"].ravel().astype(np.float32)
    inter = M @ fg; area = M.sum(1)
    best = np.zeros(len(M))
    for c in range(1, z["ncomp"] + 1):
        C = (z["comp"].ravel() == c).astype(np.float32)
        i = M @ C
        best = np.maximum(best, i / (area + C.sum() - i))
    return best
def s_prec(z):
    M = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    return (M @ z["fg"].ravel()) / M.sum(1)
def s_soft(z):
    M = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    s = z["soft"].ravel(); inside = (M @ s) / M.sum(1)
    ring = []
    for m in z["masks"]:
        r = ndimage.binary_dilation(m, iterations=2) & ~m
        ring.append(s[r.ravel()].mean() if r.any() else 0)
    return inside - np.array(ring)
rule = lambda z: np.log(z["att_ratio"] + 1e-3) + lifetime(z) + 3 * contrast(z)
for k, f in {"iou_fgcomp": s_iou, "iou+0.1rule": lambda z: s_iou(z) + 0.1 * rule(z), "prec*sqrtA": lambda z: s_prec(z) * np.sqrt(z["area"]),
             "soft in-ring": s_soft, "soft+0.1rule": lambda z: s_soft(z) + 0.1 * rule(z), "iou+soft": lambda z: s_iou(z) + s_soft(z)}.items():
    print(f"{k:14s}", evaluate(imgs, f), flush=True)
from rank import nms, boxes_of, box_iou, R
f = lambda z: s_iou(z) + 0.1 * rule(z)
modes = {"hit": 0, "superset(group)": 0, "part": 0, "other": 0}
for z in imgs:
    s = f(z); keep = nms(z, s); t = keep[0]
    gtb = z["gt_boxes"].copy(); h, w = z["hw"]
    gtb = np.stack([gtb[:, 0] * R / w, gtb[:, 1] * R / h, (gtb[:, 0] + gtb[:, 2]) * R / w, (gtb[:, 1] + gtb[:, 3]) * R / h], 1)
    pb = boxes_of(z["up"][[t]])[0]
    if (box_iou(pb[None], gtb) >= 0.5).any(): modes["hit"] += 1; continue
    # containment of gt boxes in pred box
    x0 = np.maximum(pb[0], gtb[:, 0]); y0 = np.maximum(pb[1], gtb[:, 1]); x1 = np.minimum(pb[2], gtb[:, 2]); y1 = np.minimum(pb[3], gtb[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    ga = (gtb[:, 2] - gtb[:, 0]) * (gtb[:, 3] - gtb[:, 1]); pa = (pb[2] - pb[0]) * (pb[3] - pb[1])
    contained = (inter / ga > 0.7).sum()
    if contained >= 2: modes["superset(group)"] += 1
    elif (inter / max(pa, 1) > 0.7).any(): modes["part"] += 1
    else: modes["other"] += 1
print(modes)
