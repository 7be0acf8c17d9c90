"""Objects' centres learnt from a folder's lone objects, and groups cut at them (engine.method.centres and its
two-pass use over staged predictions, engine.orchestration.group_cutting)."""
import numpy as np
import pytest

from engine.masks import LabelMasks
from engine.method import centres, instances
from engine.method.centres import (
    CentreExamples,
    CentreFit,
    centre_pieces,
    cut_groups,
    cut_in_crops,
    depth_agreement,
    depth_targets,
    fit_centre_model,
    group_candidates,
    object_depth,
    pieces_agree_better,
    rank_by_depth_agreement,
)
from engine.method.closer_look import crop_window
from engine.method.features import ImageFeatures
from engine.method.instances import compactness_weight, mask_solidity, object_solidities
from engine.orchestration.group_cutting import CropSource, GroupCutting
from engine.orchestration.outcome import describe_group_cut
from engine.state.project import (
    load_crop_tokens,
    load_image_predictions,
    save_crop_tokens,
    save_image_predictions,
)


def disc(shape, centre, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def two_cones(shape, centres_at, radius):
    """A depth map peaking at 1 on each centre, falling to 0 at ``radius``."""
    rows, cols = np.indices(shape)
    cones = [np.clip(1 - np.hypot(rows - r, cols - c) / radius, 0, None) for r, c in centres_at]
    return np.max(cones, axis=0).astype(np.float32)


SHAPE = (60, 100)
LEFT, RIGHT = disc(SHAPE, (30, 20), 10), disc(SHAPE, (30, 58), 10)
GROUP = LEFT | RIGHT  # two objects joined by a thin bridge: one mask, concave (solidity about 0.5)
GROUP[29:32, 20:58] = True
LONE = disc(SHAPE, (30, 86), 8)
DEPTH = np.maximum(two_cones(SHAPE, [(30, 20), (30, 58)], 10), two_cones(SHAPE, [(30, 86)], 8))


def test_a_group_is_cut_at_two_centres_and_a_lone_object_is_not():
    box = (slice(18, 43), slice(8, 71))
    pieces = centre_pieces(GROUP[box], DEPTH[box], min_distance=5)
    assert pieces is not None and pieces.max() == 2
    for piece, disc_crop in zip((pieces == 1, pieces == 2), (LEFT[box], RIGHT[box])):
        assert (piece & disc_crop).sum() / (piece | disc_crop).sum() > 0.85
    assert (pieces > 0).sum() == GROUP[box].sum()  # every pixel of the group goes to a piece
    lone_box = (slice(20, 40), slice(76, 96))
    assert centre_pieces(LONE[lone_box], DEPTH[lone_box], min_distance=5) is None
    # centres closer than min_distance are one centre; shallow ones (under PEAK_DEPTH) are none
    assert centre_pieces(GROUP[box], DEPTH[box], min_distance=40) is None
    assert centre_pieces(GROUP[box], DEPTH[box] * (centres.PEAK_DEPTH * 0.9), min_distance=5) is None


def test_centres_lie_a_typical_lone_radius_apart():
    """Two touching objects of the folder's typical size come apart; one object whose predicted depth has two
    bumps within a radius (a cat's flat back) stays whole, though half the spacing would cut it."""
    model = centres.CentreModel(None, 10.5 / np.sqrt(SHAPE[0] * SHAPE[1]))  # the typical lone radius: 10 px here
    spacing = model.min_centre_distance(SHAPE)
    assert spacing == int(centres.CENTRE_SPACING * 10.5)
    box = (slice(18, 43), slice(8, 71))
    assert centre_pieces(GROUP[box], DEPTH[box], spacing).max() == 2
    rows, cols = np.indices(SHAPE)
    long_one = ((rows - 30) / 8.0) ** 2 + ((cols - 50) / 16.0) ** 2 <= 1
    bumps = two_cones(SHAPE, [(30, 46), (30, 54)], 10)  # 8 px apart
    box = (slice(21, 40), slice(33, 68))
    assert centre_pieces(long_one[box], bumps[box], spacing) is None
    assert centre_pieces(long_one[box], bumps[box], spacing // 2).max() == 2


def test_a_small_piece_goes_to_its_neighbour():
    mask = GROUP | disc(SHAPE, (30, 70), 4)  # a nub on the right disc, with a centre of its own
    depth = np.maximum(DEPTH, 0.5 * two_cones(SHAPE, [(30, 70)], 4))
    box = (slice(18, 43), slice(8, 75))
    pieces = centre_pieces(mask[box], depth[box], min_distance=3)
    assert pieces.max() == 2 and (pieces > 0).sum() == mask[box].sum()


def test_cut_groups_gives_each_piece_its_own_compactness_and_reranks():
    labels = np.zeros(SHAPE, np.int32)
    labels[GROUP] = 4
    labels[LONE] = 9
    masks = LabelMasks(labels, [4, 9])
    classes, scores = np.array([2, 3]), np.array([0.5, 0.45], np.float32)
    solidity = object_solidities(masks)
    assert group_candidates(masks, solidity) == [0] and group_candidates(masks, solidity, skip={4}) == []
    cut_masks, cut_classes, cut_scores, cut = cut_groups(masks, classes, scores, DEPTH, 5, {0})
    assert cut == 1 and len(cut_masks) == 3 and list(cut_classes) == [2, 2, 3]
    whole = compactness_weight(solidity[4])
    assert whole < 1
    # each disc is compact: its score is the group's without the group's weight, so both rank above the lone one
    np.testing.assert_allclose(cut_scores, [0.5 / whole, 0.5 / whole, 0.45], rtol=1e-5)
    assert mask_solidity(cut_masks[0]) > centres.COMPACT_SOLIDITY
    assert (np.asarray(cut_masks).sum(0) == (GROUP | LONE)).all()  # disjoint, nothing lost
    assert 9 in cut_masks.ids  # the untouched object keeps its id
    unchanged = cut_groups(masks, classes, scores, DEPTH, 5, set())
    assert unchanged[0] is masks and unchanged[3] == 0


def test_a_compact_pair_is_cut_only_where_its_pieces_agree_better_with_the_centres():
    pair = np.zeros(SHAPE, bool)
    pair[18:42, 28:76] = True  # two square objects side by side: their union is compact, deepest along a ridge
    assert mask_solidity(pair) > instances.COMPACT_SOLIDITY
    depth = two_cones(SHAPE, [(30, 40), (30, 64)], 12)
    box = (slice(18, 42), slice(28, 76))
    pieces = centre_pieces(pair[box], depth[box], min_distance=5)
    assert pieces.max() == 2 and pieces_agree_better(pair[box], depth[box], pieces)
    labels = np.zeros(SHAPE, np.int32)
    labels[pair] = 1
    masks, classes, scores = LabelMasks(labels), np.array([2]), np.array([0.5], np.float32)
    assert cut_groups(masks, classes, scores, depth, 5, set(), {0})[3] == 1
    assert cut_groups(masks, classes, scores, depth, 5, set())[3] == 0  # not offered (the user's): never cut
    # one round object in which the model sees two centres: the whole agrees better than its halves
    one = disc(SHAPE, (30, 49), 16)
    box = (slice(13, 47), slice(32, 66))
    depth = object_depth(one) * 0.5 + 0.5 * two_cones(SHAPE, [(30, 41), (30, 57)], 8)
    pieces = centre_pieces(one[box], depth[box], min_distance=3)
    assert pieces.max() == 2 and not pieces_agree_better(one[box], depth[box], pieces)


def test_objects_rank_by_how_well_their_depth_agrees_with_the_predicted_one():
    box = (slice(20, 40), slice(76, 96))
    assert depth_agreement(LONE[box], DEPTH[box]) > 0.9  # deepest where the model sees a centre
    assert depth_agreement(LONE[box], 1 - DEPTH[box]) < -0.9
    assert depth_agreement(LONE[box], np.zeros_like(DEPTH[box])) == 0.0  # a flat prediction says nothing
    labels = np.zeros(SHAPE, np.int32)
    labels[LONE] = 1
    labels[5:15, 5:95] = 2  # a band the model sees no centre in: its depth disagrees
    labels[45:55, 5:50] = 3  # the same, but the user's object
    masks = LabelMasks(labels)
    classes, scores = np.array([1, 2, 3]), np.array([0.4, 0.5, 0.3], np.float32)
    depth = DEPTH.copy()
    depth[5:15, 5:95] = np.linspace(1, 0, 90)[None, :]  # deepest at one end: unlike the band's own depth
    ranked, ranked_classes, ranked_scores = rank_by_depth_agreement(masks, classes, scores, depth, skip={3})
    assert list(ranked_classes) == [1, 3, 2]
    assert ranked_scores[1] == pytest.approx(0.3) and ranked_scores[2] < 0.5 * 0.3


def test_depth_targets_are_the_mean_depth_of_the_patches_inside():
    mask = np.zeros((40, 40), bool)
    mask[8:32, 8:32] = True
    box = (slice(8, 32), slice(8, 32))
    cells, depths = depth_targets(mask[box], box, mask.shape, (5, 5))
    assert sorted(cells.tolist()) == [6, 7, 8, 11, 12, 13, 16, 17, 18]
    centre = depths[cells.tolist().index(12)]
    assert centre == depths.max() and centre > 0.6 and depths.min() < 0.5
    assert object_depth(mask).max() == pytest.approx(1.0)


def image_with_objects(rng, count=3, grid=12, patch=8, informative=True):
    """An image of compact square objects whose tokens say (when ``informative``) how deep in its object a patch
    lies, as a backbone's tokens would, and random tokens otherwise."""
    labels = np.zeros((grid * patch, grid * patch), np.int32)
    for k in range(count):
        top, left = int(rng.integers(0, 6)) * patch, k * 4 * patch
        labels[top:top + 4 * patch, left:left + 4 * patch] = k + 1
    masks = LabelMasks(labels)
    tokens = rng.normal(0, 1, (grid * grid, 16)).astype(np.float32)
    if informative:
        depth = np.zeros(grid * grid, np.float32)
        for position in range(len(masks)):
            box, crop = masks.crop(position)
            cells, values = depth_targets(crop, box, masks.labels.shape, (grid, grid))
            depth[cells] = values
        tokens[:, 0] = 4 * depth + rng.normal(0, 0.1, grid * grid)
    features = ImageFeatures((grid, grid), (grid * patch, grid * patch), None, tokens, np.zeros(16, np.float32),
                             None)
    return features, masks


def test_the_model_is_used_only_where_it_predicts_held_out_objects():
    rng = np.random.default_rng(0)
    for informative, used in ((True, True), (False, False)):
        examples = CentreExamples()
        for _ in range(20):
            features, masks = image_with_objects(rng, informative=informative)
            examples.add(features.tokens, features.grid_hw, masks, object_solidities(masks))
        fit = fit_centre_model(examples)
        assert fit.examples == 60 and (fit.model is not None) == used
        assert (fit.held_out_r2 >= centres.MIN_HELD_OUT_R2) == used
        assert fit.summary()["used"] == used
        # a gate decided by the folder's first run (a second scale follows it) wins over this fit's R^2
        assert fit_centre_model(examples, gate=True).model is not None
        assert fit_centre_model(examples, gate=False).model is None
    few = CentreExamples()
    features, masks = image_with_objects(rng)
    few.add(features.tokens, features.grid_hw, masks, object_solidities(masks))
    fit = fit_centre_model(few)
    assert fit.model is None and fit.held_out_r2 is None and fit.examples == 3


def test_examples_keep_a_seeded_sample_of_at_most_max_examples(monkeypatch):
    monkeypatch.setattr(centres, "MAX_EXAMPLES", 5)

    def gathered(seed):
        rng, examples = np.random.default_rng(1), CentreExamples(seed)
        for _ in range(6):
            features, masks = image_with_objects(rng)
            examples.add(features.tokens, features.grid_hw, masks, object_solidities(masks))
        return examples

    first, again = gathered(0), gathered(0)
    assert len(first.items) == 5 and first.seen == 18
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first.items, again.items))
    rng = np.random.default_rng(1)
    for _ in range(6):  # the user's objects are capped alike, apart from the lone ones
        features, masks = image_with_objects(rng)
        first.add_reviewed(features.tokens, features.grid_hw, masks, 3.0)
    assert len(first.reviewed) == 5 and len(first.items) == 5 and len(first.all()) == 10
    # a concave or tiny object is no example
    examples, (features, masks) = CentreExamples(), image_with_objects(np.random.default_rng(2))
    examples.add(features.tokens, features.grid_hw, masks, {int(i): 0.5 for i in masks.ids})
    assert examples.seen == 0 and not examples.items


def test_the_users_objects_are_examples_of_any_shape_weighted_above_lone_ones(monkeypatch):
    monkeypatch.setattr(centres, "ALPHAS", (1000.0,))  # one strength: the two fits below differ only in weights
    rng = np.random.default_rng(3)
    lone_only, with_users = CentreExamples(), CentreExamples()
    for _ in range(20):
        features, masks = image_with_objects(rng)
        for examples in (lone_only, with_users):
            examples.add(features.tokens, features.grid_hw, masks, object_solidities(masks))
    # the user reviewed a concave object (no lone example: solidity about 0.5) and a speck
    features, masks = image_with_objects(rng, count=1)
    concave = np.zeros(masks.labels.shape, bool)
    concave[masks.labels == 1] = True
    concave[8:24, 8:16] = False
    speck = np.zeros_like(concave)
    speck[90:95, 90:95] = True
    with_users.add_reviewed(features.tokens, features.grid_hw, LabelMasks.from_stack(np.stack([concave, speck])), 3.0)
    assert len(with_users.reviewed) == 1 and with_users.reviewed[0][3] == 3.0
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(lone_only.items, with_users.items))  # same lone sample
    # weighted 3 is as if the user's object were three lone ones
    tripled = CentreExamples()
    tripled.items.extend(lone_only.items + [with_users.reviewed[0][:3] + (1.0,)] * 3)
    fit, reference = fit_centre_model(with_users), fit_centre_model(tripled)
    assert fit.examples == 61 and fit.reviewed == 1 and fit.summary()["reviewed_objects"] == 1
    np.testing.assert_allclose(fit.model.ridge.coef_, reference.model.ridge.coef_, rtol=1e-4, atol=1e-6)
    assert not np.allclose(fit.model.ridge.coef_, fit_centre_model(lone_only).model.ridge.coef_, atol=1e-6)
    assert "(1 of them yours)" in describe_group_cut(fit.summary() | {"objects_cut": 0, "images_changed": 0})


class TwoCentres:
    """A fitted model's stand-in: the depth map of the group and the lone object above."""

    def depth_map(self, tokens, grid_hw, image_hw):
        assert image_hw == SHAPE
        return DEPTH

    def min_centre_distance(self, image_hw):
        return 5


def test_staged_predictions_are_cut_and_written_again(tmp_path, monkeypatch):
    labels = np.zeros(SHAPE, np.int32)
    labels[GROUP], labels[LONE] = 1, 2
    masks = LabelMasks(labels)
    features = ImageFeatures((6, 10), SHAPE, None, np.zeros((60, 4), np.float32), np.zeros(4, np.float32), None)
    cutting = GroupCutting()
    for image_id, skip in (("a", set()), ("b", {1})):  # in b the group was carried from the user's correction
        save_image_predictions(tmp_path / f"{image_id}.npz", masks.painted([5, 6]), masks, np.array([5, 6]),
                               np.array([0.5, 0.45], np.float32))
        cutting.observe({"image_id": image_id}, features, masks, object_solidities(masks), skip)
    assert cutting.images["a"][1:] == ({0}, set()) and cutting.images["b"][1:] == (set(), {0})
    monkeypatch.setattr("engine.orchestration.group_cutting.fit_centre_model",
                        lambda examples, gate=None: CentreFit(TwoCentres(), 0.5, 1000.0, 40))
    summary = cutting.cut_staged(tmp_path, lambda entry: features)
    assert summary == {"used": True, "lone_objects": 40, "reviewed_objects": 0, "known_group_members": 0,
                       "alpha": 1000.0, "held_out_r2": 0.5, "objects_cut": 1, "images_changed": 1, "objects_added": 1,
                       "in_crops": None,
                       "min_lone_objects": centres.MIN_EXAMPLES, "min_held_out_r2": centres.MIN_HELD_OUT_R2}
    semantic, stored, classes, scores = load_image_predictions(tmp_path / "a.npz")
    assert len(stored) == 3 and list(classes) == [5, 5, 6] and scores[0] > scores[2] and scores[1] > scores[2]
    assert (semantic == 5).sum() == GROUP.sum()
    _, stored, classes, scores = load_image_predictions(tmp_path / "b.npz")
    assert len(stored) == 2  # the user's object is never cut, and keeps its score; the other is ranked
    assert list(classes) == [5, 6] and scores[0] == pytest.approx(0.5) and 0.3 < scores[1] < 0.45
    assert "1 masks split in 1 images" in describe_group_cut(summary)
    assert GroupCutting().cut_staged(tmp_path, lambda entry: features) is None  # nothing observed: dense objects


# a photo 200 x 300 holding the group and the lone object above, small (under a tenth of it), at (100, 150)
PHOTO = (200, 300)
AT = (slice(100, 160), slice(150, 250))


class DepthInPixels:
    """A fitted model's stand-in whose tokens are the depth itself, one patch per pixel (as the crops below are
    embedded)."""

    def __init__(self, spacing=5):
        self.spacing = spacing

    def depth_map(self, tokens, grid_hw, image_hw):
        assert tuple(grid_hw) == tuple(image_hw)
        return np.asarray(tokens, np.float32).reshape(image_hw)

    def min_centre_distance(self, image_hw):
        return self.spacing


def depth_pixels(crops):
    """A closer look's embed stand-in: each crop's first channel (the depth x 250) as its tokens, one per pixel."""
    return [((crop[..., 0].astype(np.float32) / 250).reshape(-1, 1), crop.shape[:2]) for crop in crops]


def photo_with_small_objects():
    labels, depth = np.zeros(PHOTO, np.int32), np.zeros(PHOTO, np.float32)
    labels[AT][GROUP], labels[AT][LONE], depth[AT] = 1, 2, DEPTH
    image = np.repeat(np.round(depth * 250).astype(np.uint8)[..., None], 3, axis=2)
    return LabelMasks(labels), image


def test_small_objects_are_cut_at_the_centres_of_their_own_crops():
    masks, image = photo_with_small_objects()
    crops = {position: (window, tokens, grid_hw) for position, (window, tokens, grid_hw) in enumerate(
        (window, *depth_pixels([image[window[1]:window[3], window[0]:window[2]]])[0])
        for window in ((140, 110, 260, 150), (220, 100, 260, 160)))}  # the group's window, the lone one's
    cut_masks, classes, scores, cut = cut_in_crops(masks, np.array([5, 6]), np.array([0.5, 0.45], np.float32),
                                                   crops, DepthInPixels())
    assert cut == 1 and len(cut_masks) == 3 and list(classes) == [5, 5, 6]
    for piece, disc_mask in zip(np.asarray(cut_masks)[:2][np.argsort([m.nonzero()[1].mean()
                                                                      for m in np.asarray(cut_masks)[:2]])],
                                (LEFT, RIGHT)):
        expected = np.zeros(PHOTO, bool)
        expected[AT] = disc_mask
        assert (piece & expected).sum() / (piece | expected).sum() > 0.85
    assert (np.asarray(cut_masks).sum(0) == masks.labels.astype(bool)).all()  # disjoint, nothing lost
    # without a crop, or with centres further apart than the discs' (38 px), nothing is cut
    assert cut_in_crops(masks, np.array([5, 6]), np.array([0.5, 0.45]), {1: crops[1]}, DepthInPixels())[3] == 0
    assert cut_in_crops(masks, np.array([5, 6]), np.array([0.5, 0.45]), crops, DepthInPixels(40))[3] == 0


def test_staged_small_objects_are_cut_in_their_crops_by_a_model_learnt_on_crops(tmp_path, monkeypatch):
    masks, image = photo_with_small_objects()
    # the whole image's tokens are its depth (DepthInPixels): zeros, so nothing is cut there
    features = ImageFeatures(PHOTO, PHOTO, None, np.zeros((PHOTO[0] * PHOTO[1], 1), np.float32),
                             np.zeros(1, np.float32), None)
    cutting = GroupCutting()
    for image_id, skip in (("a", set()), ("b", {1})):  # in b the group was carried from the user's correction
        save_image_predictions(tmp_path / f"{image_id}.npz", masks.painted([5, 6]), masks, np.array([5, 6]),
                               np.array([0.5, 0.45], np.float32))
        cutting.observe({"image_id": image_id}, features, masks, object_solidities(masks), skip)
    fits = []

    def fit(examples, spacing=centres.CENTRE_SPACING, gate=None):
        fits.append((len(examples.items), spacing))
        if spacing != centres.CROP_CENTRE_SPACING:
            return CentreFit(DepthInPixels(), 0.5, 100.0, 40)
        return CentreFit(DepthInPixels(), 0.5, 100.0, 2) if crops_used else CentreFit(None, 0.1, 100.0, 2)

    monkeypatch.setattr("engine.orchestration.group_cutting.fit_centre_model", fit)
    embedded = []

    def embed(crops):
        embedded.extend(crop.shape[:2] for crop in crops)
        return depth_pixels(crops)

    crops_used = True
    source = CropSource(lambda entry: image, embed,
                        lambda entry: (tmp_path / "closer_look" / f"{entry['image_id']}.crops.npz", "key"),
                        lambda entry: tmp_path / "recut_tokens" / f"{entry['image_id']}.npz")
    # in a, the recut embedded the group's crop already (under another key it would not count)
    group_window = crop_window(PHOTO, (158, 112, 221, 149))
    x0, y0, x1, y1 = group_window
    save_crop_tokens(tmp_path / "recut_tokens" / "a.npz", "key", {group_window: depth_pixels([image[y0:y1, x0:x1]])[0]})
    summary = cutting.cut_staged(tmp_path, lambda entry: features, source)
    # the lone objects of both images' crops were the examples (the user's object in b is not taken); then cut a
    # (and the two lone objects, of two images, pasted side by side: one known group, one crop more embedded)
    assert fits == [(2, centres.CENTRE_SPACING), (2, centres.CROP_CENTRE_SPACING)] and len(embedded) == 3
    assert summary["in_crops"]["known_groups"] == 1
    assert set(load_crop_tokens(tmp_path / "closer_look" / "a.crops.npz", "key")) >= {group_window}  # kept
    assert summary["objects_cut"] == 0 and summary["objects_added"] == 1
    assert {k: summary["in_crops"][k] for k in ("used", "objects_cut", "images_changed", "objects_added")} == \
        {"used": True, "objects_cut": 1, "images_changed": 1, "objects_added": 1}
    assert summary["in_crops"]["crops_embedded"] == 2
    _, stored, classes, _ = load_image_predictions(tmp_path / "a.npz")
    assert len(stored) == 3 and sorted(classes) == [5, 5, 6]
    _, stored, _, _ = load_image_predictions(tmp_path / "b.npz")
    assert len(stored) == 2  # the user's object is never cut
    assert "small ones split again in close-up" in describe_group_cut(summary)
    # a crop model that does not carry over to held-out objects cuts nothing
    crops_used, fits[:] = False, []
    for image_id in "ab":
        save_image_predictions(tmp_path / f"{image_id}.npz", masks.painted([5, 6]), masks, np.array([5, 6]),
                               np.array([0.5, 0.45], np.float32))
    summary = cutting.cut_staged(tmp_path, lambda entry: features, source)
    assert summary["in_crops"]["used"] is False and summary["objects_added"] == 0
    assert summary["in_crops"]["crops_embedded"] == 0  # the same crops: from the memo
    assert len(embedded) == 4  # only the known group embedded again
    assert len(load_image_predictions(tmp_path / "a.npz")[1]) == 2
    assert "small ones left as they are" in describe_group_cut(summary)


def test_a_memo_of_crops_tokens_comes_back_for_its_key_only(tmp_path):
    rng = np.random.default_rng(0)
    memo = {(0, 0, 3, 2): (rng.normal(size=(6, 8)).astype(np.float32), (2, 3)),
            (4, 4, 6, 7): (rng.normal(size=(6, 8)).astype(np.float32), (3, 2))}
    path = tmp_path / "closer_look" / "a.crops.npz"
    save_crop_tokens(path, "features|settings", memo)
    loaded = load_crop_tokens(path, "features|settings")
    assert list(loaded) == list(memo)
    for window, (tokens, grid_hw) in memo.items():
        assert loaded[window][1] == grid_hw
        np.testing.assert_allclose(loaded[window][0], tokens, atol=0.02 * np.abs(tokens).max())
    assert load_crop_tokens(path, "other features|settings") == {}  # made for other features: embedded again
    path.write_bytes(path.read_bytes()[:100])
    assert load_crop_tokens(path, "features|settings") == {}  # damaged: only a memo
    assert load_crop_tokens(tmp_path / "absent.npz", "features|settings") == {}


def test_the_command_line_says_why_groups_stay_whole():
    thresholds = {"min_lone_objects": 50, "min_held_out_r2": 0.3, "objects_cut": 0, "images_changed": 0}
    line = describe_group_cut({"used": False, "lone_objects": 3, "alpha": None, "held_out_r2": None, **thresholds})
    assert "3 masks that are clearly single objects, 50 are needed" in line
    line = describe_group_cut({"used": False, "lone_objects": 28, "alpha": 10000.0, "held_out_r2": 0.01,
                               **thresholds})
    assert "does not hold for the others" in line and "0.01 < 0.3" in line and "by hand" in line
    assert describe_group_cut(None) is None


def test_label_masks_from_a_stack():
    stack = np.stack([GROUP, LONE])
    from_array = LabelMasks.from_stack(stack)
    assert list(from_array.ids) == [1, 2] and (np.asarray(from_array) == stack).all()
    from_labels = LabelMasks.from_stack(from_array)
    assert (from_labels.labels == from_array.labels).all()
