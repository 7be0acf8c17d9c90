"""One-click objects: the pure function (engine.method.prompt) on planted features with a known answer, and
the review action (engine.api.add_object, undone by restore_object) on a small project whose cached features of
one image are replaced by planted ones."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine import api
from engine.method.prompt import prompt_mask
from engine.state.corrections import correction_path
from helpers import MECHANICS, make_folder, planted_copy

CELL = 8  # image pixels per patch of the planted grid
GRID = (12, 12)
SQUARE = (slice(3, 9), slice(4, 10))  # patch rows / cols of the planted object
TWIN = (slice(9, 12), slice(0, 3))  # a second object of the same kind, apart from the first


def planted_features(seed: int = 0, dim: int = 64, noise: float = 0.6) -> np.ndarray:
    """(gh * gw, dim) patch vectors: background around one direction, the two planted objects around another,
    noisy."""
    rng = np.random.default_rng(seed)
    background, thing = np.eye(dim)[0] * 3, np.eye(dim)[1] * 3
    vectors = background + rng.normal(0, noise, (*GRID, dim))
    for region in (SQUARE, TWIN):
        vectors[region] = thing + rng.normal(0, noise, vectors[region].shape)
    return vectors.reshape(-1, dim).astype(np.float16)


def planted_image() -> np.ndarray:
    image = np.full((GRID[0] * CELL, GRID[1] * CELL, 3), 40, np.uint8)
    for rows, cols in (SQUARE, TWIN):
        image[rows.start * CELL:rows.stop * CELL, cols.start * CELL:cols.stop * CELL] = (200, 180, 60)
    return image


def pixels(region) -> np.ndarray:
    mask = np.zeros((GRID[0] * CELL, GRID[1] * CELL), bool)
    rows, cols = region
    mask[rows.start * CELL:rows.stop * CELL, cols.start * CELL:cols.stop * CELL] = True
    return mask


def iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_a_click_on_a_planted_object_finds_it_and_not_its_twin():
    vectors, image, square, twin = planted_features(), planted_image(), pixels(SQUARE), pixels(TWIN)
    mask = prompt_mask(vectors, GRID, image, point=(7 * CELL, 5 * CELL))  # (x, y) inside the square
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    assert iou(mask, square) > 0.9, iou(mask, square)
    assert not (mask & twin).any()  # the object under the click, not every patch like it
    # a box around the square, without a click, finds it too; nothing leaves the box
    box = (3 * CELL, 2 * CELL, 11 * CELL, 10 * CELL)
    boxed = prompt_mask(vectors, GRID, image, box=box)
    assert iou(boxed, square) > 0.85, iou(boxed, square)
    assert not boxed[:, :box[0]].any() and not boxed[box[3]:].any()


def test_a_box_learns_its_object_from_its_surroundings_even_an_object_of_two_unlike_parts():
    """The box's classifier learns "unlike the surroundings" from the box itself: an object made of two parts
    that look nothing alike (a face above a body) is found whole, where a cut along the features' edges keeps
    one part; the box's strip of background stays out."""
    rng = np.random.default_rng(1)
    dim, background, face, body = 64, np.eye(64)[0] * 3, np.eye(64)[1] * 3, np.eye(64)[2] * 3
    vectors = background + rng.normal(0, 0.6, (*GRID, dim))
    vectors[2:6, 2:9] = face + rng.normal(0, 0.6, (4, 7, dim))
    vectors[6:10, 2:9] = body + rng.normal(0, 0.6, (4, 7, dim))  # 7 of the box's 8 columns
    image = np.full((GRID[0] * CELL, GRID[1] * CELL, 3), 40, np.uint8)
    image[2 * CELL:6 * CELL, 2 * CELL:9 * CELL] = (200, 180, 60)
    image[6 * CELL:10 * CELL, 2 * CELL:9 * CELL] = (60, 90, 200)
    truth = pixels((slice(2, 10), slice(2, 9)))
    box = (2 * CELL, 2 * CELL, 10 * CELL, 10 * CELL)
    boxed = prompt_mask(vectors.reshape(-1, dim).astype(np.float16), GRID, image, box=box)
    assert iou(boxed, truth) > 0.9, iou(boxed, truth)
    assert not boxed[:, 9 * CELL + 2:].any()  # the background column inside the box stays out


def test_the_box_classifier_takes_the_object_forced_cells_and_nothing_outside_the_box():
    """engine.method.prompt._box_classified on planted vectors: the planted square's cells inside the box come
    out as the object, every cell around the box as background; a positive cell is taken even where it looks
    like the background, a negative one never, even on the object."""
    from engine.method.prompt import _box_classified, unit_rows, window_graph

    flat = unit_rows(planted_features(), centre=True)
    graph = window_graph(flat.reshape(*GRID, -1), 2)
    inside = np.zeros(GRID, bool)
    inside[2:10, 3:11] = True  # the box around the square (rows 3-8, cols 4-9)
    square = np.zeros(GRID, bool)
    square[SQUARE] = True
    cells = np.arange(flat.shape[0]).reshape(GRID)
    probability = _box_classified(graph, flat, inside.ravel(), [], [], smoothing=3).reshape(GRID)
    assert ((probability > 0.5) == square).mean() > 0.95 and not probability[~inside].any()
    forced = _box_classified(graph, flat, inside.ravel(), [cells[2, 3]], [cells[5, 6]], smoothing=3).reshape(GRID)
    assert forced[2, 3] == 1.0 and forced[5, 6] == 0.0 and probability[2, 3] < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_click_after_a_box_teaches_its_classifier_the_whole_part_it_missed(seed):
    """An object of two parts in a box, one part (two columns) looking much like the surroundings: the box alone
    leaves that part out. One click on it labels its cell and the like cells around it for the classifier,
    which then takes the whole part (forcing the clicked cell alone took about a tenth of it)."""
    from engine.method.prompt import points_mask

    rng = np.random.default_rng(seed)
    dim = 64
    background, body, part = np.eye(dim)[0] * 3, np.eye(dim)[1] * 3, np.eye(dim)[0] * 4.5 + np.eye(dim)[2] * 3
    vectors = background + rng.normal(0, 0.4, (*GRID, dim))
    vectors[3:9, 4:8] = body + rng.normal(0, 0.4, (6, 4, dim))
    vectors[3:9, 8:10] = part + rng.normal(0, 0.4, (6, 2, dim))
    vectors = vectors.reshape(-1, dim).astype(np.float16)
    image = np.full((GRID[0] * CELL, GRID[1] * CELL, 3), 40, np.uint8)
    image[3 * CELL:9 * CELL, 4 * CELL:10 * CELL] = (200, 180, 60)
    part_pixels = pixels((slice(3, 9), slice(8, 10)))
    box = (3 * CELL, 2 * CELL, 11 * CELL, 10 * CELL)
    alone = points_mask(vectors, GRID, image, box=box)
    clicked = points_mask(vectors, GRID, image, box=box, positive=[(8.5 * CELL, 5.5 * CELL)])
    assert (alone & part_pixels).sum() < 0.2 * part_pixels.sum()
    assert (clicked & part_pixels).sum() > 0.9 * part_pixels.sum()
    assert iou(clicked, pixels((slice(3, 9), slice(4, 10)))) > 0.85


def test_a_refine_click_with_a_box_keeps_the_object_the_box_holds_and_adds_the_clicked_part():
    """engine.state.prompt_review._parts_at: of a remade mask, the parts under the clicks; with a box, also its
    largest part (the object the box holds), which a click on a detached part must not drop."""
    from engine.state.prompt_review import _parts_at

    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True  # the boxed object
    mask[15:18, 15:18] = True  # a part the user clicked, apart from it
    clicked = [(16.0, 16.0)]  # (x, y)
    assert np.array_equal(_parts_at(mask, clicked), mask & (np.arange(20)[:, None] >= 15))
    assert np.array_equal(_parts_at(mask, clicked, with_largest=True), mask)
    assert np.array_equal(_parts_at(mask, []), mask & (np.arange(20)[:, None] < 15))  # no click: the largest


def test_a_click_on_the_background_gives_background_and_bad_prompts_are_refused():
    vectors, image, square = planted_features(1, noise=0.3), planted_image(), pixels(SQUARE)
    mask = prompt_mask(vectors, GRID, image, point=(90, 10))
    assert mask[10, 90] and not (mask & square).any()
    assert 0.3 < mask.mean() < 0.95  # most of the background, as one object
    with pytest.raises(ValueError, match="outside"):
        prompt_mask(vectors, GRID, image, point=(500, 10))
    with pytest.raises(ValueError, match="point"):
        prompt_mask(vectors, GRID, image)


def test_uncentred_keys_and_a_window_smaller_than_the_grid():
    vectors, image, square = planted_features(2), planted_image(), pixels(SQUARE)
    mask = prompt_mask(vectors, GRID, image, point=(7 * CELL, 5 * CELL), centre=False, window=8)
    assert iou(mask, square) > 0.8, iou(mask, square)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("prompt_images"))
    Image.fromarray(planted_image()).save(folder / "planted.png")
    project = tmp_path_factory.mktemp("prompt_project")
    api.run(folder, project, api.RunConfig(**MECHANICS))
    return project


@pytest.fixture
def planted(finished, tmp_path):
    """(project copy, image id of planted.png) with that image's cached features replaced by planted tokens."""
    from engine.method.features import FeatureCache

    vectors = planted_features(3)
    project, entry = planted_copy(finished, tmp_path, "planted.png", vectors, GRID)
    stored = FeatureCache(project / "features").get(entry["feature_key"])
    assert np.allclose(stored.tokens, vectors, atol=0.1)  # the cache keeps them (int8 tokens, no keys)
    return project, entry["image_id"]


def test_add_object_writes_a_correction_and_is_undone(planted):
    project, image_id = planted
    generated = api.image_objects(project, image_id)
    # a correction without the generated objects over the square (the click's pixels are free)
    labels = generated.labels.copy()
    labels[pixels(SQUARE)] = 0
    classes = {k: c for k, c in generated.as_dicts()[0].items() if (labels == k).any()}
    api.set_image_labels(project, image_id, labels, classes, reviewed=False)
    undo = api.add_object(project, image_id, point=(7 * CELL, 5 * CELL), category=2)
    assert undo["action"] == "add" and not undo["created"] and undo["category"] == 2
    new_id = undo["instance_id"]
    assert new_id > max(generated.ids, default=0)
    objects = api.image_objects(project, image_id)
    classes, scores, reviewed, areas = objects.as_dicts()
    assert objects.origin == "correction" and classes[new_id] == 2 and reviewed[new_id] and scores[new_id] == 1.0
    assert areas[new_id] == undo["area"] and iou(objects.labels == new_id, pixels(SQUARE)) > 0.9
    assert np.array_equal(objects.labels[objects.labels != new_id], labels[objects.labels != new_id])
    assert not any(reviewed[k] for k in classes if k != new_id)  # the others keep their flags
    # a second click on the new object adds nothing
    with pytest.raises(ValueError, match=f"on object {new_id}"):
        api.add_object(project, image_id, point=(7 * CELL, 5 * CELL))
    api.restore_object(project, undo)
    after = api.image_objects(project, image_id)
    assert new_id not in after.ids and np.array_equal(after.labels, labels)


def test_add_object_on_an_image_without_correction_and_its_undo_removes_the_file(planted):
    project, image_id = planted
    generated = api.image_objects(project, image_id)
    assert generated.origin != "correction"
    free = generated.labels == 0
    assert free.any(), "the planted image has no free pixel to click on"
    from scipy import ndimage

    row, col = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(free))), free.shape)
    undo = api.add_object(project, image_id, point=(col, row))
    assert undo["created"] and correction_path(project, image_id).exists()
    added = api.image_objects(project, image_id)
    assert added.labels[row, col] == undo["instance_id"] and undo["area"] >= 16
    first_category = api.label_state(project).table.categories[0].id
    assert added.as_dicts()[0][undo["instance_id"]] == first_category  # no category given: the first one
    api.restore_object(project, undo)
    assert not correction_path(project, image_id).exists()  # back to the generated masks, nothing left over
    assert np.array_equal(api.image_objects(project, image_id).labels, generated.labels)
