"""Known-answer tests for engine.method.propagate (a corrected image's objects carried to a near-duplicate) and
the pipeline step that uses it (engine.orchestration.carried_corrections)."""
from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

from engine.method.propagate import (
    NEAR_DUPLICATE,
    propagate_instances,
    propagate_labels,
    scene_match,
    window_similarities,
)

GRID = (12, 16)


def tokens_of(grid_vectors: np.ndarray) -> np.ndarray:
    return grid_vectors.reshape(-1, grid_vectors.shape[-1]).astype(np.float16)


def scene(seed=0):
    return np.random.default_rng(seed).normal(size=(*GRID, 32))


def test_a_shifted_copy_matches_and_its_labels_move_with_it():
    source = scene()
    target = np.roll(source, shift=(2, 1), axis=(0, 1))  # the scene moved 2 patches down, 1 right
    similarity, index = window_similarities(tokens_of(source), tokens_of(target), GRID, radius=3)
    # every patch finds itself, except the wrapped-around first rows / column
    assert scene_match(similarity) > 0.99
    labels = np.zeros(GRID, np.int64)
    labels[3:7, 4:9] = 1
    probabilities = propagate_labels(labels, similarity, index, 2)
    moved = probabilities.argmax(axis=0)
    expected = np.roll(labels, shift=(2, 1), axis=(0, 1))
    assert np.array_equal(moved[2:, 1:], expected[2:, 1:])  # the wrapped-in rows and column have no true source


def test_an_unrelated_image_does_not_match_and_nothing_is_carried():
    image = np.zeros((96, 128, 3), np.uint8)
    mask = np.zeros((1, 96, 128), bool)
    mask[0, 20:60, 30:80] = True
    masks, origin, confidence, match = propagate_instances(tokens_of(scene(0)), mask, tokens_of(scene(1)), image,
                                                           GRID)
    assert match < 0.5 < NEAR_DUPLICATE and len(masks) == 0 and len(origin) == len(confidence) == 0


def test_the_same_scene_gets_the_object_at_full_resolution():
    image = data.astronaut()[:96, :128]
    mask = np.zeros((1, 96, 128), bool)
    mask[0, 24:64, 32:96] = True  # an object on patch boundaries (8 x 8 px patches)
    masks, origin, confidence, match = propagate_instances(tokens_of(scene()), mask, tokens_of(scene()), image, GRID)
    assert match > 0.99 and list(origin) == [0] and masks.shape == (1, 96, 128)
    iou = (masks[0] & mask[0]).sum() / (masks[0] | mask[0]).sum()
    assert iou > 0.8 and 0.5 < confidence[0] <= 1.0


def test_a_window_larger_than_the_grid_is_fine():
    tiny = np.random.default_rng(2).normal(size=(2, 3, 8))
    similarity, _ = window_similarities(tokens_of(tiny), tokens_of(tiny), (2, 3), radius=6)
    assert np.isclose(scene_match(similarity), 1.0, atol=1e-3)


def test_a_correction_reaches_the_near_duplicate_frame_and_no_other_image(tmp_path):
    """A user corrects one image; after retraining, its near-duplicate (the same photo, a little brighter)
    predicts the corrected object with its category, a generated object the user left unreviewed is not carried,
    and a different photo gets nothing carried."""
    from engine.api import RunConfig, distill, run, set_image_labels
    from engine.atomic import read_json
    from engine.state.label_state import LabelState
    from engine.state.project import Project, load_image_predictions
    from helpers import MECHANICS

    folder = tmp_path / "images"
    folder.mkdir()
    frame = data.astronaut()[40:232, 120:312]
    Image.fromarray(frame).save(folder / "frame_1.png")
    Image.fromarray(np.clip(frame.astype(int) + 6, 0, 255).astype(np.uint8)).save(folder / "frame_2.png")
    Image.fromarray(data.coffee()[:192, :192]).save(folder / "other.png")
    project = tmp_path / "project"
    run(folder, project, RunConfig(**{**MECHANICS, "input_size": 112, "num_classes": 2}))
    entries = {e["relative_path"]: e for e in read_json(Project(project).images_path)}
    drawn = np.zeros((1, 192, 192), bool)
    drawn[0, 30:130, 50:150] = True
    labels = np.zeros((192, 192), np.int32)
    labels[drawn[0]] = 1
    labels[150:180, 10:180] = 2  # a generated object kept in the correction, not reviewed
    set_image_labels(project, entries["frame_1.png"]["image_id"], labels, {1: 2, 2: 1}, reviewed=[1])
    summary = distill(project)
    assert summary["carried"] == {"frame_2.png": 1}
    assert summary["group_cut"]["reviewed_objects"] == 1  # the drawn object teaches the centres; the generated one not

    def predicted(name):
        _, masks, classes, scores = load_image_predictions(Project(project).predictions_path(entries[name]["image_id"]))
        return np.asarray(masks), np.asarray(classes), np.asarray(scores)

    masks, classes, _ = predicted("frame_2.png")
    ious = [(m & drawn[0]).sum() / (m | drawn[0]).sum() for m in masks]
    best = int(np.argmax(ious))
    assert ious[best] > 0.5 and classes[best] == LabelState.load(project).resolve(2)
    stamp = read_json(Project(project).predictions_dir / "stamp.json")  # where the overlapping pass finds it
    assert stamp["user_objects"] == {entries["frame_2.png"]["image_id"]: [best]}
    other_masks, _, _ = predicted("other.png")
    assert all((m & drawn[0]).sum() / (m | drawn[0]).sum() < 0.5 for m in other_masks)
