"""A closer look at a boxed object (engine.method.closer_look): the crop window with known answers, a small
object cut finer from its crop's own patches than from the whole image's, and the review actions that use it
(a box prompt takes it; a click, or closer_look=False, does not)."""
from __future__ import annotations

import numpy as np
import pytest
from test_prompt import GRID, finished, planted, planted_features, planted_image  # noqa: F401 - fixtures

from engine import api
from engine.method.closer_look import closer_look_mask, crop_window
from engine.method.prompt import points_mask

SIDE = 192
OBJECT = (slice(83, 105), slice(61, 87))  # a small object (22 x 26 px), off every coarse patch edge


def patch_tokens(share: np.ndarray, cells: int = 12, noise: float = 0.05, seed: int = 0) -> tuple:
    """A stand-in backbone that sees the object exactly, at its patch resolution: a cells x cells grid over
    ``share`` (1 on the object), each patch's vector its share of object and of background, plus noise."""
    rng = np.random.default_rng(seed)
    rows = np.array_split(np.arange(share.shape[0]), cells)
    cols = np.array_split(np.arange(share.shape[1]), cells)
    grid = np.array([[share[np.ix_(r, c)].mean() for c in cols] for r in rows])
    vectors = np.stack([grid, 1 - grid], -1) * 3 + rng.normal(0, noise, (cells, cells, 2))
    return vectors.reshape(-1, 2).astype(np.float32), (cells, cells)


def scene() -> tuple:
    """An image of noise with no edge at the object (edge refinement cannot rescue a coarse mask), and the
    object's mask."""
    image = np.random.default_rng(1).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
    truth = np.zeros((SIDE, SIDE), bool)
    truth[OBJECT] = True
    return image, truth


def crop_tokens(crop: np.ndarray) -> tuple:
    """The stand-in backbone on a crop of the scene's image (found by its pixels: the noise is unique)."""
    image, truth = scene()
    for y0 in range(SIDE - crop.shape[0] + 1):
        for x0 in np.flatnonzero((image[y0, :SIDE - crop.shape[1] + 1] == crop[0, 0]).all(-1)):
            if np.array_equal(image[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]], crop):
                return patch_tokens(truth[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]].astype(float))
    raise AssertionError("not a crop of the scene")


def iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_the_crop_window_is_a_square_around_the_box_inside_the_image():
    assert crop_window((640, 640), (100, 100, 140, 120)) == (90, 80, 150, 140)  # 1.5 x 40 px around its centre
    assert crop_window((640, 640), (0, 0, 40, 40)) == (0, 0, 60, 60)  # moved inside, not cut
    assert crop_window((640, 640), (300, 300, 302, 301)) == (285, 284, 317, 316)  # at least 32 px
    assert crop_window((100, 200), (0, 0, 200, 100)) == (0, 0, 200, 100)  # the whole image, not a square cut from it
    # positive points outside the box widen it: the object is where the user clicked too
    assert crop_window((640, 640), (100, 100, 140, 120), points=[(180, 110)]) == (80, 50, 200, 170)


def test_a_small_object_is_cut_finer_from_its_crop_than_from_the_whole_image():
    image, truth = scene()
    box = (56, 78, 92, 110)
    whole, grid = patch_tokens(truth.astype(float), cells=6)  # 32-px patches: the object spans parts of 2 x 2 of them
    coarse = points_mask(whole, grid, image, box=box)
    seen = []

    def embed(crops):
        seen.extend(crop.shape for crop in crops)
        return [crop_tokens(crop) for crop in crops]

    fine = closer_look_mask(embed, image, box)
    assert seen == [(54, 54, 3)]  # one pass, on a crop 1.5x the box's longer side
    assert iou(fine, truth) > 0.65 and iou(fine, truth) > iou(coarse, truth) + 0.15, (iou(fine, truth),
                                                                                     iou(coarse, truth))
    x0, y0, x1, y1 = crop_window(image.shape[:2], box)
    outside = np.ones_like(fine)
    outside[y0:y1, x0:x1] = False
    assert not (fine & outside).any()
    # a negative point outside the crop is left out; one on the object takes it away
    assert np.array_equal(closer_look_mask(embed, image, box, negative=[(5, 5)]), fine)
    assert not closer_look_mask(embed, image, box, negative=[(74, 94)])[94, 74]


@pytest.fixture
def recording_embedder(monkeypatch):
    """The project's crop embedder replaced by the stand-in backbone; the crops it was given are recorded."""
    import engine.method.closer_look as closer_look

    crops = []

    def embedder(config, *settings):  # crop_embedder(config, input_share, device)
        assert config["backbone"]  # the project's stored run settings reach it

        def embed(given):
            crops.extend(crop.shape for crop in given)
            return [patch_tokens((crop[..., 0] > 128).astype(float)) for crop in given]  # the planted colour
        return embed

    monkeypatch.setattr(closer_look, "crop_embedder", embedder)
    return crops


def free_square(project, image_id) -> None:
    """The generated objects over test_prompt's planted square removed, so a prompt there has free pixels."""
    generated = api.image_objects(project, image_id)
    labels = generated.labels.copy()
    labels[SQUARE_PIXELS] = 0
    classes = {k: c for k, c in generated.as_dicts()[0].items() if (labels == k).any()}
    api.set_image_labels(project, image_id, labels, classes, reviewed=False)


SQUARE_PIXELS = (slice(3 * 8, 9 * 8), slice(4 * 8, 10 * 8))  # test_prompt's SQUARE in pixels (8-px cells)
BOX = (3 * 8, 2 * 8, 11 * 8, 10 * 8)  # around it


def test_a_box_prompt_takes_the_closer_look_and_a_click_does_not(planted, recording_embedder):  # noqa: F811
    project, image_id = planted
    free_square(project, image_id)
    added = api.add_object(project, image_id, box=BOX)
    assert recording_embedder == [(96, 96, 3)]  # 1.5 x the 64-px box, as large as the image allows
    mask = api.image_objects(project, image_id).labels == added["instance_id"]
    square = np.zeros_like(mask)
    square[SQUARE_PIXELS] = True
    assert iou(mask, square) > 0.8, iou(mask, square)
    api.restore_object(project, added)
    api.restore_object(project, api.add_object(project, image_id, box=BOX, closer_look=False))
    api.add_object(project, image_id, point=(7 * 8, 5 * 8))
    assert len(recording_embedder) == 1  # neither used the network


def test_a_box_prompt_without_loadable_weights_falls_back_to_the_cached_tokens(planted, monkeypatch):  # noqa: F811
    import engine.method.closer_look as closer_look
    from engine.method.weights import WeightsNotFoundError

    def no_weights(config, *settings):
        raise WeightsNotFoundError("dinov2_vits14: no weights here")

    monkeypatch.setattr(closer_look, "crop_embedder", no_weights)
    project, image_id = planted
    free_square(project, image_id)
    assert api.add_object(project, image_id, box=BOX)["area"] > 0


def test_a_box_takes_in_the_generated_parts_inside_it_never_a_reviewed_one_and_undo_gives_them_back(
        planted, recording_embedder):  # noqa: F811
    project, image_id = planted
    generated = api.image_objects(project, image_id)
    labels = generated.labels.copy()
    labels[SQUARE_PIXELS] = 0
    classes = {k: c for k, c in generated.as_dicts()[0].items() if (labels == k).any()}
    left, right = max(classes, default=0) + 1, max(classes, default=0) + 2
    rows, cols = SQUARE_PIXELS
    labels[rows, cols.start:cols.start + 24] = left  # the square cut into two generated parts
    labels[rows, cols.start + 24:cols.stop] = right
    wide = right + 1  # a generated object across the whole image, half of it on the square's last patch row
    labels[rows.stop - 8:rows.stop, :] = wide
    category = next(iter(classes.values()))
    api.set_image_labels(project, image_id, labels, {**classes, left: category, right: category, wide: category},
                         reviewed=False)
    before = api.image_objects(project, image_id)

    added = api.add_object(project, image_id, box=BOX)
    assert sorted(added["removed"]) == [left, right]
    after = api.image_objects(project, image_id)
    assert left not in after.ids and right not in after.ids
    # the box wins over a generated object it holds only partly: it keeps what lies outside the box's mask
    assert wide in after.ids and 0 < (after.labels == wide).sum() < (labels == wide).sum()
    assert not ((after.labels == wide) & (after.labels == added["instance_id"])).any()
    square = np.zeros_like(labels, bool)
    square[SQUARE_PIXELS] = True
    assert iou(after.labels == added["instance_id"], square) > 0.9
    api.restore_object(project, added)
    restored = api.image_objects(project, image_id)
    assert np.array_equal(restored.labels, before.labels) and restored.as_dicts() == before.as_dicts()

    api.accept_object(project, image_id, left)  # the user's own object stays theirs
    added = api.add_object(project, image_id, box=BOX)
    assert added["removed"] == [right]
    assert (api.image_objects(project, image_id).labels == left).sum() == (labels == left).sum()  # all of it


def test_recut_objects_cuts_small_objects_finer_and_leaves_large_skipped_and_other_objects_alone():
    from engine.method.closer_look import recut_objects

    image, truth = scene()
    labels = np.zeros((SIDE, SIDE), np.int32)
    labels[64:112, 48:96] = 1  # the small object as a coarse block of 16-px patches around it
    labels[100:112, 88:96] = 2  # a neighbour inside that block's corner, not to be taken
    labels[150:, :] = 3  # a large object (over a tenth of the image): left as it is
    labels[0:20, 0:20] = 4  # a small object the caller skips (e.g. carried from a correction)
    calls = []

    def embed(crops):
        calls.append([crop.shape for crop in crops])
        return [crop_tokens(crop) for crop in crops]

    out = recut_objects(embed, image, labels, ids=[3, 1, 2, 4], skip={4, 2})
    assert calls == [[(72, 72, 3)]]  # only object 1 (1.5x its 48-px box): 3 is large, 2 and 4 skipped
    assert iou(out == 1, truth) > iou(labels == 1, truth) + 0.15, (iou(out == 1, truth), iou(labels == 1, truth))
    for kept in (2, 3, 4):
        assert np.array_equal(out == kept, labels == kept)
    assert not (out == 1)[labels == 2].any()
    assert out is not labels and (labels == 1).sum() == 48 * 48 - 12 * 8  # the input map is not changed
    assert np.array_equal(recut_objects(embed, image, labels, ids=[1], max_objects=0), labels)
    calls.clear()
    recut_objects(embed, image, labels, ids=[1, 2, 4])  # several small objects: their crops in one call
    assert calls == [[(72, 72, 3), (32, 32, 3), (32, 32, 3)]]


def test_objects_with_overlapping_boxes_of_a_size_share_one_crop():
    """Pieces of one object (boxes of a size, overlapping) are cut from one crop; a small object inside a large
    one's box, or one far away, keeps its own crop (its patches would be coarser than its own crop's)."""
    from engine.method.closer_look import SHARED_CROP_SIDE, recut_objects, shared_crops

    a, b = (40, 40, 80, 80), (50, 45, 88, 84)  # sides 40 and 39; together 48 <= 1.25 x 39
    inside, far = (60, 60, 70, 70), (0, 100, 40, 140)
    assert SHARED_CROP_SIDE == 1.25
    assert shared_crops([a, b, inside, far]) == [[a, b], [inside], [far]]
    image, _ = scene()
    labels = np.zeros((SIDE, SIDE), np.int32)
    labels[40:80, 40:62] = 1  # two pieces side by side, boxes 40 px high; together 44 px
    labels[42:82, 62:84] = 2
    calls, memo = [], {}

    def embed(crops):
        calls.append(len(crops))
        return [crop_tokens(crop) for crop in crops]

    tokens: dict = {}
    recut_objects(embed, image, labels, ids=[1, 2], memo=memo, tokens=tokens)
    assert calls == [1] and len(memo) == 2  # one crop, both objects cut from it
    assert len({window for window, _ in memo.values()}) == 1
    # the crop's vectors are kept by its window, for the crops' centre cut
    window = next(iter(memo.values()))[0]
    expected = crop_tokens(image[window[1]:window[3], window[0]:window[2]])
    assert list(tokens) == [window] and tokens[window][1] == expected[1]
    np.testing.assert_array_equal(tokens[window][0], expected[0])
    recut_objects(embed, image, labels, ids=[1, 2], memo=memo, tokens=tokens)
    assert calls == [1]  # remembered: no crop embedded, none added


def test_a_recut_is_remembered_by_its_box_on_disk_and_a_stale_or_damaged_memo_is_ignored(tmp_path):
    from engine.method.closer_look import recut_objects
    from engine.state.project import load_recut_memo, save_recut_memo

    image, truth = scene()
    labels = np.zeros((SIDE, SIDE), np.int32)
    labels[64:112, 48:96] = 1
    calls = []

    def embed(crops):
        calls.append([crop.shape for crop in crops])
        return [crop_tokens(crop) for crop in crops]

    memo: dict = {}
    first = recut_objects(embed, image, labels, ids=[1], memo=memo)
    path = tmp_path / "closer_look" / "img.npz"
    save_recut_memo(path, "features-a", memo)
    again = recut_objects(embed, image, labels, ids=[1], memo=load_recut_memo(path, "features-a"))
    assert len(calls) == 1 and np.array_equal(first, again)  # the second time costs no network pass
    assert load_recut_memo(path, "features-b") == {}  # other features: cut again
    path.write_bytes(b"not a memo")
    assert load_recut_memo(path, "features-a") == {}
    assert load_recut_memo(tmp_path / "absent.npz", "features-a") == {}


def test_crops_take_bfloat16_on_a_cpu_with_native_units_unless_the_run_chose_its_precision(monkeypatch):
    import engine.device
    from engine.method.closer_look import crop_precision

    monkeypatch.setattr(engine.device, "cpu_supports_bfloat16", lambda: True)
    assert crop_precision("auto", "cpu") == crop_precision(None, "cpu") == "bfloat16"
    assert crop_precision("float32", "cpu") == "float32"  # the user's choice stands
    monkeypatch.setattr(engine.device, "cpu_supports_bfloat16", lambda: False)
    assert crop_precision("auto", "cpu") == "auto"  # emulated bfloat16 is slower: float32


def test_a_crop_is_cut_from_the_patch_outputs_of_the_block_at_three_quarters_of_the_depth():
    """Measured per block (docs/decisions.md#d-box-layer): block 8 of 12 chose the object's patches best."""
    import engine.method.closer_look as closer_look

    assert closer_look.crop_block(12) == 8 and closer_look.crop_block(24) == 17 and closer_look.crop_block(1) == 0
    config = {"backbone": "dinov2_vits14", "weights": "random", "input_size": 56, "precision": "float32"}
    crop = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    (vectors, grid_hw), = closer_look.crop_embedder(config, device="cpu")([crop])
    extractor = closer_look.crop_extractor("dinov2_vits14", "random", "cpu", 56, "float32")
    features = extractor.extract([crop])[0]
    assert grid_hw == features.grid_hw and vectors.shape == features.tokens.shape
    np.testing.assert_array_equal(vectors, extractor.block_tokens([crop], 8)[0][0])
    assert not np.allclose(vectors.astype(np.float32), features.tokens.astype(np.float32), atol=0.1)


def test_clicks_on_a_boxed_object_take_a_generated_objects_pixels_as_the_box_did_never_a_reviewed_ones(
        planted, recording_embedder):  # noqa: F811
    """refine_object with the object's box wins over generated objects as add_object's box does: a generated
    object that came over the square's right half gives those pixels back to the boxed object (a click takes
    only free pixels without a box); a reviewed one keeps them."""
    project, image_id = planted
    free_square(project, image_id)
    added = api.add_object(project, image_id, box=BOX)
    boxed = added["instance_id"]
    objects = api.image_objects(project, image_id)
    labels, (classes, _, reviewed, _) = objects.labels.copy(), objects.as_dicts()
    intruder = max(classes) + 1  # a generated object over the square's right half and a strip beyond it
    rows, cols = SQUARE_PIXELS
    labels[rows, cols.start + 24:] = intruder
    api.set_image_labels(project, image_id, labels, {**classes, intruder: classes[boxed]},
                         reviewed={k for k, r in reviewed.items() if r})
    on_square = (5 * 8, 5 * 8)
    refined = api.refine_object(project, image_id, boxed, positive=[on_square], box=BOX)
    after = api.image_objects(project, image_id).labels
    square = np.zeros_like(after, bool)
    square[SQUARE_PIXELS] = True
    assert iou(after == boxed, square) > 0.8, iou(after == boxed, square)
    assert (after == intruder).any()  # it keeps what lies outside the object's mask
    api.restore_object(project, refined)
    assert np.array_equal(api.image_objects(project, image_id).labels, labels)

    api.accept_object(project, image_id, intruder)  # reviewed: the user's own, never taken
    with pytest.raises(ValueError, match="changes nothing"):
        api.refine_object(project, image_id, boxed, positive=[on_square], box=BOX)
    assert np.array_equal(api.image_objects(project, image_id).labels, labels)


def test_an_embedder_answers_a_crop_it_saw_recently_without_the_network():
    """closer_look.remembering: the same crop twice costs one network pass (a click after a box cuts its crop
    again), another crop its own, and only the last ``size`` crops are kept."""
    from collections import OrderedDict

    from engine.method.closer_look import remembering

    seen = []

    def extract(crops):
        seen.extend(int(c[0, 0, 0]) for c in crops)
        return [(np.full((4, 2), int(c[0, 0, 0]), np.float32), (2, 2)) for c in crops]

    crops = [np.full((8, 8, 3), value, np.uint8) for value in range(4)]
    recent = OrderedDict()
    embed = remembering(extract, recent, size=2)
    first = embed([crops[0], crops[1], crops[0]])
    assert seen == [0, 1] and first[0][0][0, 0] == first[2][0][0, 0] == 0 and first[1][0][0, 0] == 1
    assert embed([crops[0]])[0][0][0, 0] == 0 and seen == [0, 1]  # remembered
    embed([crops[2]])  # the oldest (1) goes
    embed([crops[1]])
    assert seen == [0, 1, 2, 1] and len(recent) == 2


def test_small_objects_of_a_size_that_overlap_share_one_crop():
    from engine.method.closer_look import CROP_CUT_MAX_SHARE, small_object_windows

    labels = np.zeros((120, 120), np.int32)
    labels[20:30, 20:30], labels[20:30, 30:32], labels[80:82, 80:82], labels[:, 100:] = 1, 2, 3, 4
    labels[60:64, 20:24] = 5
    windows = small_object_windows(labels, [4, 1, 2, 3, 5], skip={3})
    assert list(windows) == [1, 2, 5]  # 4 is a sixth of the image, 3 is skipped
    assert windows[1] == windows[2] != windows[5]  # boxes of a size that overlap share one crop
    x0, y0, x1, y1 = windows[1]
    assert x0 <= 20 and y0 <= 20 and x1 >= 32 and y1 >= 30 and x1 - x0 == y1 - y0  # a square holding both boxes
    # the crops' centre cut takes larger objects too (a group of small ones spans up to CROP_CUT_MAX_SHARE)
    assert list(small_object_windows(labels, [4, 1, 2, 3, 5], skip={3}, max_share=CROP_CUT_MAX_SHARE)) == [4, 1, 2, 5]


def test_the_crops_cut_reads_a_recut_crop_holding_the_object_unless_it_is_far_larger():
    from engine.method.closer_look import CROP_REUSE_SIDE, crop_window, small_object_windows

    labels = np.zeros((200, 200), np.int32)
    labels[20:30, 20:30], labels[120:130, 120:130] = 1, 2
    own = crop_window(labels.shape, (120, 120, 130, 130))
    side = own[2] - own[0]
    near = (10, 10, 10 + side + 5, 10 + side + 5)  # holds object 1, a little larger than its own crop
    far = (100, 100, 100 + int(CROP_REUSE_SIDE * side) + 5, 100 + int(CROP_REUSE_SIDE * side) + 5)  # holds 2: too large
    windows = small_object_windows(labels, [1, 2], known=[near, far, (0, 0, 200, 200)])
    assert windows == {1: near, 2: own}


def test_an_objects_crops_are_its_own_pixels_and_its_box_and_without_weights_nothing(monkeypatch):
    """The typicality ranking's crops (object_crop_embedder): two CLS tokens per mask, the first from the mask's box
    with the pixels outside the mask painted grey (what lies around the object does not change it), the second from
    the box and a tenth's margin as the image has them (what lies in it does; what lies beyond it does not)."""
    import engine.method.closer_look as closer_look
    from engine.method.weights import WeightsNotFoundError

    config = {"backbone": "dinov2_vits14", "weights": "random", "input_size": 56, "precision": "float32"}
    embed = closer_look.object_crop_embedder(config, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:30, 10:40] = True
    masks[1, 35:55, 50:75] = True
    masks[1, 40:45, 55:60] = False  # a hole: painted grey in the first crop, as the image has it in the second
    vectors = embed(image, masks)
    assert vectors.shape == (2, 2, 384) and not np.allclose(vectors[0], vectors[1])
    assert not np.allclose(vectors[:, 0], vectors[:, 1])  # the two cuts differ
    elsewhere = image.copy()
    elsewhere[:, :5] = 0  # outside both boxes and their margins
    np.testing.assert_array_equal(embed(elsewhere, masks), vectors)  # the same crops, to the bit
    in_box = image.copy()
    in_box[40:45, 55:60] = 255  # inside the second box, outside its mask
    changed = embed(in_box, masks)
    np.testing.assert_array_equal(changed[:, 0], vectors[:, 0])  # the object alone: unchanged
    assert not np.array_equal(changed[1, 1], vectors[1, 1]) and np.array_equal(changed[0, 1], vectors[0, 1])
    inside = image.copy()
    inside[12:20, 12:20] = 0
    changed = embed(inside, masks)
    assert not np.array_equal(changed[0, 0], vectors[0, 0]) and np.array_equal(changed[1], vectors[1])

    def no_weights(*settings):
        raise WeightsNotFoundError("dinov2_vits14: no weights here")

    monkeypatch.setattr(closer_look, "crop_extractor", no_weights)
    assert closer_look.object_crop_embedder(config, device="cpu") is None
