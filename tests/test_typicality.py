"""The folder's typicality ranking (engine.method.typicality, engine.orchestration.typical_ranking): what the folder's
images put first ranks every object."""
import numpy as np
import pytest

from engine.method import typicality
from engine.method.features import ImageFeatures
from engine.method.typicality import folder_prototype, object_embeddings, typicality_weights
from engine.orchestration.outcome import describe_typical
from engine.orchestration.typical_ranking import rank_by_typicality
from engine.state.project import load_image_predictions, save_image_predictions

GRID, PATCH = 4, 8
KIND, BACKGROUND_OBJECT, REST = np.eye(3, 8, dtype=np.float32)  # token directions


def test_weights_are_a_power_of_the_cosine_to_the_prototype():
    prototype = np.array([1.0, 0.0], np.float32)
    weights = typicality_weights(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], np.float32), prototype)
    assert weights == pytest.approx([1.0, 0.0, 0.5 ** typicality.TYPICAL_POWER])


def test_the_prototype_is_the_score_weighted_mean_of_enough_images_top_objects():
    tops = np.tile([[1.0, 0.0], [0.0, 1.0]], (typicality.MIN_TYPICAL_IMAGES // 2, 1)).astype(np.float32)
    scores = np.tile([3.0, 1.0], typicality.MIN_TYPICAL_IMAGES // 2)
    assert folder_prototype(tops, scores) == pytest.approx(np.array([3.0, 1.0]) / np.sqrt(10.0))
    assert folder_prototype(tops[:-2], scores[:-2]) is None  # under MIN_TYPICAL_IMAGES: no prototype


def features_and_masks(kind_at, other_at):
    """A 32 x 32 image of 4 x 4 patches: the folder's kind of object in the patch cells ``kind_at``, another object
    in ``other_at``, the rest background; (ImageFeatures, (2, 32, 32) bool masks [kind, other])."""
    tokens = np.tile(REST, (GRID * GRID, 1))
    masks = np.zeros((2, GRID * PATCH, GRID * PATCH), bool)
    for index, (cells, direction) in enumerate(((kind_at, KIND), (other_at, BACKGROUND_OBJECT))):
        for cell in cells:
            tokens[cell] = direction
            row, col = divmod(cell, GRID)
            masks[index, row * PATCH:(row + 1) * PATCH, col * PATCH:(col + 1) * PATCH] = True
    return ImageFeatures((GRID, GRID), (GRID * PATCH, GRID * PATCH), None, tokens.astype(np.float16),
                         np.zeros(8, np.float32), None), masks


def test_an_objects_embedding_is_what_sets_it_apart_in_its_image():
    features, masks = features_and_masks([0, 1], [10])
    embedded = object_embeddings(features, masks)
    assert np.linalg.norm(embedded, axis=1) == pytest.approx([1.0, 1.0])
    assert np.argmax(embedded[0]) == 0 and np.argmax(embedded[1]) == 1  # the image's own mean taken out


def test_objects_unlike_what_the_folder_puts_first_rank_down_and_the_users_keep_their_scores(tmp_path):
    count = typicality.MIN_TYPICAL_IMAGES
    features, images = {}, {}
    for index in range(count):
        image_id = f"im{index}"
        features[image_id], masks = features_and_masks([0, 1, 4], [10, 11])
        # the folder's kind is first in most images; in every fifth the other object outscores it
        scores = np.array([0.5, 0.6] if index % 5 == 0 else [0.6, 0.3], np.float32)
        order = np.argsort(-scores)
        save_image_predictions(tmp_path / f"{image_id}.npz", np.zeros((32, 32), np.uint16), masks[order],
                               np.ones(2, np.int32), scores[order])
        users = {0} if index == 5 else set()  # the user drew image 5's other object: it stays on top
        images[image_id] = ({"image_id": image_id}, users)
    summary = rank_by_typicality(tmp_path, images, lambda entry: features[entry["image_id"]])
    assert summary["used"] and summary["images"] == count
    assert summary["images_reordered"] == count // 5 - 1
    kind_mask = features_and_masks([0, 1, 4], [10, 11])[1][0]
    for index in range(count):
        _, masks, _, scores = load_image_predictions(tmp_path / f"im{index}.npz")
        assert list(scores) == sorted(scores, reverse=True)
        top_is_kind = np.array_equal(np.asarray(masks[0], bool), kind_mask)
        assert top_is_kind == (index != 5)
    _, _, _, scores = load_image_predictions(tmp_path / "im5.npz")
    assert scores[0] == pytest.approx(0.6)  # the user's object as it was
    assert "a different first mask in 9 images" in describe_typical(summary)


def test_a_small_folder_keeps_its_ranking(tmp_path):
    features, masks = features_and_masks([0], [10])
    save_image_predictions(tmp_path / "a.npz", np.zeros((32, 32), np.uint16), masks[::-1], np.ones(2, np.int32),
                           np.array([0.9, 0.1], np.float32))
    before = (tmp_path / "a.npz").read_bytes()
    summary = rank_by_typicality(tmp_path, {"a": ({"image_id": "a"}, set())}, lambda entry: features)
    assert summary["used"] is False and summary["images"] == 1 and summary["images_reordered"] == 0
    assert (tmp_path / "a.npz").read_bytes() == before
    assert f"needs {typicality.MIN_TYPICAL_IMAGES} images with masks" in describe_typical(summary)
    assert rank_by_typicality(tmp_path, {}, lambda entry: features) is None


def test_crop_weights_follow_the_first_objects_crops_less_the_folders_mean():
    count = typicality.MIN_TYPICAL_IMAGES
    whole, part = np.array([1.0, 0.0, 5.0], np.float32), np.array([0.0, 1.0, 5.0], np.float32)
    crops = [np.stack([whole, part]) if i % 5 else np.stack([part, whole]) for i in range(count)]
    weights = typicality.crop_typicality_weights(crops, np.ones(count))
    # the shared component (5.0 on the last axis) is the folder's mean and goes: whole and part point apart
    assert weights[1][0] > 0.9 and weights[1][1] < 0.1  # 4 of 5 images put the whole first
    assert weights[0][0] == pytest.approx(weights[1][1]) and weights[0][1] == pytest.approx(weights[1][0])
    assert typicality.crop_typicality_weights(crops[:-1], np.ones(count - 1)) is None  # under the gate
    assert typicality.crop_typicality_weights([np.zeros((0, 3))] * count, np.ones(count)) is None


def test_two_ways_of_cutting_each_weigh_by_their_own_prototype_and_meet_in_the_geometric_mean():
    """The masked crop and the crop in its surroundings (object_crop_embedder's two ways): each way is centred on
    its own mean and has its own prototype; an object's weight is the geometric mean of the two ways' weights."""
    count = typicality.MIN_TYPICAL_IMAGES
    rng = np.random.default_rng(0)
    first = [rng.normal(size=(3, 4)).astype(np.float32) + (i % 5 > 0) * np.array([3, 0, 0, 0], np.float32)
             for i in range(count)]
    second = [rng.normal(size=(3, 4)).astype(np.float32) * 10 + 7 for _ in range(count)]  # another scale and mean
    both = [np.stack([a, b], axis=1) for a, b in zip(first, second)]
    scores = rng.uniform(0.5, 1.0, count)
    alone = [typicality.crop_typicality_weights(way, scores) for way in (first, second)]
    together = typicality.crop_typicality_weights(both, scores)
    for image in range(count):
        np.testing.assert_allclose(together[image], np.sqrt(alone[0][image] * alone[1][image]), rtol=1e-5)
    same = typicality.crop_typicality_weights([np.stack([a, a], axis=1) for a in first], scores)
    np.testing.assert_allclose(np.concatenate(same), np.concatenate(alone[0]), rtol=1e-5)  # one way twice: itself


def stage_whole_and_part(folder):
    """MIN_TYPICAL_IMAGES images, each with a whole object (4 patch cells) and a part (1 cell) of the folder's kind,
    alike in their pooled tokens; the whole outscores the part except in every fifth image. Returns (images,
    features)."""
    count = typicality.MIN_TYPICAL_IMAGES
    whole, part = np.zeros((2, 32, 32), bool)
    whole[:16, :16] = True  # cells 0, 1, 4, 5
    part[16:24, 16:24] = True  # cell 10
    features, images = {}, {}
    for index in range(count):
        image_id = f"im{index}"
        features[image_id], _ = features_and_masks([0, 1, 4, 5, 10], [])
        scores = np.array([0.5, 0.6] if index % 5 == 0 else [0.6, 0.3], np.float32)  # [whole, part]
        order = np.argsort(-scores)
        save_image_predictions(folder / f"{image_id}.npz", np.zeros((32, 32), np.uint16),
                               np.stack([whole, part])[order], np.ones(2, np.int32), scores[order])
        images[image_id] = ({"image_id": image_id}, set())
    return images, features


def first_is_whole(folder, images) -> list:
    return [np.asarray(load_image_predictions(folder / f"{i}.npz")[1][0], bool).sum() == 256 for i in images]


def test_crops_tell_a_whole_from_its_part_where_the_pooled_tokens_cannot(tmp_path):
    """The crops of a whole and its part differ (besides what every crop shares): most images put the whole first,
    so where a part outscores it, the crops put the whole first; the pooled tokens alone cannot."""
    count = typicality.MIN_TYPICAL_IMAGES
    seen = []

    def embed_crops(entry, masks):
        seen.append(len(masks))
        return np.array([[1.0, 0.0, 3.0] if np.asarray(m).sum() > 100 else [0.0, 1.0, 3.0] for m in masks])

    images, features = stage_whole_and_part(tmp_path)
    summary = rank_by_typicality(tmp_path, images, lambda entry: features[entry["image_id"]], lambda: embed_crops)
    assert summary["used"] and summary["crops"] == 2 * count and sum(seen) == 2 * count
    assert summary["images_reordered"] == count // 5 and all(first_is_whole(tmp_path, images))
    for image_id in images:
        scores = load_image_predictions(tmp_path / f"{image_id}.npz")[3]
        assert list(scores) == sorted(scores, reverse=True)
    # without crops (none asked for, or weights that cannot be loaded) the pooled ranking alone decides
    for name, crop_embedder in (("none", None), ("unloadable", lambda: None)):
        (tmp_path / name).mkdir()
        images, features = stage_whole_and_part(tmp_path / name)
        summary = rank_by_typicality(tmp_path / name, images, lambda entry, f=features: f[entry["image_id"]],
                                     crop_embedder)
        assert summary["used"] and summary["crops"] is None and summary["images_reordered"] == 0
        assert sum(first_is_whole(tmp_path / name, images)) == count - count // 5


def test_a_user_object_is_neither_looked_at_nor_moved_by_the_crops(tmp_path):
    images, features = stage_whole_and_part(tmp_path)
    images["im0"] = (images["im0"][0], {0})  # the user drew im0's part, first there

    def embed_crops(entry, masks):
        return np.array([[1.0, 0.0, 3.0] if np.asarray(m).sum() > 100 else [0.0, 1.0, 3.0] for m in masks])

    summary = rank_by_typicality(tmp_path, images, lambda entry: features[entry["image_id"]], lambda: embed_crops)
    assert summary["crops"] == 2 * len(images) - 1
    _, masks, _, scores = load_image_predictions(tmp_path / "im0.npz")
    assert np.asarray(masks[0], bool).sum() == 64 and scores[0] == pytest.approx(0.6)
    assert sum(first_is_whole(tmp_path, images)) == len(images) - 1


def test_no_crops_are_looked_at_in_a_small_folder(tmp_path):
    features, masks = features_and_masks([0], [10])
    save_image_predictions(tmp_path / "a.npz", np.zeros((32, 32), np.uint16), masks, np.ones(2, np.int32),
                           np.array([0.9, 0.1], np.float32))

    def never():
        raise AssertionError("the crop embedder was opened below the gate")

    summary = rank_by_typicality(tmp_path, {"a": ({"image_id": "a"}, set())}, lambda entry: features, never)
    assert summary["used"] is False and summary["crops"] is None


def test_the_ranking_says_where_the_users_objects_lie_once_reordered(tmp_path):
    """The overlapping objects' pass finds the user's objects by the positions the ranking returns (written to
    predictions/stamp.json): they follow the reordering."""
    images, features = stage_whole_and_part(tmp_path)
    images["im0"] = (images["im0"][0], {1})  # the user drew im0's whole, staged second below its part

    def embed_crops(entry, masks):
        return np.array([[1.0, 0.0, 3.0] if np.asarray(m).sum() > 100 else [0.0, 1.0, 3.0] for m in masks])

    summary = rank_by_typicality(tmp_path, images, lambda entry: features[entry["image_id"]], lambda: embed_crops)
    assert summary["user_objects"] == {"im0": [0]}  # the part ranked below the user's whole
    assert np.asarray(load_image_predictions(tmp_path / "im0.npz")[1][0], bool).sum() == 256
    small = tmp_path / "small"
    small.mkdir()
    features_one, masks = features_and_masks([0], [10])
    save_image_predictions(small / "a.npz", np.zeros((32, 32), np.uint16), masks, np.ones(2, np.int32),
                           np.array([0.9, 0.1], np.float32))
    summary = rank_by_typicality(small, {"a": ({"image_id": "a"}, {1})}, lambda entry: features_one)
    assert summary["used"] is False and summary["user_objects"] == {"a": [1]}  # not reordered: where they were
