"""Every project file is checked on load (issue 18, cases 4 and 5).

A wrong value in a project file is one named error (file, field, problem, what to do) raised before anything is
written, or, for a file the run rebuilds anyway, a recovery that says so; never a traceback, never an export
with fewer masks. Paths built from project data (image ids, relative paths) never leave their folder.
Pure checks of the readers first, then a small real project (random ViT-S/14 at 56 px) and the CLI.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import cli
from engine.atomic import read_json
from engine.orchestration.pipeline import RunConfig, distill, run
from engine.orchestration.project_commands import export_project
from engine.state import review, schema
from engine.state.corrections import load_assignments, load_categories
from engine.state.project import Project, open_project
from engine.state.schema import ProjectSchemaError, UnsafePathError
from helpers import MECHANICS, make_folder

# -- the readers ----------------------------------------------------------------------------------------------
IMAGE = {"image_id": "img_1", "relative_path": "a.jpg", "width": 480, "height": 320, "coco_id": 1}
CATEGORY = {"id": 1, "name": "alpha", "discarded": None, "merged_into": None, "colour": None, "cluster": 0,
            "user_named": True}


def _write(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("name, document, field, problem", [
    ("images.json", [1, 2, 3], "[0]", "must be a JSON object, found 1"),
    ("images.json", [{**IMAGE, "coco_id": "7"}], "[0].coco_id", 'must be a whole number, found "7"'),
    ("images.json", [{**IMAGE, "width": "480"}], "[0].width", 'must be a whole number, found "480"'),
    ("images.json", [{**IMAGE, "coco_id": True}], "[0].coco_id", "must be a whole number, found true"),
    ("images.json", [{**IMAGE, "height": 0}], "[0].height", "must be at least 1"),
    ("images.json", [IMAGE, {**IMAGE, "relative_path": "b.jpg"}], "[1].image_id", "is used twice"),
    ("images.json", [], "the whole file", "lists no images"),
    ("images.json", [{**IMAGE, "image_id": "../../x/evil"}], "[0].image_id", "is not a plain file name"),
    ("clusters.json", {"masks": [{"image_id": "..", "index": 0, "cluster": 0}], "clusters": [{"id": 0}]},
     "masks[0].image_id", "is not a plain file name"),
    ("images.json", [{**IMAGE, "relative_path": "../../escaped.jpg"}], "[0].relative_path", "contains '..'"),
    ("images.json", [{**IMAGE, "relative_path": "/etc/passwd"}], "[0].relative_path", "is an absolute path"),
    ("images.json", [{**IMAGE, "relative_path": "C:\\x.jpg"}], "[0].relative_path", "is an absolute path"),
    ("clusters.json", [], "the whole file", "must be a JSON object, found []"),
    ("clusters.json", {"masks": [{"image_id": "img_1", "index": 0, "cluster": 2}], "clusters": [{"id": 0}]},
     "masks[0].cluster", "names cluster 2, which the file does not list"),
    ("clusters.json", {"masks": [], "clusters": [{"id": 1}]}, "clusters[0].id", "must be 0"),
    ("categories.json", {"categories": [{**CATEGORY, "cluster": "zero"}]}, "categories[0].cluster",
     'must be a whole number, found "zero"'),
    ("categories.json", {"categories": [{**CATEGORY, "discarded": 5}]}, "categories[0].discarded",
     "must be 'background' or 'ignore', found 5"),
    ("categories.json", {"categories": [{**CATEGORY, "merged_into": "abc"}]}, "categories[0].merged_into",
     'must be a whole number, found "abc"'),
    ("categories.json", {"categories": [{**CATEGORY, "merged_into": 9}]}, "categories[0].merged_into",
     "names category 9, which the table does not list"),
    ("categories.json", {"categories": [{**CATEGORY, "merged_into": 2}, {**CATEGORY, "id": 2, "merged_into": 1}]},
     "categories[0].merged_into", "in a cycle (1 -> 2 -> 1)"),
    ("categories.json", {"categories": [{**CATEGORY, "colour": [1, 2, 300]}]}, "categories[0].colour[2]",
     "must be at most 255"),
    ("categories.json", {"categories": [CATEGORY, CATEGORY]}, "[1].id", "is used twice"),
    ("assignments.json", {"by_mask": []}, "by_mask", "must be a JSON object, found []"),
    ("assignments.json", {"version": 2, "by_mask": []}, "by_mask", "must be a JSON object, found []"),
    ("assignments.json", {"version": 2, "by_mask": {"img_1:ab": "3"}}, "by_mask.img_1:ab",
     'must be a whole number, found "3"'),
    ("assignments.json", {"version": 3, "by_mask": {}}, "version", "must be 2"),
    ("filtering.json", {"masks": [{"image_id": "img_1", "index": 0, "kept": "yes"}]}, "masks[0].kept",
     "must be true or false"),
    ("stamp.json", {"clustering": 5}, "clustering", "must be a text string, found 5"),
])
def test_a_wrong_value_is_named_by_file_and_field(tmp_path, name, document, field, problem):
    readers = {"images.json": schema.read_images, "clusters.json": schema.read_clusters,
               "categories.json": schema.read_categories, "assignments.json": schema.read_assignments,
               "filtering.json": schema.read_filtering, "stamp.json": schema.read_predictions_stamp}
    path = _write(tmp_path / name, document)
    with pytest.raises(ProjectSchemaError) as error:
        readers[name](path)
    message = str(error.value)
    assert message.startswith(f"{path}: {field}: ") and problem in message, message
    assert message.count(". ") >= 1 and not message.endswith(". ")  # what to do follows the problem


def test_older_layouts_still_load(tmp_path):
    legacy = _write(tmp_path / "assignments.json", {"img_1/0": 2})  # before masks had keys
    assert schema.read_assignments(legacy) == {"img_1/0": 2}
    assert load_assignments(tmp_path) == {"img_1/0": 2}
    _write(tmp_path / "categories.json", {"categories": [{"id": 1, "name": "cluster_1"}]})  # before bindings
    assert load_categories(tmp_path).categories[0].cluster == 0
    clusters = {"masks": [{"image_id": "img_1", "index": 0, "cluster": 0}], "clusters": [{"id": 0}]}
    assert schema.read_clusters(_write(tmp_path / "clusters.json", clusters)) == clusters  # no keys, no sizes


def test_paths_built_from_project_data_stay_in_their_folder(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    assert schema.contained_path(folder, "sub/a.png", "label image") == folder / "sub" / "a.png"
    (folder / "out").symlink_to(tmp_path, target_is_directory=True)
    for relative in ("../a.png", "/tmp/a.png", "out/a.png", "sub/../../a.png"):
        with pytest.raises(UnsafePathError, match="label image"):
            schema.contained_path(folder, relative, "label image")
    linked = tmp_path / "linked_labels"  # the export folder itself may be a symlink
    linked.symlink_to(folder, target_is_directory=True)
    assert schema.contained_path(linked, "a.png", "label image") == linked / "a.png"
    for name in ("../../x/evil", "a/b", "..", "", "a\\b"):
        with pytest.raises(UnsafePathError):
            schema.plain_name(name, "image id")
    assert schema.plain_name("img_0123abcd", "image id") == "img_0123abcd"


# -- a real small project --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(image folder, project) run with distillation, then edited the ways a user edits: every file exists."""
    folder = make_folder(tmp_path_factory.mktemp("schema_images"))
    project = tmp_path_factory.mktemp("schema_project") / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "num_classes": 3, "proposals": "ncut", "max_masks": 3}))
    sizes = {c["id"] + 1: c["size"] for c in read_json(Project(project).clusters_path)["clusters"]}
    review.split_category(project, max(sizes, key=sizes.get), 2)
    review.rename_category(project, 1, "alpha")
    review.recolour_category(project, 1, (10, 20, 30))
    review.discard_category(project, 2, "ignore")
    review.merge_categories(project, [3], 1)
    review.restore_category(project, 3)
    entry = read_json(Project(project).images_path)[0]
    mask = np.zeros((1, entry["height"], entry["width"]), bool)
    mask[0, 4:30, 4:30] = True
    review.set_image_masks(project, entry["image_id"], mask, [1])
    distill(project, device="cpu")
    export_project(project)
    return folder, project


def _copy(project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".lock*", ".state.lock", "index.sqlite*"))
    return copy


def test_every_file_this_version_writes_loads(finished):
    _, project = finished
    p = Project(project)
    assert schema.read_images(p.images_path) and schema.read_clusters(p.clusters_path)
    assert schema.read_categories(project / "categories.json")["categories"]
    assert schema.read_assignments(project / "assignments.json")["by_mask"]  # the split parts
    assert schema.read_filtering(p.filtering_path)["masks"]
    assert schema.read_predictions_stamp(p.predictions_dir / "stamp.json")["clustering"]
    assert p.read_config()["image_root"]
    open_project(project)
    assert schema.derived_file_notes(project) == []


def _cli_error(capsys, argv: list) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err  # one line
    return err


def _export_refused(capsys, copy: Path, name: str, field: str, *extra) -> str:
    before = (copy / "annotations.json").read_bytes()
    err = _cli_error(capsys, ["export", "--project", str(copy), *extra])
    assert err.startswith(f"maskdistill: error: {copy / name}: {field}: "), err
    assert (copy / "annotations.json").read_bytes() == before  # not rewritten, not emptier
    return err


@pytest.mark.parametrize("edit, field", [
    (lambda c: c.__setitem__("cluster", "zero"), "categories[0].cluster"),
    (lambda c: c.__setitem__("discarded", 5), "categories[0].discarded"),  # was: 31 annotations -> 16
    (lambda c: c.__setitem__("merged_into", "abc"), "categories[0].merged_into"),  # was: 31 -> 24
])
def test_a_wrong_category_value_stops_the_export(finished, tmp_path, capsys, edit, field):
    copy = _copy(finished[1], tmp_path)
    document = read_json(copy / "categories.json")
    edit(document["categories"][0])
    _write(copy / "categories.json", document)
    err = _export_refused(capsys, copy, "categories.json", field)
    assert "backups" in err and "delete it" in err  # what to do


def test_a_wrong_category_value_stops_the_run_before_it_writes(finished, tmp_path, capsys):
    """Before: the re-run rewrote the export, then failed with a raw traceback."""
    folder, project = finished
    copy = _copy(project, tmp_path)
    document = read_json(copy / "categories.json")
    document["categories"][0]["cluster"] = "zero"
    _write(copy / "categories.json", document)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    err = _cli_error(capsys, ["run", str(folder), "--project", str(copy), "--weights", "random",
                              "--input-size", "56", "-k", "2", "--no-distill", "--device", "cpu", "--quiet"])
    assert f"{copy / 'categories.json'}: categories[0].cluster: " in err
    after = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file() and not p.name.startswith(".lock")}
    assert after == {name: data for name, data in before.items() if not name.startswith(".lock")}


@pytest.mark.parametrize("document, field", [
    ([1, 2, 3], "[0]"),
    ("coco_id", "[0].coco_id"),
    ("width", "[0].width"),
])
def test_a_wrong_images_value_is_named(finished, tmp_path, capsys, document, field):
    copy = _copy(finished[1], tmp_path)
    if isinstance(document, str):  # the number as text, as a hand edit leaves it
        entries = read_json(copy / "images.json")
        entries[0][document] = str(entries[0][document])
        document = entries
    _write(copy / "images.json", document)
    err = _export_refused(capsys, copy, "images.json", field)
    assert f"maskdistill run {finished[0]} --project {copy}" in err  # the command that rebuilds it


@pytest.mark.parametrize("document", [{"by_mask": []}, {"version": 2, "by_mask": []}])
def test_assignments_of_the_wrong_type_are_named(finished, tmp_path, capsys, document):
    copy = _copy(finished[1], tmp_path)
    _write(copy / "assignments.json", document)
    _export_refused(capsys, copy, "assignments.json", "by_mask")


def test_damaged_clusters_are_named_by_export_and_rebuilt_by_run(finished, tmp_path, capsys):
    folder, project = finished
    copy = _copy(project, tmp_path)
    _write(copy / "clusters.json", [])
    _export_refused(capsys, copy, "clusters.json", "the whole file")
    exported = len(read_json(copy / "annotations.json")["annotations"])
    assert cli.main(["run", str(folder), "--project", str(copy), "--weights", "random", "--input-size", "56",
                     "-k", "3", "--proposals", "ncut", "--masks-per-image", "3", "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr()
    assert f"{copy / 'clusters.json'}: the whole file: must be a JSON object" in out.out + out.err
    assert "this run rebuilt it" in out.out + out.err
    assert schema.read_clusters(copy / "clusters.json")["masks"]
    assert len(read_json(copy / "annotations.json")["annotations"]) == exported


def test_damaged_images_list_is_rebuilt_by_run(finished, tmp_path, capsys):
    folder, project = finished
    copy = _copy(project, tmp_path)
    ids = {e["relative_path"]: e["coco_id"] for e in read_json(copy / "images.json")}
    _write(copy / "images.json", [1, 2, 3])
    assert cli.main(["run", str(folder), "--project", str(copy), "--weights", "random", "--input-size", "56",
                     "-k", "3", "--proposals", "ncut", "--masks-per-image", "3", "--no-distill", "--device", "cpu",
                     "--quiet"]) == 0
    out = capsys.readouterr()
    assert f"{copy / 'images.json'}: [0]: must be a JSON object" in out.out + out.err
    assert {e["relative_path"]: e["coco_id"] for e in schema.read_images(copy / "images.json")}.keys() == ids.keys()


def test_a_wrong_project_json_is_named(finished, tmp_path, capsys):
    copy = _copy(finished[1], tmp_path)
    config = read_json(copy / "project.json")
    _write(copy / "project.json", {**config, "image_root": 5})
    _export_refused(capsys, copy, "project.json", "image_root")
    _write(copy / "project.json", [config])
    assert "expected a JSON object" in _cli_error(capsys, ["export", "--project", str(copy)])


# -- case 4: paths from project files are not trusted ------------------------------------------------------------
def test_an_escaping_relative_path_writes_nothing_outside_the_labels_folder(finished, tmp_path, capsys):
    copy = _copy(finished[1], tmp_path)
    entries = read_json(copy / "images.json")
    entries[0]["relative_path"] = "../../escaped.jpg"
    _write(copy / "images.json", entries)
    labels = tmp_path / "out" / "labels"
    err = _export_refused(capsys, copy, "images.json", "[0].relative_path", "--labels", str(labels))
    assert "contains '..'" in err
    assert not list(tmp_path.rglob("escaped.*")) and not labels.exists()


def test_label_images_never_follow_a_symlink_out_of_the_folder(finished, tmp_path):
    """Entries handed to the export directly (no images.json check): the path itself is still guarded."""
    from engine.output.export import export_label_images

    project, _, entries, clusters = open_project(finished[1])
    labels, outside = tmp_path / "labels", tmp_path / "outside"
    labels.mkdir()
    outside.mkdir()
    (labels / "sub").symlink_to(outside, target_is_directory=True)
    moved = [{**entries[0], "relative_path": "sub/a.jpg"}, *entries[1:]]
    with pytest.raises(UnsafePathError, match="through a symlink"):
        export_label_images(project, moved, clusters, labels)
    assert not list(outside.iterdir()) and [p.name for p in labels.iterdir()] == ["sub"]  # nothing written
    escaping = [{**entries[0], "relative_path": "../../escaped.jpg"}]
    with pytest.raises(UnsafePathError, match="contains '..'"):
        export_label_images(project, escaping, clusters, labels)
    assert not list(tmp_path.rglob("escaped.*"))


def test_an_escaping_image_id_writes_nothing_outside_the_project(finished, tmp_path, capsys):
    copy = _copy(finished[1], tmp_path)
    entries = read_json(copy / "images.json")
    entries[0]["image_id"] = "../../x/evil"
    _write(copy / "images.json", entries)
    mask = np.zeros((1, entries[0]["height"], entries[0]["width"]), bool)
    mask[0, 2:8, 2:8] = True
    with pytest.raises(UnsafePathError, match="image id '../../x/evil'"):
        review.set_image_masks(copy, "../../x/evil", mask, [1])
    assert not list(tmp_path.rglob("evil*"))
    with pytest.raises(ProjectSchemaError, match=r"\[0\]\.image_id: is not a plain file name"):
        open_project(copy)
    err = _export_refused(capsys, copy, "images.json", "[0].image_id")
    assert not list(tmp_path.rglob("evil*")) and "Traceback" not in err
