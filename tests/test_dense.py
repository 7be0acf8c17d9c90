"""Known answers of the ``dense`` proposals (engine/dense.py): planted discs on synthetic features."""
from __future__ import annotations

import numpy as np
import pytest

from engine.method.dense import (
    LabelMasks,
    dense_label_map,
    estimate_object_size,
    foreground_grid,
    patch_masks_from_labels,
    split_instances,
)
from engine.method.features import ImageFeatures
from engine.method.proposals import PROPOSAL_METHODS, Proposals, propose

PATCH = 4  # image pixels per feature cell in these tests


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def planted(masks_fg: np.ndarray, seed: int = 0, dim: int = 32, noise: float = 0.05):
    """(image uint8 RGB, ImageFeatures) whose keys are one vector on the foreground, another elsewhere."""
    rng = np.random.default_rng(seed)
    h, w = masks_fg.shape
    gh, gw = h // PATCH, w // PATCH
    cover = masks_fg.reshape(gh, PATCH, gw, PATCH).mean(axis=(1, 3)).ravel()
    fg_vec, bg_vec = rng.standard_normal(dim), rng.standard_normal(dim)
    keys = cover[:, None] * fg_vec + (1 - cover[:, None]) * bg_vec + noise * rng.standard_normal((gh * gw, dim))
    tokens = keys.copy()
    features = ImageFeatures(grid_hw=(gh, gw), input_hw=(h, w), keys=keys.astype(np.float16),
                             tokens=tokens.astype(np.float16), cls_token=np.zeros(dim, np.float32),
                             cls_attention=np.full((1, gh * gw), 1.0 / (gh * gw), np.float32))
    grey = np.where(masks_fg, 200, 30).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2), features


def two_touching_discs(shape=(160, 200), r=30):
    a = disc(shape, 80, 70, r)
    b = disc(shape, 80, 70 + 2 * r - 4, r)  # centres 56 px apart: overlapping slightly
    return a, b


def test_two_touching_discs_are_separated():
    a, b = two_touching_discs()
    image, features = planted(a | b)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    assert isinstance(proposals, Proposals)
    assert len(proposals) == 2
    # each instance is mostly one disc
    for truth in (a & ~b, b & ~a):
        best = max((m & truth).sum() / (m | truth).sum() for m in proposals.masks)
        assert best > 0.75
    assert proposals.masks.shape == (2, *image.shape[:2])
    assert proposals.patch_masks.shape == (2, *features.grid_hw)
    assert ((proposals.scores > 0) & (proposals.scores <= 1)).all()
    assert proposals.sources == ["dense:0", "dense:1"]
    assert not (proposals.masks[0] & proposals.masks[1]).any()


def test_two_touching_discs_without_object_size():
    a, b = two_touching_discs()
    image, features = planted(a | b, seed=1)
    assert len(propose(image, features, "dinov2", "dense")) == 2


def test_fifty_separated_small_discs_give_fifty_instances():
    shape = (320, 400)
    fg = np.zeros(shape, bool)
    for i in range(5):
        for j in range(10):
            fg |= disc(shape, 32 + 64 * i, 20 + 40 * j, 7)
    image, features = planted(fg, seed=2)
    for size in (14, None):
        proposals = propose(image, features, "dinov2", "dense", object_size=size)
        assert len(proposals) == 50, size
    assert 10 <= estimate_object_size(fg) <= 18


def test_empty_image_gives_none():
    image, features = planted(np.zeros((96, 96), bool), seed=3)
    proposals = propose(image, features, "dinov2", "dense", object_size=20)
    assert len(proposals) == 0
    assert proposals.masks.shape == (0, 96, 96)
    assert proposals.patch_masks.shape == (0, *features.grid_hw)
    assert split_instances(np.zeros((10, 10), bool)).max() == 0


def test_foreground_is_the_minority_side():
    fg = np.zeros((64, 64), bool)
    fg[8:24, 8:24] = True
    _, features = planted(fg, seed=4)
    grid = foreground_grid(features.keys, features.grid_hw)
    assert grid[3, 3] > 0.8 and grid[12, 12] < 0.2
    _, inverted = planted(~fg, seed=4)  # the same split with the majority "planted": still the small square
    assert foreground_grid(inverted.keys, inverted.grid_hw)[3, 3] > 0.8


def test_dense_is_registered_and_patch_masks_cover_small_objects():
    assert "dense" in PROPOSAL_METHODS
    labels = np.zeros((40, 40), np.int32)
    labels[1:3, 1:3] = 1  # smaller than a cell of 8 px
    labels[10:40, 10:40] = 2
    grid = patch_masks_from_labels(labels, (5, 5))
    assert grid.shape == (2, 5, 5)
    assert grid[0].sum() == 1 and grid[0, 0, 0]
    assert grid[1, 2:, 2:].all() and not grid[1, :1].any()


def test_hundreds_of_touching_discs_give_hundreds_of_instances():
    rng = np.random.default_rng(5)
    shape = (512, 512)
    fg = np.zeros(shape, bool)
    for cy in range(12, 512, 24):
        for cx in range(12, 512, 24):
            fg |= disc(shape, cy + rng.integers(-2, 3), cx + rng.integers(-2, 3), 8)
    image, features = planted(fg, seed=6)
    labels, scores, _ = dense_label_map(image, features.keys, features.grid_hw, object_size=16)
    assert labels.max() == len(scores) >= 400


@pytest.mark.parametrize("edge_weight", [0.0, 0.5])
def test_split_instances_separates_a_touching_pair(edge_weight):
    a = disc((100, 120), 50, 40, 20)
    b = disc((100, 120), 50, 77, 20)
    grey = np.where(a | b, 1.0, 0.0)
    labels = split_instances(a | b, 40, grey, edge_weight)
    assert labels.max() == 2


def test_label_masks_behave_like_the_stack_they_hold():
    labels = np.zeros((30, 40), np.int32)
    labels[2:8, 3:9] = 1
    labels[10:20, 10:30] = 2
    labels[25:28, 0:40] = 3
    stack = LabelMasks(labels, [3, 1, 2])  # ranked order, as dense_proposals keeps it
    explicit = labels[None] == np.array([3, 1, 2])[:, None, None]
    assert stack.shape == (3, 30, 40) and len(stack) == 3
    assert np.array_equal(np.asarray(stack), explicit)
    assert all(np.array_equal(a, b) for a, b in zip(stack, explicit))
    assert np.array_equal(stack[-1], explicit[2])
    subset = stack[np.array([True, False, True])]
    assert isinstance(subset, LabelMasks) and np.array_equal(np.asarray(subset), explicit[[0, 2]])
    assert np.array_equal(np.asarray(stack[[2, 0]]), explicit[[2, 0]])
    assert np.array_equal(np.asarray(stack[1:]), explicit[1:])


def test_dense_proposals_hold_one_label_map_and_filter_like_arrays():
    a, b = two_touching_discs()
    image, features = planted(a | b, seed=7)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    assert isinstance(proposals.masks, LabelMasks)
    kept = proposals.filter(np.array([False, True]))
    assert len(kept) == 1 and np.array_equal(kept.masks[0], proposals.masks[1])


@pytest.mark.parametrize("lazy", [False, True])
def test_dense_proposals_round_trip_through_the_proposals_file(tmp_path, monkeypatch, lazy):
    from engine.state import project as project_module

    if lazy:  # a small limit makes the reader keep RLEs, as it does for a crowded large image
        monkeypatch.setattr(project_module, "LAZY_MASK_BYTES", 0)
    a, b = two_touching_discs()
    image, features = planted(a | b, seed=8)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    embeddings = np.zeros((len(proposals), 4), np.float32)
    path = tmp_path / "p.npz"
    project_module.save_image_proposals(path, proposals, embeddings, "key")
    loaded, _, key = project_module.load_image_proposals(path, image.shape[:2])
    assert key == "key" and isinstance(loaded.masks, project_module.RleMasks) == lazy
    assert loaded.masks.shape == proposals.masks.shape
    assert np.array_equal(np.asarray(loaded.masks), np.asarray(proposals.masks))
    assert np.array_equal(np.asarray(loaded.filter([1]).masks), np.asarray(proposals.masks)[[1]])
