"""The engine's public face: what the napari plugin, scripts and notebooks call.

Everything a user can do is here as a plain function over a project folder; the modules behind it may
change. The plugin imports only this module. Names are loaded on first use (PEP 562), so importing the facade
is instant and a name whose module needs torch (run, distill, ...) loads it only when asked for.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "method.backbones": ["BACKBONES", "DEFAULT_BACKBONE"],
    "io.images": ["DEFAULT_PERCENTILES", "ImageError", "ImageOptions", "ImageSource", "contrast_limits",
               "discover_images", "display_name", "image_info", "load_image", "stack_planes"],
    "orchestration.pipeline": ["distill", "evaluate_project", "predict", "run"],
    "orchestration.project_commands": ["export_project", "import_annotations"],
    # torch-free: received from an engine process, and its words
    "orchestration.outcome": ["Cancelled", "RunResult", "describe_folder_passes", "describe_group_cut"],
    "orchestration.config": ["RunConfig", "setting"],  # torch-free: the plugin builds its Run form from it
    "state.project": ["ProjectLockedError", "load_image_proposals", "open_project"],
    "method.names": ["EMBEDDINGS", "PROPOSAL_CHOICES", "PROPOSAL_METHODS"],  # torch-free registry of method names
    "state.review": ["ImageObjects", "accept_image", "accept_object", "category_sizes", "current_instances",
                     "discard_category",
               "image_correction", "image_objects", "instance_source", "low_confidence_masks",
               "low_confidence_objects", "merge_categories", "overlapping_labels", "overlapping_objects",
               "recolour_category", "reject_mask",
               "reject_object",
               "rename_category", "restore_category", "restore_object", "set_image_labels", "set_image_masks",
               "set_object_category", "split_category"],
    "state.prompt_review": ["add_object", "refine_object", "take_overlapping_object"],
    "state.object_edits": ["grow_object", "merge_objects", "shrink_object", "split_into_parts",  # torch-free
                           "split_object"],
    "state.label_state": ["LabelState"],
    "state.project_index": ["project_index"],
    # lower-level pieces the napari plugin still uses (layers, gallery, writer)
    "state.corrections": ["ImageCorrection"],
    "output.overview": ["category_colour"],
    "masks": ["STROKE_WIDTH_PIXELS", "bbox_xywh", "resize_nearest",  # the plugin shows a split before it is saved
              "split_along_stroke"],
    "output.export": ["iter_exported"],
    "io.coco": ["annotation_record", "build_coco", "write_coco"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF) + ["label_state", "LOADS_TORCH"]

# The functions that load torch when called (their module imports it, or they import it for their work).
# Everything else here is torch-free, so a GUI can call it in its own process and send these to an engine
# process (the napari plugin does; tests/test_plugin_engine_boundary.py checks the list).
LOADS_TORCH = frozenset({"run", "distill", "predict", "evaluate_project", "export_project", "import_annotations",
                         "split_category", "add_object", "refine_object"})


def label_state(project_dir, clusters: dict | None = None):
    """The project's label state (engine.state.label_state.LabelState): categories after merges, discards and
    re-binding, and every image's instances as they would be exported."""
    from engine.state.label_state import LabelState

    return LabelState.load(project_dir, clusters)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"engine.{module}"), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list:
    return __all__
