"""The steps over a finished project that run no network: export, import of a COCO file, the feature cache's
size. Torch-free (engine.orchestration.pipeline loads torch), so `maskdistill export`, `import-coco` and
`cache` start in a fraction of a second."""
from __future__ import annotations

from pathlib import Path

from engine.output.export import export_coco, export_label_images
from engine.state.project import open_project
from engine.state.review import import_coco
from engine.state.schema import check_feature_keys


def export_project(project_dir, output=None, polygons: bool = False, labels=None, label_format: str = "png",
                   source: str = "current") -> dict:
    """What was asked of a finished project, under its lock: label images into ``labels``; COCO into ``output``,
    or into the project's annotations.json when no label folder is given either. Label images alone leave every
    COCO file as it was. Returns {"path", "coco"} for a COCO file and {"labels"} for label images."""
    project, project_config, entries, clusters = open_project(project_dir)
    image_root = Path(project_config["image_root"])
    summary: dict = {}
    with project.lock():
        if output is not None or labels is None:
            path = Path(output) if output else project.annotations_path
            summary.update(path=str(path), coco=export_coco(project, entries, clusters, image_root, source, path,
                                                            polygons))
        if labels is not None:
            summary["labels"] = export_label_images(project, entries, clusters, Path(labels), source, label_format)
    return summary


def import_annotations(project_dir, coco_path, replace: bool = False) -> dict:
    """An existing COCO file's masks as the project's starting corrections (engine.state.review.import_coco): merged
    with the user's work by default, or replacing it (after a backup) with ``replace``."""
    open_project(project_dir)
    return import_coco(project_dir, coco_path, replace=replace)


def feature_cache(project_dir, prune: bool = False) -> dict:
    """Size of the project's feature cache; with ``prune``, first delete the features no image of images.json
    uses (images gone from the folder, runs with other settings) and the files that cannot be read (damaged,
    or of an older format). Returns {"files", "bytes", "images", "used_bytes" (the files the images use),
    "mb_per_image", "pruned"}."""
    from engine.method.features import FeatureCache  # torch-free: the cache half of the module

    project, _, entries, _ = open_project(project_dir)
    check_feature_keys(project.images_path, entries)
    cache = FeatureCache(project.features_dir)
    used = {entry["feature_key"] for entry in entries}
    pruned = None
    if prune:
        with project.lock():
            pruned = cache.prune(used)
    used_bytes = cache.size(used)["bytes"]
    return {**cache.size(), "images": len(entries), "used_bytes": used_bytes,
            "mb_per_image": used_bytes / 1e6 / len(entries), "pruned": pruned}
