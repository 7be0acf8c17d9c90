"""One click -> a tree node containing the clicked patch, chosen by a per-node score; IoU with the clicked cat."""
import os, sys, json
sys.argv = [sys.argv[0], "feral_cats", "8"]
exec(open(str(__import__("pathlib").Path(__file__).with_name("score.py"))).read().split("from rank import nms, boxes_of")[0].replace("for k, f in {", "for k, f in {} and {"))
from pycocotools import mask as mu
gt = json.loads(open(str(__import__("pathlib").Path(__file__).resolve().parents[4] / "shared/data/domains/feral_cats/ground_truth.json")).read())
anns = {}
for a in gt["annotations"]: anns.setdefault(a["image_id"], []).append(a)
by_stem = {os.path.splitext(im["file_name"])[0]: im for im in gt["images"]}
res = {k: [] for k in ["rule", "contrast", "fg_iou+rule", "oracle", "smallest>=8"]}
for z in imgs[:60]:
    im = by_stem[z["name"]]; h, w = im["height"], im["width"]
    gh, gw = z["masks"].shape[1:]
    ious_all = z["ious"].astype(np.float32)
    sc = {"rule": rule(z), "contrast": contrast(z), "fg_iou+rule": s_iou(z) + 0.1 * rule(z)}
    for j, a in enumerate(anns.get(im["id"], [])):
        if j >= ious_all.shape[1] or not z["gt_masked"][j]: continue
        seg = a["segmentation"]
        rle = mu.frPyObjects(seg, h, w) if isinstance(seg, list) or isinstance(seg.get("counts"), list) else seg
        m = mu.decode(mu.merge(rle) if isinstance(rle, list) else rle).astype(bool)
        d = ndimage.distance_transform_edt(m)
        r, c = np.unravel_index(np.argmax(d), d.shape)
        pr, pc = min(int(r * gh / h), gh - 1), min(int(c * gw / w), gw - 1)
        cand = np.flatnonzero(z["masks"][:, pr, pc])
        if not len(cand): continue
        ious = ious_all[cand, j]
        for k, s in sc.items():
            res[k].append(float(ious[np.argmax(s[cand])]))
        res["oracle"].append(float(ious.max()))
        areas = z["masks"][cand].reshape(len(cand), -1).sum(1)
        ok = areas >= 8
        res["smallest>=8"].append(float(ious[ok][np.argmin(areas[ok])]) if ok.any() else 0.0)
for k, v in res.items():
    v = np.array(v); print(f"{k:12s} n {len(v)} mean IoU {v.mean():.3f} >=0.5 {np.mean(v >= 0.5):.3f} >=0.8 {np.mean(v >= 0.8):.3f}")
