import os as _os
import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:0] = [str(_HERE), str(_HERE.parents[2])]  # these scripts and the repository (engine)
WORK = _Path(_os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))  # features and nodes go here
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
from rank import load, evaluate, lifetime, contrast


def rule(z):
    return np.log(z["att_ratio"] + 1e-3) + lifetime(z) + 3 * contrast(z)


def unit(x):
    x = x.astype(np.float32); return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)


def desc(z, mode):
    m, r = unit(z["mean_tok"]), unit(z["ring_tok"])
    if mode == "in":
        return m
    return unit(np.concatenate([m, r], 1))


for name in sys.argv[1:]:
    imgs = load(name)
    for mode in ("in", "in+ring"):
        for pool_top, k in ((20, 10), (50, 20)):
            bank, owner = [], []
            for i, z in enumerate(imgs):
                top = np.argsort(-rule(z))[:pool_top]
                bank.append(desc(z, mode)[top]); owner += [i] * len(top)
            bank = np.concatenate(bank); owner = np.array(owner)
            for i, z in enumerate(imgs):
                d = desc(z, mode)
                sim = d @ bank[owner != i].T
                kk = min(k, sim.shape[1])
                z["_rec"] = np.sort(sim, axis=1)[:, -kk:].mean(1)
            for w in (5, 10, 20):
                res = evaluate(imgs, lambda z: rule(z) + w * z["_rec"])
                print(name, mode, pool_top, k, "w", w, res, flush=True)
