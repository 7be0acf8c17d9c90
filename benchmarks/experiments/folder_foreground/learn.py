"""Node classifier trained on folder-foreground pseudo-labels: isolated foreground components = one object."""
import os, sys
sys.argv = [sys.argv[0], "feral_cats", "8"] + sys.argv[1:]
exec(open(str(__import__("pathlib").Path(__file__).with_name("score.py"))).read().split("from rank import nms, boxes_of")[0].replace("for k, f in {", "for k, f in {} and {"))
from rank import descriptors, nms
from skimage.measure import regionprops
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
def shape_feats(z):
    out = []
    for m in z["masks"]:
        p = regionprops(m.astype(np.uint8))[0]
        out.append([p.solidity, p.eccentricity, p.extent])
    return np.array(out)
X, Y = [], []
for z in imgs:
    M = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    area = M.sum(1); fgv = z["fg"].ravel().astype(np.float32)
    prec = (M @ fgv) / area
    z["prec"] = prec
    z["D"] = np.concatenate([descriptors(z), shape_feats(z), prec[:, None]], 1)
    lab = np.full(len(M), -1)
    for c in range(1, z["ncomp"] + 1):
        C = (z["comp"].ravel() == c).astype(np.float32)
        if C.sum() < 4: continue
        i = M @ C; iou = i / (area + C.sum() - i)
        # isolated component: treat as one object -> nodes matching it positive, its strict parts negative
        lab[(iou >= 0.7)] = 1
        lab[(i / area > 0.9) & (iou < 0.4) & (lab != 1)] = 0
    lab[(prec < 0.3) & (lab != 1)] = 0  # mostly background
    z["lab"] = lab
    sel = lab >= 0
    X.append(z["D"][sel]); Y.append(lab[sel])
X, Y = np.concatenate(X), np.concatenate(Y)
print("train", len(Y), "pos", int(Y.sum()))
sc = StandardScaler().fit(X)
clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit(sc.transform(X), Y)
learned = lambda z: clf.decision_function(sc.transform(z["D"]))
for k, f in {"learned": learned, "learned+0.1rule": lambda z: learned(z) + 0.1 * rule(z),
             "learned+iou": lambda z: learned(z) + 3 * s_iou(z)}.items():
    print(f"{k:18s}", evaluate(imgs, f), flush=True)
