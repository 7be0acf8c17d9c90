"""Issue 18, cases 8, 11 and 12: import-coco never empties an image the file has no annotations for; messages
name what is wrong (no bare key, no literal DIR, no torch advice); commands that run no network start without
torch, and one run decodes each image once."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from engine import cli
from engine.atomic import read_json
from engine.state.project import Project
from helpers import MECHANICS, make_folder


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """A finished project of four small crops (proposals only: nothing here needs the head)."""
    from engine.orchestration.pipeline import RunConfig, run

    folder = make_folder(tmp_path_factory.mktemp("cost_images") / "images")
    project = tmp_path_factory.mktemp("cost_project") / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}, device="cpu"))
    return project


@pytest.fixture()
def project(clustered, tmp_path):
    copy = tmp_path / "p"
    shutil.copytree(clustered, copy)
    return copy


def exported_per_image(project: Path) -> Counter:
    coco = read_json(project / "annotations.json")
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    return Counter(names[a["image_id"]] for a in coco["annotations"])


def coco_listing_every_image(project: Path, annotated: str) -> dict:
    """A COCO file listing every image of the project, with one annotation on ``annotated`` only."""
    entries = read_json(Project(project).images_path)
    images = [{"id": n, "file_name": e["relative_path"], "width": e["width"], "height": e["height"]}
              for n, e in enumerate(entries, 1)]
    target = next(image["id"] for image in images if image["file_name"] == annotated)
    return {"images": images, "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": target, "category_id": 1, "iscrowd": 0, "area": 600,
                             "bbox": [2, 2, 30, 20], "segmentation": [[2, 2, 32, 2, 32, 22, 2, 22]]}]}


# -- case 8: a merge never empties an image the file lists without annotations --------------------------------
def test_import_merge_leaves_images_listed_without_annotations_as_they_were(project, tmp_path, capsys):
    assert cli.main(["export", "--project", str(project)]) == 0
    before = exported_per_image(project)
    source = tmp_path / "theirs.json"
    source.write_text(json.dumps(coco_listing_every_image(project, "astronaut.png")))
    capsys.readouterr()

    assert cli.main(["import-coco", str(source), "--project", str(project)]) == 0
    out = capsys.readouterr().out
    assert "imported masks for 1 images" in out
    assert "3 images listed with no annotations were left as they were" in out
    assert len(list((project / "corrections").glob("*.npz"))) == 1  # only the annotated image's

    assert cli.main(["export", "--project", str(project)]) == 0
    after = exported_per_image(project)
    assert after["astronaut.png"] == 1
    assert {name: n for name, n in after.items() if name != "astronaut.png"} == \
        {name: n for name, n in before.items() if name != "astronaut.png"}


def test_import_replace_may_empty_them_after_the_backup(project, tmp_path, capsys):
    source = tmp_path / "theirs.json"
    source.write_text(json.dumps(coco_listing_every_image(project, "astronaut.png")))
    assert cli.main(["import-coco", str(source), "--project", str(project), "--replace"]) == 0
    out = capsys.readouterr().out
    assert "imported masks for 4 images" in out and "left as they were" not in out and "backed up in" in out
    assert cli.main(["export", "--project", str(project)]) == 0
    assert exported_per_image(project) == Counter({"astronaut.png": 1})


# -- case 12: commands that run no network do not load torch ---------------------------------------------------
LIGHT_COMMANDS = """
import sys
from engine.cli import main
for args in COMMANDS:
    try:
        code = main(args)
    except SystemExit as stop:  # --help and argument errors
        code = stop.code
    print('RESULT', code, 'torch' in sys.modules, flush=True)
"""


def test_export_import_cache_help_and_argument_errors_do_not_load_torch(project, tmp_path):
    import os
    import subprocess
    import sys

    source = tmp_path / "theirs.json"
    source.write_text(json.dumps(coco_listing_every_image(project, "astronaut.png")))
    commands = [["--help"], ["export", "--bogus"], ["distill", "--project"], ["import-coco", "--help"],
                ["export", "--project", str(project)],
                ["export", "--project", str(project), "--labels", str(tmp_path / "labels")],
                ["import-coco", str(source), "--project", str(project)],
                ["import-coco", str(tmp_path / "missing.json"), "--project", str(project)],
                ["cache", "--project", str(project), "--prune"]]
    code = f"COMMANDS = {commands!r}\n{LIGHT_COMMANDS}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert [code for code, _ in results] == ["0", "2", "2", "0", "0", "0", "0", "2", "0"], done.stdout + done.stderr
    assert [loaded for _, loaded in results] == ["False"] * len(commands), done.stdout


# -- case 12: one run decodes a large image once ---------------------------------------------------------------
@pytest.fixture()
def counted_decodes(monkeypatch):
    import engine.io.images

    decoded = []
    real = engine.io.images.load_image

    def counting(path, *args, **kwargs):
        decoded.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(engine.io.images, "load_image", counting)
    return decoded


def test_a_run_and_a_retrain_decode_a_large_image_once(tmp_path, counted_decodes):
    import numpy as np
    from PIL import Image
    from skimage import data

    from engine.orchestration.pipeline import RunConfig, distill, run

    folder = tmp_path / "large"
    folder.mkdir()
    Image.fromarray(np.array(Image.fromarray(data.astronaut()).resize((3000, 3000)))).save(folder / "large.jpg")
    project = tmp_path / "p"
    run(folder, project, RunConfig(weights="random", input_size=56, num_classes=2, device="cpu"))
    assert counted_decodes == ["large.jpg"]  # proposals, filtering, self-training, prediction, overview: one decode
    counted_decodes.clear()
    distill(project, device="cpu")
    assert counted_decodes == ["large.jpg"]


def test_decoding_once_reuses_only_the_same_bytes_and_ends_with_its_block(tmp_path, counted_decodes):
    import numpy as np
    from PIL import Image

    from engine.io.images import decoding_once, load_image_once

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path)
    with decoding_once():
        first = load_image_once(path)
        assert load_image_once(path) is first and not first.flags.writeable
        Image.fromarray(np.full((40, 60, 3), 9, np.uint8)).save(path)  # the file changed: decoded again
        changed = load_image_once(path)
        assert changed.shape == (40, 60, 3) and int(changed[0, 0, 0]) == 9
    outside = load_image_once(path)
    assert outside is not changed  # outside a block nothing is kept
    assert counted_decodes == ["a.png"] * 3


# -- case 11: messages name what is wrong and where ------------------------------------------------------------
def test_a_foreign_head_file_names_the_file_and_the_real_project_without_torchs_advice(project, capsys):
    import pickle

    head = project / "models" / "head_final.pt"
    head.parent.mkdir(exist_ok=True)
    head.write_bytes(pickle.dumps({"state_dict": Counter(a=1)}))  # Python objects other than tensors
    assert cli.main(["predict", "--project", str(project), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(head) in err and f"maskdistill distill --project {project.absolute()}" in err
    assert "weights_only" not in err and "DIR" not in err and "Traceback" not in err


def test_a_damaged_predictions_file_and_a_missing_project_name_the_real_project(project, tmp_path, capsys):
    from engine.atomic import ProjectFileError
    from engine.state.project import load_image_predictions

    damaged = project / "predictions" / "img.npz"
    damaged.parent.mkdir(exist_ok=True)
    damaged.write_bytes(b"not an npz")
    with pytest.raises(ProjectFileError) as raised:
        load_image_predictions(damaged)
    assert f"maskdistill predict --project {project.absolute()}" in str(raised.value)
    assert cli.main(["export", "--project", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err
    assert f"--project {tmp_path / 'elsewhere'}" in err and "DIR" not in err


def test_a_missing_entry_is_never_reported_as_a_bare_key(monkeypatch, tmp_path, capsys):
    import engine.orchestration.project_commands

    def missing_entry(*args, **kwargs):
        return {}["a"]

    monkeypatch.setattr(engine.orchestration.project_commands, "export_project", missing_entry)
    assert cli.main(["export", "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err != "maskdistill: error: a" and "'a'" in err and "missing" in err
