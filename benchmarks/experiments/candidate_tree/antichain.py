import os as _os
import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:0] = [str(_HERE), str(_HERE.parents[2])]  # these scripts and the repository (engine)
WORK = _Path(_os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))  # features and nodes go here
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
import rank
from rank import load, evaluate, lifetime, contrast


def antichain(z, scores, thr=None, top=12):
    order = np.argsort(-scores)
    g = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    inter = g @ g.T
    keep = []
    for i in order:
        if all(inter[i, j] == 0 for j in keep):
            keep.append(i)
            if len(keep) >= top:
                break
    return np.array(keep, int)


def rule(z, w_att=1.0, w_life=1.0, w_con=3.0):
    return w_att * np.log(z["att_ratio"] + 1e-3) + w_life * lifetime(z) + w_con * contrast(z)


for name in sys.argv[1:]:
    imgs = load(name)
    print(name)
    rank.nms = antichain
    for w in [(1, 1, 3), (1, 1, 0), (1, 0.5, 3), (0.5, 1, 3), (1, 1, 6)]:
        print("  antichain top12", w, evaluate(imgs, lambda z: rule(z, *w)), flush=True)
