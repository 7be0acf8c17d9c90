"""Clicks after a box, simulated on cached crops (issue 21): the box, then up to 9 more actions, each a click at
the centre of the larger error region (positive on a missed part, negative on a part held wrongly), undone (one
more action) when it does not raise the IoU, as benchmarks.review_clicks' extra clicks are. A fast stand-in for
the project benchmark: no project, no other objects, the crop's own patch vectors (block 8, as production).

.venv/bin/python benchmarks/experiments/box_prompt/click_loop.py CROPS.pkl VARIANT [FOLDER]
CROPS.pkl from cache_layers.py (keys "crop", "grid", "gt", "box", "block8", "folder"). Prints NoC@50, NoC@80,
reached 0.5 / 0.8 per folder and how many clicks were undone."""
import os
import pickle
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from engine.method import prompt as P  # noqa: E402

CAP = 10
MONOTONE = os.environ.get("CLICK_MONOTONE", "0") == "1"
MIN_CLICK_PIXELS = 20


def iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def simulate(it, mask_of):
    """Actions' IoU history for one crop; mask_of(positive, negative) -> mask."""
    gt = it["gt"]
    positive, negative = [], []
    mask = mask_of(positive, negative)
    history = [iou(mask, gt)]
    blocked = np.zeros_like(gt)
    undone = made = 0
    while len(history) < CAP and max(history) < 0.8:
        regions = {kind: ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
                   for kind, m in (("positive", gt & ~mask & ~blocked), ("negative", mask & ~gt & ~blocked))
                   if m.sum() >= MIN_CLICK_PIXELS}
        if not regions:
            break
        kind = max(regions, key=lambda k: float(regions[k].max()))
        row, col = np.unravel_index(int(np.argmax(regions[kind])), gt.shape)
        radius = max(float(regions[kind][row, col]) / 2, 1.0)
        rr, cc = np.ogrid[:gt.shape[0], :gt.shape[1]]
        blocked |= (rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2
        point = (col + 0.5, row + 0.5)
        tried_pos = positive + [point] if kind == "positive" else positive
        tried_neg = negative + [point] if kind == "negative" else negative
        candidate = mask_of(tried_pos, tried_neg)
        if MONOTONE:  # a positive click only adds to the mask on screen, a negative one only removes
            candidate = (mask | candidate) if kind == "positive" else (mask & candidate)
        made += 1
        value = iou(candidate, gt)
        history.append(max(value, history[-1]) if value > history[-1] else history[-1])
        if value > iou(mask, gt):
            mask, positive, negative = candidate, tried_pos, tried_neg
        else:
            undone += 1
            if len(history) < CAP:
                history.append(history[-1])  # the undo is one more action
    return history, undone, made


def noc(history, threshold):
    for k, value in enumerate(history):
        if value >= threshold:
            return k + 1
    return CAP


def production(it):
    def mask_of(positive, negative):
        return P.points_mask(it["block8"], it["grid"], it["crop"], positive=positive, negative=negative,
                             box=it["box"])
    return mask_of


VARIANTS = {"production": production}


def main():
    items = pickle.load(open(sys.argv[1], "rb"))
    variant = sys.argv[2]
    folders = sys.argv[3:] or sorted({it["folder"] for it in items})
    if "." in variant:  # module.function: a variant defined in another file
        import importlib
        module, name = variant.rsplit(".", 1)
        make = getattr(importlib.import_module(module), name)
    else:
        make = VARIANTS[variant]
    for folder in folders:
        chosen = [it for it in items if it["folder"] == folder]
        rows = [simulate(it, make(it)) for it in chosen]
        n50 = np.mean([noc(h, 0.5) for h, _, _ in rows])
        n80 = np.mean([noc(h, 0.8) for h, _, _ in rows])
        r50 = np.mean([max(h) >= 0.5 for h, _, _ in rows])
        r80 = np.mean([max(h) >= 0.8 for h, _, _ in rows])
        box80 = np.mean([h[0] >= 0.8 for h, _, _ in rows])
        undone = sum(u for _, u, _ in rows)
        made = sum(m for _, _, m in rows)
        print(f"{variant:28s} {folder:12s} n={len(chosen):3d} NoC@50 {n50:.2f} NoC@80 {n80:.2f} "
              f"reached50 {r50:.3f} reached80 {r80:.3f} box80 {box80:.3f} clicks undone {undone}/{made}",
              flush=True)


if __name__ == "__main__":
    main()
