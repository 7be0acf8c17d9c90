"""Known-answer tests for engine.method.instances (per-instance agreement, class-agnostic instance grouping) and for
the ``segments`` proposal helpers."""
from __future__ import annotations

import numpy as np

from engine.masks import LabelMasks
from engine.method.distill import score_proposals
from engine.method.instances import COMPACT_SOLIDITY, foreground_instances, instance_agreement, rank_by_compactness
from engine.method.proposals import dedupe_masks, region_candidates


def box(r0, r1, c0, c1, shape=(20, 30)):
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


A, B = box(2, 8, 2, 10), box(10, 18, 15, 27)


def probs_for(label_map, classes=3, confidence=0.9):
    probs = np.full((classes + 1, *label_map.shape), (1 - confidence) / classes, np.float32)
    for c in range(classes + 1):
        probs[c][label_map == c] = confidence
    return probs


def test_two_objects_of_one_class_each_agree_fully():
    prediction = np.zeros(A.shape, int)
    prediction[A | B] = 1
    assert instance_agreement(prediction, A, 1) == 1.0
    assert instance_agreement(prediction, B, 1) == 1.0


def test_agreement_is_iou_with_the_touched_instance_only():
    prediction = np.zeros(A.shape, int)
    prediction[A | B] = 1
    half = A.copy()
    half[:, 6:] = False  # half of A's columns
    assert np.isclose(instance_agreement(prediction, half, 1), half.sum() / A.sum())


def test_agreement_zero_for_wrong_class_or_no_overlap():
    prediction = np.zeros(A.shape, int)
    prediction[A] = 2
    assert instance_agreement(prediction, A, 1) == 0.0
    assert instance_agreement(prediction, B, 2) == 0.0


def test_score_proposals_per_instance_versus_class_region():
    label_map = np.zeros(A.shape, int)
    label_map[A | B] = 1
    probs = probs_for(label_map)
    _, agreement, _ = score_proposals(probs, np.stack([A, B]), [1, 1])
    assert np.allclose(agreement, 1.0)
    _, whole_region, _ = score_proposals(probs, np.stack([A, B]), [1, 1], per_instance=False)
    assert np.allclose(whole_region, [A.sum() / (A | B).sum(), B.sum() / (A | B).sum()])


def test_parts_in_two_classes_stay_one_instance_of_the_majority_class():
    semantic = np.zeros(A.shape, np.uint16)
    semantic[2:8, 2:4] = 2  # a small part of A (12 px) in class 2
    semantic[2:8, 4:10] = 1  # the rest of A (36 px) in class 1
    semantic[B] = 3
    probs = probs_for(semantic.astype(int))
    masks, classes, scores = foreground_instances(semantic, probs, max_area_fraction=1.0)  # B is 16 %
    assert len(masks) == 2
    by_class = dict(zip(classes.tolist(), masks))
    assert set(by_class) == {1, 3}
    assert np.array_equal(by_class[1], A) and np.array_equal(by_class[3], B)
    assert np.allclose(scores, 1 - 0.1 / 3, atol=1e-5)  # p(background) inside = (1 - 0.9) / 3


def test_foreground_instances_rank_by_foreground_probability_and_drop_specks():
    semantic = np.zeros(A.shape, np.uint16)
    semantic[A] = 1
    semantic[B] = 1
    semantic[0, 29] = 1  # a single-pixel speck: below 0.2 % of 600 pixels? (1 px <= 1.2 px): dropped
    probs = probs_for(semantic.astype(int))
    probs[0][B] = 0.4  # B is less certain: p(background) 0.4 -> score 0.6
    masks, classes, scores = foreground_instances(semantic, probs, max_area_fraction=1.0)  # B is 16 %
    assert len(masks) == 2
    assert np.array_equal(masks[0], A) and np.array_equal(masks[1], B)
    assert scores[0] > scores[1]


def test_a_region_of_the_heads_own_over_a_tenth_of_the_image_is_not_an_object():
    """On the generated set the final head painted background areas as objects; its small regions stay."""
    from engine.method.instances import MAX_REGION_SHARE

    semantic = np.zeros((40, 50), np.uint16)
    semantic[:, :25] = 1  # half the image
    semantic[30:36, 30:38] = 2  # 48 px: 2.4 %
    probs = probs_for(semantic.astype(int))
    masks, classes, _ = foreground_instances(semantic, probs)
    assert MAX_REGION_SHARE == 0.1 and len(masks) == 1 and classes[0] == 2
    assert len(foreground_instances(semantic, probs, max_area_fraction=1.0)[0]) == 2


def test_foreground_instances_empty():
    semantic = np.zeros((5, 6), np.uint16)
    masks, classes, scores = foreground_instances(semantic, probs_for(semantic.astype(int)))
    assert masks.shape == (0, 5, 6) and len(classes) == 0 and len(scores) == 0


def test_region_candidates_components_holes_and_corners():
    labels = np.zeros((10, 10), int)
    labels[2:5, 2:5] = 1
    labels[3, 3] = 0  # a hole: filled
    labels[6:9, 6:9] = 1  # a second component of the same label
    found = region_candidates(labels, min_size=4, max_size=50)
    # label 0 is the background (touches all 4 corners): skipped; label 1 gives two filled squares
    assert len(found) == 2
    assert sorted(int(m.sum()) for m in found) == [9, 9]


def test_dedupe_masks_keeps_first_of_near_duplicates():
    a = box(0, 10, 0, 10, (20, 20))
    b = box(0, 10, 0, 9, (20, 20))  # IoU 0.9 with a
    c = box(12, 18, 12, 18, (20, 20))
    kept = dedupe_masks([a, b, c], max_iou=0.8)
    assert len(kept) == 2 and kept[0] is a and kept[1] is c


def test_combine_keeps_proposals_whole_and_adds_only_missed_model_objects():
    from engine.method.instances import combine_with_proposals
    C = box(12, 18, 2, 8)  # an object only the model found
    semantic = np.zeros(A.shape, int)
    semantic[2:8, 2:4] = 2  # the head splits A into two classes ...
    semantic[2:8, 4:10] = 1
    semantic[C] = 3
    probs = probs_for(semantic)
    model_masks = np.stack([A & (semantic == 1), A & (semantic == 2), C])
    masks, classes, scores = combine_with_proposals(np.stack([A]), np.array([0.8]), model_masks,
                                                    np.array([0.9, 0.9, 0.6]), probs, model_share=0.0)
    assert len(masks) == 2  # A whole (its parts are covered by the proposal), then C
    assert np.array_equal(masks[0], A) and classes[0] == 1 and np.isclose(scores[0], 0.8)
    assert np.array_equal(masks[1], C) and classes[1] == 3 and np.isclose(scores[1], 0.3)


def test_model_share_reranks_proposals_by_the_models_foreground_confidence():
    """A proposal the model calls background falls below one it is sure of, whatever their proposal scores."""
    from engine.method.instances import combine_with_proposals
    B = box(12, 18, 12, 18)
    probs = np.zeros((2, *A.shape), np.float32)
    probs[0] = 1.0
    probs[0][A], probs[1][A] = 0.75, 0.25  # the model is unsure of A ...
    probs[0][B], probs[1][B] = 0.0, 1.0  # ... and sure of B
    no_model = np.zeros((0, *A.shape), bool)
    masks, _, scores = combine_with_proposals(np.stack([A, B]), np.array([0.64, 0.25]), no_model, np.zeros(0),
                                              probs, model_share=0.5)
    assert np.array_equal(masks[0], B) and np.isclose(scores[0], 0.5)  # sqrt(0.25 * 1.0)
    assert np.array_equal(masks[1], A) and np.isclose(scores[1], 0.4)  # sqrt(0.64 * 0.25)
    _, _, unchanged = combine_with_proposals(np.stack([A, B]), np.array([0.64, 0.25]), no_model, np.zeros(0),
                                             probs, model_share=0.0)
    assert np.allclose(unchanged, [0.64, 0.25])


def test_a_dropped_proposal_stays_an_object_ranked_below_and_before_the_models_own():
    """The filter's dropped proposals the final model is sure of come back after the kept ones, their scores times
    dropped_weight; they take free pixels before the model's own instances, and one mostly under a kept proposal
    adds nothing."""
    from engine.method.instances import DROPPED_WEIGHT, combine_with_proposals
    C, under_a = box(12, 18, 2, 8), box(2, 8, 2, 9)  # C: dropped and also found by the model; under_a: inside A
    semantic = np.zeros(A.shape, int)
    semantic[A] = 1
    semantic[C] = 2
    probs = probs_for(semantic)
    dropped = (np.stack([C, under_a]), np.array([0.9, 0.95]), np.array([2, 1]))
    masks, classes, scores = combine_with_proposals(np.stack([A]), np.array([0.5]), np.stack([C]), np.array([0.99]),
                                                    probs, model_share=0.0, dropped=dropped)
    assert len(masks) == 2  # A, then C as the dropped proposal (the model's C is then no longer new)
    assert np.array_equal(masks[0], A) and np.isclose(scores[0], 0.5)
    assert np.array_equal(masks[1], C) and classes[1] == 2 and np.isclose(scores[1], 0.9 * DROPPED_WEIGHT)
    _, _, kept_rank = combine_with_proposals(np.stack([A]), np.array([0.5]), np.stack([C]), np.array([0.99]), probs,
                                             model_share=0.0, dropped=dropped, dropped_weight=1.0)
    assert np.allclose(kept_rank, [0.9, 0.5])  # dense: every proposal at its own rank
    doubted = probs.copy()
    doubted[0][C], doubted[2][C] = 0.5, 0.5 - 2 * doubted[1][C]  # the final model is unsure of C: it stays out ...
    masks, _, _ = combine_with_proposals(np.stack([A]), np.array([0.5]), np.zeros((0, *A.shape), bool), np.zeros(0),
                                         doubted, model_share=0.0, dropped=dropped)
    assert len(masks) == 1 and np.array_equal(masks[0], A)
    masks, _, _ = combine_with_proposals(np.stack([A]), np.array([0.5]), np.zeros((0, *A.shape), bool), np.zeros(0),
                                         doubted, model_share=0.0, dropped=dropped, readmit_foreground=0.0)
    assert len(masks) == 2  # ... unless every dropped proposal comes back (dense)


def test_kept_proposals_take_the_label_states_category_and_model_objects_the_heads():
    """Given the proposals' categories, the head scores a kept proposal but does not re-classify it; an object
    only the model found keeps the head's class; the painted map says what the instances say."""
    from engine.method.instances import combine_with_proposals
    C = box(12, 18, 2, 8)
    semantic = np.zeros(A.shape, int)
    semantic[A] = 1  # the head calls A class 1 ...
    semantic[C] = 3
    probs = probs_for(semantic)
    masks, classes, _ = combine_with_proposals(np.stack([A]), np.array([0.8]), np.stack([C]), np.array([0.6]),
                                               probs, proposal_classes=[2])  # ... the label state says 2
    assert np.array_equal(masks[0], A) and classes[0] == 2
    assert np.array_equal(masks[1], C) and classes[1] == 3
    painted = masks.painted(classes)
    assert painted.dtype == np.uint16
    assert (painted[A] == 2).all() and (painted[C] == 3).all() and (painted[~(A | C)] == 0).all()
    _, head_classes, _ = combine_with_proposals(np.stack([A]), np.array([0.8]), np.stack([C]), np.array([0.6]),
                                                probs)
    assert list(head_classes) == [1, 3]  # without them the head classifies the proposal


def test_a_group_shaped_object_ranks_below_a_compact_one_and_a_carried_one_keeps_its_score():
    labels = np.zeros((60, 60), np.int32)
    labels[5:25, 5:25] = 1  # a square: solidity 1
    labels[30:38, 5:55] = 2  # an L (two touching bars): solidity about 0.5
    labels[38:58, 5:13] = 2
    labels[40:58, 30:55] = 3  # a rectangle, carried from a correction
    masks = LabelMasks(labels, [2, 3, 1])
    classes, scores = np.array([7, 8, 9]), np.array([0.6, 0.55, 0.5], np.float32)
    ranked, ranked_classes, ranked_scores = rank_by_compactness(masks, classes, scores, skip={3})
    solidity = (8 * 50 + 20 * 8) / (50 * 28 - (42 * 20) / 2)  # L area over its convex hull (a cut corner)
    assert solidity < COMPACT_SOLIDITY
    assert list(ranked.ids) == [3, 1, 2] and list(ranked_classes) == [8, 9, 7]
    np.testing.assert_allclose(ranked_scores, [0.55, 0.5, 0.6 * solidity / COMPACT_SOLIDITY], rtol=0.05)
    assert (np.asarray(ranked[2]) == (labels == 2)).all()  # the masks themselves do not change
    empty = LabelMasks(np.zeros((4, 4), np.int32), [])
    assert len(rank_by_compactness(empty, np.zeros(0, int), np.zeros(0, np.float32))[0]) == 0
