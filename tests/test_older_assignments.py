"""assignments.json entries of the older format ("image_id/index" positions, from before masks had keys) are no
longer translated (issue 19 item 2): they match no mask, are ignored, kept in the file, and said once per
export, never blocking the project."""
from __future__ import annotations

import json

import numpy as np

from engine.atomic import read_json
from engine.cli import main
from engine.orchestration.pipeline import RunConfig, run
from engine.orchestration.project_commands import export_project
from engine.state.label_state import LabelState
from engine.state.project import Project, load_image_proposals
from helpers import MECHANICS, make_folder


def _project(tmp_path):
    folder, project = make_folder(tmp_path / "images"), tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    return folder, project


def _first_mask(project):
    """(entry, its first proposal's position key, its mask key, its cluster's category, another category)."""
    clusters = read_json(project / "clusters.json")
    mask = clusters["masks"][0]
    entry = next(e for e in read_json(project / "images.json") if e["image_id"] == mask["image_id"])
    state = LabelState.load(project)
    own = state.category_of_cluster[mask["cluster"]]
    other = next(c for c in state.category_of_cluster.values() if c != own)
    return entry, f"{mask['image_id']}/{mask['index']}", mask["key"], own, other


def _categories(project, entry):
    proposals, _, _ = load_image_proposals(Project(project).proposals_path(entry["image_id"]),
                                           (entry["height"], entry["width"]))
    return LabelState.load(project).proposal_categories(entry, proposals.masks)


def test_positional_entries_are_ignored_kept_and_said(tmp_path, capsys):
    _, project = _project(tmp_path)
    entry, position, _, own, other = _first_mask(project)
    (project / "assignments.json").write_text(json.dumps({position: other}))  # the older layout

    assert _categories(project, entry)[0] == own  # was: translated through clusters.json to `other`
    note = LabelState.load(project).assignments_note()
    assert note == (f"{project / 'assignments.json'} holds 1 entries of an older format that no longer match any "
                    "mask; they are kept in the file but ignored (split or re-assign those masks again in the "
                    "review if needed)")
    assert note in export_project(project)["coco"]["warnings"]
    assert main(["export", "--project", str(project)]) == 0
    assert note in capsys.readouterr().out
    assert json.loads((project / "assignments.json").read_text()) == {position: other}  # never rewritten


def test_a_rerun_keeps_positional_entries_beside_the_mask_keys(tmp_path):
    folder, project = _project(tmp_path)
    entry, position, key, own, other = _first_mask(project)
    (project / "assignments.json").write_text(json.dumps({"version": 2, "by_mask": {position: other, key: other}}))
    assert _categories(project, entry)[0] == other  # the mask key decides
    assert "holds 1 entries of an older format" in LabelState.load(project).assignments_note()

    run(folder, project, RunConfig(**{**MECHANICS, "distill": False, "num_classes": 3}))  # re-binds, re-saves
    kept = read_json(project / "assignments.json")["by_mask"]
    assert kept[position] == other and key in kept
    assert np.all(_categories(project, entry) >= 1)


def test_no_note_without_positional_entries(tmp_path):
    _, project = _project(tmp_path)
    assert LabelState.load(project).assignments_note() is None
    assert not any("older format" in w for w in export_project(project)["coco"]["warnings"])
