"""The learnt centres' convolution head (engine.method.depth_head) and where the centres' fit keeps it
(engine.method.centres.check_depth_head)."""
import numpy as np
import torch

from engine.masks import LabelMasks
from engine.method import centres
from engine.method.centres import CentreExamples, check_depth_head, fit_centre_model
from engine.method.depth_head import predict_depth, train_depth_head, weighted_r2
from engine.method.instances import object_solidities

GRID = (12, 12)


def square_image(rng):
    """(tokens (144, 8), labels (48, 48)): a square object of 3-6 patches a side, its patches' tokens one channel
    up, the rest noise; a patch's depth shows only in its neighbours (an object's patches all look alike)."""
    size = int(rng.integers(3, 7))
    top, left = (int(v) for v in rng.integers(0, GRID[0] - size + 1, 2))
    inside = np.zeros(GRID, bool)
    inside[top:top + size, left:left + size] = True
    tokens = rng.normal(0, 0.1, (*GRID, 8)).astype(np.float32)
    tokens[..., 0] += inside
    labels = np.kron(inside, np.ones((4, 4), bool)).astype(np.int32)  # 4 px a patch
    return tokens.reshape(-1, 8), labels


def examples_of(count, seed=0):
    rng, examples = np.random.default_rng(seed), CentreExamples(seed, grids=True)
    for _ in range(count):
        tokens, labels = square_image(rng)
        masks = LabelMasks(labels)
        examples.add(tokens, GRID, masks, object_solidities(masks))
    return examples


def test_the_head_learns_depth_from_the_neighbourhood_where_the_ridge_cannot():
    # every patch of an object has the same token: its depth is in which neighbours are object too, past the
    # ridge's 3 x 3 mean (a 6-patch square's second ring looks like its centre there)
    examples = examples_of(60)
    assert len(examples.grids) == 60 and examples.grids[0][0].dtype == np.float16
    head, check = check_depth_head(examples.grids, alpha=1.0, seed=0)
    assert check["held_out_images"] == 12 and check["images"] == 48
    assert check["head_r2"] > 0.7 and check["head_r2"] > check["ridge_r2"] + 0.1, check
    assert head is not None
    grid, depth, weight = examples.grids[0]
    predicted = predict_depth(head, grid, GRID)
    assert predicted.shape == GRID and weighted_r2(predicted[weight > 0], depth[weight > 0], weight[weight > 0]) > 0.7


def test_patches_of_no_example_cost_nothing():
    # the loss counts an example's objects only: what the targets say elsewhere cannot change the head
    grids = examples_of(10).grids
    changed = [(grid, np.where(weight > 0, depth, np.float32(0.9)), weight) for grid, depth, weight in grids]
    first, second = train_depth_head(grids, seed=3, epochs=2), train_depth_head(changed, seed=3, epochs=2)
    for a, b in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(a, b)
    third = train_depth_head([(g, d, w * 0 + (w > 0) * 2.0 + 0.5) for g, d, w in grids], seed=3, epochs=2)
    assert any(not torch.allclose(a, b) for a, b in zip(first.parameters(), third.parameters()))


def test_few_images_keep_the_ridge(monkeypatch):
    examples = examples_of(centres.MIN_GRID_IMAGES - 1)
    assert check_depth_head(examples.grids, alpha=1.0, seed=0) == (None, None)
    assert CentreExamples().grids == []  # the crops' examples keep no grids
    monkeypatch.setattr(centres, "MIN_HELD_OUT_R2", 0.1)  # the ridge's own gate (0.31 here) is not what is tested
    fit = fit_centre_model(examples_of(60))  # 60 lone squares: the head is checked against the ridge and kept
    assert fit.model is not None and fit.model.head is not None
    assert fit.summary()["depth_model"] == "head" and fit.head_check["head_r2"] > 0.7
