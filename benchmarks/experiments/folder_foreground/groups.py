"""Group detection in the tree: a node whose two children are alike foreground objects of similar size is a group."""
import os, sys
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "feral_cats", sys.argv[2] if len(sys.argv) > 2 else "8"]
exec(open(str(__import__("pathlib").Path(__file__).with_name("score.py"))).read().split("from rank import nms, boxes_of")[0].replace("for k, f in {", "for k, f in {} and {"))
def children(z):
    M = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    area = M.sum(1); inter = M @ M.T
    inside = (inter >= area[:, None] - 0.5) & (area[:, None] < area[None, :])  # [i, j]: i strictly inside j
    kids = []
    for j in range(len(M)):
        cand = np.flatnonzero(inside[:, j])
        # maximal ones: not inside another candidate
        maximal = [i for i in cand if not inside[i, cand].any()]
        kids.append(sorted(maximal, key=lambda i: -area[i])[:2])
    return kids, area
def unitv(x): x = x.astype(np.float32); return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)
for z in imgs:
    kids, area = children(z)
    M = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    prec = (M @ z["fg"].ravel().astype(np.float32)) / area
    t = unitv(z["mean_tok"])
    g = np.zeros(len(M))
    for j, k in enumerate(kids):
        if len(k) == 2:
            a, b = k
            bal = min(area[a], area[b]) / max(area[a], area[b])
            if prec[a] > 0.5 and prec[b] > 0.5:
                g[j] = max(0.0, float(t[a] @ t[b])) * min(1.0, bal / 0.3)
    z["group"], z["prec"], z["areaN"] = g, prec, area / M.shape[1]
for lam in [0.0, 0.5, 1.0, 2.0]:
    for alpha in [0.25, 0.5]:
        f = lambda z: np.log(z["prec"] + 1e-3) + alpha * np.log(z["areaN"]) - lam * z["group"] + 0.1 * rule(z)
        print(f"lam {lam} alpha {alpha}", evaluate(imgs, f), flush=True)
f = lambda z: s_iou(z) + 0.1 * rule(z) - 1.0 * z["group"]
print("iou+rule-group", evaluate(imgs, f))
