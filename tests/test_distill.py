"""Known-answer tests for the pure parts of engine.method.distill: filters, proposal scores, label maps, patch targets,
semantic maps and instances. Each input is small enough that the right answer is worked out by hand."""
from __future__ import annotations

import numpy as np

from engine.method.distill import (
    IGNORE,
    keep_by_class_percentile,
    keep_by_image_threshold,
    paint_label_map,
    patch_targets,
    score_proposals,
    semantic_map,
)

# ------------------------------------------------------------------------------- keep_by_class_percentile


def test_class_percentile_drops_each_class_below_its_own_percentile():
    quality = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.05, 0.9, 0.8])
    classes = np.array([1, 1, 1, 1, 1, 2, 2, 2])
    # class 1: 20th percentile of [.1 .2 .3 .4 .5] = 0.18 -> drop 0.1 only
    # class 2: 20th percentile of [.05 .8 .9] = 0.05 + 0.4 * 0.75 = 0.35 -> drop 0.05 only
    keep = keep_by_class_percentile(quality, classes, 20.0)
    assert keep.dtype == bool
    assert keep.tolist() == [False, True, True, True, True, False, True, True]


def test_class_percentile_is_per_class_not_global():
    # class 2's masks all score below class 1's; a global rule would drop them all, the per-class one keeps
    # class 2's best two
    quality = np.array([0.90, 0.95, 0.97, 0.10, 0.20, 0.30])
    classes = np.array([1, 1, 1, 2, 2, 2])
    assert keep_by_class_percentile(quality, classes, 50.0).tolist() == [False, True, True, False, True, True]


def test_class_percentile_zero_keeps_everything_and_each_class_keeps_its_best():
    quality = np.array([0.3, 0.1, 0.2, 0.7])
    classes = np.array([4, 4, 4, 9])
    assert keep_by_class_percentile(quality, classes, 0.0).all()
    # at the 100th percentile only the maximum of each class reaches the threshold
    assert keep_by_class_percentile(quality, classes, 100.0).tolist() == [True, False, False, True]
    # a single mask always survives, however low it scores
    assert keep_by_class_percentile(np.array([0.0]), np.array([3]), 99.0).tolist() == [True]


def test_class_percentile_keeps_ties_at_the_threshold():
    quality = np.array([0.5, 0.5, 0.5, 0.5])
    assert keep_by_class_percentile(quality, np.ones(4, int), 80.0).all()


# -------------------------------------------------------------------------------- keep_by_image_threshold


def test_image_threshold_keeps_confident_masks_else_each_images_best():
    quality = np.array([0.95, 0.50, 0.30, 0.20, 0.40, 0.91, 0.92])
    image = np.array([0, 0, 1, 1, 1, 2, 2])
    keep = keep_by_image_threshold(quality, image, 0.9)
    # image 0: 0.95 only; image 1: nothing >= 0.9 -> its best (0.40, index 4); image 2: both
    assert keep.dtype == bool
    assert keep.tolist() == [True, False, False, False, True, True, True]


def test_image_threshold_is_inclusive_and_ignores_other_images():
    quality = np.array([0.9, 0.89999, 0.1])
    image = np.array(["a", "a", "b"])  # image ids need not be integers
    assert keep_by_image_threshold(quality, image, 0.9).tolist() == [True, False, True]
    # threshold 0: every mask is kept
    assert keep_by_image_threshold(quality, image, 0.0).all()


# ---------------------------------------------------------------------------------------- score_proposals


def _two_class_probs() -> np.ndarray:
    """(3, 4, 4): left half class 1 (p = 0.9), right half class 2 (p = 0.9), background 0.1 everywhere."""
    probs = np.zeros((3, 4, 4))
    probs[0] = 0.1
    probs[1, :, :2] = 0.9
    probs[2, :, 2:] = 0.9
    return probs


def cols(c0, c1, shape=(4, 4)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[:, c0:c1] = True
    return mask


def test_score_proposals_known_values():
    probs = _two_class_probs()
    masks = np.stack([cols(0, 2), cols(0, 1), cols(0, 2), cols(1, 3), np.zeros((4, 4), bool)])
    classes = [1, 1, 2, 1, 1]
    confidence, agreement, quality = score_proposals(probs, masks, classes)
    assert confidence.dtype == agreement.dtype == np.float32
    # exactly the model's class-1 region; half of it; the right region under the wrong class;
    # straddling the two regions (mean of 0.9 and 0.0, IoU 4 / 12); an empty mask
    np.testing.assert_allclose(confidence, [0.9, 0.9, 0.0, 0.45, 0.0], rtol=1e-6)
    np.testing.assert_allclose(agreement, [1.0, 0.5, 0.0, 1 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(quality, np.sqrt([0.9, 0.45, 0.0, 0.15, 0.0]), rtol=1e-6)


def test_score_proposals_resizes_full_resolution_masks_to_the_probability_grid():
    probs = _two_class_probs()
    full = np.zeros((8, 8), bool)
    full[:, :4] = True  # the left half at twice the resolution
    confidence, agreement, quality = score_proposals(probs, full[None], [1])
    np.testing.assert_allclose([confidence[0], agreement[0], quality[0]], [0.9, 1.0, np.sqrt(0.9)], rtol=1e-6)


def test_score_proposals_of_no_masks():
    confidence, agreement, quality = score_proposals(_two_class_probs(), np.zeros((0, 4, 4), bool), [])
    assert confidence.shape == agreement.shape == quality.shape == (0,)


# ---------------------------------------------------------------------------------------- paint_label_map


def test_paint_label_map_later_masks_win_and_ignore_goes_underneath():
    row0 = np.zeros((3, 3), bool)
    row0[0] = True
    col0 = np.zeros((3, 3), bool)
    col0[:, 0] = True
    ignore = np.zeros((3, 3), bool)
    ignore[0, 1] = ignore[2, 2] = True
    label_map = paint_label_map((3, 3), [row0, col0], [2, 5], ignore_masks=[ignore])
    assert label_map.dtype == np.int32
    np.testing.assert_array_equal(label_map, [[5, 2, 2],
                                              [5, 0, 0],
                                              [5, 0, IGNORE]])


def test_paint_label_map_without_masks_is_background():
    label_map = paint_label_map((2, 3), np.zeros((0, 2, 3), bool), [])
    np.testing.assert_array_equal(label_map, np.zeros((2, 3)))


# ------------------------------------------------------------------------------------------ patch_targets


def test_patch_targets_soft_labels_and_weights():
    label_map = np.array([[0, 0, 1, 1],
                          [0, 0, 2, 2],
                          [IGNORE, IGNORE, IGNORE, IGNORE],
                          [1, 1, IGNORE, IGNORE]])
    targets, weights = patch_targets(label_map, (2, 2), num_classes=2)
    assert targets.shape == (4, 3) and weights.shape == (4,)
    assert targets.dtype == weights.dtype == np.float32
    # cells in row-major order: all background; half class 1 half class 2; half ignored, rest class 1;
    # all ignored (no target, weight 0)
    np.testing.assert_allclose(targets, [[1, 0, 0], [0, 0.5, 0.5], [0, 1, 0], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(weights, [1.0, 1.0, 0.5, 0.0], atol=1e-6)


def test_patch_targets_on_uneven_cells():
    # 3 x 2 pixels onto a 2 x 1 grid: pixel row r goes to cell (r * 2) // 3, so rows 0 and 1 -> cell 0, row 2 -> 1
    label_map = np.array([[1, 1], [0, 1], [0, 0]])
    targets, weights = patch_targets(label_map, (2, 1), num_classes=1)
    np.testing.assert_allclose(targets, [[0.25, 0.75], [1, 0]], atol=1e-6)
    np.testing.assert_allclose(weights, [1, 1], atol=1e-6)


# ------------------------------------------------------------------------------------------- semantic_map


def test_semantic_map_is_the_argmax_upsampled_by_nearest_neighbour():
    probs = np.zeros((3, 2, 2))
    probs[0] = [[0.8, 0.1], [0.1, 0.5]]
    probs[1] = [[0.1, 0.8], [0.1, 0.5]]  # bottom right: a tie between 0 and 1 goes to the lower id
    probs[2] = [[0.1, 0.1], [0.8, 0.0]]
    labels = semantic_map(probs, (2, 2))
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, [[0, 1], [2, 0]])
    np.testing.assert_array_equal(semantic_map(probs, (4, 6)), [[0, 0, 0, 1, 1, 1],
                                                                 [0, 0, 0, 1, 1, 1],
                                                                 [2, 2, 2, 0, 0, 0],
                                                                 [2, 2, 2, 0, 0, 0]])


def test_training_patches_per_image_shrink_to_keep_the_folders_total_bounded():
    from engine.method.distill import HeadConfig
    config = HeadConfig(patches_per_image=384, max_patches=1000)
    assert config.patches_for(1) == 384  # a small folder: the per-image count
    assert config.patches_for(10) == 100  # 10 x 100 = the budget
    assert config.patches_for(5000) == 1  # never fewer than one per image
    assert HeadConfig().patches_for(5000) * 5000 <= HeadConfig().max_patches  # the default holds at 5,000
