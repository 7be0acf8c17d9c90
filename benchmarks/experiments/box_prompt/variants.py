"""Box prompt variants on cached crop tokens (cache_crops.py). Prints IoU >= 0.5 / 0.8 shares and mean IoU per
folder for each variant. .venv/bin/python benchmarks/experiments/box_prompt/variants.py CROPS.pkl"""
import os, pickle, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np
from scipy import ndimage
from sklearn.cluster import KMeans
from engine.method import prompt as P
from engine.method.refine import upsample_soft
from engine.method.refine import guided_filter_many

items = pickle.load(open(sys.argv[1], "rb"))


def iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def baseline(it, **kw):
    return P.points_mask(it["tokens"].astype(np.float32), it["grid"], it["crop"], box=it["box"])


def centre_point(it, **kw):
    b = it["box"]
    return P.points_mask(it["tokens"].astype(np.float32), it["grid"], it["crop"], box=b,
                         positive=[((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)])


def crop_setup(it):
    """The cached crop's grid, pixels, unit tokens, patch graph, box cells and inside-the-box mask."""
    gh, gw = it["grid"]
    crop = it["crop"]
    H, W = crop.shape[:2]
    unit = P.unit_rows(it["tokens"].astype(np.float32), True)
    graph = P.window_graph(unit.reshape(gh, gw, -1), 2)
    inside = np.zeros((gh, gw), bool)
    cb = P._box_cells(it["box"], np.array([gh / H, gw / W]), (gh, gw), (H, W))
    inside[cb[0]:cb[2], cb[1]:cb[3]] = True
    inside = inside.ravel()
    return gh, gw, crop, H, W, unit, graph, cb, inside


def grabcut_tokens(it, iters=5, k_fg=3, k_bg=5, temp=0.05, smooth=3, eps=1e-3, soft_refine=True, keep="largest"):
    """GrabCut on tokens: prototypes of the object (inside, unlike the surroundings) and of the background
    (outside the box, and the inside cells currently background), each cell to the nearer; smoothed on the
    patch graph; soft probabilities refined on the pixels."""
    gh, gw, crop, H, W, unit, graph, cb, inside = crop_setup(it)
    if inside.all():
        return baseline(it)
    around = unit[~inside]
    fg = inside.copy()
    # start: inside cells less like the surroundings than the median
    like = unit[inside] @ (around.mean(0) / np.linalg.norm(around.mean(0)))
    fg[np.flatnonzero(inside)[like > np.median(like)]] = False
    prob = fg.astype(np.float32)
    for _ in range(iters):
        def protos(x, k):
            k = max(1, min(k, len(x)))
            c = KMeans(k, n_init=1, random_state=0).fit(x).cluster_centers_
            return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-6)
        fgp = protos(unit[fg], k_fg)
        bgp = protos(np.concatenate([around, unit[inside & ~fg]]), k_bg)
        s_fg = (unit @ fgp.T).max(1)
        s_bg = (unit @ bgp.T).max(1)
        logit = (s_fg - s_bg) / temp
        prob = 1 / (1 + np.exp(-np.clip(logit, -30, 30)))
        prob = P._smoothed(graph, prob, smooth)
        prob[~inside] = 0
        new = prob > 0.5
        if new.sum() < 2:
            break
        if (new == fg).all():
            break
        fg = new
    cells = prob.reshape(gh, gw)
    if keep == "largest":
        lab, n = ndimage.label(cells > 0.5)
        if n > 1:
            sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n + 1))
            cells = np.where(lab == 1 + int(np.argmax(sizes)), cells, np.minimum(cells, 0.49))
    if soft_refine:
        soft = upsample_soft(cells.astype(np.float32), H, W)
        guide = crop.astype(np.float32) / 255.0 @ np.array([0.299, 0.587, 0.114], np.float32)
        radius = max(2, int(round(H / gh)))
        mask = guided_filter_many(guide, soft[None], radius, eps, 2 if min(H, W) >= 128 else 1)[0] > 0.5
    else:
        mask = P._refined(crop, (cells > 0.5).astype(np.float32), eps)
    x0, y0, x1, y1 = P._pixel_box(it["box"], (H, W))
    box = np.zeros((H, W), bool)
    box[y0:y1, x0:x1] = True
    return mask & box


VARIANTS = {
    "baseline": baseline,
    "centre point": centre_point,
    "grabcut": grabcut_tokens,
    "grabcut hard-refine": lambda it: grabcut_tokens(it, soft_refine=False),
    "grabcut t=0.1": lambda it: grabcut_tokens(it, temp=0.1),
    "grabcut k1/3": lambda it: grabcut_tokens(it, k_fg=1, k_bg=3),
    "grabcut no-keep": lambda it: grabcut_tokens(it, keep=None),
}


def oracle(it, soft=True, eps=1e-3):
    """The annotation pooled to the crop's patch cells, then upsampled and refined as a prompt's cells are:
    the best any cell-level answer can do with this refinement."""
    gh, gw = it["grid"]
    crop, gt = it["crop"], it["gt"]
    H, W = gt.shape
    ys = (np.arange(H) * gh // H)
    xs = (np.arange(W) * gw // W)
    cells = np.zeros((gh, gw))
    np.add.at(cells, (ys[:, None].repeat(W, 1), xs[None, :].repeat(H, 0)), gt)
    counts = np.zeros((gh, gw))
    np.add.at(counts, (ys[:, None].repeat(W, 1), xs[None, :].repeat(H, 0)), 1)
    cells = (cells / np.maximum(counts, 1)).astype(np.float32)
    if not soft:
        return P._refined(crop, (cells > 0.5).astype(np.float32), eps)
    s = upsample_soft(cells, H, W)
    guide = crop.astype(np.float32) / 255.0 @ np.array([0.299, 0.587, 0.114], np.float32)
    return guided_filter_many(guide, s[None], max(2, int(round(H / gh))), eps, 2 if min(H, W) >= 128 else 1)[0] > 0.5


def logistic_tokens(it, iters=4, C=1.0, smooth=3, eps=1e-3, centre_point=False):
    """Box supervision as a classifier: cells outside the box are background, the inside cells unlike the
    surroundings the object; a logistic regression on the unit tokens, its inside answers relabel, repeat."""
    from sklearn.linear_model import LogisticRegression
    gh, gw, crop, H, W, unit, graph, cb, inside = crop_setup(it)
    if inside.all():
        return baseline(it)
    around = unit[~inside].mean(0)
    like = unit[inside] @ around
    fg = np.zeros_like(inside)
    fg[np.flatnonzero(inside)[like <= np.median(like)]] = True
    forced = None
    if centre_point:
        forced = (cb[0] + cb[2]) // 2 * gw + (cb[1] + cb[3]) // 2
        fg[forced] = True
    prob = fg.astype(np.float32)
    for _ in range(iters):
        y = fg.astype(int)
        clf = LogisticRegression(C=C, class_weight="balanced", max_iter=200).fit(unit, y)
        prob = clf.predict_proba(unit)[:, 1]
        prob = P._smoothed(graph, prob, smooth)
        prob[~inside] = 0
        if forced is not None:
            prob[forced] = 1
        new = prob > 0.5
        if new.sum() < 2 or (new == fg).all():
            break
        fg = new
    cells = prob.reshape(gh, gw).astype(np.float32)
    if forced is not None:  # the part holding the point
        lab, n = ndimage.label(cells > 0.5)
        cells = np.where(lab == lab.ravel()[forced], cells, np.minimum(cells, 0.49))
    soft = upsample_soft(cells, H, W)
    guide = crop.astype(np.float32) / 255.0 @ np.array([0.299, 0.587, 0.114], np.float32)
    mask = guided_filter_many(guide, soft[None], max(2, int(round(H / gh))), eps, 2 if min(H, W) >= 128 else 1)[0] > 0.5
    x0, y0, x1, y1 = P._pixel_box(it["box"], (H, W))
    box = np.zeros((H, W), bool)
    box[y0:y1, x0:x1] = True
    return mask & box


VARIANTS["logistic"] = logistic_tokens
VARIANTS["logistic + centre point"] = lambda it: logistic_tokens(it, centre_point=True)
VARIANTS["logistic C=0.1"] = lambda it: logistic_tokens(it, C=0.1)
VARIANTS["grabcut it10 bg8"] = lambda it: grabcut_tokens(it, iters=10, k_bg=8)
VARIANTS["grabcut smooth1"] = lambda it: grabcut_tokens(it, smooth=1)

VARIANTS["oracle soft"] = oracle
VARIANTS["oracle hard"] = lambda it: oracle(it, soft=False)
names = (sys.argv[2].split(",") if len(sys.argv) > 2 else list(VARIANTS)) if __name__ == "__main__" else []
for name in names:
    fn = VARIANTS[name]
    res = {}
    for it in items:
        res.setdefault(it["folder"], []).append(iou(fn(it), it["gt"]))
    print(f"{name:24s}", "  ".join(f"{k}: n={len(v)} >=.5 {np.mean(np.array(v) >= .5):.3f} >=.8 {np.mean(np.array(v) >= .8):.3f} mean {np.mean(v):.3f}" for k, v in res.items()), flush=True)

