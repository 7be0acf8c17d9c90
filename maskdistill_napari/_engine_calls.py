"""The engine calls of the plugin's panels, one typed function per ``engine.api`` function, so that a reader, an
IDE or a type checker can follow a button to the engine ("find usages" of ``engine.api.rename_category`` lands
on :func:`rename_category` here, and its callers are the panels).

Each function has the engine function's signature (tests/test_plugin_engine_calls.py compares them) and returns
what it returns: an object edit returns the undo record of what it changed, a split the new category ids.
Where it runs is decided when it is called, by ``engine.api.LOADS_TORCH``: the torch-free functions (category
table edits, saving an edit, the review queue) run in the calling worker thread, those that load torch (run,
retrain, export, split, one-click object) in the engine process (_engine_process.py), so torch never loads in
napari's process. Call them in the widget's task queue (_tasks.py), never on the GUI thread: resolving the
engine function imports the engine. The engine's names are looked up when called, not bound at import, so
importing this module loads nothing of the engine.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from ._engine import without_triton

if TYPE_CHECKING:
    import numpy as np

    from engine.api import RunConfig, RunResult

ProjectDir = Union[str, os.PathLike]
Progress = Optional[Callable[[str, int, int], None]]


def _forward(proxy: Callable, *args, progress: Progress = None, cancel: threading.Event | None = None,
             **kwargs) -> Any:
    """``engine.api.<the proxy's name>(*args, **kwargs)``: in the engine process if it loads torch (with
    ``progress`` and ``cancel`` relayed), else here."""
    import engine.api

    name = proxy.__name__
    if name in engine.api.LOADS_TORCH:
        from ._engine_process import engine_process

        return engine_process().call(name, *args, progress=progress, cancel=cancel, **kwargs)
    if progress is not None:
        kwargs["progress"] = progress
    with without_triton():
        return getattr(engine.api, name)(*args, **kwargs)


# -- a run and what follows it (engine.orchestration.pipeline; engine process) ------------------------------
def run(image_folder: ProjectDir, project_dir: ProjectDir, config: RunConfig | None = None,
        progress: Progress = None, ray_address: str | None = None, *,
        cancel: threading.Event | None = None) -> RunResult:
    """engine.api.run; ``cancel`` set: the engine raises ``engine.api.Cancelled`` at its next progress report."""
    return _forward(run, image_folder, project_dir, config, progress=progress, cancel=cancel,
                    ray_address=ray_address)


def distill(project_dir: ProjectDir, progress: Progress = None, device: str = "auto", **overrides) -> dict:
    """engine.api.distill: retrain on the user's corrections; returns the engine's summary."""
    return _forward(distill, project_dir, progress=progress, device=device, **overrides)


def export_project(project_dir: ProjectDir, output: ProjectDir | None = None, polygons: bool = False,
                   labels: ProjectDir | None = None, label_format: str = "png", source: str = "current") -> dict:
    """engine.api.export_project: COCO and / or label images; returns what was written."""
    return _forward(export_project, project_dir, output, polygons, labels, label_format, source)


# -- categories (engine.state.review; split in the engine process) ------------------------------------------
def rename_category(project_dir: ProjectDir, category_id: int, name: str) -> None:
    """engine.api.rename_category."""
    return _forward(rename_category, project_dir, category_id, name)


def recolour_category(project_dir: ProjectDir, category_id: int, rgb: tuple[int, int, int]) -> None:
    """engine.api.recolour_category."""
    return _forward(recolour_category, project_dir, category_id, rgb)


def merge_categories(project_dir: ProjectDir, category_ids: list[int], into: int) -> None:
    """engine.api.merge_categories."""
    return _forward(merge_categories, project_dir, category_ids, into)


def discard_category(project_dir: ProjectDir, category_id: int, mode: str = "background") -> None:
    """engine.api.discard_category."""
    return _forward(discard_category, project_dir, category_id, mode)


def restore_category(project_dir: ProjectDir, category_id: int) -> None:
    """engine.api.restore_category."""
    return _forward(restore_category, project_dir, category_id)


def split_category(project_dir: ProjectDir, category_id: int, parts: int, seed: int = 0) -> list[int]:
    """engine.api.split_category; returns the new category ids (the first is ``category_id``)."""
    return _forward(split_category, project_dir, category_id, parts, seed)


# -- objects of an image (engine.state.review, engine.state.prompt_review) ----------------------------------
def set_image_labels(project_dir: ProjectDir, image_id: str, labels: np.ndarray, classes: dict,
                     reviewed: bool | Iterable[int] = True, scores: dict | None = None,
                     allow_discarded: bool = False) -> None:
    """engine.api.set_image_labels: an edited label map saved as the image's correction (a new object of a
    discarded category only with ``allow_discarded``: the user confirmed it)."""
    return _forward(set_image_labels, project_dir, image_id, labels, classes, reviewed, scores, allow_discarded)


def reject_object(project_dir: ProjectDir, image_id: str, instance_id: int) -> dict:
    """engine.api.reject_object; returns the undo record."""
    return _forward(reject_object, project_dir, image_id, instance_id)


def accept_object(project_dir: ProjectDir, image_id: str, instance_id: int) -> dict:
    """engine.api.accept_object; returns the undo record."""
    return _forward(accept_object, project_dir, image_id, instance_id)


def set_object_category(project_dir: ProjectDir, image_id: str, instance_id: int, category_id: int,
                        allow_discarded: bool = False) -> dict:
    """engine.api.set_object_category; returns the undo record."""
    return _forward(set_object_category, project_dir, image_id, instance_id, category_id, allow_discarded)


def accept_image(project_dir: ProjectDir, image_id: str) -> dict:
    """engine.api.accept_image; returns the undo record."""
    return _forward(accept_image, project_dir, image_id)


def add_object(project_dir: ProjectDir, image_id: str, point: tuple[float, float] | None = None,
               box: tuple[float, float, float, float] | None = None, category: int | None = None,
               allow_discarded: bool = False, closer_look: bool = True) -> dict:
    """engine.api.add_object (a click or a box, image pixels x, y; a box takes a closer look: one network pass
    on its crop); returns the undo record."""
    return _forward(add_object, project_dir, image_id, point, box, category, allow_discarded, closer_look)


def take_overlapping_object(project_dir: ProjectDir, image_id: str, label: int) -> dict:
    """engine.api.take_overlapping_object: the outlined (overlapping) object ``label`` made an object of the image,
    as a box's object; returns the undo record."""
    return _forward(take_overlapping_object, project_dir, image_id, label)


def refine_object(project_dir: ProjectDir, image_id: str, instance_id: int,
                  positive: Iterable[tuple[float, float]] = (), negative: Iterable[tuple[float, float]] = (),
                  box: tuple[float, float, float, float] | None = None, closer_look: bool = True,
                  newest: str | None = None) -> dict:
    """engine.api.refine_object: the object being made by clicks remade from all its positive and negative
    points (image pixels x, y), only growing after a positive ``newest`` point and only shrinking after a
    negative one; returns the undo record, with the changed window of the label map."""
    return _forward(refine_object, project_dir, image_id, instance_id, positive, negative, box, closer_look, newest)


def grow_object(project_dir: ProjectDir, image_id: str, instance_id: int) -> dict:
    """engine.api.grow_object: the object becomes the whole it is a part of (its parent in the image's candidate
    tree); returns the undo record, with the changed window of the label map."""
    return _forward(grow_object, project_dir, image_id, instance_id)


def shrink_object(project_dir: ProjectDir, image_id: str, instance_id: int) -> dict:
    """engine.api.shrink_object: the object becomes its largest part; returns the undo record."""
    return _forward(shrink_object, project_dir, image_id, instance_id)


def merge_objects(project_dir: ProjectDir, image_id: str, instance_ids: Iterable[int],
                  category_id: int | None = None, allow_discarded: bool = False) -> dict:
    """engine.api.merge_objects: the objects joined into the largest; returns the undo record."""
    return _forward(merge_objects, project_dir, image_id, instance_ids, category_id, allow_discarded)


def split_object(project_dir: ProjectDir, image_id: str, instance_id: int,
                 stroke: Iterable[tuple[float, float]], width: int = 3) -> dict:
    """engine.api.split_object: the object cut along a stroke drawn across it ((row, col) points, image
    pixels); returns the undo record, with the new parts' ids (added) and the changed window of the label map."""
    return _forward(split_object, project_dir, image_id, instance_id, stroke, width)


def split_into_parts(project_dir: ProjectDir, image_id: str, instance_id: int) -> dict:
    """engine.api.split_into_parts: the object cut into the two parts the image's features see in it; returns
    the undo record, as split_object's."""
    return _forward(split_into_parts, project_dir, image_id, instance_id)


def restore_object(project_dir: ProjectDir, undo: dict) -> None:
    """engine.api.restore_object: undo one of the edits above from its record."""
    return _forward(restore_object, project_dir, undo)


def low_confidence_objects(project_dir: ProjectDir, limit: int | None = None) -> list[tuple[str, int, float]]:
    """engine.api.low_confidence_objects: the review queue, least confident first."""
    return _forward(low_confidence_objects, project_dir, limit)
