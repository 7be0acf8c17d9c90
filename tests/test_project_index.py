"""The project index (engine.state.project_index): per-category counts and the low-confidence queue read from
it equal a full recount / full scan of every image, across review writes, re-runs, files changed behind its
back and a new process reading index.sqlite; a rename recomputes no image. Small runs: random weights at 56 px
on four small crops."""
from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from engine import api
from engine.atomic import read_json
from engine.orchestration.pipeline import RunConfig, run
from engine.state import project_index as index_module
from engine.state.corrections import ImageCorrection, correction_path, save_correction
from engine.state.label_state import LabelState
from engine.state.project_index import INDEX_NAME, forget_indexes, project_index
from helpers import MECHANICS, make_folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("index_images"))
    project = tmp_path_factory.mktemp("index_project")
    run(folder, project, RunConfig(**MECHANICS))
    return folder, project


@pytest.fixture
def project(finished, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(finished[1], copy)
    yield copy
    forget_indexes()


@pytest.fixture
def recomputed(monkeypatch):
    """Counts the images whose index entry is computed from their masks."""
    import engine.state.review  # noqa: F401  (imported before the patch: the review's own calls are not counted)

    seen = Counter()
    original = index_module.current_correction

    def counting(state, entry, **options):
        seen[entry["image_id"]] += 1
        return original(state, entry, **options)
    monkeypatch.setattr(index_module, "current_correction", counting)
    return seen


def full_recount(project) -> dict:
    """Masks per exported category, every mask of every image decoded (what the plugin used to do)."""
    state = LabelState.load(project)
    counts = Counter()
    for _, _, classes, _ in state.iter_exported(read_json(project / "images.json")):
        counts.update(int(c) for c in classes)
    return dict(counts)


def full_scan(project) -> list:
    """The low-confidence queue from every image's objects, each read from its files with a fresh label state;
    objects of a discarded category are not shown, so they are not queued."""
    state = LabelState.load(project)
    found = []
    for entry in read_json(project / "images.json"):
        objects = api.image_objects(project, entry["image_id"], state)
        found += [(entry["image_id"], int(k), float(s))
                  for k, s, r, c in zip(objects.ids, objects.scores, objects.reviewed, objects.categories)
                  if not r and state.resolve(c) is not None]
    return sorted(found, key=lambda item: item[2])


def assert_current(project) -> None:
    assert api.category_sizes(project) == full_recount(project)
    assert api.low_confidence_objects(project) == full_scan(project)


def busiest(project) -> str:
    entries = read_json(project / "images.json")
    return max(entries, key=lambda e: len(api.image_objects(project, e["image_id"]).ids))["image_id"]


def test_counts_and_queue_equal_a_full_recount_and_are_kept_on_disk(project, recomputed):
    assert api.category_sizes(project)  # some masks were counted
    assert_current(project)
    assert (project / INDEX_NAME).exists()
    built = sum(recomputed.values())
    assert built == len(read_json(project / "images.json"))  # each image decoded once
    forget_indexes()  # a new process: the index is read from index.sqlite, no image decoded again
    assert_current(project)
    assert sum(recomputed.values()) == built


def test_category_edits_are_resolved_at_read_time_without_recomputing_images(project, recomputed):
    api.category_sizes(project)
    before = sum(recomputed.values())
    counts = api.category_sizes(project)
    first, second = sorted(counts)[:2]
    api.rename_category(project, first, "renamed")
    api.recolour_category(project, first, (1, 2, 3))
    assert api.category_sizes(project) == counts
    api.merge_categories(project, [first], second)
    merged = api.category_sizes(project)
    assert first not in merged and merged[second] == counts[first] + counts[second]
    api.discard_category(project, second)
    assert second not in api.category_sizes(project)
    assert_current(project)
    api.restore_category(project, first)
    api.restore_category(project, second)
    assert api.category_sizes(project) == counts
    assert sum(recomputed.values()) == before  # no mask decoded for any of it


def test_review_writes_update_the_entry_of_the_image_they_touch(project, recomputed):
    image_id = busiest(project)
    assert_current(project)
    before = Counter(recomputed)
    objects = api.image_objects(project, image_id)
    first, last = int(objects.ids[0]), int(objects.ids[-1])
    undo = api.reject_object(project, image_id, first)
    assert_current(project)
    other = next(c for c in api.category_sizes(project) if c != int(objects.categories[-1]))
    api.set_object_category(project, image_id, last, other)
    api.accept_object(project, image_id, int(objects.ids[1]))
    assert_current(project)
    queue = api.low_confidence_objects(project)
    assert (image_id, last) not in [item[:2] for item in queue]  # reviewed objects leave the queue
    api.restore_object(project, undo)
    assert_current(project)
    labels = api.image_objects(project, image_id).labels.copy()
    labels[labels == last] = 0
    api.set_image_labels(project, image_id, labels, {k: 1 for k in np.unique(labels) if k}, reviewed=False)
    assert_current(project)
    # the writes put their image's entry directly; only the other images were never decoded again
    assert all(recomputed[i] == before[i] for i in before if i != image_id)


def test_files_changed_behind_its_back_are_seen(project):
    assert_current(project)
    entries = read_json(project / "images.json")
    target = entries[0]
    # another process saves a correction, then a different one, then removes it
    masks = np.zeros((2, target["height"], target["width"]), bool)
    masks[0, :5, :5] = masks[1, -5:, -5:] = True
    save_correction(project, target["image_id"], ImageCorrection.from_instances(masks.shape[1:], masks, [1, 1],
                                                                                 reviewed=False))
    assert_current(project)
    save_correction(project, target["image_id"], ImageCorrection.from_instances(masks.shape[1:], masks[:1], [2],
                                                                                 reviewed=False))
    assert_current(project)
    correction_path(project, target["image_id"]).unlink()
    assert_current(project)
    # predictions removed (a re-run started): every image falls back to its proposals
    shutil.rmtree(project / "predictions")
    assert {project_index(project).origin(e["image_id"]) for e in entries} == {"proposal"}
    assert_current(project)


def test_a_damaged_index_file_is_rebuilt(project):
    assert_current(project)
    forget_indexes()
    (project / INDEX_NAME).write_bytes(b"not a database")
    for suffix in ("-wal", "-shm"):
        (project / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    assert_current(project)


def test_split_and_a_re_run_keep_it_current(project, finished):
    counts = api.category_sizes(project)
    largest = max(counts, key=counts.get)
    if counts[largest] >= 2:
        api.split_category(project, largest, 2)
        assert_current(project)
    run(finished[0], project, RunConfig(**{**MECHANICS, "num_classes": 3, "seed": 1}))
    assert_current(project)
