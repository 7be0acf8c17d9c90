"""Image identity (issue 18, cases 2, 3, 6 and 7): the user's correction follows the image's pixels, a damaged
cache file is recomputed and said so, and a project never takes its own files for input images.

Each test builds a small project (four photo crops, random weights at 56 px, engine.api.run) and drives the
user-facing command line (engine.cli.main) the way the repro steps did.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from skimage import data

from engine import api, cli
from engine.api import RunConfig, run
from engine.io.images import discover_images
from engine.method.features import FeatureCache
from engine.state import review
from engine.state.corrections import correction_path, load_assignments, save_assignments
from helpers import MECHANICS, make_folder

COMMON = ["--weights", "random", "--input-size", "56", "-k", "2", "--batch-size", "2", "--device", "cpu", "-q"]


def _project(tmp_path, recursive: bool = False, distill: bool = False) -> tuple:
    images = make_folder(tmp_path / "images")
    project = tmp_path / "project"
    run(images, project, RunConfig(**{**MECHANICS, "distill": distill, "recursive": recursive}))
    return images, project


def _entries(project: Path) -> dict:
    return {e["relative_path"]: e for e in json.loads((project / "images.json").read_text())}


def _correct(project: Path, relative_path: str) -> np.ndarray:
    """A user's correction of one image: one drawn object of category 1; returns its mask."""
    entry = _entries(project)[relative_path]
    mask = np.zeros((entry["height"], entry["width"]), bool)
    mask[8:40, 10:50] = True
    review.set_image_masks(project, entry["image_id"], mask[None], [1])
    return mask


def _cli(capsys, *argv) -> tuple:
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def _run(capsys, images, project, *extra) -> tuple:
    return _cli(capsys, "run", images, "--project", project, *COMMON, *extra)


def _exported_masks(project: Path, relative_path: str) -> list:
    coco = json.loads((project / "annotations.json").read_text())
    (image,) = [i for i in coco["images"] if i["file_name"] == relative_path]
    return [mask_utils.decode(a["segmentation"]).astype(bool) for a in coco["annotations"]
            if a["image_id"] == image["id"]]


# -- case 2: an image replaced by a file of another size ------------------------------------------------------
def test_an_image_replaced_by_another_size_sets_its_correction_aside(tmp_path, capsys):
    images, project = _project(tmp_path)
    _correct(project, "chelsea.png")
    image_id = _entries(project)["chelsea.png"]["image_id"]
    Image.fromarray(data.chelsea()[0:120, 0:150]).save(images / "chelsea.png")  # same name, 150 x 120

    # before a re-run, an edit needing the pixels says what happened instead of cutting the old masks from the
    # new pixels; the correction stays where it was
    with pytest.raises(ValueError, match=r"chelsea.png: it is now 150 x 120 pixels but was 96 x 96 when the "
                                         r"project was run \(replaced or resized\)\. Run `maskdistill run`"):
        api.add_object(project, image_id, point=(60, 60))
    assert correction_path(project, image_id).exists()

    rc, out = _run(capsys, images, project)  # distilled: was an IndexError in distill.paint_label_map
    assert rc == 0, out
    assert "chelsea.png is now 150 x 120 pixels but its correction is 96 x 96" in out
    orphaned = project / "corrections" / "orphaned" / f"{image_id}.npz"
    assert orphaned.exists() and not correction_path(project, image_id).exists()
    assert str(orphaned) in out
    assert _entries(project)["chelsea.png"]["width"] == 150
    rc, out = _cli(capsys, "export", "--project", project)  # was: "annotation 1 has the wrong size"
    assert rc == 0 and "pycocotools validation passed" in out, out
    rc, out = _run(capsys, images, project, "--no-distill")
    assert rc == 0, out
    assert orphaned.exists()  # set aside once, never deleted


def test_an_image_replaced_by_other_pixels_of_the_same_size_keeps_its_correction(tmp_path, capsys):
    images, project = _project(tmp_path)
    mask = _correct(project, "chelsea.png")
    pixels = np.asarray(Image.open(images / "chelsea.png"))
    Image.fromarray(pixels[:, ::-1].copy()).save(images / "chelsea.png")  # mirrored: same size, other pixels

    rc, out = _run(capsys, images, project, "--no-distill")
    assert rc == 0, out
    assert "chelsea.png changed on disk (same size): its correction was kept" in out
    assert any((m == mask).all() for m in _exported_masks(project, "chelsea.png"))


# -- case 3: damaged cache files ------------------------------------------------------------------------------
def _damage(path: Path, kind: str) -> None:
    content = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(content[:len(content) // 2])
    elif kind == "emptied":
        path.write_bytes(b"")
    else:  # garbled: the zip's structure intact, bytes inside a member changed
        middle = len(content) // 2
        path.write_bytes(content[:middle] + bytes(b ^ 0x5A for b in content[middle:middle + 64])
                         + content[middle + 64:])


def _feature_file(project: Path, relative_path: str) -> Path:
    return FeatureCache(project / "features").path(_entries(project)[relative_path]["feature_key"])


@pytest.mark.parametrize("kind", ["truncated", "emptied", "garbled"])
def test_a_damaged_feature_file_is_detected(tmp_path, kind):
    from engine.method.features import ImageFeatures

    cache = FeatureCache(tmp_path)
    key = "ab" + "1" * 38
    tokens = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float16)
    cache.put(key, ImageFeatures((8, 8), (64, 64), None, tokens, np.ones(16, np.float32), None))
    _damage(cache.path(key), kind)
    features, problem = cache.read(key)
    assert features is None and problem.startswith(f"{cache.path(key)}: damaged feature cache file")


@pytest.mark.parametrize("command, kind", [("run", "truncated"), ("distill", "emptied"), ("predict", "garbled")])
def test_a_damaged_feature_cache_is_recomputed(tmp_path, capsys, command, kind):
    images, project = _project(tmp_path, distill=True)
    path = _feature_file(project, "rocket.png")
    good = FeatureCache(project / "features").get(path.stem)
    _damage(path, kind)
    argv = {"run": ["run", images, "--project", project, *COMMON],
            "distill": ["distill", "--project", project, "-q"],
            "predict": ["predict", "--project", project, "-q"]}[command]
    rc, out = _cli(capsys, *argv)  # was: "Cached features of rocket.png are missing" on every try
    assert rc == 0, out
    assert f"{path}: damaged feature cache file" in out and "(image rocket.png); recomputed" in out
    again = FeatureCache(project / "features").get(path.stem)
    assert again is not None and np.abs(again.tokens.astype(np.float32) - good.tokens).max() < 0.05
    rc, out = _cli(capsys, *argv)
    assert rc == 0 and "recomputed" not in out, out  # fixed for good


def test_damaged_proposals_are_recomputed_and_named(tmp_path, capsys):
    images, project = _project(tmp_path)
    path = project / "proposals" / f"{_entries(project)['coffee.png']['image_id']}.npz"
    _damage(path, "truncated")
    rc, out = _run(capsys, images, project, "--no-distill")
    assert rc == 0, out
    assert f"{path}: not a readable proposals file" in out and "(image coffee.png); recomputed" in out


def test_cache_prune_drops_unreadable_files(tmp_path, capsys):
    images, project = _project(tmp_path)
    path = _feature_file(project, "rocket.png")
    _damage(path, "garbled")
    rc, out = _cli(capsys, "cache", "--project", project, "--prune")
    assert rc == 0 and "1 unreadable" in out, out
    assert not path.exists()  # the next run recomputes it
    rc, out = _run(capsys, images, project, "--no-distill")
    assert rc == 0 and FeatureCache(project / "features").get(path.stem) is not None, out


# -- case 6: the project inside the image folder --------------------------------------------------------------
def test_a_recursive_run_never_takes_the_projects_own_files_for_images(tmp_path, capsys):
    images = make_folder(tmp_path / "images")
    project = images / "project"
    for _ in range(2):  # the second run sees overview.png and the first run's files
        rc, out = _run(capsys, images, project, "--recursive", "--no-distill")
        assert rc == 0, out
        assert sorted(_entries(project)) == ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"]


def test_discovery_skips_other_projects_and_label_exports(tmp_path):
    folder = make_folder(tmp_path / "images")
    other = folder / "old_project"
    other.mkdir()
    (other / "project.json").write_text("{}")
    (other / "images.json").write_text("[]")
    shutil.copy(folder / "rocket.png", other / "overview.png")
    labels = folder / "labels"
    labels.mkdir()
    shutil.copy(folder / "rocket.png", labels / "rocket.png")
    (labels / "instances.json").write_text(json.dumps({"categories": {}, "images": {"rocket.png": {}}}))
    coco = folder / "annotated"  # a user's folder with a COCO file of the same name stays an input
    coco.mkdir()
    shutil.copy(folder / "coffee.png", coco / "coffee.png")
    (coco / "instances.json").write_text(json.dumps({"categories": [], "images": [], "annotations": []}))

    found = [r.relative_path for r in discover_images(folder, recursive=True).images]
    assert found == ["annotated/coffee.png", "astronaut.png", "chelsea.png", "coffee.png", "rocket.png"]
    found = [r.relative_path for r in discover_images(folder, exclude=[folder / "rocket.png"]).images]
    assert "rocket.png" not in found


def test_a_project_in_the_image_folder_itself_skips_its_overview(tmp_path, capsys):
    images = make_folder(tmp_path / "images")
    for _ in range(2):
        rc, out = _run(capsys, images, images, "--no-distill")
        assert rc == 0, out
        assert "overview.png" not in _entries(images)


# -- case 7: a renamed or moved image -------------------------------------------------------------------------
def test_a_renamed_image_keeps_its_coco_id_in_the_export(tmp_path, capsys):
    images, project = _project(tmp_path)
    before = _entries(project)
    shutil.move(images / "chelsea.png", images / "kitty.png")
    (images / "astronaut.png").unlink()  # a name gone for good: its id is not given to anyone
    rc, out = _run(capsys, images, project, "--no-distill")
    assert rc == 0, out
    after = _entries(project)
    assert after["kitty.png"]["coco_id"] == before["chelsea.png"]["coco_id"]  # was: a new id appended
    assert after["coffee.png"]["coco_id"] == before["coffee.png"]["coco_id"]
    assert before["astronaut.png"]["coco_id"] not in {e["coco_id"] for e in after.values()}
    exported = json.loads((project / "annotations.json").read_text())
    assert {i["file_name"]: i["id"] for i in exported["images"]}["kitty.png"] == before["chelsea.png"]["coco_id"]
    # a later run keeps it, and a new image takes an id of its own
    Image.fromarray(data.camera()[:96, :96]).save(images / "camera.png")
    rc, out = _run(capsys, images, project, "--no-distill")
    assert rc == 0, out
    again = _entries(project)
    assert again["kitty.png"]["coco_id"] == before["chelsea.png"]["coco_id"]
    assert len({e["coco_id"] for e in again.values()}) == len(again) == 4


def test_a_moved_image_is_reattached_to_its_correction(tmp_path, capsys):
    images, project = _project(tmp_path, recursive=True)
    mask = _correct(project, "chelsea.png")
    old_id = _entries(project)["chelsea.png"]["image_id"]
    pinned = {f"{old_id}:0123456789abcdef": 1, "other:fedcba9876543210": 2}
    save_assignments(project, {**load_assignments(project), **pinned})
    (images / "cats").mkdir()
    shutil.move(images / "chelsea.png", images / "cats" / "kitty.png")

    rc, out = _run(capsys, images, project, "--recursive", "--no-distill")
    assert rc == 0, out
    assert "chelsea.png is now cats/kitty.png (same pixels): its correction moved with it" in out
    new_id = _entries(project)["cats/kitty.png"]["image_id"]
    assert correction_path(project, new_id).exists() and not correction_path(project, old_id).exists()
    assert any((m == mask).all() for m in _exported_masks(project, "cats/kitty.png"))  # was: generated masks
    assignments = load_assignments(project)
    assert assignments[f"{new_id}:0123456789abcdef"] == 1 and assignments["other:fedcba9876543210"] == 2
