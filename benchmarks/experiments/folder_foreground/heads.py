"""Count the folder's most salient recurring part (the top-attention token cluster) inside each node: one per object."""
import os, sys
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "feral_cats", sys.argv[2] if len(sys.argv) > 2 else "8"]
exec(open(str(__import__("pathlib").Path(__file__).with_name("score.py"))).read().split("from rank import nms, boxes_of")[0].replace("for k, f in {", "for k, f in {} and {"))
top = int(np.argmax(att))
print("top cluster", top, att[top])
for z, l in zip(imgs, labs):
    part = (l == top).reshape(z["masks"].shape[1:])
    comp, n = ndimage.label(part, structure=np.ones((3, 3)))
    sizes = ndimage.sum(part, comp, range(1, n + 1)) if n else np.zeros(0)
    M = z["masks"].reshape(len(z["masks"]), -1)
    counts = np.zeros(len(M)); whole = np.zeros(len(M))
    for c in range(1, n + 1):
        if sizes[c - 1] < 2: continue
        C = (comp.ravel() == c)
        inside = M[:, C].sum(1)
        counts += inside >= 0.5 * C.sum()  # most of the part inside the node
    z["heads"] = counts
base = lambda z: s_iou(z) + 0.1 * rule(z)
for lam in [0.0, 0.2, 0.5, 1.0]:
    for mu in [0.0, 0.3]:
        f = lambda z: base(z) - lam * np.maximum(z["heads"] - 1, 0) - mu * (z["heads"] == 0)
        print(f"lam {lam} mu {mu}", evaluate(imgs, f), flush=True)
