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
