"""The instance model, third try (issue 20, item 3): the Mask R-CNN heads of maskrcnn_tokens.py trained on the
engine's *final* objects (at this stop CorLoc 0.69-0.72, mask AP50 0.29-0.30 on feral_cats, against the 0.47 / 0.10
proposals the first two tries learnt from), over the project's own cached tokens; then scored alone, used to
re-score the final objects (score x (1 + a x the best IoU with a detection x its confidence)), and used to add
the detections no final object holds, ranked below them. Nothing is written into the project. Run from the
repository root:
    .venv/bin/python benchmarks/experiments/instance_model/maskrcnn_on_final.py PROJECT GROUND_TRUTH_FOLDER
Env: EPOCHS (3)."""
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.instance_model import maskrcnn_tokens as mr  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402

EPOCHS = int(os.environ.get("EPOCHS", "3"))
GRID = mr.SIDE // 14  # the model's square token grid; masks are squared to SIDE alike


def to_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.BILINEAR)) >= 128


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float32)
    b = b.reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    return inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)


project, folder = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(2)
images = common.scored_images(folder)
features_of = common.project_features(project)
final = common.final_objects(project, images)
samples = []
for image in images:
    masks, scores = final.get(image.file_name, (np.zeros((0, image.height, image.width), bool), np.zeros(0)))
    features = features_of(image.file_name)
    gh, gw = features.grid_hw
    tokens = torch.tensor(np.asarray(features.tokens, np.float32)).T.reshape(-1, gh, gw)
    tokens = torch.nn.functional.interpolate(tokens[None], size=(GRID, GRID), mode="bilinear", align_corners=False)[0]
    samples.append({"image": image, "tokens": tokens, "masks": masks, "scores": scores,
                    "pseudo": np.array([mr.resize_mask(m, mr.SIDE) for m in masks]).reshape(-1, mr.SIDE, mr.SIDE)})
print(f"{len(samples)} images, {sum(len(s['masks']) for s in samples)} final objects as targets", flush=True)
given = {s["image"].file_name: real_dev.StagePrediction(s["masks"], s["scores"], None) for s in samples}
print(f"final objects: {common.figures(images, given)}", flush=True)

model = mr.build_model()
train_seconds = mr.train(model, samples, EPOCHS)
start = time.time()
detections = mr.predict(model, samples)  # (masks at R x R, scores) per image
print(f"trained {train_seconds:.0f} s, predicted {time.time() - start:.0f} s", flush=True)

alone, best = {}, []
for s, (masks, det) in zip(samples, detections):
    image = s["image"]
    alone[image.file_name] = real_dev.StagePrediction(
        np.array([to_size(m, image.height, image.width) for m in masks]).reshape(-1, image.height, image.width),
        det, None)
    small = np.array([mr.resize_mask(m, mr.R) for m in s["masks"]]).reshape(-1, mr.R, mr.R)
    ious = iou_matrix(small, masks) if len(small) and len(masks) else np.zeros((len(small), len(masks)))
    best.append((ious * det[None]).max(axis=1) if ious.size else np.zeros(len(small)))
print(f"the model alone: {common.figures(images, alone)}", flush=True)
for a in (0.5, 1.0, 2.0, 4.0):
    stage = {s["image"].file_name: real_dev.StagePrediction(s["masks"], s["scores"] * (1 + a * b), None)
             for s, b in zip(samples, best)}
    print(f"final re-scored x (1 + {a} IoU x confidence): {common.figures(images, stage)}", flush=True)
for threshold in (0.5, 0.7, 0.9):
    stage = {}
    for s, (masks, det), b in zip(samples, detections, alone.values()):
        small = np.array([mr.resize_mask(m, mr.R) for m in s["masks"]]).reshape(-1, mr.R, mr.R)
        covered = (iou_matrix(masks, small).max(axis=1) if len(small) and len(masks) else np.zeros(len(masks)))
        new = (det >= threshold) & (covered < 0.5)
        floor = float(s["scores"].min()) if len(s["scores"]) else 1.0
        stage[s["image"].file_name] = real_dev.StagePrediction(
            np.concatenate([s["masks"], b.masks[new]]), np.concatenate([s["scores"], floor * 0.5 * det[new]]), None)
    print(f"final + detections >= {threshold} no final object holds: {common.figures(images, stage)}", flush=True)
