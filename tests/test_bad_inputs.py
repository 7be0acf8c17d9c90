"""A whole run over a folder full of bad and odd files: bad ones are skipped with a reason, odd but valid
ones are annotated, and nothing half-written is left when there is nothing to do."""
from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from skimage import data

import engine.io.images
from engine.atomic import read_json
from engine.orchestration.pipeline import RunConfig, run
from helpers import MECHANICS

SMALL = MECHANICS
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def png_bytes(pixels, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_folder(folder):
    astro = data.astronaut()[60:156, 150:246]
    cat = data.chelsea()[40:136, 100:196]
    coffee = data.coffee()[100:180, 200:296]
    good = {
        "astronaut.png": png_bytes(astro),
        "dup_a.png": png_bytes(cat), "dup_b.png": png_bytes(cat),
        "cmyk.jpg": jpeg_bytes(Image.fromarray(coffee).convert("CMYK")),
        "rgba.png": png_bytes(np.dstack([astro, np.full(astro.shape[:2], 128, np.uint8)])),
        "palette.png": None,
        "sixteen.png": None,
        "one.png": png_bytes(np.array([[[200, 30, 30]]], np.uint8)),
        "café ☕ (1).png": png_bytes(coffee),
        "spaces in name.jpg": jpeg_bytes(Image.fromarray(cat)),
        "sub/inner.png": png_bytes(coffee[::-1]),
    }
    buffer = io.BytesIO()
    Image.fromarray(cat).convert("P", palette=Image.ADAPTIVE, colors=16).save(buffer, format="PNG")
    good["palette.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(data.camera()[100:180, 100:180].astype(np.uint16) * 200).save(buffer, format="PNG")
    good["sixteen.png"] = buffer.getvalue()
    full_png, full_jpg = png_bytes(astro), jpeg_bytes(Image.fromarray(astro))
    bad = {
        "zero.png": (b"", "empty file"),
        "truncated.png": (full_png[: len(full_png) // 2], "truncated or corrupt"),
        "truncated.jpg": (full_jpg[: len(full_jpg) // 2], "truncated or corrupt"),
        "text.png": (b"hello, I am text pretending to be a PNG\n", "not an image"),
        "huge.png": (png_bytes(np.zeros((200, 200, 3), np.uint8)), "too large"),
    }
    for name, content in {**good, **{k: v[0] for k, v in bad.items()}}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    os.symlink("..", folder / "sub" / "loop")  # directory loop for the recursive walk
    os.symlink("selfloop.png", folder / "selfloop.png")  # a link to itself
    bad["selfloop.png"] = (None, "broken symbolic link")
    if not AS_ROOT:
        (folder / "locked.png").write_bytes(png_bytes(astro))
        os.chmod(folder / "locked.png", 0)
        bad["locked.png"] = (None, "permission denied")
    return sorted(good), {name: reason for name, (_, reason) in bad.items()}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad inputs")
    good, bad = build_folder(folder)
    project = tmp_path_factory.mktemp("bad_project")
    mp = pytest.MonkeyPatch()
    mp.setattr(engine.io.images, "MAX_IMAGE_PIXELS", 150 * 150)  # the run is in-process, so this applies
    try:
        result = run(folder, project, RunConfig(recursive=True, **SMALL))
    finally:
        mp.undo()
        if (folder / "locked.png").exists():
            os.chmod(folder / "locked.png", 0o644)
    return result, project, good, bad


def test_every_bad_file_is_skipped_with_its_reason(bad_run):
    result, project, good, bad = bad_run
    skipped = {s["relative_path"]: s["reason"] for s in read_json(project / "report.json")["skipped"]}
    assert set(skipped) == set(bad), skipped
    for name, expected in bad.items():
        assert expected in skipped[name], (name, skipped[name])
    assert {s["relative_path"] for s in result.skipped} == set(bad)


def test_every_good_file_is_annotated(bad_run):
    result, project, good, _ = bad_run
    coco = read_json(project / "annotations.json")
    assert sorted(im["file_name"] for im in coco["images"]) == good
    assert result.images == len(good)
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in coco["images"]}
    assert sizes["one.png"] == (1, 1)
    from pycocotools.coco import COCO
    api = COCO(str(project / "annotations.json"))
    for ann in api.dataset["annotations"]:
        image = api.imgs[ann["image_id"]]
        assert api.annToMask(ann).shape == (image["height"], image["width"])
    by_name = {im["file_name"]: im["id"] for im in coco["images"]}
    same = lambda name: sorted((a["area"], a["category_id"]) for a in coco["annotations"]  # noqa: E731
                               if a["image_id"] == by_name[name])
    assert same("dup_a.png") == same("dup_b.png")  # identical pixels, identical result


def test_only_bad_files_or_nothing_gives_a_clear_error_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No usable images"):
        run(empty, tmp_path / "p_empty", RunConfig(**SMALL))
    assert not (tmp_path / "p_empty").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "text.png").write_text("not a picture")
    (bad / "zero.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="No usable images.*text.png"):
        run(bad, tmp_path / "p_bad", RunConfig(**SMALL))
    assert not (tmp_path / "p_bad").exists()
    # headers fine, pixel data cut off: found by discovery, fails only when decoded
    cut = tmp_path / "cut"
    cut.mkdir()
    full = png_bytes(data.astronaut()[:96, :96])
    (cut / "cut.png").write_bytes(full[: len(full) // 2])
    project = tmp_path / "p_cut"
    with pytest.raises(ValueError, match="could be read.*cut.png: truncated"):
        run(cut, project, RunConfig(**SMALL))
    left = sorted(p.relative_to(project).as_posix() for p in project.rglob("*"))
    assert left == [".lock"], left  # no project.json that a later `distill` would take for a project
    # and the same project then works for a good folder
    shutil.copy(cut / "cut.png", tmp_path / "keep.png")
    (cut / "cut.png").write_bytes(full)
    assert run(cut, project, RunConfig(**SMALL)).images == 1


@pytest.mark.parametrize("bad", [dict(num_classes=0), dict(backbone="no_such_vit"), dict(input_size=5),
                                 dict(weights="/nonexistent/weights.pth"), dict(batch_size=0)])
def test_bad_arguments_are_refused_before_the_project_exists(tmp_path, bad):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(data.astronaut()[:64, :64]))
    with pytest.raises((ValueError, KeyError, FileNotFoundError)):
        run(folder, tmp_path / "project", RunConfig(**{**SMALL, **bad}))
    assert not (tmp_path / "project").exists()


def test_progress_counts_the_images_a_run_can_use(tmp_path):
    """A file whose header reads but whose pixels do not leaves the progress total once found: the count ends at
    the images processed (3 of 3), not at 3 of 4 with the run finished."""
    from engine.orchestration.pipeline import RunConfig, run
    from helpers import MECHANICS, make_folder

    folder = make_folder(tmp_path / "images")
    raw = (folder / "chelsea.png").read_bytes()
    (folder / "chelsea.png").write_bytes(raw[: len(raw) // 2])  # header intact, pixels cut off
    reports: list = []
    result = run(folder, tmp_path / "p", RunConfig(**{**MECHANICS, "distill": False}),
                 progress=lambda *report: reports.append(report))
    images = [(done, total) for stage, done, total in reports if stage == "images"]
    assert result.images == 3 and [s["relative_path"] for s in result.skipped] == ["chelsea.png"]
    assert images[0] == (0, 4) and images[-1] == (3, 3)
    assert all(done <= total for done, total in images)
