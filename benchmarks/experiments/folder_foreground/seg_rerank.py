"""Re-rank the segments proposals with folder-level foreground (k-means of the folder's tokens, cluster attention)."""
import os, sys, json, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from pathlib import Path
import numpy as np
from PIL import Image
from scipy import ndimage
from sklearn.cluster import KMeans
from benchmarks import real_dev as bench
import engine.method.proposals as P
from engine.method.features import ImageFeatures

name, folder, K = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
images = [i for i in bench.load_ground_truth(folder) if i.source not in bench.DENSE_SOURCES]
F = []
for im in images:
    z = np.load(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + f"/feats/{name}/{Path(im.file_name).stem}.npz")
    F.append(ImageFeatures(grid_hw=tuple(z["grid_hw"]), input_hw=tuple(z["input_hw"]), keys=z["keys"], tokens=z["tokens"],
                           cls_token=z["cls_token"], cls_attention=z["cls_attention"]))
def unit(x): return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
T = [f.tokens.astype(np.float32) for f in F]
mu = np.concatenate(T).mean(0)
U = [unit(t - mu) for t in T]
allU = np.concatenate(U); rng = np.random.default_rng(0)
km = KMeans(K, n_init=3, random_state=0).fit(allU[rng.choice(len(allU), min(60000, len(allU)), replace=False)])
labs = [km.predict(u) for u in U]
A = [f.cls_attention.mean(0) for f in F]
att = np.array([np.mean(np.concatenate([a[l == c] / a.mean() for a, l in zip(A, labs) if (l == c).any()])) for c in range(K)])
print("cluster attention", att.round(2))
cache = Path(os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + f"/segprops_{name}.npz")
props = {}
if cache.exists():
    props = dict(np.load(cache, allow_pickle=True))["p"].item()
else:
    for im, f in zip(images, F):
        img = np.asarray(Image.open(folder / "images" / im.file_name).convert("RGB"))
        p = P.propose(img, f, "dinov2", "segments")
        props[im.file_name] = (p.masks, p.patch_masks, np.asarray(p.scores, float))
    np.savez(cache, p=np.array(props, dtype=object))
def fg_score(pm, soft):
    s = []
    for m in pm:
        ring = ndimage.binary_dilation(m, iterations=2) & ~m
        s.append(soft[m].mean() - (soft[ring].mean() if ring.any() else 0))
    return np.array(s)
for variant in ["attention (today)", "fg in-ring", "fg in-ring + 0.2 log att", "fg inside", "fg hard in-ring"]:
    preds = {}
    for im, f, l, a in zip(images, F, labs, A):
        masks, pm, sc = props[im.file_name]
        if len(masks) == 0:
            preds[im.file_name] = bench.StagePrediction(masks, sc, None); continue
        soft = np.clip((att[l] - 0.5) / 2.0, 0, 1).reshape(f.grid_hw)
        hard = (att[l] > 1.0).reshape(f.grid_hw).astype(float)
        if variant.startswith("attention"): s = sc
        elif variant == "fg in-ring": s = fg_score(pm, soft)
        elif variant == "fg in-ring + 0.2 log att": s = fg_score(pm, soft) + 0.2 * np.log(np.maximum(sc, 1e-3))
        elif variant == "fg inside": s = np.array([soft[m].mean() for m in pm])
        else: s = fg_score(pm, hard)
        preds[im.file_name] = bench.StagePrediction(masks, s, None)
    r = bench.score_images(images, preds)
    print(f"{variant:28s}", {k: round(r[k], 3) for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50") if r.get(k) is not None}, flush=True)
