"""Per image: Ward tree nodes with descriptors and (for analysis) IoU with ground truth at 160 px."""
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
from scipy import ndimage
from engine.method import proposals as P
from hier import ward_tree

folder, name = Path(sys.argv[1]), sys.argv[2]
out = WORK / "nodes" / name
out.mkdir(parents=True, exist_ok=True)
gt = json.loads((folder / "ground_truth.json").read_text())
anns = {}
for a in gt["annotations"]:
    anns.setdefault(a["image_id"], []).append(a)
R = 160


def gt_masks(im):
    h, w = im["height"], im["width"]
    res = []
    for a in anns.get(im["id"], []):
        seg = a.get("segmentation")
        if isinstance(seg, dict):
            if isinstance(seg["counts"], list):
                seg = mu.frPyObjects(seg, h, w)
            m = mu.decode(seg)
        elif isinstance(seg, list) and seg:
            m = mu.decode(mu.merge(mu.frPyObjects(seg, h, w)))
        else:  # box only
            x, y, bw, bh = a["bbox"]; m = np.zeros((h, w), np.uint8); m[int(y):int(y + bh), int(x):int(x + bw)] = 1
        res.append(np.asarray(Image.fromarray(m * 255).resize((R, R), Image.BILINEAR)) >= 128)
    boxes = np.array([a["bbox"] for a in anns.get(im["id"], [])], float).reshape(-1, 4)
    masked = np.array([isinstance(a.get("segmentation"), dict) or bool(a.get("segmentation")) for a in anns.get(im["id"], [])], bool)
    return np.array(res).reshape(-1, R, R), boxes, masked


t0 = time.time()
for i, im in enumerate(gt["images"]):
    stem = Path(im["file_name"]).stem
    target = out / f"{stem}.npz"
    if target.exists():
        continue
    z = np.load(WORK / "feats" / name / f"{stem}.npz")
    gh, gw = z["grid_hw"]; n = gh * gw
    keys = z["keys"].astype(np.float32); tokens = z["tokens"].astype(np.float32)
    unit = P._unit(keys - keys.mean(0))
    parent, children, size, height = ward_tree(unit, (gh, gw))
    members = {}
    masks, node_h, par_h = [], [], []
    for t, (a, b) in enumerate(children):
        node = n + t
        m = (members.pop(a) if a >= n else [a]) + (members.pop(b) if b >= n else [b])
        members[node] = m
        if 4 <= len(m) <= 0.8 * n:
            mk = np.zeros(n, bool); mk[m] = True
            masks.append(mk); node_h.append(height[node]); par_h.append(height[parent[node]] if parent[node] >= 0 else height.max())
    masks = np.array(masks).reshape(-1, gh, gw)
    att = z["cls_attention"].mean(0)
    grids = masks.reshape(len(masks), -1).astype(np.float32)
    area = grids.sum(1)
    mean_tok = grids @ tokens / area[:, None]
    ring = np.array([ndimage.binary_dilation(m, iterations=2) & ~m for m in masks]).reshape(len(masks), -1).astype(np.float32)
    ring_tok = ring @ tokens / np.maximum(ring.sum(1), 1)[:, None]
    border = np.zeros((gh, gw), bool); border[0] = border[-1] = True; border[:, 0] = border[:, -1] = True
    border_frac = (masks & border).reshape(len(masks), -1).sum(1) / border.sum()
    att_ratio = (grids @ att / area) / att.mean()
    # IoU with GT at R x R
    up = np.array([np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((R, R), Image.BILINEAR)) >= 0.5 for m in masks])
    g, boxes, masked = gt_masks(im)
    U = up.reshape(len(up), -1).astype(np.float32); G = g.reshape(len(g), -1).astype(np.float32)
    inter = U @ G.T; union = U.sum(1)[:, None] + G.sum(1)[None] - inter
    ious = inter / np.maximum(union, 1)
    np.savez_compressed(target, masks=masks, node_h=node_h, par_h=par_h, mean_tok=mean_tok.astype(np.float16),
                        ring_tok=ring_tok.astype(np.float16), border_frac=border_frac, att_ratio=att_ratio, area=area / n,
                        ious=ious.astype(np.float16), gt_boxes=boxes, gt_masked=masked, hw=np.array([im["height"], im["width"]]),
                        cls_token=z["cls_token"], up=np.packbits(up, axis=-1))
    if i % 20 == 0:
        print(i, f"{time.time() - t0:.0f}s", len(masks), flush=True)
print("done", time.time() - t0)
