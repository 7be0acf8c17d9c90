"""Box prompt variants over more than the final tokens (issue 21), on crops cached by cache_layers.py.
Prints IoU >= 0.5 / >= 0.8 shares and mean IoU per folder.
.venv/bin/python benchmarks/experiments/box_prompt/layer_variants.py CROPS.pkl [variant;...]"""
import os, pickle, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np
from engine.method import prompt as P

items = pickle.load(open(sys.argv[1], "rb"))
production = P._box_classified
production_window = P._window
state = {"extra": None, "shift": 0.0, "window": None, "grid": None}


def window(*args, **kwargs):
    state["window"] = production_window(*args, **kwargs)
    return state["window"]


def classified(graph, flat, inside, positive, excluded, smoothing, rounds=P.BOX_ROUNDS):
    """The production classifier, its vectors extended by state["extra"] (classifier only, not the graph), its
    answer's threshold moved to state["shift"] + 0.5."""
    if state["extra"] is not None:
        top, left, bottom, right = state["window"]
        extra = state["extra"].reshape(*state["grid"], -1)[top:bottom, left:right].reshape(-1, state["extra"].shape[1])
        assert len(extra) == len(flat), "one cell per patch (no pooling) on a crop"
        flat = np.concatenate([flat, extra], axis=1)
    return np.clip(production(graph, flat, inside, positive, excluded, smoothing, rounds) - state["shift"], 0, 1)


P._box_classified = classified
P._window = window


def iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def unit(x):
    return P.unit_rows(np.asarray(x, np.float32), True)


def filled(mask, share):
    """The mask with its holes smaller than ``share`` of its area filled (SAM's small-region post-processing)."""
    from scipy import ndimage
    holes, count = ndimage.label(~mask)
    if count == 0:
        return mask
    sizes = np.bincount(holes.ravel())
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small = np.flatnonzero(sizes <= share * mask.sum())
    small = small[(small > 0) & ~np.isin(small, border)]
    return mask | np.isin(holes, small)


def run(it, features, extra=None, shift=0.0, learn_box=True, smoothing=3, fill=None):
    state["extra"], state["shift"], state["grid"] = extra, shift, tuple(it["grid"])
    try:
        mask = P.points_mask(features, it["grid"], it["crop"], box=it["box"], learn_box=learn_box,
                             smoothing=smoothing)
        return iou(mask if fill is None else filled(mask, fill), it["gt"])
    finally:
        state["extra"], state["shift"] = None, 0.0


def positions(it, weight):
    gh, gw = it["grid"]
    rows, cols = np.mgrid[0:gh, 0:gw]
    return weight * np.stack([rows.ravel() / gh - 0.5, cols.ravel() / gw - 0.5], 1).astype(np.float32)


def colours(it, weight):
    """Each cell's mean colour (0-1, centred on the crop's) and its spread, times ``weight``."""
    gh, gw = it["grid"]
    crop = it["crop"].astype(np.float32) / 255.0
    H, W = crop.shape[:2]
    rows = np.minimum(np.arange(H) * gh // H, gh - 1)
    cols = np.minimum(np.arange(W) * gw // W, gw - 1)
    cell = (rows[:, None] * gw + cols[None, :]).ravel()
    counts = np.maximum(np.bincount(cell, minlength=gh * gw), 1)[:, None]
    flat = crop.reshape(-1, 3)
    mean = np.stack([np.bincount(cell, flat[:, c], gh * gw) for c in range(3)], 1) / counts
    square = np.stack([np.bincount(cell, flat[:, c] ** 2, gh * gw) for c in range(3)], 1) / counts
    spread = np.sqrt(np.maximum(square - mean ** 2, 0))
    return weight * np.concatenate([mean - mean.mean(0), spread], 1).astype(np.float32)


def with_c(c, call):
    """``call()`` with the box classifier's logistic regression at inverse regularisation ``c`` (default 1)."""
    import sklearn.linear_model as linear
    original = linear.LogisticRegression
    linear.LogisticRegression = lambda **kw: original(**{**kw, "C": c})
    try:
        return call()
    finally:
        linear.LogisticRegression = original


def joined(*parts, weights=None):
    weights = weights or [1.0] * len(parts)
    return np.concatenate([w * unit(p) for p, w in zip(parts, weights)], axis=1)


VARIANTS = {
    "tokens (production)": lambda it: run(it, it["tokens"]),
    "keys": lambda it: run(it, it["keys"]),
    "block8": lambda it: run(it, it["block8"]),
    **{f"block{i}": (lambda it, i=i: run(it, it[f"block{i}"])) for i in (5, 6, 7, 9, 10)},
    "block8 + keys": lambda it: run(it, joined(it["block8"], it["keys"])),
    "block7 + block9": lambda it: run(it, joined(it["block7"], it["block9"])),
    "recut (seeded cut): tokens": lambda it: run(it, it["tokens"], learn_box=False),
    "recut (seeded cut): block8": lambda it: run(it, it["block8"], learn_box=False),
    "recut (seeded cut): block9": lambda it: run(it, it["block9"], learn_box=False),
    "recut (seeded cut): keys": lambda it: run(it, it["keys"], learn_box=False),
    **{f"block8, smoothing {k}": (lambda it, k=k: run(it, it["block8"], smoothing=k)) for k in (1, 5, 8, 12, 20)},
    **{f"block8, holes under {f} filled": (lambda it, f=f: run(it, it["block8"], fill=f)) for f in (0.02, 0.1, 0.3)},
    "block8, averaged with the mirrored crop's": lambda it: run(
        it, (it["block8"].astype(np.float32) + it["block8_flipped"].astype(np.float32)) / 2),
    "block8, joined with the mirrored crop's": lambda it: run(it, joined(it["block8"], it["block8_flipped"])),
    **{f"block8, classifier + colour {w}": (lambda it, w=w: run(it, it["block8"], extra=colours(it, w)))
       for w in (1, 3, 10)},
    **{f"block8, C={c}": (lambda it, c=c: with_c(c, lambda: run(it, it["block8"]))) for c in (0.1, 10.0)},
    "tokens + keys": lambda it: run(it, joined(it["tokens"], it["keys"])),
    "tokens + block8": lambda it: run(it, joined(it["tokens"], it["block8"])),
    "tokens + block5": lambda it: run(it, joined(it["tokens"], it["block5"])),
    "tokens, classifier + block8": lambda it: run(it, it["tokens"], extra=unit(it["block8"])),
    "tokens, classifier + block5": lambda it: run(it, it["tokens"], extra=unit(it["block5"])),
    "tokens, classifier + keys": lambda it: run(it, it["tokens"], extra=unit(it["keys"])),
    "tokens, classifier + position 1": lambda it: run(it, it["tokens"], extra=positions(it, 1.0)),
    "tokens, classifier + position 3": lambda it: run(it, it["tokens"], extra=positions(it, 3.0)),
    "threshold 0.4": lambda it: run(it, it["tokens"], shift=-0.1),
    "threshold 0.6": lambda it: run(it, it["tokens"], shift=0.1),
    "threshold oracle (0.2-0.8)": lambda it: max(run(it, it["tokens"], shift=s) for s in np.arange(-0.3, 0.31, 0.1)),
}
names = sys.argv[2].split(";") if len(sys.argv) > 2 else list(VARIANTS)
for name in names:
    res = {}
    for it in items:
        res.setdefault(it["folder"], []).append(VARIANTS[name](it))
    print(f"{name:34s}", "  ".join(f"{k}: n={len(v)} >=.5 {np.mean(np.array(v) >= .5):.3f} >=.8 "
                                  f"{np.mean(np.array(v) >= .8):.3f} mean {np.mean(v):.3f}" for k, v in res.items()),
          flush=True)
