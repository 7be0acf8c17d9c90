"""Executors of the per-image step: the local one keeps the folder's order and resumes after a cancel; the Ray
one (a local Ray of 2 CPUs started here) writes exactly the files of a local run with the same settings."""
from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from engine import cli
from engine.io.images import discover_images
from engine.orchestration.image_step import ImageOutcome, build_extractor, gather
from engine.orchestration.outcome import Cancelled
from engine.orchestration.pipeline import RunConfig, extract_and_propose, run
from engine.state.project import Project
from helpers import MECHANICS, make_folder

# pooled embeddings: no extra forward pass per mask, so actors start and finish quickly; the CPU on both sides,
# so a machine with a GPU compares like with like (a local Ray of CPUs only gives its actors no GPU)
SETTINGS = {**MECHANICS, "embedding": "pooled", "device": "cpu", "proposals": "segments"}  # what run resolves auto to
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("executor_images"))


def test_gather_puts_outcomes_in_the_folder_order_whatever_order_they_came(folder):
    discovery = discover_images(folder)
    outcomes = [ImageOutcome(0, entry={"image_id": "a"}), ImageOutcome(1, skipped={"relative_path": "b.png",
                                                                                   "reason": "truncated"}),
                ImageOutcome(2, entry={"image_id": "c"}), ImageOutcome(3, entry={"image_id": "d"})]
    random.Random(0).shuffle(outcomes)  # as Ray actors may return them
    entries, skipped = gather(discovery, outcomes)
    assert [e["image_id"] for e in entries] == ["a", "c", "d"]
    assert skipped == [{"relative_path": "b.png", "reason": "truncated"}]


def test_local_executor_keeps_the_order_and_resumes_a_cancelled_run(folder, tmp_path):
    config = RunConfig(**SETTINGS)
    extractor = build_extractor(config)
    discovery = discover_images(folder)
    project = Project(tmp_path / "cancelled")
    reported = []

    def cancel_after_two(stage, done, total):
        reported.append(done)
        if done == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        extract_and_propose(project, discovery, extractor, config, cancel_after_two)
    first_batch = [record.image_id for record in discovery.images[:config.batch_size]]
    written = sorted(path.stem for path in project.proposals_dir.glob("*.npz"))
    assert reported == [0, 1, 2] and written == sorted(first_batch)
    stamps = {path: path.stat().st_mtime_ns for path in project.proposals_dir.glob("*.npz")}

    entries, skipped = extract_and_propose(project, discovery, extractor, config)
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # finished images were not redone
    assert [e["relative_path"] for e in entries] == [r.relative_path for r in discovery.images] and skipped == []
    uninterrupted = extract_and_propose(Project(tmp_path / "whole"), discovery, extractor, config)
    assert (entries, skipped) == uninterrupted


def test_ray_needs_its_extra_and_says_so_before_any_work(folder, tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "ray" else real_find_spec(name, *args))
    assert cli.main(["run", str(folder), "--project", str(tmp_path / "cli"), "--ray"]) == 2
    assert "--ray needs the ray extra: pip install 'maskdistill-napari[ray]'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    with pytest.raises(RuntimeError, match=r"maskdistill-napari\[ray\]"):
        run(folder, tmp_path / "api", RunConfig(**SETTINGS), ray_address="auto")
    assert not (tmp_path / "cli").exists() and not (tmp_path / "api").exists()


def test_ray_option_takes_an_optional_address():
    parse = cli.build_parser().parse_args
    assert parse(["run", "f", "-p", "d"]).ray is None
    assert parse(["run", "f", "-p", "d", "--ray"]).ray == "auto"
    assert parse(["run", "f", "-p", "d", "--ray", "ray://head:10001"]).ray == "ray://head:10001"


def test_ray_run_writes_the_local_runs_files(folder, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    local = run(folder, tmp_path / "local", RunConfig(**SETTINGS))

    import engine.orchestration.image_step

    def decoded_on_the_driver(*args, **kwargs):
        raise AssertionError("the Ray run decoded an image in the driver process")

    # the driver must not do the per-image work itself: its own decoder now fails, the actors' does not
    monkeypatch.setattr(engine.orchestration.image_step, "load_image_once", decoded_on_the_driver)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=200 * 1024 ** 2,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # the actors import this checkout's engine
    try:
        reported = []
        remote = run(folder, tmp_path / "ray", RunConfig(**SETTINGS), progress=lambda *a: reported.append(a),
                     ray_address="auto")
    finally:
        ray.shutdown()
    assert remote.images == local.images == 4 and remote.masks == local.masks > 0
    assert [done for stage, done, _ in reported if stage == "images"] == [0, 1, 2, 3, 4]
    assert "backbone" in remote.timings  # the actors' stage seconds reach the driver's report
    ray_coco, local_coco = tmp_path / "ray" / "annotations.json", tmp_path / "local" / "annotations.json"
    assert ray_coco.read_bytes() == local_coco.read_bytes()
    assert (tmp_path / "ray" / "images.json").read_bytes() == (tmp_path / "local" / "images.json").read_bytes()
    local_files = sorted((tmp_path / "local" / "proposals").glob("*.npz"))
    assert [p.name for p in local_files] == sorted(p.name for p in (tmp_path / "ray" / "proposals").glob("*.npz"))
    for path in local_files:
        assert (tmp_path / "ray" / "proposals" / path.name).read_bytes() == path.read_bytes(), path.name
