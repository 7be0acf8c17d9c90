"""Refining a click (issue 21 item 3): further positive and negative points over the cached features. The pure
function (engine.method.prompt.points_mask) on planted token grids with known answers, and the review action
(engine.api.refine_object, undone by restore_object) on the planted project of tests/test_prompt.py."""
from __future__ import annotations

import numpy as np
import pytest
from test_prompt import CELL, GRID, SQUARE, TWIN, finished, iou, pixels, planted, planted_features, planted_image

from engine import api
from engine.method.prompt import points_mask, prompt_mask

__all__ = ["finished", "planted"]  # the fixtures, used by name below

LEFT = (slice(3, 9), slice(1, 6))  # two touching regions, alike enough that one click takes both
RIGHT = (slice(3, 9), slice(6, 11))
ON_LEFT, ON_RIGHT = (3 * CELL + 4, 6 * CELL), (9 * CELL, 6 * CELL)  # (x, y) image pixels


def touching_features(seed: int, dim: int = 64, noise: float = 0.5) -> np.ndarray:
    """Background along one direction; both regions along another, told apart by a third (+ left, - right)."""
    rng = np.random.default_rng(seed)
    background, thing, side = np.eye(dim)[0] * 3, np.eye(dim)[1] * 3, np.eye(dim)[2]
    vectors = background + rng.normal(0, noise, (*GRID, dim))
    vectors[LEFT] = thing + side + rng.normal(0, noise, vectors[LEFT].shape)
    vectors[RIGHT] = thing - side + rng.normal(0, noise, vectors[RIGHT].shape)
    return vectors.reshape(-1, dim).astype(np.float16)


def touching_image() -> np.ndarray:
    image = np.full((GRID[0] * CELL, GRID[1] * CELL, 3), 40, np.uint8)
    for (rows, cols), colour in ((LEFT, (200, 180, 60)), (RIGHT, (180, 170, 70))):
        image[rows.start * CELL:rows.stop * CELL, cols.start * CELL:cols.stop * CELL] = colour
    return image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_negative_point_on_the_second_of_two_touching_regions_removes_it(seed):
    vectors, image, left, right = touching_features(seed), touching_image(), pixels(LEFT), pixels(RIGHT)
    one = prompt_mask(vectors, GRID, image, point=ON_LEFT)
    assert iou(one, left | right) > 0.9  # the one click takes both: the case a second click is for
    refined = points_mask(vectors, GRID, image, positive=[ON_LEFT], negative=[ON_RIGHT])
    assert iou(refined, left) > 0.9, iou(refined, left)
    assert (refined & right).sum() < 0.1 * right.sum()
    assert not refined[ON_RIGHT[1], ON_RIGHT[0]]  # the negative point itself is outside


def test_a_second_positive_point_on_a_disconnected_region_adds_it():
    vectors, image, square, twin = planted_features(), planted_image(), pixels(SQUARE), pixels(TWIN)
    on_square, on_twin = (7 * CELL, 5 * CELL), (CELL, 10 * CELL)
    one = prompt_mask(vectors, GRID, image, point=on_square)
    assert not (one & twin).any()
    both = points_mask(vectors, GRID, image, positive=[on_square, on_twin])
    assert iou(both, square | twin) > 0.9, iou(both, square | twin)


def test_one_positive_point_is_one_click_and_bad_prompts_are_refused():
    vectors, image = planted_features(1), planted_image()
    point = (7 * CELL, 5 * CELL)
    assert np.array_equal(points_mask(vectors, GRID, image, positive=[point]),
                          prompt_mask(vectors, GRID, image, point=point))
    with pytest.raises(ValueError, match="positive point"):
        points_mask(vectors, GRID, image, negative=[point])
    with pytest.raises(ValueError, match="outside"):
        points_mask(vectors, GRID, image, positive=[point], negative=[(500, 10)])


def test_refine_object_adds_a_region_removes_it_again_and_is_undone(planted):
    project, image_id = planted
    generated = api.image_objects(project, image_id)
    labels = generated.labels.copy()
    labels[pixels(SQUARE) | pixels(TWIN)] = 0  # the clicks' pixels are free
    classes = {k: c for k, c in generated.as_dicts()[0].items() if (labels == k).any()}
    api.set_image_labels(project, image_id, labels, classes, reviewed=False)
    on_square, on_twin = (7 * CELL, 5 * CELL), (CELL, 10 * CELL)
    added = api.add_object(project, image_id, point=on_square, category=2)
    new_id = added["instance_id"]
    grown = api.refine_object(project, image_id, new_id, positive=[on_square, on_twin])
    assert grown["action"] == "refine" and grown["instance_id"] == new_id and grown["category"] == 2
    objects = api.image_objects(project, image_id)
    assert iou(objects.labels == new_id, pixels(SQUARE) | pixels(TWIN)) > 0.9
    assert objects.as_dicts()[2][new_id]  # reviewed
    top, left, bottom, right = grown["changed_box"]  # what a displayed layer is updated with
    assert np.array_equal(objects.labels[top:bottom, left:right], grown["after"])
    assert np.array_equal(objects.labels[objects.labels != new_id], labels[objects.labels != new_id])
    # the twin removed again by a negative point on it (the square, of the same kind and a patch away from it
    # diagonally, may lose some cells too: only the twin's absence is known here)
    shrunk = api.refine_object(project, image_id, new_id, positive=[on_square], negative=[on_twin])
    refined = api.image_objects(project, image_id).labels == new_id
    assert not (refined & pixels(TWIN)).any() and refined[on_square[1], on_square[0]]
    with pytest.raises(ValueError, match="changes nothing"):
        api.refine_object(project, image_id, new_id, positive=[on_square], negative=[on_twin])
    api.restore_object(project, shrunk)
    api.restore_object(project, grown)
    assert iou(api.image_objects(project, image_id).labels == new_id, pixels(SQUARE)) > 0.9
    api.restore_object(project, added)
    assert np.array_equal(api.image_objects(project, image_id).labels, labels)


def test_a_refining_click_only_grows_the_object_when_positive_and_only_shrinks_it_when_negative(planted):
    """refine_object's ``newest``: after a positive point the object keeps every pixel it had (the new answer is
    joined to it), after a negative one it takes no new pixel (cut to the new answer), whatever the remade mask
    does elsewhere."""
    project, image_id = planted
    generated = api.image_objects(project, image_id)
    labels = generated.labels.copy()
    labels[pixels(SQUARE) | pixels(TWIN)] = 0
    classes = {k: c for k, c in generated.as_dicts()[0].items() if (labels == k).any()}
    api.set_image_labels(project, image_id, labels, classes, reviewed=False)
    on_square, on_twin = (7 * CELL, 5 * CELL), (CELL, 10 * CELL)
    new_id = api.add_object(project, image_id, point=on_square)["instance_id"]
    own = api.image_objects(project, image_id).labels == new_id
    # a second positive point alone (not the square's) would remake the object as the twin: joined, the square stays
    api.refine_object(project, image_id, new_id, positive=[on_twin], newest="positive")
    grown = api.image_objects(project, image_id).labels == new_id
    assert (grown & own).sum() == own.sum() and (grown & pixels(TWIN)).sum() > 0.9 * pixels(TWIN).sum()
    # a negative point on the twin: only what the object held can go, nothing new comes
    api.refine_object(project, image_id, new_id, positive=[on_square], negative=[on_twin], newest="negative")
    shrunk = api.image_objects(project, image_id).labels == new_id
    assert not (shrunk & ~grown).any() and not (shrunk & pixels(TWIN)).any() and shrunk[on_square[1], on_square[0]]
    with pytest.raises(ValueError, match="newest"):
        api.refine_object(project, image_id, new_id, positive=[on_square], newest="both")


def test_an_adding_click_on_the_background_of_an_object_made_by_a_click_is_refused(planted):
    """One adding click may not make a clicked object several times larger with the background around it (a
    ctrl-click beside a rocket cut the whole sky): it is refused with what to do, and the object stays."""
    from engine.state.review import EditRefused

    project, image_id = planted
    generated = api.image_objects(project, image_id)
    labels = np.zeros_like(generated.labels)  # every pixel free: the background would be taken
    api.set_image_labels(project, image_id, labels, {}, reviewed=False)
    on_twin, on_background = (CELL, 10 * CELL), (CELL // 2, CELL // 2)  # the twin: 9 patches of 144
    new_id = api.add_object(project, image_id, point=on_twin)["instance_id"]
    own = api.image_objects(project, image_id).labels == new_id
    with pytest.raises(EditRefused, match="would add .* most likely the background"):
        api.refine_object(project, image_id, new_id, positive=[on_twin, on_background], newest="positive")
    assert np.array_equal(api.image_objects(project, image_id).labels == new_id, own)
