"""Re-runs never take the user's masks away (issue 18, cases 1, 9 and 10).

Pure tests of the re-binding with known answers, then the issue's repro on small runs (random ViT-S/14 at
56 px on 64-96 px crops).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.atomic import read_json
from engine.orchestration.pipeline import RunConfig, run
from engine.orchestration.project_commands import export_project
from engine.state import review
from engine.state.corrections import Category, CategoryTable, load_categories
from engine.state.label_state import LabelState, clustering_id, describe_rebinding, rebind_categories
from engine.state.project import Project
from helpers import MECHANICS, make_folder


def clusters_of(assignment: dict, k: int) -> dict:
    masks = [{"image_id": "img", "index": i, "key": key, "cluster": c} for i, (key, c) in enumerate(assignment.items())]
    return {"id": clustering_id(masks, k), "k": k, "masks": masks,
            "clusters": [{"id": j, "name": f"cluster_{j + 1}"} for j in range(k)]}


def names_of(table: CategoryTable, assignments: dict, clusters: dict) -> dict:
    """mask key -> exported category name (None: discarded)."""
    bound = {c.cluster: c.id for c in table.categories if c.cluster is not None}
    by_id = table.by_id()
    found = {}
    for m in clusters["masks"]:
        resolved = table.resolve(assignments.get(m["key"], bound[m["cluster"]]))
        found[m["key"]] = by_id[resolved].name if resolved else None
    return found


# -- case 1: a discarded or named category never takes masks the user did not give it ----------------------
def test_a_discarded_category_winning_the_match_does_not_take_a_generated_categorys_masks():
    # cluster 2 (10 masks) is discarded; a re-run with K = 1 puts cluster 1's 8 masks with them
    old = clusters_of({**{f"g{i}": 0 for i in range(8)}, **{f"d{i}": 1 for i in range(10)}}, 2)
    table = CategoryTable([Category(1, "cluster_1", cluster=0), Category(2, "cluster_2", cluster=1,
                                                                        discarded="background")], old["id"])
    new = clusters_of(dict.fromkeys(old_keys(old), 0), 1)
    table, assignments, report = rebind_categories(table, {}, old, new)
    names = names_of(table, assignments, new)
    assert [names[f"g{i}"] for i in range(8)] == ["to_review"] * 8  # still exported, and said to be unsure
    assert all(names[f"d{i}"] is None for i in range(10))  # the discarded masks stay out
    lines = describe_rebinding(report)
    assert "'cluster_1': 0 of 8 masks kept; lost 8 to 'to_review'" in lines
    # K = 2 again: the masks land in a generated category once more, so the to-review pins are lifted
    table, assignments, _ = rebind_categories(table, assignments, new, old)
    names = names_of(table, assignments, old)
    assert len({names[f"g{i}"] for i in range(8)}) == 1 and names["g0"] not in (None, "to_review")
    assert all(names[f"d{i}"] is None for i in range(10))


def old_keys(clusters: dict) -> list:
    return [m["key"] for m in clusters["masks"]]


def test_a_named_category_does_not_spread_over_other_masks_through_k_changes():
    keys = [f"m{i}" for i in range(24)]
    k3 = clusters_of({key: i % 3 for i, key in enumerate(keys)}, 3)
    table = CategoryTable([Category(1, "alpha", cluster=0, user_named=True), Category(2, "cluster_2", cluster=1),
                           Category(3, "cluster_3", cluster=2)], k3["id"])
    alpha = {key for key, name in names_of(table, {}, k3).items() if name == "alpha"}
    assignments, clusters = {}, k3
    for k, rule in ((5, lambda i: i % 5), (2, lambda i: i % 2), (3, lambda i: i % 3)):
        new = clusters_of({key: rule(i) for i, key in enumerate(keys)}, k)
        table, assignments, _ = rebind_categories(table, assignments, clusters, new)
        clusters = new
        names = names_of(table, assignments, clusters)
        assert {key for key, name in names.items() if name == "alpha"} == alpha, f"K={k}"
        assert all(name is not None for name in names.values())  # nothing left the export


def test_generated_names_stay_unique_and_empty_generated_categories_are_not_exported():
    old = clusters_of({"a": 0, "b": 1, "c": 2}, 3)
    table = CategoryTable([Category(1, "cluster_1", cluster=0), Category(2, "cluster_2", cluster=1),
                           Category(3, "cluster_3", cluster=2)], old["id"])
    new = clusters_of({"a": 0, "b": 0, "c": 0, "d": 1, "e": 2}, 3)  # clusters 2 and 3 hold only new masks
    table, _, _ = rebind_categories(table, {}, old, new)
    names = [c.name for c in table.categories]
    assert len(names) == len(set(names))
    used = {table.resolve(c.id) for c in table.categories if c.cluster is not None}
    exported = table.exported(used)
    assert {c["id"] for c in exported} == used
    assert len({c["name"] for c in exported}) == len(exported)
    table.categories.append(Category(99, exported[0]["name"], user_named=True))  # an older version allowed this
    assert len({c["name"] for c in table.exported()}) == len(table.exported())


# -- the repro on real runs ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("rerun_images"))


def export_count(project: Path) -> int:
    return len(json.loads((project / "annotations.json").read_text())["annotations"])


@pytest.mark.parametrize("distilled", [False, True])
def test_rerun_with_a_smaller_k_after_a_discard_keeps_every_exported_mask(folder, tmp_path, distilled):
    project = tmp_path / "p"
    config = dict(MECHANICS, proposals="ncut", max_masks=3, distill=distilled)
    run(folder, project, RunConfig(**{**config, "num_classes": 3}))
    review.discard_category(project, 2)
    export_project(project)
    kept = export_count(project)
    discarded_keys = masks_in(project, None)
    for k in (2, 3, 1, 3):
        result = run(folder, project, RunConfig(**{**config, "num_classes": k}))
        if not distilled:  # distilled exports also hold the head's own objects, which vary with the clustering
            assert export_count(project) == kept, f"K={k}: {result.rebinding}"
        assert masks_in(project, None) == discarded_keys, f"K={k}: {result.rebinding}"  # none gained, none lost
    names = [c["name"] for c in json.loads((project / "annotations.json").read_text())["categories"]]
    assert len(names) == len(set(names))


def masks_in(project: Path, name) -> set:
    """Keys of the proposals whose exported category is ``name`` (None: discarded)."""
    state = LabelState.load(project)
    names = {c.id: c.name for c in state.table.categories}
    found = set()
    for entry in read_json(Project(project).images_path):
        instances = state.instances(entry, "proposals")
        for key, category in zip(state.mask_keys(entry, instances.masks), instances.categories):
            resolved = state.resolve(category)
            if (names.get(resolved) if resolved else None) == name:
                found.add(key)
    return found


def test_renaming_to_a_name_in_use_is_refused(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    review.rename_category(project, 1, "cat")
    with pytest.raises(ValueError, match="already named 'cat'; merge"):
        review.rename_category(project, 2, "cat")
    assert [c.name for c in load_categories(project).categories][:2] == ["cat", "cluster_2"]


# -- case 10: no silent fall-back from predictions to proposals --------------------------------------------
@pytest.fixture(scope="module")
def distilled_project(folder, tmp_path_factory):
    project = tmp_path_factory.mktemp("distilled") / "p"
    run(folder, project, RunConfig(**MECHANICS))
    return project


def test_a_garbled_predictions_stamp_is_said_in_the_export(distilled_project, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(distilled_project, project)
    (project / "predictions" / "stamp.json").write_text("{garbled")
    result = export_project(project)
    assert any("stamp.json is missing or unreadable" in w and "maskdistill predict" in w
               for w in result["coco"]["warnings"])


def test_a_predictions_swap_stopped_between_its_renames_is_finished(distilled_project, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(distilled_project, project)
    before = json.loads((project / "annotations.json").read_text())
    # the state after predictions/ -> predictions.old and before predictions.partial -> predictions/
    (project / "predictions").rename(project / "predictions.old")
    shutil.copytree(project / "predictions.old", project / "predictions.partial")
    result = export_project(project)
    assert not result["coco"]["warnings"]
    assert (project / "predictions" / "stamp.json").exists() and not (project / "predictions.old").exists()
    after = json.loads((project / "annotations.json").read_text())
    assert [a["segmentation"] for a in after["annotations"]] == [a["segmentation"] for a in before["annotations"]]


def test_split_parts_whose_masks_are_no_longer_proposed_are_named_in_the_run_report(folder, tmp_path):
    project = tmp_path / "p"
    config = dict(MECHANICS, proposals="ncut", max_masks=3, distill=False)
    run(folder, project, RunConfig(**config))
    largest = max(review.category_sizes(project).items(), key=lambda item: item[1])[0]
    parts = review.split_category(project, largest, 2)
    part_names = {c.name for c in load_categories(project).categories if c.id in set(parts)}
    result = run(folder, project, RunConfig(**{**config, "input_size": 42}))  # other masks everywhere
    said = [line for line in result.rebinding if "no longer proposed" in line]
    assert {line.split("'")[1] for line in said} >= part_names, result.rebinding
