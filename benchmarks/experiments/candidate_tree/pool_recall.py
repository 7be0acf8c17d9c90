"""Recall at IoU 0.5 of candidate pools (before ranking) on a folder with COCO ground truth."""
import os as _os
import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:0] = [str(_HERE), str(_HERE.parents[2])]  # these scripts and the repository (engine)
WORK = _Path(_os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))  # features and nodes go here
import os, sys, json, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
import numpy as np
from pycocotools import mask as mu
from PIL import Image
from engine.method.features import ImageFeatures
from engine.method import proposals as P
from hier import ward_tree, node_masks

folder, name = Path(sys.argv[1]), sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 10**9
gt = json.loads((folder / "ground_truth.json").read_text())
anns = {}
for a in gt["annotations"]:
    anns.setdefault(a["image_id"], []).append(a)


def load(im):
    z = np.load(WORK / "feats" / name / (Path(im["file_name"]).stem + ".npz"))
    return ImageFeatures(grid_hw=tuple(z["grid_hw"]), input_hw=tuple(z["input_hw"]), keys=z["keys"], tokens=z["tokens"],
                         cls_token=z["cls_token"], cls_attention=z["cls_attention"])


def up(masks, h, w):
    """patch masks -> image-size bool by bilinear upsampling of the float mask at 0.5"""
    out = np.zeros((len(masks), h, w), bool)
    for i, m in enumerate(masks):
        g = Image.fromarray(m.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR)
        out[i] = np.asarray(g) >= 0.5
    return out


def best_ious(gts, cands):
    if not len(cands):
        return np.zeros(len(gts))
    c = cands.reshape(len(cands), -1).astype(np.float32)
    res = []
    for g in gts:
        g = g.ravel().astype(np.float32)
        inter = c @ g
        union = c.sum(1) + g.sum() - inter
        res.append((inter / np.maximum(union, 1)).max())
    return np.array(res)


pools = {}
t0 = time.time()
counts = {}
for im in gt["images"][:limit]:
    if im["id"] not in anns:
        continue
    f = load(im)
    gh, gw = f.grid_hw
    h, w = im["height"], im["width"]
    gts = []
    for a in anns[im["id"]]:
        seg = a["segmentation"]
        if isinstance(seg, dict):
            if isinstance(seg["counts"], list):
                seg = mu.frPyObjects(seg, h, w)
            gts.append(mu.decode(seg).astype(bool))
        else:
            gts.append(mu.decode(mu.merge(mu.frPyObjects(seg, h, w))).astype(bool))
    if not gts or a.get("iscrowd"):
        pass
    cand = {}
    seg = P.segment_patch_masks(f, True, max_area_fraction=0.8)
    cand["segments"] = np.stack(seg) if seg else np.zeros((0, gh, gw), bool)
    unit = P._unit(P.key_matrix(f, True))
    parent, children, size, height = ward_tree(unit, (gh, gw))
    n = gh * gw
    cand["ward_keys"], _ = node_masks(children, n, (gh, gw), 4, int(0.8 * n))
    ut = P._unit(f.tokens.astype(np.float32) - f.tokens.astype(np.float32).mean(0))
    parent, children, size, height = ward_tree(ut, (gh, gw))
    cand["ward_tokens"], _ = node_masks(children, n, (gh, gw), 4, int(0.8 * n))
    cand["all"] = np.concatenate([cand["segments"], cand["ward_keys"], cand["ward_tokens"]])
    for k, v in cand.items():
        r = best_ious(gts, up(v, h, w))
        pools.setdefault(k, []).extend(r.tolist())
        counts.setdefault(k, []).append(len(v))
print(name, "images", len(counts["all"]), "objects", len(pools["all"]), f"{time.time()-t0:.0f}s")
for k, v in pools.items():
    v = np.array(v)
    print(f"{k:12s} recall@0.5 {np.mean(v >= 0.5):.3f}  @0.7 {np.mean(v >= 0.7):.3f}  mean best IoU {v.mean():.3f}  cands/img {np.mean(counts[k]):.0f}")
