"""A small convolution over the patch grid that predicts where in its object a patch lies (its depth), learnt from
the folder's lone objects: the learnt centres' model where the folder teaches it better than the ridge
regression does (engine.method.centres).

The ridge reads a patch's token and its 3 x 3 neighbours' mean linearly; on feral_cats it reaches R^2 0.44 on the
annotated cats' depth, and 0.44 too when fitted on the annotated cats themselves: the linear read is the limit, not
the examples. This head (1 x 1 to ``WIDTH`` channels, three 3 x 3 layers: a 7 x 7 patch view, 37k weights at
384 channels) reaches 0.50-0.51 on the same cats, fitted on the same lone final objects in 13-30 s on two cores
(benchmarks/experiments/whole_subject/centre_head.py; docs/decisions.md#d-centres-head). Its loss counts only the
patches of the examples' objects (the rest of an image is no example of anything), weighted as the examples are
(the user's reviewed objects above the lone ones); images mirrored half the time.
"""
from __future__ import annotations

import numpy as np
import torch

WIDTH = 64  # channels after the 1 x 1 reduction (the patch tokens' 384-1024 are too many for ~300 examples)
DROPOUT = 0.2  # of whole token channels, on the input: the head must not lean on a few of them
EPOCHS = 20  # passes over the examples' images: 10 / 30 / 60 gave R^2 0.499 / 0.514 / 0.471 on feral_cats
MAX_STEPS = 1_000  # a larger folder trains as long as a 400-image one (the examples are a sample anyway)
BATCH = 8
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 0.05


class DepthHead(torch.nn.Module):
    """(B, D, gh, gw) centred patch tokens -> (B, gh, gw) depth in 0..1."""

    def __init__(self, channels: int, width: int = WIDTH, dropout: float = DROPOUT):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Dropout2d(dropout), torch.nn.Conv2d(channels, width, 1), torch.nn.GELU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.layers(grids))[:, 0]


def centred_grid(tokens: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """(gh, gw, D) float32 patch tokens centred on the image's mean (as the ridge's inputs are)."""
    grid = np.asarray(tokens, np.float32).reshape(*grid_hw, -1)
    return grid - grid.mean(axis=(0, 1))


def train_depth_head(examples: list, seed: int = 0, epochs: int = EPOCHS) -> DepthHead:
    """A head fitted on ``examples``: [(grid (gh, gw, D) float16, depth (gh, gw) float32, weight (gh, gw) float32:
    0 where the patch is no example), ...], images of any grid size. Seeded: the same examples give the same
    head."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = DepthHead(examples[0][0].shape[2])
    optimiser = torch.optim.AdamW(head.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    batch = min(BATCH, len(examples))
    steps = max(1, min(MAX_STEPS, epochs * len(examples) // batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps)
    tensors = [(torch.from_numpy(np.ascontiguousarray(grid.transpose(2, 0, 1))), torch.from_numpy(depth),
                torch.from_numpy(weight)) for grid, depth, weight in examples]
    head.train()
    with torch.enable_grad():
        for _ in range(steps):
            loss, total_weight = torch.zeros(()), 0.0
            for index in rng.choice(len(tensors), batch, replace=False):
                grid, depth, weight = tensors[index]
                grid = grid.float()
                if rng.random() < 0.5:  # a mirrored image has its objects' depths mirrored
                    grid, depth, weight = grid.flip(-1), depth.flip(-1), weight.flip(-1)
                loss = loss + (((head(grid[None])[0] - depth) ** 2) * weight).sum()
                total_weight += float(weight.sum())
            optimiser.zero_grad()
            (loss / max(total_weight, 1e-6)).backward()
            optimiser.step()
            schedule.step()
    head.eval()
    return head


def predict_depth(head: DepthHead, tokens: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """(gh, gw) float32 predicted depth of an image's (or a crop's) patch tokens."""
    grid = torch.from_numpy(np.ascontiguousarray(centred_grid(tokens, grid_hw).transpose(2, 0, 1)))
    with torch.inference_mode():
        return head(grid[None])[0].numpy().astype(np.float32)


def weighted_r2(predicted: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """R^2 of ``predicted`` against ``target`` with sample weights (as scikit-learn's r2_score weighs them)."""
    mean = np.average(target, weights=weight)
    residual = float(np.sum(weight * (target - predicted) ** 2))
    spread = float(np.sum(weight * (target - mean) ** 2))
    return 1.0 - residual / spread if spread > 0 else 0.0
