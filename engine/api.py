"""The engine's public face: what the napari plugin, scripts and notebooks call.

Everything a user can do is here as a plain function over a project folder; the modules behind it may
change. The plugin imports only this module (and never Qt-free internals such as clustering or distill).
"""
from __future__ import annotations

from .backbones import BACKBONES, DEFAULT_BACKBONE
from .images import discover_images, load_image
from .pipeline import (
    Cancelled,
    RunConfig,
    distill,
    evaluate_project,
    export_project,
    import_annotations,
    open_project,
    predict,
    run,
)
from .project import ProjectLockedError
from .proposals import PROPOSAL_METHODS
from .review import (
    accept_image,
    current_instances,
    discard_category,
    image_correction,
    instance_source,
    low_confidence_masks,
    merge_categories,
    recolour_category,
    reject_mask,
    rename_category,
    restore_category,
    set_image_labels,
    set_image_masks,
    split_category,
)

__all__ = [
    "BACKBONES", "DEFAULT_BACKBONE", "PROPOSAL_METHODS", "Cancelled", "ProjectLockedError", "RunConfig",
    "accept_image", "current_instances", "discard_category", "discover_images", "distill", "evaluate_project",
    "export_project", "image_correction", "import_annotations", "instance_source", "load_image",
    "low_confidence_masks", "merge_categories", "open_project", "predict", "recolour_category", "reject_mask",
    "rename_category", "restore_category", "run", "set_image_labels", "set_image_masks", "split_category",
]
