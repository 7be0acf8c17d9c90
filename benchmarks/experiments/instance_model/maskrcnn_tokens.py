"""Experiment (issue 20): torchvision's Mask R-CNN heads on a simple pyramid over cached DINOv2 tokens, trained
on a project's own proposals (the pseudo-masks), then scored against the folder's ground truth, class-agnostic.

    python benchmarks/experiments/instance_model/maskrcnn_tokens.py PROJECT FEATURES GROUND_TRUTH [--epochs 3]

PROJECT: a finished maskdistill project of the folder (its proposals/ are the training targets); FEATURES: a
folder of <image stem>.npz with `tokens` (N, 384) and `grid_hw` (candidate_tree/extract.py writes them);
GROUND_TRUTH: the folder's COCO file. Prints a table and writes OUT/results.json.
"""
import argparse
import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from pycocotools import mask as mu  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models.detection import MaskRCNN  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.ops import MultiScaleRoIAlign  # noqa: E402

from engine.atomic import read_json  # noqa: E402
from engine.state.project import load_image_proposals  # noqa: E402

SIDE, R = 448, 160


class TokenPyramid(nn.Module):
    """ViTDet's simple pyramid from one token grid (stride 14): strides 7, 14, 28, 56."""

    def __init__(self, dim=384, channels=256):
        super().__init__()
        self.out_channels = channels
        self.proj = nn.Sequential(nn.Conv2d(dim, channels, 1), nn.GroupNorm(32, channels), nn.ReLU())
        self.up = nn.ConvTranspose2d(channels, channels, 2, 2)
        self.smooth = nn.Conv2d(channels, channels, 3, padding=1)
        self.tokens = None  # (B, dim, gh, gw), set before each call: the images themselves are not looked at

    def forward(self, images):
        x = self.proj(self.tokens)
        return OrderedDict([("0", self.smooth(self.up(x))), ("1", x), ("2", nn.functional.max_pool2d(x, 2)),
                            ("3", nn.functional.max_pool2d(x, 4))])


def build_model():
    anchors = AnchorGenerator(sizes=((24,), (48,), (112,), (256,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    return MaskRCNN(TokenPyramid(), num_classes=2, min_size=SIDE, max_size=SIDE, image_mean=[0, 0, 0],
                    image_std=[1, 1, 1], rpn_anchor_generator=anchors,
                    box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2),
                    mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 14, 2),
                    rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=600,
                    rpn_post_nms_top_n_test=300, box_batch_size_per_image=128, box_detections_per_img=100,
                    box_score_thresh=0.01)


def resize_mask(mask, side):
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.BILINEAR)) >= 128


def load_folder(project, features, ground_truth):
    gt = json.loads(Path(ground_truth).read_text())
    anns = {}
    for a in gt["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    by_name = {im["file_name"]: im for im in gt["images"]}
    samples = []
    for entry in read_json(Path(project) / "images.json"):
        im = by_name[entry["relative_path"]]
        z = np.load(Path(features) / (Path(entry["relative_path"]).stem + ".npz"))
        gh, gw = (int(v) for v in z["grid_hw"])
        tokens = torch.tensor(z["tokens"].astype(np.float32)).T.reshape(-1, gh, gw)
        proposals, _, _ = load_image_proposals(Path(project) / "proposals" / f"{entry['image_id']}.npz",
                                               (entry["height"], entry["width"]))
        pseudo = np.array([resize_mask(m, SIDE) for m in proposals.masks]).reshape(-1, SIDE, SIDE)
        h, w = im["height"], im["width"]
        truth = []
        for a in anns.get(im["id"], []):
            seg = a["segmentation"]
            rle = mu.frPyObjects(seg, h, w) if isinstance(seg, list) or isinstance(seg.get("counts"), list) else seg
            m = mu.decode(mu.merge(rle) if isinstance(rle, list) else rle)
            truth.append(resize_mask(m, R))
        samples.append({"tokens": tokens, "pseudo": pseudo, "pseudo_scores": np.asarray(proposals.scores),
                        "truth": np.array(truth).reshape(-1, R, R)})
    return samples


def target_of(masks):
    keep = [m for m in masks if m.sum() >= 16]
    if not keep:
        return None
    boxes = []
    for m in keep:
        rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.ones(len(keep), dtype=torch.int64),
            "masks": torch.tensor(np.array(keep), dtype=torch.uint8)}


def train(model, samples, epochs, batch=2, lr=0.01, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    usable = [s for s in samples if target_of(s["pseudo"]) is not None]
    steps, start = 0, time.time()
    total = epochs * (len(usable) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=max(total, 1), pct_start=0.1)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(usable))
        for b in range(0, len(order) - batch + 1, batch):
            chunk = [usable[i] for i in order[b:b + batch]]
            flips = rng.random(len(chunk)) < 0.5
            tokens = torch.stack([s["tokens"].flip(-1) if f else s["tokens"] for s, f in zip(chunk, flips)])
            targets = [target_of(s["pseudo"][:, :, ::-1] if f else s["pseudo"]) for s, f in zip(chunk, flips)]
            model.backbone.tokens = tokens
            losses = model([torch.zeros(3, SIDE, SIDE)] * len(chunk), targets)
            loss = sum(losses.values())
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            steps += 1
            if steps % 20 == 0:
                print(f"  step {steps}/{total} loss {loss.item():.3f} {(time.time() - start) / steps:.2f} s/step",
                      flush=True)
    return time.time() - start


@torch.no_grad()
def predict(model, samples):
    model.eval()
    out = []
    for s in samples:
        model.backbone.tokens = s["tokens"][None]
        result = model([torch.zeros(3, SIDE, SIDE)])[0]
        masks = result["masks"][:, 0].numpy() >= 0.5
        out.append((np.array([resize_mask(m, R) for m in masks]).reshape(-1, R, R), result["scores"].numpy()))
    return out


def score(samples, predictions):
    """CorLoc (top mask's box), mask AP50 (COCO 101-point), recall@0.5 of the masks given."""
    corloc, ranked, n_truth, found = [], [], 0, 0
    for s, (masks, scores) in zip(samples, predictions):
        truth = s["truth"]
        n_truth += len(truth)
        if not len(masks):
            corloc.append(False)
            continue
        order = np.argsort(-scores)
        masks, scores = masks[order], scores[order]
        t = truth.reshape(len(truth), -1).astype(np.float32)
        p = masks.reshape(len(masks), -1).astype(np.float32)
        inter = p @ t.T
        ious = inter / np.maximum(p.sum(1)[:, None] + t.sum(1)[None] - inter, 1)
        corloc.append(bool(len(truth)) and box_hit(masks[0], truth))
        used = np.zeros(len(truth), bool)
        for i in range(len(masks)):
            cand = np.where(used, 0, ious[i]) if len(truth) else np.zeros(0)
            hit = len(cand) > 0 and cand.max() >= 0.5
            if hit:
                used[int(cand.argmax())] = True
            ranked.append((scores[i], hit))
        found += int(used.sum())
    ranked.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in ranked])
    fp = np.cumsum([not r[1] for r in ranked])
    rec, prec = tp / max(n_truth, 1), tp / np.maximum(tp + fp, 1)
    ap = np.mean([prec[rec >= t].max() if (rec >= t).any() else 0 for t in np.linspace(0, 1, 101)])
    return {"corloc": round(float(np.mean(corloc)), 3), "mask_ap50": round(float(ap), 3),
            "mask_recall50": round(found / max(n_truth, 1), 3)}


def box_hit(mask, truth):
    def box(m):
        rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
        return (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) if len(rows) else (0, 0, 0, 0)
    a = box(mask)
    for t in truth:
        b = box(t)
        iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        if union and iw * ih / union >= 0.5:
            return True
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("project")
    parser.add_argument("features")
    parser.add_argument("ground_truth")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/instance-model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    samples = load_folder(args.project, args.features, args.ground_truth)
    results = {"images": len(samples),
               "pseudo_masks": score(samples, [(s["pseudo"] if len(s["pseudo"]) == 0 else
                                                np.array([resize_mask(m, R) for m in s["pseudo"]]),
                                                s["pseudo_scores"]) for s in samples])}
    print("pseudo-masks (the project's proposals):", results["pseudo_masks"], flush=True)
    model = build_model()
    results["train_seconds"] = round(train(model, samples, args.epochs), 1)
    start = time.time()
    results["trained"] = score(samples, predict(model, samples))
    results["predict_seconds"] = round(time.time() - start, 1)
    print("trained on them:", results, flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
