"""The per-image step on a Ray cluster: Ray Data ``map_batches`` over a pool of actors.

Each actor builds its own feature extractor once (one GPU per actor when the cluster has GPUs, else one CPU
and one torch thread per actor) and runs engine.orchestration.image_step.ProposalStep on whole batches of the
run: a Ray row is one batch of ``--batch-size`` images, so every image meets the same batch-mates, and the
same forward passes, as in a local run. Actors write each image's features and proposals into the project
folder themselves, which is why the project and image folders must be on a filesystem every node sees at the
same path. Only the images.json entries travel back, as JSON; the driver keeps the run lock, reports progress
as rows arrive and does everything after (clustering, head training, export).

``ray`` is imported here only, when a run asks for it (the ``ray`` extra).
"""
from __future__ import annotations

import json
from typing import Callable

import numpy as np

from engine.orchestration.image_step import ImageOutcome, ImageTask, ProposalStep, build_extractor
from engine.orchestration.outcome import StageTimer

RAY_MISSING = "running on Ray needs the ray extra: pip install 'maskdistill-napari[ray]'"


def import_ray():
    """The ray module with Ray Data, or a RuntimeError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the data extra: pyarrow, pandas)
    except ImportError as error:
        raise RuntimeError(f"{RAY_MISSING} ({error})") from error
    return ray


def connect(ray, address: str) -> bool:
    """Join the Ray that ``address`` names; True when this call initialised Ray (and so shuts it down).

    A Ray already initialised in this process is used as it is. "auto": RAY_ADDRESS, else the cluster last
    started on this machine (`ray start`), else a new local Ray. "local": always a new local Ray. Anything else
    is an address for ray.init: "ray://head:10001" (Ray Client) or "head:6379".
    """
    if ray.is_initialized():
        return False
    ray.init(address=None if address == "auto" else address)
    return True


class ProposalActor:
    """A Ray Data callable class: one extractor per actor, one batch of images per call."""

    def __init__(self, project_root: str, config, cpu_threads: int | None):
        from engine.device import configure_cpu_threads

        self.timer = StageTimer()
        extractor = build_extractor(config)
        if extractor.device.type == "cpu" and cpu_threads:
            configure_cpu_threads(cpu_threads)  # one thread per reserved CPU: actors share the node's cores
        self.step = ProposalStep(project_root, config, extractor, self.timer)

    def __call__(self, batch: dict) -> dict:
        outcomes, seconds = [], []
        for tasks_json in batch["tasks"]:
            self.timer.seconds.clear()
            tasks = [ImageTask.from_dict(task) for task in json.loads(tasks_json)]
            done = self.step(tasks)
            outcomes += [json.dumps(outcome.to_dict()) for outcome in done]
            # the batch's stage seconds ride on its first row, so the driver adds each batch's once
            seconds += [json.dumps(self.timer.seconds)] + ["{}"] * (len(done) - 1)
        return {"outcome": np.array(outcomes, dtype=object), "seconds": np.array(seconds, dtype=object)}


class RayExecutor:
    """Runs the batches on a Ray cluster (see the module's doc); ``map`` as in engine.orchestration.executors."""

    def __init__(self, address: str, project_root, config, timer=None):
        self.address = address
        self.project_root = str(project_root)
        self.config = config
        self.timer = timer

    def map(self, batches: list, on_done: Callable[[ImageOutcome], None]) -> list:
        if not batches:
            return []
        ray = import_ray()
        started = connect(ray, self.address)
        try:
            return self._map(ray, batches, on_done)
        finally:
            if started:
                ray.shutdown()

    def _map(self, ray, batches: list, on_done) -> list:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(gpus or cpus, len(batches)))
        rows = [{"tasks": json.dumps([task.to_dict() for task in batch])} for batch in batches]
        context = ray.data.DataContext.get_current()
        bars, context.enable_progress_bars = context.enable_progress_bars, False  # progress goes to on_done
        try:  # a dataset keeps a copy of the context it was made under
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                ProposalActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
                fn_constructor_kwargs={"project_root": self.project_root, "config": self.config,
                                       "cpu_threads": None if gpus else 1},
                num_gpus=1 if gpus else 0, num_cpus=1)
        finally:
            context.enable_progress_bars = bars
        results = iter(dataset.iter_rows())
        try:
            return [self._receive(row, on_done) for row in results]
        finally:
            close = getattr(results, "close", None)
            if close is not None:  # a cancel: stop feeding the actors
                close()

    def _receive(self, row: dict, on_done) -> ImageOutcome:
        outcome = ImageOutcome.from_dict(json.loads(row["outcome"]))
        if self.timer is not None:
            for stage, seconds in json.loads(row["seconds"]).items():
                self.timer.add(stage, seconds)
        on_done(outcome)
        return outcome
