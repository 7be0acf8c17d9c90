"""Object-level review in the engine: stable instance ids, reject / accept / change category of one object by
its id with undo, "reviewed" per object (old all-or-none files still read), scores of unreviewed objects kept,
and the project-wide low-confidence queue. Small runs: random weights at 56 px on four small crops."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from engine import api
from engine.atomic import read_json
from engine.orchestration.pipeline import RunConfig, run
from engine.state.corrections import ImageCorrection, correction_path, load_correction, save_correction
from helpers import MECHANICS, make_folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("objects_images"))
    project = tmp_path_factory.mktemp("objects_project")
    run(folder, project, RunConfig(**MECHANICS))
    return project


@pytest.fixture
def project(finished, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(finished, copy)
    return copy


def busiest(project) -> str:
    """The image with the most objects (at least two)."""
    entries = read_json(project / "images.json")
    counts = {e["image_id"]: len(api.image_objects(project, e["image_id"]).ids) for e in entries}
    image_id = max(counts, key=counts.get)
    assert counts[image_id] >= 2, counts
    return image_id


def test_ids_are_stable_and_a_reject_is_undone_under_the_same_id(project):
    image_id = busiest(project)
    before = api.image_objects(project, image_id)
    assert before.origin != "correction" and not before.reviewed.any()
    assert list(before.ids) == list(range(1, len(before.ids) + 1)) or set(before.ids) <= set(
        range(1, len(api.current_instances(project, image_id)[0]) + 1))
    first, last = int(before.ids[0]), int(before.ids[-1])
    undo = api.reject_object(project, image_id, first)
    after = api.image_objects(project, image_id)
    assert first not in after.ids and last in after.ids  # no renumbering: the others keep their ids
    assert np.array_equal(after.labels == last, before.labels == last)
    assert list(after.scores) == list(before.scores[1:])  # untouched objects keep their generated scores
    assert not after.reviewed.any()
    # a second reject, then undo both in reverse order: the same ids and pixels come back
    undo_last = api.reject_object(project, image_id, last)
    api.restore_object(project, undo_last)
    api.restore_object(project, undo)
    restored = api.image_objects(project, image_id)
    assert list(restored.ids) == list(before.ids)
    assert np.array_equal(restored.labels, before.labels)
    assert np.allclose(restored.scores, before.scores) and list(restored.categories) == list(before.categories)
    assert not correction_path(project, image_id).exists()  # the reject made it; its undo leaves nothing behind
    with pytest.raises(KeyError):
        api.reject_object(project, image_id, 999)


def test_accept_and_change_category_of_one_object_with_undo(project):
    image_id = busiest(project)
    before = api.image_objects(project, image_id)
    one, other = int(before.ids[0]), int(before.ids[1])
    api.accept_object(project, image_id, one)
    objects = api.image_objects(project, image_id)
    reviewed = dict(zip(objects.ids, objects.reviewed))
    assert reviewed[one] and not reviewed[other]  # reviewed per object, not per image
    assert np.allclose(objects.scores, before.scores)  # accepting keeps the scores
    assert (image_id, one) not in {(i, k) for i, k, _ in api.low_confidence_objects(project)}
    assert (image_id, other) in {(i, k) for i, k, _ in api.low_confidence_objects(project)}
    ids = sorted(api.label_state(project).table.by_id())
    target = next(c for c in ids if c != int(objects.categories[1]))
    undo = api.set_object_category(project, image_id, other, target)
    changed = api.image_objects(project, image_id)
    assert changed.as_dicts()[0][other] == target and changed.as_dicts()[2][other]
    api.restore_object(project, undo)
    back = api.image_objects(project, image_id)
    assert back.as_dicts()[0][other] == int(before.categories[1]) and not back.as_dicts()[2][other]
    assert back.as_dicts()[2][one]


def test_a_stroke_marks_only_the_touched_object_reviewed(project):
    image_id = busiest(project)
    objects = api.image_objects(project, image_id)
    classes, scores, _, _ = objects.as_dicts()
    labels = objects.labels.copy()
    touched = int(objects.ids[0])
    ys, xs = np.nonzero(labels == touched)
    labels[ys[0], xs[0]] = 0  # erase one pixel of one object
    api.set_image_labels(project, image_id, labels, classes, {touched})
    saved = load_correction(project, image_id)
    assert saved.reviewed_ids == {touched} and not saved.reviewed
    after = api.image_objects(project, image_id)
    for k, score, reviewed in zip(after.ids, after.scores, after.reviewed):
        assert reviewed == (k == touched)
        assert score == pytest.approx(scores[int(k)], abs=1e-6)  # not set to 1.0
    instances = api.current_instances(project, image_id)
    assert len(instances[0]) == len(after.ids) and not instances[3]  # the image is not fully reviewed


def test_old_correction_files_read_as_all_or_none(tmp_path):
    labels = np.zeros((8, 8), np.uint16)
    labels[:4], labels[4:] = 2, 5
    for flag in (True, False):
        buffer = io.BytesIO()  # the layout before per-object flags and scores
        np.savez_compressed(buffer, labels=labels, instance_ids=np.array([2, 5]), categories=np.array([1, 3]),
                            reviewed=np.array(flag))
        path = correction_path(tmp_path, "old")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(buffer.getvalue())
        old = load_correction(tmp_path, "old")
        assert old.reviewed is flag and old.reviewed_ids == ({2, 5} if flag else set())
        assert old.score(2) == 1.0
    partial = ImageCorrection(labels, {2: 1, 5: 3}, False, {5}, {2: 0.25})
    save_correction(tmp_path, "new", partial)
    back = load_correction(tmp_path, "new")
    assert back.reviewed_ids == {5} and not back.reviewed and back.score(2) == pytest.approx(0.25)


def test_low_confidence_queue_orders_unreviewed_objects_over_the_project(project):
    queue = api.low_confidence_objects(project)
    assert len({image_id for image_id, _, _ in queue}) > 1  # the whole project
    scores = [score for _, _, score in queue]
    assert scores == sorted(scores)
    image_id, instance_id, _ = queue[0]
    api.accept_object(project, image_id, instance_id)
    assert api.low_confidence_objects(project)[0][:2] != (image_id, instance_id)
    api.accept_image(project, image_id)
    assert all(i != image_id for i, _, _ in api.low_confidence_objects(project))


def test_split_works_on_the_masks_on_screen_not_on_the_proposals(project):
    """The model may put a mask in another category than its proposal's cluster: split must cut the category
    as shown (issue 11: "Category 'cluster_12' has 0 masks" for a category with 15 on screen)."""
    from engine.state.project import Project, load_image_proposals, save_image_predictions

    root = Project(project)
    entries = read_json(project / "images.json")
    state = api.label_state(project)
    for entry in entries:  # predictions = the proposals, each in the *other* category than its cluster's
        hw = (entry["height"], entry["width"])
        proposals, _, _ = load_image_proposals(root.proposals_path(entry["image_id"]), hw)
        categories = state.proposal_categories(entry, proposals.masks)
        swapped = [3 - int(c) for c in categories]
        save_image_predictions(root.predictions_path(entry["image_id"]), np.zeros(hw, np.uint16), proposals.masks,
                               swapped, np.full(len(swapped), 0.5))
    before = {e["image_id"]: [int(c) for c in api.current_instances(project, e["image_id"])[1]] for e in entries}
    shown = [c for cs in before.values() for c in cs]
    category_id = max(set(shown), key=shown.count)
    assert shown.count(category_id) >= 2
    _, new_id = api.split_category(project, category_id, 2)
    after = {e["image_id"]: [int(c) for c in api.current_instances(project, e["image_id"])[1]] for e in entries}
    for image_id, categories in before.items():
        for old, new in zip(categories, after[image_id]):
            assert new in ((category_id, new_id) if old == category_id else (old,))
    assert new_id in [c for cs in after.values() for c in cs]


def test_gallery_thumbnails_and_counts_come_from_the_masks_on_screen(project):
    from maskdistill_napari._gallery import category_sizes, representative_crops

    entries = read_json(project / "images.json")
    for entry in entries:  # every image corrected to one box of category 1: category 2 shows nothing
        mask = np.zeros((1, entry["height"], entry["width"]), bool)
        mask[0, 10:30, 5:45] = True
        api.set_image_masks(project, entry["image_id"], mask, [1])
    assert category_sizes(project) == ({1: len(entries)}, {})  # masks, and no view's overlapping objects
    assert representative_crops(project, 2, (255, 0, 0)) == []  # not the proposals of its cluster
    crops = representative_crops(project, 1, (255, 0, 0))
    assert len(crops) == min(4, len(entries))
    for crop in crops:
        assert crop.shape[1] > crop.shape[0]  # the 40 x 20 box, outlined
        assert (crop == (255, 0, 0)).all(axis=-1).any()
