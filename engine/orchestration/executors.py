"""Who runs the per-image step (engine.orchestration.image_step) over a run's batches of images.

An executor has one method, ``map(batches, on_done)``: it runs the step on every batch, calls
``on_done(outcome)`` on the driver as each image finishes (progress; a raise there stops the run, and what
is done stays on disk) and returns every ImageOutcome. The driver sorts them into the folder's order
(image_step.gather), so the executor never changes a result. :class:`LocalExecutor` runs the batches in this
process; ``engine.orchestration.ray_executor.RayExecutor`` spreads them over a Ray cluster.
"""
from __future__ import annotations

from typing import Callable

from engine.orchestration.image_step import ImageOutcome, ProposalStep


class LocalExecutor:
    """The batches one after another in this process, with the driver's extractor: one batch in memory."""

    def __init__(self, step: ProposalStep):
        self.step = step

    def map(self, batches: list, on_done: Callable[[ImageOutcome], None]) -> list:
        outcomes = []
        for batch in batches:
            outcomes += self.step(batch, on_done)
        return outcomes


def ray_executor(address: str, project_root, config, timer=None):
    """A RayExecutor for ``address`` (engine.orchestration.ray_executor; ray is imported only there)."""
    from engine.orchestration.ray_executor import RayExecutor

    return RayExecutor(address, project_root, config, timer)
