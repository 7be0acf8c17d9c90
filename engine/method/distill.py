"""Stage 3 of MaskDistill on a CPU budget: a light segmentation head on frozen patch tokens.

The paper trains Mask R-CNN on the clustered masks, uses its confidence to drop low-quality masks and
distills the clean set into DeepLab. Here both networks are one small per-patch classifier over the cached
last-block tokens (method.md, "a light, CPU-friendly equivalent"): it trains in seconds, its class
probabilities are upsampled and snapped to image edges with the guided filter, and it segments every
object of every image, including those the proposals missed.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.atomic import ProjectFileError, atomic_write_bytes
from engine.masks import coverage_on_grid, resize_nearest
from engine.method.instances import instance_agreement
from engine.method.refine import refine_soft

HEAD_FORMAT_VERSION = 2  # 2: the checkpoint carries a sha256 of its weights (state_sha256)
IGNORE = -1  # class value of pixels that carry no training signal (dropped masks)


@dataclass
class HeadConfig:
    """Training settings of the segmentation head; every field is stored with the checkpoint."""

    hidden: int = 0  # width of a hidden layer; 0: a linear classifier (fits noisy pseudo-labels less)
    epochs: float = 5.0  # passes over the sampled patches; few, because longer training learns the label noise
    batch_size: int = 2048  # patches per step
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patches_per_image: int = 384  # training patches sampled per image
    max_patches: int = 64_000  # over the whole folder: past ~166 images at the default input size each image
    # gives fewer, so the training set (float16 tokens, ~50 MB at ViT-S) and the training time stop growing with
    # the folder (distill at 5,000 images: 854 MB peak against 796 at 1,000; with 200,000: 929)
    seed: int = 0

    def patches_for(self, images: int) -> int:
        """Patches to sample per image when the folder has ``images`` images."""
        return max(1, min(self.patches_per_image, self.max_patches // max(images, 1)))  # the budget holds


class PatchHead(nn.Module):
    """Classifier applied to every patch token: background + one output per pseudo-class. Linear by default
    (``HeadConfig.hidden`` 0); with a hidden width, two layers."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 256):
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, num_classes + 1)) if hidden \
            else nn.Sequential(nn.Linear(dim, num_classes + 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


def patch_targets(label_map: np.ndarray, grid_hw: tuple, num_classes: int) -> tuple:
    """Soft per-patch class targets (N, C+1) from a full-resolution label map, and per-patch weights.

    label_map: 0 background, 1..C classes, IGNORE for pixels without a label. A patch's weight is the share
    of its pixels that carry a label, so half-ignored patches count half.
    """
    channels = [coverage_on_grid(label_map == c, grid_hw).ravel() for c in range(num_classes + 1)]
    targets = np.stack(channels, axis=1)
    weights = targets.sum(axis=1)
    targets = targets / np.maximum(weights[:, None], 1e-6)
    return targets.astype(np.float32), weights.astype(np.float32)


def paint_label_map(image_hw: tuple, masks: np.ndarray, classes, ignore_masks=()) -> np.ndarray:
    """Label map from instance masks (classes >= 1); ``ignore_masks`` pixels become IGNORE first."""
    label_map = np.zeros(image_hw, np.int32)
    for mask in ignore_masks:
        label_map[mask] = IGNORE
    for mask, cls in zip(masks, classes):
        label_map[mask] = cls
    return label_map


def sample_patches(tokens: np.ndarray, targets: np.ndarray, weights: np.ndarray, count: int,
                   rng: np.random.Generator) -> tuple:
    """Up to ``count`` labelled patches of one image, object patches first (they are the minority)."""
    labelled = np.flatnonzero(weights > 0)
    if labelled.size <= count:
        chosen = labelled
    else:
        foreground = labelled[targets[labelled, 0] < 0.5]
        take_fg = min(foreground.size, count // 2)
        fg = rng.choice(foreground, take_fg, replace=False) if take_fg else foreground[:0]
        rest = np.setdiff1d(labelled, fg)
        chosen = np.concatenate([fg, rng.choice(rest, count - take_fg, replace=False)])
    return tokens[chosen].astype(np.float16), targets[chosen].astype(np.float16), weights[chosen].astype(np.float16)


def class_balance(targets: np.ndarray) -> np.ndarray:
    """Per-class loss weights proportional to 1/sqrt(frequency), mean 1 over the classes present."""
    frequency = targets.astype(np.float64).sum(axis=0)
    weights = np.where(frequency > 0, 1.0 / np.sqrt(np.maximum(frequency, 1e-9)), 0.0)
    present = weights > 0
    weights[present] /= weights[present].mean()
    return weights.astype(np.float32)


def train_head(tokens: np.ndarray, targets: np.ndarray, weights: np.ndarray, num_classes: int,
               config: HeadConfig | None = None, device: str | torch.device = "cpu") -> PatchHead:
    """Fit the head with class-balanced soft cross-entropy; deterministic for ``config.seed`` on CPU."""
    config = config or HeadConfig()
    torch.manual_seed(config.seed)
    device = torch.device(device)
    head = PatchHead(tokens.shape[1], num_classes, config.hidden).to(device)
    x = torch.from_numpy(np.ascontiguousarray(tokens)).to(device)  # as stored (float16): float32 per batch only
    y = torch.from_numpy(targets.astype(np.float32)).to(device)
    w = torch.from_numpy(weights.astype(np.float32)).to(device)
    balance = torch.from_numpy(class_balance(targets)).to(device)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(x))
    steps = max(20, int(np.ceil(config.epochs * len(x) / batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(config.seed)
    head.train()
    for _ in range(steps):
        batch = torch.randint(len(x), (batch_size,), generator=generator).to(device)
        log_probs = torch.log_softmax(head(x[batch].float()), dim=1)
        per_patch = -(y[batch] * balance * log_probs).sum(dim=1)
        loss = (per_patch * w[batch]).sum() / w[batch].sum().clamp(min=1e-6)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return head.eval().cpu()


@torch.inference_mode()
def grid_probabilities(head: PatchHead, tokens: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """(C+1, gh, gw) class probabilities on the patch grid."""
    logits = head(torch.from_numpy(tokens.astype(np.float32)))
    return torch.softmax(logits, dim=1).numpy().T.reshape(-1, *grid_hw)


def class_probabilities(head: PatchHead, tokens: np.ndarray, grid_hw: tuple, image: np.ndarray,
                        eps: float = 1e-3) -> np.ndarray:
    """(C+1, h, w) class probabilities at the refinement resolution, edges snapped by the guided filter."""
    refined = np.clip(refine_soft(image, grid_probabilities(head, tokens, grid_hw), eps, fast=True), 0.0, None)
    return refined / np.maximum(refined.sum(axis=0, keepdims=True), 1e-6)


def semantic_map(probs: np.ndarray, image_hw: tuple) -> np.ndarray:
    """Arg-max class per pixel at full image resolution (0 = background)."""
    labels = probs.argmax(axis=0).astype(np.uint16)
    return labels if labels.shape == tuple(image_hw) else resize_nearest(labels, *image_hw)


def score_proposals(probs: np.ndarray, masks: np.ndarray, classes, per_instance: bool = True) -> tuple:
    """Per mask: the model's mean confidence in the mask's class inside it, and IoU with the model's region.

    per_instance: the region is the model's instance(s) of the class that the mask overlaps
        (engine.method.instances.instance_agreement), not the whole class region of the image, where two objects of
        one class halve each other's agreement.
    Returns (confidence, agreement, quality = sqrt(confidence * agreement)), each (n,) in [0, 1].
    """
    prediction = probs.argmax(axis=0)
    confidence: list[float] = []
    agreement: list[float] = []
    for mask, cls in zip(masks, classes):
        small = resize_nearest(mask, *probs.shape[1:]) if mask.shape != probs.shape[1:] else mask
        if not small.any():
            confidence.append(0.0)
            agreement.append(0.0)
            continue
        confidence.append(float(probs[cls][small].mean()))
        if per_instance:
            agreement.append(instance_agreement(prediction, small, cls))
            continue
        predicted = prediction == cls
        union = np.logical_or(small, predicted).sum()
        agreement.append(float(np.logical_and(small, predicted).sum() / union) if union else 0.0)
    confidences, agreements = np.asarray(confidence, np.float32), np.asarray(agreement, np.float32)
    return confidences, agreements, np.sqrt(confidences * agreements)


def keep_by_class_percentile(quality: np.ndarray, classes: np.ndarray, percentile: float = 20.0) -> np.ndarray:
    """Drop each class's masks below that class's ``percentile`` of quality (each class keeps its best)."""
    keep = np.ones(len(quality), bool)
    for cls in np.unique(classes):
        members = np.flatnonzero(classes == cls)
        threshold = np.percentile(quality[members], percentile)
        keep[members] = quality[members] >= threshold
        keep[members[np.argmax(quality[members])]] = True
    return keep


def keep_by_image_threshold(quality: np.ndarray, image_index: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """The paper's rule: per image keep masks scoring >= threshold, or else the image's best one."""
    keep = quality >= threshold
    for image in np.unique(image_index):
        members = np.flatnonzero(image_index == image)
        if not keep[members].any():
            keep[members[np.argmax(quality[members])]] = True
    return keep


def retrain_hint(path) -> str:
    """What to do about a head file: retrain the project that holds it (heads live in <project>/models/)."""
    path = Path(path).absolute()
    project = path.parent.parent if path.parent.name == "models" else "YOUR_PROJECT"
    return f"retrain with: maskdistill distill --project {project}"


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over a state dict's names, dtypes, shapes and tensor bytes (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_head(path, head: PatchHead, config: HeadConfig, identity: dict) -> dict:
    """Checkpoint with a format version, what the head was trained on (backbone, weights, input size) and a
    sha256 of its weights, checked on load."""
    state = head.state_dict()
    checkpoint = {"format_version": HEAD_FORMAT_VERSION, "num_classes": head.num_classes,
                  "dim": head.net[0].in_features, "config": asdict(config), "features": identity,
                  "state_dict": state, "state_sha256": state_dict_sha256(state)}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return checkpoint


def load_head(path, expected_features: dict | None = None) -> PatchHead:
    """The head saved by :func:`save_head`. A missing file raises FileNotFoundError; an unreadable,
    garbled, tampered or non-finite one ProjectFileError (naming the file and how to retrain); one of another
    format version or trained on other features ValueError."""
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign pickle are for its developers
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: never, for a file in a project
        raise ProjectFileError(f"{path}: not a segmentation head this program wrote (it holds Python objects "
                               f"other than weights, so it is not loaded); {retrain_hint(path)}") from None
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, TypeError, AttributeError, IndexError,
            UnicodeDecodeError, zipfile.BadZipFile) as error:
        detail = (str(error).strip().splitlines() or [""])[0][:200]
        raise ProjectFileError(f"{path}: not a readable segmentation head checkpoint ({type(error).__name__}"
                               f"{': ' + detail if detail else ''}); {retrain_hint(path)}") from None
    if not isinstance(checkpoint, dict):
        raise ProjectFileError(f"{path}: not a segmentation head checkpoint; {retrain_hint(path)}")
    if checkpoint.get("format_version") != HEAD_FORMAT_VERSION:
        raise ValueError(f"{path}: segmentation head format {checkpoint.get('format_version')} is not supported "
                         f"(expected {HEAD_FORMAT_VERSION}); {retrain_hint(path)}")
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ProjectFileError(f"{path}: damaged (no weights in the checkpoint); {retrain_hint(path)}")
    if checkpoint.get("state_sha256") != state_dict_sha256(state):
        raise ProjectFileError(f"{path}: damaged (its weights do not match the checksum stored with them); "
                               f"{retrain_hint(path)}")
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        raise ProjectFileError(f"{path}: damaged (its weights are not finite numbers); {retrain_hint(path)}")
    if expected_features is not None and checkpoint.get("features") != expected_features:
        raise ValueError(f"{path} was trained on other features ({checkpoint.get('features')}) than the project's "
                         f"({expected_features}); {retrain_hint(path)}")
    try:
        head = PatchHead(int(checkpoint["dim"]), int(checkpoint["num_classes"]), int(checkpoint["config"]["hidden"]))
        head.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ProjectFileError(f"{path}: damaged (the weights do not fit the stored head layout: "
                               f"{type(error).__name__}); {retrain_hint(path)}") from None
    return head.eval()
