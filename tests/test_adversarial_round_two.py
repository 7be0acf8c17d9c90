"""The second adversarial pass of issue 18: what it still found, each driven through the command line.

One small distilled project (four photo crops, random weights at 56 px) is built once; every test damages a
copy of it the way the pass did and checks that the command names the file and the problem (no traceback) and
that nothing the user made is lost.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import cli
from engine.api import RunConfig, image_objects, run
from engine.state import review
from engine.state.corrections import correction_path
from helpers import MECHANICS, make_folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple:
    images = make_folder(tmp_path_factory.mktemp("round_two") / "images")
    project = images.parent / "project"
    run(images, project, RunConfig(**{**MECHANICS, "distill": True}))
    return images, project


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    """A copy of the finished project (project.json keeps naming the shared image folder)."""
    return Path(shutil.copytree(finished[1], tmp_path / "project"))


def _entries(project: Path) -> dict:
    return {e["relative_path"]: e for e in json.loads((project / "images.json").read_text())}


def _cli(capsys, *argv) -> tuple:
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def _annotations_of(project: Path, relative_path: str) -> int:
    coco = json.loads((project / "annotations.json").read_text())
    (image,) = [i["id"] for i in coco["images"] if i["file_name"] == relative_path]
    return sum(a["image_id"] == image for a in coco["annotations"])


# -- a correction that no longer fits its image, before any re-run ------------------------------------------
def test_a_correction_of_another_size_is_skipped_by_export_and_distill_until_a_run_sets_it_aside(copy, capsys):
    entries = _entries(copy)
    corrected, other = entries["astronaut.png"], entries["coffee.png"]  # 96 x 96 and 96 x 80
    mask = np.zeros((corrected["height"], corrected["width"]), bool)
    mask[8:40, 10:50] = True
    review.set_image_masks(copy, corrected["image_id"], mask[None], [1])
    # the correction lands on an image of another size (a replaced image, a copied file): before the fix
    # export stopped on "annotation N has the wrong size in pycocotools" and distill on an IndexError
    shutil.copy(correction_path(copy, corrected["image_id"]), correction_path(copy, other["image_id"]))

    rc, out = _cli(capsys, "export", "--project", copy)
    assert rc == 0, out
    assert ("the correction of coffee.png is 96 x 96 pixels but the image is 96 x 80" in out
            and "re-run `maskdistill run" in out and "corrections/orphaned/" in out), out
    assert _annotations_of(copy, "coffee.png") > 0  # its generated masks stand in
    assert correction_path(copy, other["image_id"]).exists()  # nothing deleted by an export

    rc, out = _cli(capsys, "distill", "--project", copy, "--device", "cpu", "-q")
    assert rc == 0 and "Traceback" not in out and "the correction of coffee.png" in out, out
    # the review shows the image at its own size
    assert image_objects(copy, other["image_id"]).labels.shape == (other["height"], other["width"])


# -- images.json entries without the key of their cached features ------------------------------------------
@pytest.mark.parametrize("command", [["cache"], ["cache", "--prune"], ["predict"]])
def test_an_images_entry_without_feature_key_is_named(copy, capsys, command):
    entries = json.loads((copy / "images.json").read_text())
    del entries[1]["feature_key"]
    (copy / "images.json").write_text(json.dumps(entries))
    rc, out = _cli(capsys, command[0], "--project", copy, *command[1:])
    assert rc == 2, out
    assert f"{copy / 'images.json'}: [1].feature_key: is missing" in out and "maskdistill run" in out, out


# -- run settings in project.json of the wrong type or unknown ----------------------------------------------
@pytest.mark.parametrize("setting, value, problem", [
    ("num_classes", "3", "config.num_classes: number of classes must be a whole number, not '3'"),  # TypeError
    ("input_size", -5, "config.input_size: input size must be between 28 and 2048 pixels, not -5"),  # no file
    ("image_options", [1], "config.image_options: must be a JSON object, not [1]"),  # AttributeError
    ("foreground", True, "config.foreground: is not a setting of this version"),  # TypeError in RunConfig
])
@pytest.mark.parametrize("command", ["predict", "distill"])
def test_a_wrong_stored_run_setting_is_named_with_project_json(copy, capsys, setting, value, problem, command):
    stored = json.loads((copy / "project.json").read_text())
    stored["config"][setting] = value
    (copy / "project.json").write_text(json.dumps(stored))
    rc, out = _cli(capsys, command, "--project", copy)
    assert rc == 2, out
    assert f"{copy / 'project.json'}: {problem}" in out and "Traceback" not in out, out


def test_a_schema_version_of_the_wrong_type_is_shown_as_such(copy, capsys):
    stored = json.loads((copy / "project.json").read_text())
    stored["schema_version"] = "1"  # was "version 1 is not supported by this version (schema 1)"
    (copy / "project.json").write_text(json.dumps(stored))
    rc, out = _cli(capsys, "export", "--project", copy)
    assert rc == 2 and "project schema version '1' is not supported" in out, out


# -- corrections follow their pixels when names are swapped or renumbered -------------------------------------
RUN = ["--weights", "random", "--input-size", "56", "-k", "2", "--batch-size", "2", "--device", "cpu", "-q",
       "--no-distill"]


def _own_project(tmp_path) -> tuple:
    images = make_folder(tmp_path / "images")
    project = tmp_path / "own_project"
    run(images, project, RunConfig(**{**MECHANICS, "distill": False}))
    return images, project


def _draw(project: Path, relative_path: str, rows: slice) -> np.ndarray:
    """A correction of one drawn object; returns its label map."""
    entry = _entries(project)[relative_path]
    mask = np.zeros((entry["height"], entry["width"]), bool)
    mask[rows, 10:50] = True
    review.set_image_masks(project, entry["image_id"], mask[None], [1])
    return review.image_correction(project, entry["image_id"]).labels


def _swap(folder: Path, a: str, b: str) -> None:
    (folder / a).rename(folder / "swapping")
    (folder / b).rename(folder / a)
    (folder / "swapping").rename(folder / b)


def test_swapped_names_take_their_corrections_and_assignments_along(tmp_path, capsys):
    from engine.state.corrections import load_assignments, save_assignments

    images, project = _own_project(tmp_path)
    astronaut = _draw(project, "astronaut.png", slice(8, 40))  # 96 x 96
    coffee = _draw(project, "coffee.png", slice(30, 60))  # 96 x 80
    ids = {name: e["image_id"] for name, e in _entries(project).items()}
    save_assignments(project, {f"{ids['astronaut.png']}:aaaa": 1, f"{ids['coffee.png']}:cccc": 1})
    _swap(images, "astronaut.png", "coffee.png")  # a ring: both names hold a correction

    rc, out = cli.main(["run", str(images), "--project", str(project), *RUN]), capsys.readouterr()
    assert rc == 0, out
    # before: both corrections set aside in corrections/orphaned/ (the sizes no longer fit their names)
    assert (review.image_correction(project, ids["coffee.png"]).labels == astronaut).all()
    assert (review.image_correction(project, ids["astronaut.png"]).labels == coffee).all()
    assert load_assignments(project) == {f"{ids['coffee.png']}:aaaa": 1, f"{ids['astronaut.png']}:cccc": 1}
    assert "astronaut.png is now coffee.png (same pixels)" in out.out


def test_renumbered_names_move_each_correction_to_its_pixels(tmp_path, capsys):
    images, project = _own_project(tmp_path)
    _draw(project, "astronaut.png", slice(8, 40))
    chelsea = _draw(project, "chelsea.png", slice(30, 60))
    ids = {name: e["image_id"] for name, e in _entries(project).items()}
    # the first image deleted, the next one renamed into its place (same size: before, the wrong correction
    # was kept on it with only a "check it in the review")
    (images / "astronaut.png").unlink()
    (images / "chelsea.png").rename(images / "astronaut.png")

    rc, out = cli.main(["run", str(images), "--project", str(project), *RUN]), capsys.readouterr()
    assert rc == 0, out
    assert (review.image_correction(project, ids["astronaut.png"]).labels == chelsea).all()
    orphaned = list((project / "corrections" / "orphaned").glob("*.npz"))
    assert len(orphaned) == 1 and "its old ones are gone from the folder" in out.out  # the deleted image's


def test_predictions_of_another_size_than_the_image_entry_are_named(tmp_path):
    """images.json edited by hand (width 480 -> 481): the export names the prediction file and the image."""
    from engine.orchestration.project_commands import export_project

    project = tmp_path / "p"
    run(make_folder(tmp_path / "images"), project, RunConfig(**MECHANICS))
    images = json.loads((project / "images.json").read_text())
    images[0]["width"] += 1
    (project / "images.json").write_text(json.dumps(images))
    with pytest.raises(ValueError, match=r"predictions of .* are .* pixels but images.json says"):
        export_project(project)
