"""Issue 21 items 1, 7 and the queue: a new or edited object never lands in a discarded category unless the
caller confirms it; the low-confidence queue skips objects of discarded categories; exporting label images
writes only label images; COCO category ids are 1..N in the category table's order. Small runs: random weights
at 56 px, K = 3, on four small crops."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine import api
from engine.atomic import read_json
from engine.state.review import DiscardedCategoryError
from helpers import MECHANICS, make_folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("visible_images"))
    project = tmp_path_factory.mktemp("visible_project")
    api.run(folder, project, api.RunConfig(**{**MECHANICS, "num_classes": 3}))
    return project


@pytest.fixture
def project(finished, tmp_path):
    """A copy where category 1 is discarded and category 3 merged into it: only category 2 is exported."""
    copy = tmp_path / "project"
    shutil.copytree(finished, copy)
    assert [c.id for c in api.label_state(copy).table.categories] == [1, 2, 3]
    api.discard_category(copy, 1)
    api.merge_categories(copy, [3], 1)
    return copy


def cleared_image(project) -> str:
    """The first image, its masks all removed (a correction with no object), so every pixel is free."""
    entry = read_json(project / "images.json")[0]
    shape = (entry["height"], entry["width"])
    api.set_image_labels(project, entry["image_id"], np.zeros(shape, np.uint16), {})
    return entry["image_id"]


def exported(project, tmp_path, name="export.json") -> dict:
    path = tmp_path / name
    api.export_project(project, path)
    return json.loads(path.read_text())


def test_a_new_object_never_lands_in_a_discarded_category_unless_confirmed(project, tmp_path):
    image_id = cleared_image(project)
    entry = next(e for e in read_json(project / "images.json") if e["image_id"] == image_id)
    box = (0, 0, entry["width"] - 1, entry["height"] - 1)
    for hidden in (1, 3):  # discarded, and merged into a discarded one
        with pytest.raises(DiscardedCategoryError, match="is discarded: its objects are not exported"):
            api.add_object(project, image_id, box=box, category=hidden)
    assert api.image_objects(project, image_id).ids.size == 0  # nothing was added
    added = api.add_object(project, image_id, box=box, category=2)
    objects = api.image_objects(project, image_id)
    assert objects.as_dicts()[0] == {added["instance_id"]: 2}

    # another category for it: a discarded one only when confirmed
    with pytest.raises(DiscardedCategoryError):
        api.set_object_category(project, image_id, added["instance_id"], 3)
    undo = api.set_object_category(project, image_id, added["instance_id"], 1, allow_discarded=True)
    assert api.image_objects(project, image_id).as_dicts()[0] == {added["instance_id"]: 1}
    api.restore_object(project, undo)

    # a painted label map: a new label of a discarded category is refused, the existing objects keep theirs
    labels = objects.labels.copy()
    free = np.argwhere(labels == 0)
    assert len(free), "the added object took the whole image"
    row, col = free[0]
    labels[row, col] = 9
    with pytest.raises(DiscardedCategoryError):
        api.set_image_labels(project, image_id, labels, {added["instance_id"]: 2, 9: 1})
    assert 9 not in api.image_objects(project, image_id).ids  # nothing saved
    api.set_image_labels(project, image_id, labels, {added["instance_id"]: 2, 9: 2})
    api.set_object_category(project, image_id, 9, 1, allow_discarded=True)  # the user said: use it anyway
    # an object that already has a discarded category keeps it when the map is saved again (not new, not changed)
    api.set_image_labels(project, image_id, labels, {added["instance_id"]: 2, 9: 1})

    coco = exported(project, tmp_path)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    image = next(i for i in coco["images"] if i["file_name"] == entry["relative_path"])
    mine = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    assert len(mine) == 1 and names[mine[0]["category_id"]] == api.label_state(project).table.by_id()[2].name
    assert mine[0]["area"] == added["area"]


def test_the_low_confidence_queue_skips_objects_of_discarded_categories(finished, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(finished, copy)
    queue = api.low_confidence_objects(copy)
    category_of = {}
    for image_id in {item[0] for item in queue}:
        category_of.update({(image_id, int(k)): int(c) for k, c in api.image_objects(copy, image_id).as_dicts()[0]
                            .items()})
    first = category_of[queue[0][:2]]
    hidden = [item for item in queue if category_of[item[:2]] == first]
    assert 0 < len(hidden) < len(queue), "the test needs objects of the first object's category and of others"
    api.discard_category(copy, first)
    after = api.low_confidence_objects(copy)
    assert after == [item for item in queue if category_of[item[:2]] != first]
    assert all(api.label_state(copy).table.resolve(category_of[item[:2]]) is not None for item in after)
    assert len(api.low_confidence_masks(copy)) == len(after)
    api.restore_category(copy, first)
    assert api.low_confidence_objects(copy) == queue


def test_label_images_alone_leave_every_coco_file_as_it_was(finished, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(finished, copy)
    before = (copy / "annotations.json").read_bytes()
    stamp = (copy / "annotations.json").stat().st_mtime_ns
    summary = api.export_project(copy, labels=tmp_path / "labels")
    assert "coco" not in summary and summary["labels"]["images"] == 4
    assert summary["labels"]["folder"] == str(tmp_path / "labels")
    assert (copy / "annotations.json").read_bytes() == before
    assert (copy / "annotations.json").stat().st_mtime_ns == stamp
    assert not (copy / "export.json").exists()
    # both asked for: both written
    both = api.export_project(copy, tmp_path / "both.json", labels=tmp_path / "labels2")
    assert set(both) == {"path", "coco", "labels"} and (tmp_path / "both.json").exists()


def test_coco_category_ids_are_one_to_n_in_the_table_order(project, tmp_path):
    """Category 1 discarded, 3 merged into it: the only exported category is project category 2, written as 1;
    after a restore all three are written 1, 2, 3 under their names, the project's ids unchanged."""
    table = api.label_state(project).table
    coco = exported(project, tmp_path)
    assert [c["id"] for c in coco["categories"]] == [1]
    assert coco["categories"][0]["name"] == table.by_id()[2].name
    assert {a["category_id"] for a in coco["annotations"]} <= {1}
    # the same objects, by mask, as the project's state has them under category 2
    counts = api.category_sizes(project)
    assert len(coco["annotations"]) == counts.get(2, 0)

    api.restore_category(project, 1)
    api.restore_category(project, 3)
    api.discard_category(project, 2)
    coco = exported(project, tmp_path, "second.json")
    names = [c.name for c in api.label_state(project).table.categories if c.id != 2]
    sizes = api.category_sizes(project)
    shown = [c for c in (1, 3) if sizes.get(c) or api.label_state(project).table.by_id()[c].user_named]
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(shown) + 1))
    assert [c["name"] for c in coco["categories"]] == [n for c, n in zip((1, 3), names) if c in shown]
    per_category = {c["id"]: sum(a["category_id"] == c["id"] for a in coco["annotations"])
                    for c in coco["categories"]}
    assert list(per_category.values()) == [sizes[c] for c in shown]
    assert [c.id for c in api.label_state(project).table.categories] == [1, 2, 3]  # the project's own ids

    # label images number their categories the same way
    api.export_project(project, labels=tmp_path / "labels")
    index = read_json(tmp_path / "labels" / "instances.json")
    assert {int(k): v for k, v in index["categories"].items()} == {c["id"]: c["name"] for c in coco["categories"]}
    assert {c for item in index["images"].values() for c in item["instances"].values()} <= set(per_category)
