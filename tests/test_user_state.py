"""The user's work is never lost or silently changed (issue 8): each numbered case of the issue is a test.

Pure tests of the re-binding with known answers, then small runs (random ViT-S/14 at 56 px on 64-96 px crops).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.atomic import read_json
from engine.masks import mask_identity
from engine.orchestration.outcome import Cancelled
from engine.orchestration.pipeline import RunConfig, distill, run
from engine.orchestration.project_commands import export_project
from engine.state import review
from engine.state.corrections import Category, CategoryTable, load_categories, load_correction
from engine.state.label_state import LabelState, adopt_clustering, clustering_id, rebind_categories
from engine.state.project import Project, load_image_proposals, save_image_predictions, save_image_proposals
from helpers import MECHANICS, make_folder


def clusters_of(assignment: dict, k: int) -> dict:
    masks = [{"image_id": "img", "index": i, "key": key, "cluster": c} for i, (key, c) in enumerate(assignment.items())]
    return {"id": clustering_id(masks, k), "k": k, "masks": masks,
            "clusters": [{"id": j, "name": f"cluster_{j + 1}"} for j in range(k)]}


def resolved_name(table: CategoryTable, assignments: dict, clusters: dict, key: str) -> str:
    cluster = next(m["cluster"] for m in clusters["masks"] if m["key"] == key)
    bound = {c.cluster: c.id for c in table.categories if c.cluster is not None}
    return table.by_id()[table.resolve(assignments.get(key, bound[cluster]))].name


# -- case 1: names stay on the masks they named when K changes ---------------------------------------------
def test_rebinding_when_k_grows_keeps_the_name_on_every_mask():
    old = clusters_of({"a": 0, "b": 0, "c": 0, "d": 1, "e": 1, "f": 1}, 2)
    table = CategoryTable([Category(1, "alpha", cluster=0, user_named=True), Category(2, "cluster_2", cluster=1)],
                          old["id"])
    new = clusters_of({"a": 2, "b": 2, "c": 0, "d": 1, "e": 1, "f": 1}, 3)
    table, assignments, report = rebind_categories(table, {}, old, new)
    by_id = table.by_id()
    assert by_id[1].cluster == 2 and by_id[2].cluster == 1  # Hungarian: most shared masks
    leftover = next(c for c in table.categories if c.cluster == 0)
    assert leftover.id == 3 and leftover.merged_into == 1  # its masks came from 'alpha', which the user named
    assert {k: resolved_name(table, assignments, new, k) for k in "abcdef"} == \
        {"a": "alpha", "b": "alpha", "c": "alpha", "d": "cluster_2", "e": "cluster_2", "f": "cluster_2"}
    assert table.clustering == new["id"]
    alpha = next(r for r in report["bindings"] if r["category"] == 1)
    assert (alpha["agree"], alpha["masks"], alpha["pinned"]) == (2, 3, 0)
    moved = next(r for r in report["movements"] if r["category"] == 1)
    assert (moved["kept"], moved["lost"], moved["gained"]) == (3, {}, {})  # 'c' stays alpha through the merge


def test_rebinding_when_k_shrinks_pins_the_named_masks():
    old = clusters_of({"a": 0, "b": 0, "c": 1, "d": 1, "e": 1, "f": 1}, 2)
    table = CategoryTable([Category(1, "alpha", cluster=0, user_named=True), Category(2, "cluster_2", cluster=1)])
    new = clusters_of(dict.fromkeys("abcdef", 0), 1)
    table, assignments, report = rebind_categories(table, {}, old, new)
    assert table.by_id()[2].cluster == 0 and table.by_id()[1].cluster is None
    assert assignments == {"a": 1, "b": 1}
    assert [resolved_name(table, assignments, new, k) for k in "abcdef"] == ["alpha"] * 2 + ["cluster_2"] * 4
    assert next(r for r in report["bindings"] if r["category"] == 1)["pinned"] == 2


def test_unedited_categories_follow_the_new_clustering_without_pins():
    old = clusters_of({"a": 0, "b": 0, "c": 1}, 2)
    table = CategoryTable([Category(1, "cluster_1", cluster=0), Category(2, "cluster_2", cluster=1)])
    new = clusters_of({"a": 0, "b": 0, "c": 0}, 1)
    table, assignments, _ = rebind_categories(table, {}, old, new)
    assert assignments == {}  # nothing the user decided: the new clustering decides
    assert table.by_id()[1].cluster == 0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("user_state_images"))


def exported(project: Path) -> dict:
    return json.loads((project / "annotations.json").read_text())


def named_masks(project: Path) -> dict:
    """mask key -> exported category name, for the proposals of every image."""
    state = LabelState.load(project)
    names = {c["id"]: c["name"] for c in state.exported_categories()}
    found = {}
    for entry in read_json(Project(project).images_path):
        instances = state.instances(entry, "proposals")
        for key, category in zip(state.mask_keys(entry, instances.masks), instances.categories):
            resolved = state.resolve(category)
            found[key] = names.get(resolved) if resolved else None
    return found


def test_rerun_with_another_k_keeps_every_name_and_exports_every_mask(folder, tmp_path):
    project = tmp_path / "p"
    config = dict(MECHANICS, proposals="ncut", max_masks=3, distill=False)
    run(folder, project, RunConfig(**{**config, "num_classes": 2}))
    review.rename_category(project, 1, "alpha")
    review.rename_category(project, 2, "beta")
    before = named_masks(project)
    total = len(before)
    assert total >= 4 and len(exported(project)["annotations"]) == total
    for k in (3, 1, 4):
        result = run(folder, project, RunConfig(**{**config, "num_classes": k}))
        after = named_masks(project)
        assert {key: after[key] for key in before} == before, f"K={k}"  # every user name stays on its masks
        assert len(exported(project)["annotations"]) == total, f"K={k}"  # no mask disappears
        assert all("masks kept" in line for line in result.rebinding)
        assert any(line.startswith("'alpha': ") for line in result.rebinding)


# -- case 2: split assignments follow the mask, not its position --------------------------------------------
def test_split_assignments_follow_the_mask_when_proposals_are_reordered(folder, tmp_path):
    project = tmp_path / "p"
    config = RunConfig(**{**MECHANICS, "proposals": "ncut", "max_masks": 3, "distill": False, "num_classes": 1})
    run(folder, project, config)
    new_ids = review.split_category(project, 1, 2)
    assigned = read_json(project / "assignments.json")["by_mask"]
    assert assigned and all(":" in key for key in assigned)
    before = named_masks(project)
    # the same masks proposed in another order (another run, another method): reverse every proposals file
    for entry in read_json(Project(project).images_path):
        path = Project(project).proposals_path(entry["image_id"])
        proposals, embeddings, key = load_image_proposals(path, (entry["height"], entry["width"]))
        order = np.arange(len(proposals))[::-1]
        save_image_proposals(path, proposals.filter(order), embeddings[order], key)
    from engine.orchestration.pipeline import cluster_project
    project_obj = Project(project)
    cluster_project(project_obj, read_json(project_obj.images_path), 1)
    assert named_masks(project) == before
    assert new_ids == [1, 2]


def test_a_split_takes_the_masks_merged_into_the_category(folder, tmp_path):
    """A category shows its own masks and those merged into it; a split re-clusters all it shows, so no mask of
    the merged category stays behind under the first part."""
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "proposals": "ncut", "max_masks": 3, "distill": False,
                                      "num_classes": 2}))
    review.merge_categories(project, [2], into=1)
    shown = named_masks(project)
    assert set(shown.values()) == {"cluster_1"} and len(shown) >= 4
    new_ids = review.split_category(project, 1, 2)
    assigned = read_json(project / "assignments.json")["by_mask"]
    assert set(assigned) == set(shown)  # every mask it showed, the merged ones too, got a part
    assert {assigned[key] for key in shown} == set(new_ids)


def test_splitting_a_category_again_gives_new_names(folder, tmp_path):
    """A second split of "cluster_1" must not make a second "cluster_1_2": the names stay unique."""
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "proposals": "ncut", "max_masks": 3, "distill": False,
                                      "num_classes": 1}))
    first = review.split_category(project, 1, 2)
    second = review.split_category(project, 1, 3)
    names = {c.id: c.name for c in LabelState.load(project).table.categories}
    assert [names[i] for i in first + second[1:]] == ["cluster_1", "cluster_1_2", "cluster_1_3", "cluster_1_4"]
    review.rename_category(project, second[1], "kitten")  # a name the command line can find it by


# -- case 3: import-coco merges, validates, backs up ---------------------------------------------------------
@pytest.mark.parametrize("embedding", ["pooled", "crop_cls"])
def test_a_split_compares_masks_as_the_clustering_does(folder, tmp_path, monkeypatch, embedding):
    """Pooled embeddings are split without the folder's dominant token directions, as the run's clustering
    compares them (engine.method.clustering.folder_directions); crop embeddings as they are."""
    from engine.method import clustering

    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "proposals": "ncut", "max_masks": 3, "distill": False,
                                      "num_classes": 1, "embedding": embedding}))
    entries = read_json(Project(project).images_path)
    stored = np.concatenate([load_image_proposals(Project(project).proposals_path(e["image_id"]),
                                                  (e["height"], e["width"]))[1] for e in entries])
    directions = clustering.folder_directions(clustering.FeatureCache(Project(project).features_dir),
                                              [e["feature_key"] for e in entries])
    assert directions.shape == (clustering.dominant_direction_count(stored.shape[1]), stored.shape[1])
    seen: list = []
    original = clustering.kmeans
    monkeypatch.setattr(clustering, "kmeans", lambda x, *a, **k: seen.append(x.copy()) or original(x, *a, **k))
    review.split_category(project, 1, 2)
    compared = stored.astype(np.float32)
    if embedding == "pooled":
        compared = clustering.project_out(compared, directions)
    # every mask of the one category, in the same order as the images and their proposals
    np.testing.assert_allclose(np.sort(seen[0], axis=0), np.sort(clustering.whiten(compared), axis=0), atol=1e-5)


@pytest.fixture()
def reviewed_project(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    entry = read_json(Project(project).images_path)[0]
    mask = np.zeros((1, entry["height"], entry["width"]), bool)
    mask[0, 5:55, 5:75] = True  # 3,500 px, reviewed
    review.set_image_masks(project, entry["image_id"], mask, [1])
    review.rename_category(project, 1, "alpha")
    return project, entry


def snapshot(project: Path) -> dict:
    files = [project / "categories.json", project / "assignments.json", *sorted((project / "corrections").glob("*"))]
    return {p.name: p.read_bytes() for p in files if p.exists()}


@pytest.mark.parametrize("document", [{}, {"images": [], "annotations": [], "categories": []}])
def test_import_of_an_empty_file_changes_nothing(reviewed_project, tmp_path, document):
    project, _ = reviewed_project
    before = snapshot(project)
    source = tmp_path / "empty.json"
    source.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="empty.json"):
        review.import_coco(project, source)
    assert snapshot(project) == before


def test_import_where_no_image_matches_changes_nothing(reviewed_project, tmp_path):
    project, _ = reviewed_project
    before = snapshot(project)
    source = tmp_path / "other.json"
    source.write_text(json.dumps({"images": [{"id": 1, "file_name": "elsewhere.png", "width": 8, "height": 8}],
                                  "annotations": [], "categories": [{"id": 1, "name": "thing"}]}))
    with pytest.raises(ValueError, match="none of its 1 images"):
        review.import_coco(project, source)
    assert snapshot(project) == before


def _one_image_coco(entry: dict, category_id: int = 1, defined=(1,)) -> dict:
    return {"images": [{"id": 7, "file_name": entry["relative_path"], "width": entry["width"],
                        "height": entry["height"]}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": category_id, "iscrowd": 0,
                             "segmentation": [[2, 2, 40, 2, 40, 30, 2, 30]], "area": 1200, "bbox": [2, 2, 38, 28]}],
            "categories": [{"id": c, "name": f"imported_{c}"} for c in defined]}


def test_import_merges_and_keeps_reviewed_corrections(reviewed_project, tmp_path):
    project, entry = reviewed_project
    mine = load_correction(project, entry["image_id"])
    source = tmp_path / "in.json"
    source.write_text(json.dumps(_one_image_coco(entry)))
    summary = review.import_coco(project, source)
    assert summary["kept"] == [entry["relative_path"]] and summary["images"] == 0
    kept = load_correction(project, entry["image_id"])
    assert kept.reviewed and np.array_equal(kept.labels, mine.labels)  # 3,500 px reviewed mask untouched
    names = {c.name for c in load_categories(project).categories}
    assert {"alpha", "imported_1"} <= names  # merged: the user's name stays, the file's joins


def test_import_replace_backs_up_first(reviewed_project, tmp_path):
    project, entry = reviewed_project
    before = snapshot(project)
    source = tmp_path / "in.json"
    source.write_text(json.dumps(_one_image_coco(entry)))
    summary = review.import_coco(project, source, replace=True)
    backup = Path(summary["backup"])
    assert (backup / "categories.json").read_bytes() == before["categories.json"]
    assert (backup / "corrections" / f"{entry['image_id']}.npz").read_bytes() == before[f"{entry['image_id']}.npz"]
    replaced = load_correction(project, entry["image_id"])
    assert not replaced.reviewed and int((replaced.labels > 0).sum()) < 3500


def test_import_of_an_undefined_category_is_refused(reviewed_project, tmp_path):
    project, entry = reviewed_project
    before = snapshot(project)
    source = tmp_path / "in.json"
    source.write_text(json.dumps(_one_image_coco(entry, category_id=5)))
    with pytest.raises(ValueError, match="5"):
        review.import_coco(project, source)
    assert snapshot(project) == before


# -- case 4: corrections reach every export; a discarded split part too --------------------------------------
def test_no_distill_export_uses_the_users_corrections(reviewed_project, folder):
    project, entry = reviewed_project
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    mine = [a for a in exported(project)["annotations"] if a["image_id"] == entry["coco_id"]]
    assert [a["area"] for a in mine] == [3500]


def _predictions_from_proposals(project: Path) -> None:
    """Predictions that repeat the proposals (a model that learnt them exactly), stamped for this clustering."""
    state = LabelState.load(project)
    for entry in read_json(Project(project).images_path):
        found = state.instances(entry, "proposals")
        semantic = np.zeros((entry["height"], entry["width"]), np.uint16)
        save_image_predictions(Project(project).predictions_path(entry["image_id"]), semantic, found.masks,
                               found.categories, found.scores)
    (Project(project).predictions_dir / "stamp.json").write_text(json.dumps({"clustering": state.clusters["id"]}))


def test_discarding_a_split_part_reaches_the_export_without_retraining(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "proposals": "ncut", "max_masks": 3, "distill": False,
                                      "num_classes": 1}))
    _predictions_from_proposals(project)
    total = len(export_project(project) and exported(project)["annotations"])
    _, part = review.split_category(project, 1, 2)
    in_part = sum(1 for v in read_json(project / "assignments.json")["by_mask"].values() if v == part)
    review.discard_category(project, part)
    export_project(project)
    document = exported(project)
    assert len(document["annotations"]) == total - in_part
    assert part not in {c["id"] for c in document["categories"]}


def test_retrained_predictions_keep_the_label_states_categories_and_leave_discarded_ones_out(folder, tmp_path):
    """After a split and a discard, distillation's objects that are kept proposals carry the category the label
    state gives their proposal (the head scores them, it does not re-classify them), no proposal of a
    discarded category comes back as an object, and the saved map is the objects painted."""
    from engine.state.project import load_image_predictions
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "num_classes": 3, "distill": False}))
    review.split_category(project, 1, 2)
    review.discard_category(project, 3)
    distill(project)
    state = LabelState.load(project)
    kept = {(r["image_id"], r["index"]): r["kept"] for r in read_json(Project(project).filtering_path)["masks"]}
    checked = dropped_out = 0
    for entry in read_json(Project(project).images_path):
        semantic, masks, classes, _ = load_image_predictions(Project(project).predictions_path(entry["image_id"]))
        painted = np.zeros_like(semantic)
        for mask, category in zip(masks, classes):
            painted[mask] = category
        assert np.array_equal(semantic, painted)
        proposals = state.instances(entry, "proposals")
        for index, (proposal, category) in enumerate(zip(proposals.masks, proposals.categories)):
            inside = [j for j, mask in enumerate(masks) if mask.any() and not (mask & ~proposal).any()
                      and (mask & proposal).sum() >= 0.5 * proposal.sum()]
            if state.resolve(category) is None:
                assert not inside  # a discarded proposal is not an object again
                dropped_out += 1
            elif kept.get((entry["image_id"], index)):
                assert [classes[j] for j in inside] == [state.resolve(category)] * len(inside)
                checked += len(inside)
    assert checked >= 3 and dropped_out >= 1


# -- case 5: results of another clustering are never mixed in -----------------------------------------------
def test_predictions_of_an_older_clustering_are_not_exported(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**MECHANICS))
    state = LabelState.load(project)
    entry = read_json(Project(project).images_path)[0]
    assert state.instances(entry).origin == "prediction"
    stamp = Project(project).predictions_dir / "stamp.json"
    stamp.write_text(json.dumps({"clustering": "an older clustering"}))  # a re-run stopped after clustering
    assert LabelState.load(project).instances(entry).origin == "proposal"


def test_a_cancelled_prediction_leaves_the_previous_predictions_whole(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**MECHANICS))
    before = {p.name: p.read_bytes() for p in Project(project).predictions_dir.iterdir()}

    def cancel_midway(stage, done, total):
        if stage == "predict" and done == 2:
            raise Cancelled()
    with pytest.raises(Cancelled):
        distill(project, cancel_midway)
    assert {p.name: p.read_bytes() for p in Project(project).predictions_dir.iterdir()} == before


def test_a_rerun_stopped_between_clusters_and_categories_rebinds_on_load(folder, tmp_path):
    project = tmp_path / "p"
    config = dict(MECHANICS, proposals="ncut", max_masks=3, distill=False)
    run(folder, project, RunConfig(**{**config, "num_classes": 2}))
    review.rename_category(project, 2, "beta")
    before = named_masks(project)
    p = Project(project)
    old = read_json(p.clusters_path)
    new = {**old, "masks": [{**m, "cluster": 1 - m["cluster"]} for m in old["masks"]]}  # clusters swapped
    new["id"] = clustering_id(new["masks"], 2)
    (project / "clusters.previous.json").write_text(json.dumps(old))
    p.clusters_path.write_text(json.dumps(new))  # killed here: categories.json still names the old clustering
    assert named_masks(project) == before


# -- case 6: every write of user state is serialised -----------------------------------------------------------
def test_two_writers_never_lose_a_rename(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    errors = []

    def writer(category_id):
        try:
            for i in range(15):
                review.rename_category(project, category_id, f"name_{category_id}_{i}")
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
    threads = [threading.Thread(target=writer, args=(c,)) for c in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = {c.id: c.name for c in load_categories(project).categories}
    assert names[1] == "name_1_14" and names[2] == "name_2_14"


def test_a_review_write_waits_for_the_state_lock_and_not_for_a_run(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    p = Project(project)
    released = []
    with p.lock():  # a run holds the project: review writes still go through
        review.rename_category(project, 1, "during a run")

        def hold():
            with p.state_lock():
                time.sleep(0.5)
                released.append(time.perf_counter())
        holder = threading.Thread(target=hold)
        holder.start()
        time.sleep(0.1)
        review.rename_category(project, 2, "after the holder")
        done = time.perf_counter()
        holder.join()
    assert released and done >= released[0]
    names = {c.id: c.name for c in load_categories(project).categories}
    assert names[1] == "during a run" and names[2] == "after the holder"


# -- case 9: the device is chosen per command -------------------------------------------------------------------
def test_the_device_is_not_stored_and_a_gpu_project_retrains_on_a_cpu(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**MECHANICS))
    config_path = Project(project).config_path
    stored = read_json(config_path)
    assert "device" not in stored and stored["config"]["device"] == "auto"
    stored["config"]["device"] = "cuda:0"  # as a project made on a GPU machine by an older version
    config_path.write_text(json.dumps(stored))
    summary = distill(project, device="cpu")
    assert summary["instances_predicted"] >= 0 and (Project(project).predictions_dir / "stamp.json").exists()


def test_a_mask_key_names_pixels_not_positions():
    a = np.zeros((8, 8), bool)
    a[2:4, 2:5] = True
    assert mask_identity("img_1", a) == mask_identity("img_1", a.copy())
    assert mask_identity("img_1", a) != mask_identity("img_2", a)
    b = a.copy()
    b[7, 7] = True
    assert mask_identity("img_1", a) != mask_identity("img_1", b)


def test_unknown_category_ids_are_kept_under_a_generated_name(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    entry = read_json(Project(project).images_path)[0]
    mask = np.zeros((1, entry["height"], entry["width"]), bool)
    mask[0, 1:9, 1:9] = True
    review.set_image_masks(project, entry["image_id"], mask, [42])
    export_project(project)
    document = exported(project)
    exported_id = {c["name"]: c["id"] for c in document["categories"]}["category_42"]  # ids are 1..N in the file
    assert [a["category_id"] for a in document["annotations"] if a["image_id"] == entry["coco_id"]] == [exported_id]


def test_adopting_the_same_clustering_rewrites_nothing(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    review.rename_category(project, 1, "alpha")
    before = snapshot(project)
    p = Project(project)
    clusters = read_json(p.clusters_path)
    assert adopt_clustering(p, clusters, clusters) == {}
    assert snapshot(project) == before


# -- case 7 (label state side): one corrupt correction blocks nothing and is named ---------------------------
def test_a_corrupt_correction_is_named_and_the_other_images_still_export(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**MECHANICS))
    entries = read_json(Project(project).images_path)
    broken = project / "corrections" / f"{entries[0]['image_id']}.npz"
    broken.parent.mkdir()
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    summary = export_project(project)
    assert any(str(broken) in w for w in summary["coco"]["warnings"])
    assert {im["file_name"] for im in exported(project)["images"]} == {e["relative_path"] for e in entries}
    distill(project)  # training goes on from the generated masks of that image
    assert broken.read_bytes() == b"PK\x03\x04 not really a zip"  # the user's file is left for them to restore


def test_a_correction_keeps_generated_scores_and_per_object_review(folder, tmp_path):
    from engine.state.corrections import ImageCorrection, save_correction

    project = tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    entry = read_json(Project(project).images_path)[0]
    labels = np.zeros((entry["height"], entry["width"]), np.uint16)
    labels[2:10, 2:10], labels[20:30, 20:30] = 1, 2
    save_correction(project, entry["image_id"], ImageCorrection(labels, {1: 1, 2: 1}, reviewed=False,
                                                                reviewed_ids={2}, scores={1: 0.25, 2: 0.9}))
    found = LabelState.load(project).instances(entry)
    assert found.origin == "correction" and not found.reviewed
    assert found.scores.tolist() == pytest.approx([0.25, 0.9])
    assert found.object_reviewed.tolist() == [False, True]
    assert LabelState.load(project).training_instances(entry)[3] == 1.0  # not all checked: not weighted up
