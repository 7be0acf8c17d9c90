"""The engine's public face: what the napari plugin, scripts and notebooks call.

Everything a user can do is here as a plain function over a project folder; the modules behind it may
change. The plugin imports only this module (and never Qt-free internals such as clustering or distill).
"""
from __future__ import annotations

from .backbones import BACKBONES, DEFAULT_BACKBONE
from .coco import annotation_record, build_coco, write_coco  # the plugin's Labels-layer writer
from .corrections import ImageCorrection, load_categories  # the plugin: label maps, the category table
from .export import iter_exported  # the plugin: masks per category
from .images import discover_images, load_image
from .masks import bbox_xywh, resize_nearest  # the plugin: gallery thumbnails
from .overview import cluster_colour  # the plugin: default category colours
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
from .project import load_image_proposals  # the plugin: representative masks
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
__all__ += [  # needed by the napari plugin (maskdistill_napari) until the facade offers higher-level calls
    "ImageCorrection", "annotation_record", "bbox_xywh", "build_coco", "cluster_colour", "iter_exported",
    "load_categories", "load_image_proposals", "resize_nearest", "write_coco",
]
