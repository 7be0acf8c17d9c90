"""Corrupt project files: JSON, per-image .npz files, the segmentation head, and the CLI's error reporting.

Each damaged file must be a clear error naming the file and what to do, never a traceback or silently
wrong data.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import cli
from engine.atomic import ProjectFileError, atomic_write_json, read_json
from engine.masks import Proposals, encode_rle
from engine.method.distill import HEAD_FORMAT_VERSION, HeadConfig, PatchHead, load_head, save_head
from engine.orchestration.image_step import proposals_state
from engine.state.project import (
    load_image_predictions,
    load_image_proposals,
    save_image_predictions,
    save_image_proposals,
)

# --- JSON ------------------------------------------------------------------------------------------


def test_truncated_json_names_the_file_and_the_position(tmp_path):
    path = tmp_path / "clusters.json"
    path.write_text('{\n "k": 2,\n "clusters": [\n    {"id": 1, "name": ')
    with pytest.raises(ProjectFileError, match=r"not valid JSON \(line 4 column \d+: ") as error:
        read_json(path)
    assert str(error.value).startswith(f"{path}: ")
    assert isinstance(error.value, ValueError)  # callers that catch ValueError keep working


@pytest.mark.parametrize("content, expected", [
    (b"", "not valid JSON (the file is empty)"),
    (b"\xff\xfe{}", "not valid JSON (not UTF-8 text"),
    (b"{} trailing", "not valid JSON (line 1 column 4: Extra data"),
])
def test_other_damage_is_named(tmp_path, content, expected):
    path = tmp_path / "images.json"
    path.write_bytes(content)
    with pytest.raises(ProjectFileError) as error:
        read_json(path)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_the_wrong_top_level_type_is_a_clear_error(tmp_path):
    path = tmp_path / "categories.json"
    atomic_write_json(path, [1, 2])
    with pytest.raises(ProjectFileError, match="expected a JSON object, found a list") as error:
        read_json(path, expected=dict)
    assert str(path) in str(error.value)
    atomic_write_json(path, {"a": 1})
    with pytest.raises(ProjectFileError, match="expected a list, found a JSON object"):
        read_json(path, expected=list)
    assert read_json(path, expected=dict) == {"a": 1} and read_json(path) == {"a": 1}


def test_unreadable_and_missing_files(tmp_path):
    folder = tmp_path / "images.json"
    folder.mkdir()
    with pytest.raises(ProjectFileError, match="cannot be read") as error:
        read_json(folder)
    assert str(folder) in str(error.value)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "nowhere.json")


# --- per-image proposals and predictions -----------------------------------------------------------


def _proposals(hw=(12, 10), n=3):
    masks = np.zeros((n, *hw), bool)
    for i in range(n):
        masks[i, i:i + 4, 2 * i:2 * i + 3] = True
    patch = np.zeros((n, 3, 3), bool)
    patch[:, 1, 1] = True
    return Proposals(masks, patch, np.linspace(0.2, 0.9, n).astype(np.float32), [f"split:{i}" for i in range(n)])


def _rewrite_npz(path, **changes):
    """Rewrite an .npz with some entries replaced (or removed, for value None)."""
    with np.load(path) as data:
        entries = {key: data[key] for key in data.files}
    for key, value in changes.items():
        if value is None:
            entries.pop(key)
        else:
            entries[key] = value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **entries)
    Path(path).write_bytes(buffer.getvalue())


@pytest.fixture()
def proposals_file(tmp_path):
    path = tmp_path / "proposals" / "img.npz"
    save_image_proposals(path, _proposals(), np.ones((3, 4), np.float32), "key-1")
    return path


def test_a_good_proposals_file_loads_and_has_its_key(proposals_file):
    proposals, embeddings, key = load_image_proposals(proposals_file, (12, 10))
    assert key == "key-1" and proposals.masks.shape == (3, 12, 10) and embeddings.shape == (3, 4)
    assert np.array_equal(proposals.masks, _proposals().masks)
    assert proposals_state(proposals_file, "key-1", (12, 10)) == (3, None)


def test_empty_proposals_are_not_damage(tmp_path):
    path = tmp_path / "empty.npz"
    empty = Proposals.empty((12, 10), (3, 3)) if hasattr(Proposals, "empty") else \
        Proposals(np.zeros((0, 12, 10), bool), np.zeros((0, 3, 3), bool), np.zeros(0, np.float32), [])
    save_image_proposals(path, empty, np.zeros((0, 4), np.float32), "key-0")
    proposals, _, key = load_image_proposals(path, (12, 10))
    assert len(proposals.masks) == 0 and proposals.masks.shape == (0, 12, 10) and key == "key-0"
    assert proposals_state(path, "key-0", (12, 10)) == (0, None)


def _save_npy(path):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))  # one plain array, not an .npz archive
    Path(path).write_bytes(buffer.getvalue())


def _truncate(path, keep=0.5):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("damage, expected", [
    (lambda p: _truncate(p), "not a readable proposals file"),
    (lambda p: Path(p).write_bytes(b"garbage" * 20), "not a readable proposals file"),
    (lambda p: _save_npy(p), "not a readable proposals file"),
    (lambda p: _rewrite_npz(p, embeddings=None), "no 'embeddings' entry"),
    (lambda p: _rewrite_npz(p, rles=np.array(["{\"size\": [12, 10], \"counts\": \"zz~~\"}"] * 3)),
     "mask 0 has garbled compressed RLE counts"),
    (lambda p: _rewrite_npz(p, rles=np.array(["{\"size\": [12, 10], \"co"] * 3)), "mask 0 is not valid JSON"),
    (lambda p: _rewrite_npz(p, rles=np.array([json.dumps(encode_rle(np.ones((12, 10), bool)))[:-8] + '"}'] * 3)),
     "mask 0 "),
    (lambda p: _rewrite_npz(p, scores=np.zeros(2, np.float32)), "arrays disagree"),
    (lambda p: _rewrite_npz(p, embeddings=np.full((3, 4), np.nan, np.float32)), "not finite"),
])
def test_damaged_proposals_are_named_and_recomputed(proposals_file, damage, expected):
    damage(proposals_file)
    with pytest.raises(ProjectFileError) as error:
        load_image_proposals(proposals_file, (12, 10))
    message = str(error.value)
    assert str(proposals_file) in message and expected in message, message
    assert "re-run `maskdistill run` to recompute" in message
    count, problem = proposals_state(proposals_file, "key-1", (12, 10))
    assert count is None and str(proposals_file) in problem  # so the pipeline recomputes it, and says so


def test_a_crc_damaged_member_is_caught(proposals_file):
    """Flip bytes inside the compressed rles member: zlib or the CRC check must notice."""
    with zipfile.ZipFile(proposals_file) as archive:
        info = archive.getinfo("rles.npy")
    data = bytearray(proposals_file.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 10
    for i in range(start, min(start + 16, start + info.compress_size)):
        data[i] ^= 0x5A
    proposals_file.write_bytes(bytes(data))
    with pytest.raises(ProjectFileError, match="maskdistill run"):
        load_image_proposals(proposals_file, (12, 10))
    assert proposals_state(proposals_file, "key-1", (12, 10))[0] is None


def test_proposals_of_another_image_size_are_refused(proposals_file):
    with pytest.raises(ProjectFileError, match="maskdistill run"):
        load_image_proposals(proposals_file, (20, 10))


def test_a_missing_proposals_file_is_computed_without_a_damage_note(tmp_path):
    assert proposals_state(tmp_path / "nowhere.npz", "key-1", (12, 10)) == (None, None)


@pytest.fixture()
def predictions_file(tmp_path):
    path = tmp_path / "predictions" / "img.npz"
    masks = _proposals().masks
    semantic = masks.argmax(0).astype(np.uint16)
    save_image_predictions(path, semantic, masks, [1, 2, 1], [0.9, 0.8, 0.7])
    return path


def test_a_good_predictions_file_loads(predictions_file):
    semantic, masks, classes, scores = load_image_predictions(predictions_file)
    assert semantic.shape == (12, 10) and np.array_equal(masks, _proposals().masks)
    assert classes.tolist() == [1, 2, 1] and np.allclose(scores, [0.9, 0.8, 0.7])


@pytest.mark.parametrize("damage, expected", [
    (lambda p: _truncate(p, 0.7), "not a readable predictions file"),
    (lambda p: _rewrite_npz(p, classes=None), "no 'classes' entry"),
    (lambda p: _rewrite_npz(p, rles=np.array(['{"size": [12, 10], "counts": "\\u0001"}'] * 3)), "mask 0 "),
    (lambda p: _rewrite_npz(p, rles=np.array([json.dumps(encode_rle(np.ones((4, 4), bool)))] * 3)),
     "mask 0 has an RLE of size 4x4 on an image of 10x12"),
    (lambda p: _rewrite_npz(p, scores=np.zeros(5, np.float32)), "arrays disagree"),
])
def test_damaged_predictions_are_named(predictions_file, damage, expected):
    damage(predictions_file)
    with pytest.raises(ProjectFileError) as error:
        load_image_predictions(predictions_file)
    message = str(error.value)
    assert str(predictions_file) in message and expected in message, message
    assert "run `maskdistill predict" in message


# --- the segmentation head -------------------------------------------------------------------------

IDENTITY = {"backbone": "dino_vits16", "weights": "random", "input_size": 56}


@pytest.fixture()
def head_file(tmp_path):
    torch.manual_seed(0)
    head = PatchHead(8, 2, hidden=0)
    path = tmp_path / "models" / "head_final.pt"
    save_head(path, head, HeadConfig(hidden=0), IDENTITY)
    return path, head


def test_a_saved_head_loads_with_its_weights(head_file):
    path, head = head_file
    loaded = load_head(path, IDENTITY)
    for name, tensor in head.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["format_version"] == HEAD_FORMAT_VERSION and len(checkpoint["state_sha256"]) == 64


def test_garbled_weights_are_refused(head_file):
    """Overwrite the weight bytes inside the checkpoint (the zip's CRC is not checked by torch.load): the
    file still loads as a checkpoint, with weights near 3e38; the stored checksum must catch it."""
    path, head = head_file
    weight = head.state_dict()["net.0.weight"].numpy().tobytes()
    data = path.read_bytes()
    assert data.count(weight) == 1
    path.write_bytes(data.replace(weight, b"\x7f" * len(weight)))
    with pytest.raises(ProjectFileError) as error:
        load_head(path, IDENTITY)
    message = str(error.value)
    assert str(path) in message and "checksum" in message
    assert f"retrain with: maskdistill distill --project {path.parent.parent}" in message


def test_non_finite_weights_are_refused(head_file, tmp_path):
    path, _ = head_file
    head = PatchHead(8, 2, hidden=0)
    with torch.no_grad():
        head.net[0].weight[0, 0] = float("nan")
    save_head(path, head, HeadConfig(hidden=0), IDENTITY)  # the checksum matches: the NaN was saved
    with pytest.raises(ProjectFileError, match="not finite") as error:
        load_head(path, IDENTITY)
    assert str(path) in str(error.value) and "maskdistill distill" in str(error.value)


@pytest.mark.parametrize("damage", [
    lambda p: _truncate(p, 0.6),
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(b"not a checkpoint at all" * 10),
])
def test_unreadable_checkpoints_are_named(head_file, damage):
    path, _ = head_file
    damage(path)
    with pytest.raises(ProjectFileError) as error:
        load_head(path, IDENTITY)
    message = str(error.value)
    assert str(path) in message and f"retrain with: maskdistill distill --project {path.parent.parent}" in message


def test_an_old_format_is_refused_with_the_fix(head_file):
    path, head = head_file
    buffer = io.BytesIO()
    torch.save({"format_version": 1, "num_classes": 2, "dim": 8, "config": {"hidden": 0}, "features": IDENTITY,
                "state_dict": head.state_dict()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="format 1 is not supported.*maskdistill distill"):
        load_head(path, IDENTITY)


def test_other_features_are_refused(head_file):
    path, _ = head_file
    with pytest.raises(ValueError, match="trained on other features"):
        load_head(path, {**IDENTITY, "input_size": 224})


# --- the command line ------------------------------------------------------------------------------


def _fake_export(project, output=None, **_):
    """Stands in for pipeline.export_project: writes the project's annotations the way it does."""
    from engine.io.coco import build_coco, write_coco

    path = Path(output) if output else Path(project) / "annotations.json"
    counts = write_coco(build_coco([{"id": 1, "file_name": "a.png", "width": 4, "height": 4}], [],
                                   [{"id": 1, "name": "a"}], "/x", "t"), path)
    return {"path": str(path), "coco": {**counts, "warnings": []}}


def test_a_read_only_project_is_an_error_not_a_traceback(tmp_path, monkeypatch, capsys):
    import engine.orchestration.project_commands

    monkeypatch.setattr(engine.orchestration.project_commands, "export_project", _fake_export)
    project = tmp_path / "project"
    project.mkdir()
    (project / "annotations.json").write_text("{}")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)  # what a read-only folder does to the atomic rename
    assert cli.main(["export", "--project", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskdistill: error: ") and "Traceback" not in err
    assert str(project / "annotations.json") in err and "Permission denied" in err
    assert (project / "annotations.json").read_text() == "{}"
    assert [p.name for p in project.iterdir()] == ["annotations.json"]  # no temporary file left


def test_a_read_only_folder_for_real(tmp_path, monkeypatch, capsys):
    import engine.orchestration.project_commands

    monkeypatch.setattr(engine.orchestration.project_commands, "export_project", _fake_export)
    project = tmp_path / "project"
    project.mkdir()
    project.chmod(0o555)
    try:
        probe = project / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: chmod does not stop writes (the monkeypatched test covers this)")
        assert cli.main(["export", "--project", str(project)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("maskdistill: error: ") and "annotations.json" in err
    finally:
        project.chmod(0o755)


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device"),
    ProjectFileError("/p/clusters.json: not valid JSON (line 1 column 2: x)"),
    FileNotFoundError(2, "No such file or directory", "/p/images.json"),
])
def test_file_errors_are_reported_with_rc_2(monkeypatch, capsys, tmp_path, error):
    import engine.orchestration.project_commands

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(engine.orchestration.project_commands, "export_project", fail)
    assert cli.main(["export", "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskdistill: error: ") and "Traceback" not in err
    assert (getattr(error, "strerror", None) or str(error)) in err
    if getattr(error, "filename", None):
        assert "/p/images.json: No such file or directory" in err


def test_a_bad_coco_file_for_import_is_reported(monkeypatch, capsys, tmp_path):
    import engine.orchestration.project_commands
    from engine.io.coco import iter_coco_images

    def importer(project, coco, replace=False):
        iter_coco_images(coco)
        raise AssertionError("a bad file must be refused")

    monkeypatch.setattr(engine.orchestration.project_commands, "import_annotations", importer)
    coco = tmp_path / "theirs.json"
    coco.write_text("[]")
    assert cli.main(["import-coco", str(coco), "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskdistill: error: ") and str(coco) in err and "found a list" in err


def test_import_coco_passes_replace_and_prints_the_summary(monkeypatch, capsys, tmp_path):
    import engine.orchestration.project_commands

    calls = []

    def importer(project, coco, replace=False):
        calls.append(replace)
        summary = {"images": 2, "categories": 3, "unmatched": ["x.png"]}
        if replace:
            summary.update(backup=str(Path(project) / "backups" / "1"), warnings=["category 4 unused"], kept=[])
        else:
            summary.update(kept=["a.png", "b.png"], backup=None)
        return summary

    monkeypatch.setattr(engine.orchestration.project_commands, "import_annotations", importer)
    assert cli.main(["import-coco", "c.json", "--project", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "imported masks for 2 images and 3 categories" in out and "not in the project: x.png" in out
    assert "kept the existing corrections of 2 image(s): a.png, b.png" in out and "backed up" not in out
    assert cli.main(["import-coco", "c.json", "--project", str(tmp_path), "--replace"]) == 0
    out = capsys.readouterr().out
    assert "backed up in " + str(tmp_path / "backups" / "1") in out and "warning: category 4 unused" in out
    assert "kept" not in out
    assert calls == [False, True]
    with pytest.raises(SystemExit):
        cli.main(["import-coco", "--help"])
    assert "backed up in DIR/backups/" in " ".join(capsys.readouterr().out.split())
