"""Project state across processes and re-runs: lock, schema version, the user's work, resume, COCO import,
polygon and label-image export. Small runs: random ViT-S/14 at 56 px on three 64-96 px crops."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.atomic import read_json
from engine.cli import main as cli_main
from engine.orchestration.pipeline import RunConfig, run
from engine.orchestration.project_commands import export_project
from engine.state import review
from engine.state.corrections import load_correction
from engine.state.project import Project, ProjectLockedError
from helpers import MECHANICS, make_folder

SMALL = MECHANICS
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("state_images"))


@pytest.fixture(scope="module")
def finished(folder, tmp_path_factory):
    project = tmp_path_factory.mktemp("state_project")
    result = run(folder, project, RunConfig(**SMALL))
    return project, result


def child_env():
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}


HOLDER = """
import sys, time
from engine.state.project import Project
with Project(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def start_holder(project: Path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(project)], stdout=subprocess.PIPE, env=child_env(),
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_lock_refuses_a_second_run_and_is_freed_when_the_holder_ends(folder, tmp_path, how):
    project = tmp_path / "locked project"
    holder = start_holder(project)
    try:
        start = time.perf_counter()
        with pytest.raises(ProjectLockedError) as info:
            run(folder, project, RunConfig(**SMALL))
        assert time.perf_counter() - start < 10
        assert str(project.resolve()) in str(info.value)
        assert f"process {holder.pid}" in str(info.value)
        assert not (project / "project.json").exists()
    finally:
        if how == "exit":
            holder.terminate()
        else:
            os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    with Project(project).lock():  # free again
        pass


def test_unknown_schema_version_is_refused_by_name_and_version(finished, capsys):
    project, _ = finished
    copy = project.parent / (project.name + "_schema")
    copy.mkdir()
    config = read_json(project / "project.json")
    for version in (0, 99):
        (copy / "project.json").write_text(json.dumps({**config, "schema_version": version}))
        with pytest.raises(ValueError) as info:
            Project(copy).read_config()
        assert str(copy.resolve() / "project.json") in str(info.value) and f"version {version}" in str(info.value)
    for name in ("images.json", "clusters.json"):
        (copy / name).write_bytes((project / name).read_bytes())
    assert cli_main(["distill", "--project", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "project.json" in err and "version 99" in err


def _export(project: Path) -> dict:
    return json.loads((project / "annotations.json").read_text())


def test_user_work_survives_a_rerun_and_is_exported(folder, tmp_path):
    project = tmp_path / "p"
    run(folder, project, RunConfig(**SMALL, max_masks=3))
    entries = read_json(Project(project).images_path)
    clusters = read_json(Project(project).clusters_path)
    sizes = {c["id"] + 1: c["size"] for c in clusters["clusters"]}
    big = max(sizes, key=sizes.get)
    other = 3 - big
    assert sizes[big] >= 2, sizes
    new = review.split_category(project, big, 2)  # [big, 3]
    assert new == [big, 3]
    review.rename_category(project, big, "Ünïcode cat ☕")
    review.merge_categories(project, [3], into=other)
    review.rename_category(project, other, "merged target")
    corrected = entries[0]
    h, w = corrected["height"], corrected["width"]
    masks = np.zeros((2, h, w), bool)
    masks[0, 5:20, 5:30] = True
    masks[1, 30:40, 10:12] = True
    review.set_image_masks(project, corrected["image_id"], masks, [big, other])
    user_files = sorted([project / "categories.json", project / "assignments.json",
                         *(project / "corrections").glob("*.npz")])
    before = {p: p.read_bytes() for p in user_files}
    run(folder, project, RunConfig(**SMALL, max_masks=3))
    assert {p: p.read_bytes() for p in user_files} == before
    coco = _export(project)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert names == {big: "Ünïcode cat ☕", other: "merged target"}  # 3 merged away
    assert {a["category_id"] for a in coco["annotations"]} <= {big, other}
    from pycocotools import mask as mask_utils
    mine = [a for a in coco["annotations"] if a["image_id"] == corrected["coco_id"]]
    assert [a["category_id"] for a in mine] == [big, other]
    for ann, mask in zip(mine, masks):
        assert np.array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), mask)
    # discarding leaves the category and its masks out of the next export
    review.discard_category(project, other)
    before = {p: p.read_bytes() for p in user_files}
    run(folder, project, RunConfig(**SMALL, max_masks=3))
    assert {p: p.read_bytes() for p in user_files} == before
    coco = _export(project)
    assert [c["id"] for c in coco["categories"]] == [big]
    assert {a["category_id"] for a in coco["annotations"]} == {big}
    mine = [a for a in coco["annotations"] if a["image_id"] == corrected["coco_id"]]
    assert len(mine) == 1 and np.array_equal(mask_utils.decode(mine[0]["segmentation"]).astype(bool), masks[0])


def test_rerun_after_a_finished_run_redoes_no_work(finished, folder):
    project, _ = finished
    files = [*Path(project, "features").rglob("*.npz"), *Path(project, "proposals").glob("*.npz")]
    assert len(files) == 8
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = run(folder, project, RunConfig(**SMALL))
    assert "backbone" not in again.timings and "proposals" not in again.timings
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes


def test_rerun_trusts_file_stamps_and_rereads_a_changed_file(folder, tmp_path, monkeypatch):
    import engine.orchestration.image_step

    project = tmp_path / "p"
    run(folder, project, RunConfig(**SMALL))
    decoded = []
    real_load = engine.orchestration.image_step.load_image_once
    monkeypatch.setattr(engine.orchestration.image_step, "load_image_once",
                        lambda path, *a, **kw: decoded.append(Path(path).name) or real_load(path, *a, **kw))
    first = read_json(Project(project).images_path)
    run(folder, project, RunConfig(**SMALL))
    assert decoded == []  # nothing changed: no image decoded or hashed again
    assert read_json(Project(project).images_path) == first  # same entries, same order
    changed = folder / "rocket.png"
    pixels = np.asarray(Image.open(changed)).copy()
    pixels[:8, :8] = 255
    Image.fromarray(pixels).save(changed)
    try:
        run(folder, project, RunConfig(**SMALL))
        assert decoded == ["rocket.png"]
        entry = next(e for e in read_json(Project(project).images_path) if e["relative_path"] == "rocket.png")
        assert entry["pixel_hash"] != next(e for e in first if e["relative_path"] == "rocket.png")["pixel_hash"]
    finally:
        make_folder(folder)  # the module's folder is shared: put the original crops back


def test_import_coco_into_a_fresh_project(finished, folder, tmp_path):
    project, _ = finished
    exported = read_json(Path(project, "annotations.json"))
    fresh = tmp_path / "fresh"
    run(folder, fresh, RunConfig(**SMALL))
    entries = read_json(Project(fresh).images_path)
    document = {**exported, "images": exported["images"] + [{"id": 99, "file_name": "elsewhere.png",
                                                             "width": 5, "height": 5}]}
    source = tmp_path / "in.json"
    source.write_text(json.dumps(document))
    summary = review.import_coco(fresh, source)
    # an image the run found nothing in (random weights) is exported without annotations and imported as none
    annotated = {im["file_name"] for im in exported["images"]
                 if any(a["image_id"] == im["id"] for a in exported["annotations"])}
    assert len(annotated) >= 3
    assert summary == {"images": len(annotated), "unmatched": ["elsewhere.png"],
                       "categories": len(exported["categories"]), "kept": [],
                       "unannotated": [im["file_name"] for im in exported["images"]
                                       if im["file_name"] not in annotated],
                       "backup": None, "mode": "merge"}
    from pycocotools.coco import COCO
    coco = COCO(str(source))
    by_name = {im["file_name"]: im["id"] for im in exported["images"]}
    for entry in entries:
        correction = load_correction(fresh, entry["image_id"])
        if entry["relative_path"] not in annotated:
            assert correction is None  # a merge never empties an image
            continue
        assert correction is not None and not correction.reviewed
        masks, classes = correction.instances()
        anns = coco.imgToAnns[by_name[entry["relative_path"]]]
        assert sorted(classes.tolist()) == sorted(a["category_id"] for a in anns)
        assert sorted(int(m.sum()) for m in masks) == sorted(a["area"] for a in anns)
    assert [(c["id"], c["name"]) for c in read_json(fresh / "categories.json")["categories"]] == \
        [(c["id"], c["name"]) for c in exported["categories"]]
    # the import is what the next export shows
    run(folder, fresh, RunConfig(**SMALL))
    assert sorted((a["image_id"], a["area"]) for a in _export(fresh)["annotations"]) == \
        sorted((a["image_id"], a["area"]) for a in exported["annotations"])


def test_import_coco_with_a_wrong_image_size_names_the_image_and_writes_nothing(finished, folder, tmp_path):
    project, _ = finished
    exported = read_json(Path(project, "annotations.json"))
    fresh = tmp_path / "fresh"
    run(folder, fresh, RunConfig(**SMALL))
    annotated = {a["image_id"] for a in exported["annotations"]}
    last = sorted((im for im in exported["images"] if im["id"] in annotated), key=lambda im: im["file_name"])[-1]
    last["width"] += 3
    for ann in exported["annotations"]:
        if ann["image_id"] == last["id"]:
            ann["segmentation"] = [[1, 1, 10, 1, 10, 10, 1, 10]]
    source = tmp_path / "wrong.json"
    source.write_text(json.dumps(exported))
    with pytest.raises(ValueError, match=last["file_name"]):
        review.import_coco(fresh, source)
    assert not (fresh / "corrections").exists() and not (fresh / "categories.json").exists()


def test_polygon_export_warns_and_keeps_tiny_masks(finished, tmp_path):
    project, _ = finished
    entry = read_json(Project(project).images_path)[0]
    h, w = entry["height"], entry["width"]
    masks = np.zeros((4, h, w), bool)
    masks[0, 10:30, 10:30] = True
    masks[0, 15:20, 15:20] = False  # hole
    masks[1, 40:45, 5:10] = masks[1, 40:45, 20:25] = True  # two parts
    masks[2, 50, 50] = True  # a single pixel
    masks[3, 60:70, 40] = True  # a one-pixel-thin line
    review.set_image_masks(project, entry["image_id"], masks, [1, 1, 2, 2])
    try:
        out = tmp_path / "poly.json"
        summary = export_project(project, out, polygons=True)
    finally:
        (Path(project) / "corrections" / f"{entry['image_id']}.npz").unlink()
    warnings = [w for w in summary["coco"]["warnings"] if w.startswith(entry["relative_path"] + " ")]
    assert sorted(warnings) == [f"{entry['relative_path']} annotation 1: the mask has holes, which polygons fill",
                                f"{entry['relative_path']} annotation 2: the mask has several parts"]
    from pycocotools.coco import COCO
    coco = COCO(str(out))
    anns = coco.imgToAnns[entry["coco_id"]]
    for ann, mask in zip(anns, masks):
        assert all(len(p) >= 6 for p in ann["segmentation"])
        decoded = coco.annToMask(ann).astype(bool)
        if ann["id"] in (3, 4):  # a pixel and a thin line come back exactly
            assert np.array_equal(decoded, mask)
        else:
            filled = mask | (decoded & ~mask) if ann["id"] == 1 else mask
            assert (decoded & filled).sum() / (decoded | filled).sum() > 0.8


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_label_images_8_and_16_bit(finished, tmp_path, fmt):
    project, _ = finished
    entries = read_json(Project(project).images_path)
    entry = entries[1]
    h, w = entry["height"], entry["width"]
    masks = np.zeros((300, h, w), bool)
    for k in range(300):
        masks[k, (k // 40) * 2, (k % 40) * 2] = True
    review.set_image_masks(project, entry["image_id"], masks, [1 + k % 2 for k in range(300)])
    try:
        summary = export_project(project, labels=tmp_path / "labels", label_format=fmt)
    finally:
        (Path(project) / "corrections" / f"{entry['image_id']}.npz").unlink()
    assert summary["labels"]["images"] == 4 and summary["labels"]["sixteen_bit"] == 1
    index = read_json(tmp_path / "labels" / "instances.json")
    for name, item in index["images"].items():
        labels = np.asarray(Image.open(tmp_path / "labels" / name))
        big = item["image"] == entry["relative_path"]
        assert labels.dtype == (np.uint16 if big else np.uint8), (name, labels.dtype)
        assert labels.shape == (next(e for e in entries if e["relative_path"] == item["image"])["height"],
                                next(e for e in entries if e["relative_path"] == item["image"])["width"])
        assert {int(v) for v in np.unique(labels) if v} == {int(k) for k in item["instances"]}
        assert all(str(c) in index["categories"] for c in item["instances"].values())
        if big:
            assert labels.max() == 300 and len(item["instances"]) == 300
            for k in (1, 150, 300):
                assert np.array_equal(labels == k, masks[k - 1])
                assert item["instances"][str(k)] == 1 + (k - 1) % 2
