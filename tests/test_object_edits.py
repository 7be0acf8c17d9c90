"""Grow, shrink and merge (engine.state.object_edits through engine.api), each undone by restore_object, on a
small finished project whose cached features of one image are replaced by planted tokens with a known nesting:
a background around one object made of two parts (the candidate tree of tests/test_hierarchy.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_hierarchy import GRID, PART_A, PART_B, nested_tokens

from engine import api
from engine.state.corrections import correction_path
from helpers import MECHANICS, make_folder, planted_copy

CELL = 8  # image pixels per patch of the planted grid
ROOT = Path(__file__).resolve().parents[1]


def pixels(region) -> np.ndarray:
    mask = np.zeros((GRID[0] * CELL, GRID[1] * CELL), bool)
    rows, cols = region
    mask[rows.start * CELL:rows.stop * CELL, cols.start * CELL:cols.stop * CELL] = True
    return mask


def nested_image() -> np.ndarray:
    image = np.full((GRID[0] * CELL, GRID[1] * CELL, 3), 40, np.uint8)
    image[pixels(PART_A)] = (200, 180, 60)
    image[pixels(PART_B)] = (90, 160, 220)
    return image


def iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("edits_images"))
    Image.fromarray(nested_image()).save(folder / "nested.png")
    project = tmp_path_factory.mktemp("edits_project")
    api.run(folder, project, api.RunConfig(**MECHANICS))
    return project


@pytest.fixture
def nested(finished, tmp_path):
    """(project copy, image id of nested.png) with that image's cached tokens replaced by planted ones."""
    project, entry = planted_copy(finished, tmp_path, "nested.png", nested_tokens(5), GRID)
    return project, entry["image_id"]


def set_objects(project, image_id, objects: list, reviewed=False) -> dict:
    """The image's correction made of ``objects`` [(mask, category)], ids 1..n; returns {id: mask}."""
    labels = np.zeros((GRID[0] * CELL, GRID[1] * CELL), np.uint16)
    for k, (mask, _) in enumerate(objects, start=1):
        labels[mask] = k
    api.set_image_labels(project, image_id, labels, {k: c for k, (_, c) in enumerate(objects, start=1)},
                         reviewed=reviewed)
    return {k: mask for k, (mask, _) in enumerate(objects, start=1)}


def categories(project) -> list:
    return [c.id for c in api.label_state(project).table.categories]


def test_grow_turns_a_part_into_its_whole_and_undo_restores_it(nested):
    project, image_id = nested
    first, second = categories(project)[:2]
    corner = np.zeros_like(pixels(PART_A))
    corner[:16, :16] = True  # an object of the background, far from the grown region
    set_objects(project, image_id, [(pixels(PART_A), first), (corner, second)])
    before = api.image_objects(project, image_id)
    undo = api.grow_object(project, image_id, 1)
    assert undo["action"] == "grow" and undo["instance_id"] == 1 and undo["category"] == first
    assert undo["removed"] == [] and not undo["created"]
    grown = api.image_objects(project, image_id)
    whole = pixels(PART_A) | pixels(PART_B)
    assert iou(grown.labels == 1, whole) > 0.9, iou(grown.labels == 1, whole)
    assert (grown.labels[pixels(PART_A)] == 1).all()  # a grow keeps every pixel it had
    assert (grown.labels[corner] == 2).all()
    classes, _, reviewed, areas = grown.as_dicts()
    assert reviewed[1] and not reviewed[2] and classes[1] == first and areas[1] == undo["area"]
    rows, cols = np.nonzero(grown.labels == 1)
    assert undo["box"] == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    # the record's window is what a displayed layer needs to follow the edit
    top, left, bottom, right = undo["changed_box"]
    layer = before.labels.copy()
    layer[top:bottom, left:right] = undo["after"]
    assert np.array_equal(layer, grown.labels)
    api.restore_object(project, undo)
    after = api.image_objects(project, image_id)
    assert np.array_equal(after.labels, before.labels)
    assert after.as_dicts() == before.as_dicts()


def test_grow_takes_in_the_other_part_and_undo_gives_it_back(nested):
    """The bus seen as bands: growing one part swallows the other part, which was an object of its own."""
    project, image_id = nested
    first, second = categories(project)[:2]
    set_objects(project, image_id, [(pixels(PART_A), first), (pixels(PART_B), second)], reviewed=True)
    before = api.image_objects(project, image_id)
    undo = api.grow_object(project, image_id, 1)
    assert undo["removed"] == [2]
    grown = api.image_objects(project, image_id)
    assert grown.ids.tolist() == [1]
    assert np.array_equal(grown.labels == 1, pixels(PART_A) | pixels(PART_B))
    api.restore_object(project, undo)
    after = api.image_objects(project, image_id)
    assert np.array_equal(after.labels, before.labels) and after.as_dicts() == before.as_dicts()


def test_grow_on_generated_masks_and_its_undo_removes_the_correction(nested):
    project, image_id = nested
    generated = api.image_objects(project, image_id)
    assert generated.origin != "correction" and len(generated.ids)
    target = int(generated.ids[int(np.argmin(generated.areas))])
    undo = api.grow_object(project, image_id, target)
    assert undo["created"] and correction_path(project, image_id).exists()
    assert (api.image_objects(project, image_id).labels == target).sum() > generated.areas[generated.ids == target]
    api.restore_object(project, undo)
    assert not correction_path(project, image_id).exists()
    assert np.array_equal(api.image_objects(project, image_id).labels, generated.labels)


def test_shrink_gives_the_largest_part_inside_the_object(nested):
    project, image_id = nested
    first = categories(project)[0]
    whole = pixels(PART_A) | pixels(PART_B)
    set_objects(project, image_id, [(whole, first)])
    undo = api.shrink_object(project, image_id, 1)
    assert undo["action"] == "shrink" and undo["instance_id"] == 1 and undo["removed"] == []
    shrunk = api.image_objects(project, image_id).labels == 1
    assert shrunk.sum() == undo["area"] < whole.sum()
    assert not (shrunk & ~whole).any()  # inside the original
    assert iou(shrunk, pixels(PART_A)) > 0.9, iou(shrunk, pixels(PART_A))  # the larger part (30 of 48 patches)
    assert api.image_objects(project, image_id).as_dicts()[2][1]  # reviewed
    api.restore_object(project, undo)
    assert np.array_equal(api.image_objects(project, image_id).labels == 1, whole)
    # a grow after a shrink comes back to the whole
    api.shrink_object(project, image_id, 1)
    api.grow_object(project, image_id, 1)
    assert iou(api.image_objects(project, image_id).labels == 1, whole) > 0.95


def test_an_object_of_one_patch_cannot_shrink(nested):
    project, image_id = nested
    speck = np.zeros_like(pixels(PART_A))
    speck[:CELL, :CELL] = True
    set_objects(project, image_id, [(speck, categories(project)[0])])
    with pytest.raises(ValueError, match="cannot shrink"):
        api.shrink_object(project, image_id, 1)
    with pytest.raises(KeyError, match="no object 7"):
        api.grow_object(project, image_id, 7)


def test_merge_makes_one_object_of_one_category_in_the_export(nested, tmp_path):
    project, image_id = nested
    first, second = categories(project)[:2]
    corner = np.zeros_like(pixels(PART_A))
    corner[:16, :16] = True
    set_objects(project, image_id, [(pixels(PART_B), second), (pixels(PART_A), first), (corner, second)])
    with pytest.raises(ValueError, match="two or more"):
        api.merge_objects(project, image_id, [1])
    with pytest.raises(KeyError, match="no object 9"):
        api.merge_objects(project, image_id, [1, 9])
    undo = api.merge_objects(project, image_id, [1, 3, 2])
    # the largest (part A, object 2) keeps its id and its category
    assert undo["action"] == "merge" and undo["instance_id"] == 2 and undo["category"] == first
    assert sorted(undo["removed"]) == [1, 3]
    merged = api.image_objects(project, image_id)
    assert merged.ids.tolist() == [2] and merged.as_dicts()[2][2]
    assert np.array_equal(merged.labels == 2, pixels(PART_A) | pixels(PART_B) | corner)
    coco = json.loads(Path(api.export_project(project, tmp_path / "merged.json")["path"]).read_text())
    image = next(i for i in coco["images"] if i["file_name"].endswith("nested.png"))
    found = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert len(found) == 1 and found[0]["area"] == int(merged.areas[0])
    assert names[found[0]["category_id"]] == api.label_state(project).category(first).name
    api.restore_object(project, undo)
    restored = api.image_objects(project, image_id)
    assert restored.ids.tolist() == [1, 2, 3] and restored.as_dicts()[0] == {1: second, 2: first, 3: second}
    # a chosen category wins over the largest's
    assert api.merge_objects(project, image_id, [1, 2], category_id=second)["category"] == second


def test_the_edits_load_no_torch(nested):
    """They run in napari's process (they are not in engine.api.LOADS_TORCH): cached tokens and numpy only."""
    project, image_id = nested
    first = categories(project)[0]
    set_objects(project, image_id, [(pixels(PART_A), first), (pixels(PART_B), first)])
    code = ("import sys\nimport engine.api as api\n"
            f"api.grow_object({str(project)!r}, {image_id!r}, 1)\n"
            f"api.shrink_object({str(project)!r}, {image_id!r}, 1)\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"
    assert not {"grow_object", "shrink_object", "merge_objects"} & api.LOADS_TORCH


def test_merge_never_hides_the_whole_in_a_discarded_category(nested):
    project, image_id = nested
    first, second = categories(project)[:2]
    set_objects(project, image_id, [(pixels(PART_A), second), (pixels(PART_B), first)])
    api.discard_category(project, second)
    with pytest.raises(ValueError, match="discarded"):
        api.merge_objects(project, image_id, [1, 2], category_id=second)
    # no category given: the largest object is of a discarded category, so the largest shown one decides
    undo = api.merge_objects(project, image_id, [1, 2])
    assert undo["instance_id"] == 1 and undo["category"] == first
    api.restore_object(project, undo)
    confirmed = api.merge_objects(project, image_id, [1, 2], category_id=second, allow_discarded=True)
    assert confirmed["category"] == second


def test_grow_takes_pixels_of_hidden_objects_but_not_of_shown_ones(nested):
    project, image_id = nested
    first, second = categories(project)[:2]
    whole = pixels(PART_A) | pixels(PART_B)
    set_objects(project, image_id, [(pixels(PART_A), first), (~pixels(PART_A), second)])
    with pytest.raises(ValueError, match="cannot grow"):  # everything around it is a shown object
        api.grow_object(project, image_id, 1)
    api.discard_category(project, second)  # now that object is background to the user
    api.grow_object(project, image_id, 1)
    grown = api.image_objects(project, image_id).labels
    assert iou(grown == 1, whole) > 0.9 and (grown[~whole] == 2).all()
