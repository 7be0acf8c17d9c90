"""Instance model (Mask R-CNN heads on a token pyramid) trained on the tree's best nodes by folder foreground,
with DropLoss (proposals overlapping no target are ignored, not background). Scored at 160 px, class-agnostic."""
import os, sys, json, time
sys.argv = [sys.argv[0], "feral_cats", "8"] + sys.argv[1:]
exec(open(str(__import__("pathlib").Path(__file__).with_name("score.py"))).read().split("from rank import nms, boxes_of")[0].replace("for k, f in {", "for k, f in {} and {"))
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "instance_model"))
import torch
import maskrcnn_tokens as mt
from pycocotools import mask as mu
from torchvision.models.detection._utils import Matcher
EPOCHS = int(os.environ.get("EPOCHS", "3")); PER_IMAGE = int(os.environ.get("PER_IMAGE", "4"))
# heads: the top-attention cluster's blobs inside a node
top = int(np.argmax(att))
for z, l in zip(imgs, labs):
    part = (l == top).reshape(z["masks"].shape[1:])
    comp, n = ndimage.label(part, structure=np.ones((3, 3)))
    M = z["masks"].reshape(len(z["masks"]), -1)
    counts = np.zeros(len(M))
    for c in range(1, n + 1):
        C = comp.ravel() == c
        if C.sum() >= 2: counts += M[:, C].sum(1) >= 0.5 * C.sum()
    z["heads"] = counts
score_fn = lambda z: s_iou(z) + 0.1 * rule(z) - 0.5 * np.maximum(z["heads"] - 1, 0)
print("teacher ranking", evaluate(imgs, score_fn), flush=True)
gt = json.loads(open(str(__import__("pathlib").Path(__file__).resolve().parents[4] / "shared/data/domains/feral_cats/ground_truth.json")).read())
anns = {}
for a in gt["annotations"]: anns.setdefault(a["image_id"], []).append(a)
by_stem = {os.path.splitext(im["file_name"])[0]: im for im in gt["images"]}
samples = []
for z, f in zip(imgs, feats):
    im = by_stem[z["name"]]; h, w = im["height"], im["width"]
    gh, gw = (int(v) for v in f["grid_hw"])
    tokens = torch.tensor(f["tokens"].astype(np.float32)).T.reshape(-1, gh, gw)
    s = score_fn(z)
    M = z["masks"].reshape(len(z["masks"]), -1).astype(np.float32)
    prec = (M @ z["fg"].ravel().astype(np.float32)) / M.sum(1)
    order = np.argsort(-s); keep = []
    for i in order:
        if all((M[i] * M[j]).sum() == 0 for j in keep):
            if keep and prec[i] < 0.6: continue
            keep.append(i)
            if len(keep) >= PER_IMAGE: break
    pseudo = np.array([mt.resize_mask(z["masks"][i], mt.SIDE) for i in keep]).reshape(-1, mt.SIDE, mt.SIDE)
    truth = []
    for a in anns.get(im["id"], []):
        seg = a["segmentation"]
        rle = mu.frPyObjects(seg, h, w) if isinstance(seg, list) or isinstance(seg.get("counts"), list) else seg
        truth.append(mt.resize_mask(mu.decode(mu.merge(rle) if isinstance(rle, list) else rle), mt.R))
    samples.append({"tokens": tokens, "pseudo": pseudo, "pseudo_scores": s[keep], "truth": np.array(truth).reshape(-1, mt.R, mt.R)})
print("targets per image", np.mean([len(s["pseudo"]) for s in samples]))
print("targets as predictions", mt.score(samples, [(np.array([mt.resize_mask(m, mt.R) for m in s["pseudo"]]).reshape(-1, mt.R, mt.R), s["pseudo_scores"]) for s in samples]), flush=True)

class DropLossMatcher(Matcher):
    """Proposals overlapping no target (IoU < 0.01) are ignored instead of taught as background (CutLER)."""
    def __call__(self, quality):
        matches = super().__call__(quality)
        if quality.numel():
            matches[quality.max(dim=0).values < 0.01] = self.BETWEEN_THRESHOLDS
        return matches
torch.set_num_threads(2)
model = mt.build_model()
if os.environ.get("DROPLOSS", "1") == "1":
    model.roi_heads.proposal_matcher = DropLossMatcher(0.5, 0.5, allow_low_quality_matches=False)
t = mt.train(model, samples, EPOCHS)
print("train s", round(t), flush=True)
pred = mt.predict(model, samples)
print("trained", mt.score(samples, pred), flush=True)
torch.save(model.state_dict(), os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment") + "/inst_model.pt")
# self-training round: the model's confident disjoint outputs as the next targets
