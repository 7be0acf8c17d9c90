"""Issue 21 item 2, the missing piece: split an object along a stroke the user drew across it
(engine.masks.split_along_stroke, engine.api.split_object), or into the two parts its candidate tree node holds
(engine.api.split_into_parts); saved as a reviewed correction, undone by restore_object, exported as two
objects. The project is tests/test_object_edits.py's: nested.png holds a background around one object made of
two parts (planted tokens with a known candidate tree)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_hierarchy import PART_A, PART_B
from test_object_edits import categories, finished, nested, pixels, set_objects  # noqa: F401 - fixtures

from engine import api
from engine.masks import MIN_PART_PIXELS, split_along_stroke

WHOLE_ROWS, WHOLE_COLS = slice(24, 72), slice(16, 80)  # PART_A | PART_B in pixels: 48 rows x 64 columns
DOWN_COLUMN_40 = [(10.0, 40.0), (85.0, 40.0)]  # a vertical stroke from above the object to below it


def test_a_vertical_stroke_cuts_a_rectangle_in_two_and_loses_no_pixel():
    labels = np.zeros((40, 60), np.uint16)
    labels[10:30, 10:50] = 3
    labels[0:5, 0:5] = 1  # another object: untouched
    cut = split_along_stroke(labels, 3, [(5, 30), (35, 30)], first_new_id=7)
    assert cut["instance_id"] == 3 and cut["added"] == [7]
    top, left, bottom, right = cut["changed_box"]
    assert (top, left, bottom, right) == (10, 10, 30, 50) and np.array_equal(cut["before"], labels[10:30, 10:50])
    after = labels.copy()
    after[top:bottom, left:right] = cut["after"]
    # the stroke (columns 29-31) splits at its middle column: the larger left piece (columns 10-28, 380 pixels)
    # keeps the id and takes column 29 (and the middle one, 30, whichever side is nearer on a tie)
    kept, new = after == 3, after == 7
    assert kept.sum() + new.sum() == 800 and kept.sum() in (400, 420) and cut["area"] == kept.sum()
    boundary = 10 + int(kept.sum()) // 20
    assert kept[10:30, 10:boundary].all() and new[10:30, boundary:50].all()
    assert cut["box"] == (10, 10, boundary, 30)
    assert (after[0:5, 0:5] == 1).all() and (after[labels == 0] == 0).all()


@pytest.mark.parametrize("stroke", [
    [(5.0, 30.0), (20.0, 30.0)],  # into the object, not across it
    [(0.0, 0.0), (0.0, 59.0)],  # beside it
    [(8.0, 48.0), (12.0, 52.0)],  # across a corner: the piece cut off is a crumb
])
def test_a_stroke_that_does_not_cut_the_object_in_two_is_refused(stroke):
    labels = np.zeros((40, 60), np.uint16)
    labels[10:30, 10:50] = 3
    assert split_along_stroke(labels, 3, stroke, first_new_id=4) is None


def test_crumbs_and_an_uncut_piece_go_to_the_nearest_part():
    """A mask of two pieces: the stroke cuts the large one in two; the small piece it does not touch joins the
    part beside it, so the parts still cover the whole mask."""
    labels = np.zeros((40, 80), np.uint8)
    labels[10:30, 10:50] = 5
    labels[12:18, 60:66] = 5  # a piece of the same object, right of the cut
    cut = split_along_stroke(labels, 5, [(5, 20), (35, 20)], first_new_id=256)  # an id above uint8
    assert cut["after"].dtype == np.uint16 and cut["added"] == [256]
    after = labels.astype(np.uint16)
    after[slice(*cut["changed_box"][::2]), slice(*cut["changed_box"][1::2])] = cut["after"]
    assert ((after == 5) | (after == 256)).sum() == (labels == 5).sum()
    assert (after[12:18, 60:66] == 5).all()  # the larger (right) part keeps the id and takes the far piece


def test_split_object_saves_two_reviewed_objects_of_its_category_and_undo_restores(nested, tmp_path):  # noqa: F811
    project, image_id = nested
    first, second = categories(project)[:2]
    whole = pixels(PART_A) | pixels(PART_B)
    corner = np.zeros_like(whole)
    corner[:16, :16] = True
    set_objects(project, image_id, [(corner, second), (whole, first)])
    before = api.image_objects(project, image_id)
    undo = api.split_object(project, image_id, 2, DOWN_COLUMN_40)
    assert undo["action"] == "split" and undo["instance_id"] == 2 and undo["added"] == [3]
    assert undo["category"] == first and undo["removed"] == [] and not undo["created"]
    split = api.image_objects(project, image_id)
    classes, scores, reviewed, areas = split.as_dicts()
    assert split.ids.tolist() == [1, 2, 3] and classes == {1: second, 2: first, 3: first}
    assert reviewed == {1: False, 2: True, 3: True} and scores[3] == scores[2]
    # the right piece (columns 42-79, 1,824 pixels) is the larger: it keeps the id
    assert areas[2] + areas[3] == whole.sum() == 48 * 64 and areas[2] in (1824 + 48, 1824 + 96)
    assert areas[2] == undo["area"] and (split.labels[WHOLE_ROWS, 42:80] == 2).all()
    assert (split.labels[WHOLE_ROWS, 16:39] == 3).all() and (split.labels[corner] == 1).all()
    # the record's window is what a displayed layer needs to follow the split
    top, left, bottom, right = undo["changed_box"]
    layer = before.labels.copy()
    layer[top:bottom, left:right] = undo["after"]
    assert np.array_equal(layer, split.labels)

    coco = json.loads(Path(api.export_project(project, tmp_path / "split.json")["path"]).read_text())
    image = next(i for i in coco["images"] if i["file_name"].endswith("nested.png"))
    found = sorted((a for a in coco["annotations"] if a["image_id"] == image["id"]), key=lambda a: -a["area"])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [a["area"] for a in found] == [areas[2], areas[3], areas[1]]
    assert {names[a["category_id"]] for a in found[:2]} == {api.label_state(project).category(first).name}

    api.restore_object(project, undo)
    after = api.image_objects(project, image_id)
    assert np.array_equal(after.labels, before.labels) and after.as_dicts() == before.as_dicts()


def test_a_stroke_that_misses_is_refused_naming_the_image_and_changes_nothing(nested):  # noqa: F811
    project, image_id = nested
    set_objects(project, image_id, [(pixels(PART_A) | pixels(PART_B), categories(project)[0])])
    before = api.image_objects(project, image_id)
    with pytest.raises(ValueError, match=r"does not cut object 1 of nested\.png in two\. Draw it across") as error:
        api.split_object(project, image_id, 1, [(10.0, 40.0), (40.0, 40.0)])
    assert f"{MIN_PART_PIXELS} pixels" in str(error.value) and image_id not in str(error.value)
    assert np.array_equal(api.image_objects(project, image_id).labels, before.labels)
    with pytest.raises(KeyError, match="no object 9"):
        api.split_object(project, image_id, 9, DOWN_COLUMN_40)


def test_a_split_that_made_the_correction_is_undone_by_removing_it(nested):  # noqa: F811
    """On generated masks (no correction yet) the split creates the image's correction; its undo removes it."""
    project, image_id = nested
    generated = api.image_objects(project, image_id)
    target = int(generated.ids[np.argmax(generated.areas)])
    rows, cols = np.nonzero(generated.labels == target)
    middle = float(np.median(cols))
    stroke = [(float(rows.min()) - 3, middle), (float(rows.max()) + 3, middle)]
    try:
        undo = api.split_object(project, image_id, target, stroke)
    except ValueError as error:  # the generated mask is not one piece across that column
        pytest.skip(f"the generated mask does not cross its middle column: {error}")
    assert undo["created"] and len(api.image_objects(project, image_id).ids) == len(generated.ids) + 1
    api.restore_object(project, undo)
    assert api.instance_source(project, image_id) != "correction"
    assert np.array_equal(api.image_objects(project, image_id).labels, generated.labels)


@pytest.mark.parametrize("colour_cut", [True, False], ids=["colours part", "the tree's parts"])
def test_split_into_parts_gives_the_two_parts(nested, colour_cut, monkeypatch):  # noqa: F811
    # the two parts differ in colour (yellow and blue): the colour cut finds them; without it (a mask too small for
    # it), the tree's nodes do
    if not colour_cut:
        monkeypatch.setattr("engine.state.object_edits.colour_halves", lambda image, mask: None)
    project, image_id = nested
    first = categories(project)[0]
    set_objects(project, image_id, [(pixels(PART_A) | pixels(PART_B), first)])
    before = api.image_objects(project, image_id)
    undo = api.split_into_parts(project, image_id, 1)
    assert undo["action"] == "split" and undo["added"] == [2] and undo["category"] == first
    split = api.image_objects(project, image_id)
    assert split.as_dicts()[0] == {1: first, 2: first}
    part_a, part_b = split.labels == 1, split.labels == 2  # part A (30 patches) is the larger: it keeps the id
    assert (part_a | part_b).sum() == before.areas[0]
    assert (part_a & pixels(PART_A)).sum() / part_a.sum() > 0.8 and (part_b & pixels(PART_B)).sum() / part_b.sum() > 0.8
    api.restore_object(project, undo)
    assert np.array_equal(api.image_objects(project, image_id).labels, before.labels)


def test_the_splits_load_no_torch():
    assert not {"split_object", "split_into_parts", "split_along_stroke"} & api.LOADS_TORCH
