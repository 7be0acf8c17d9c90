"""VoteCut-like consensus over the segments k-means seeds: a candidate that other seeds also find ranks higher."""
import os, sys, json
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from pathlib import Path
import numpy as np
from PIL import Image
from benchmarks import real_dev as bench
import engine.method.proposals as P
from engine.method.features import ImageFeatures
from engine.masks import iou
name, folder, alpha = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
VOTERS = int(os.environ.get("VOTERS", "4"))
orig_spm = P.segment_patch_masks
def voted(features, centre, ks=(2, 3, 4, 6, 8), min_area_fraction=0.004, max_area_fraction=0.5, seed=0):
    base = orig_spm(features, centre, ks, min_area_fraction, max_area_fraction, seed)
    others = [orig_spm(features, centre, ks, min_area_fraction, max_area_fraction, seed + 100 + v) for v in range(VOTERS)]
    votes = [sum(any(iou(m, o) >= 0.7 for o in other) for other in others) for m in base]
    voted.votes = votes
    return base
P.segment_patch_masks = voted
orig_att = P.attention_ratio
def att(features, m):
    a = orig_att(features, m)
    try:
        idx = next(i for i, b in enumerate(voted.last) if b is m)
    except Exception:
        return a
    return a
images = [i for i in bench.load_ground_truth(folder) if i.source not in bench.DENSE_SOURCES]
# patch segment_proposals scoring: wrap by recomputing scores after the fact
orig_sp = P.segment_proposals
def sp(image, features, centre, max_masks=12, min_attention_ratio=1.0, min_area_fraction=0.001, max_area_fraction=0.8, seed=0):
    patch_masks = voted(features, centre, max_area_fraction=max_area_fraction, seed=seed)
    votes = np.array(voted.votes, float)
    orig_local = P.segment_patch_masks
    P.segment_patch_masks = lambda *a, **k: patch_masks
    weights = iter((1 + votes / VOTERS) ** alpha)
    P.attention_ratio = lambda f, m: orig_att(f, m) * next(weights, 1.0)
    try:
        return orig_sp(image, features, centre, max_masks, min_attention_ratio, min_area_fraction, max_area_fraction, seed)
    finally:
        P.segment_patch_masks = voted; P.attention_ratio = orig_att
P.segment_proposals = sp
preds = {}
for im in images:
    z = np.load(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + f"/feats/{name}/{Path(im.file_name).stem}.npz")
    f = ImageFeatures(grid_hw=tuple(z["grid_hw"]), input_hw=tuple(z["input_hw"]), keys=z["keys"], tokens=z["tokens"],
                      cls_token=z["cls_token"], cls_attention=z["cls_attention"])
    img = np.asarray(Image.open(folder / "images" / im.file_name).convert("RGB"))
    p = P.propose(img, f, "dinov2", "segments")
    preds[im.file_name] = bench.StagePrediction(p.masks, np.asarray(p.scores, float), None)
s = bench.score_images(images, preds)
print(name, "alpha", alpha, {k: round(s[k], 3) for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")}, flush=True)
