"""The second scale's final objects (RunConfig.second_scale) over the first run's, once both are predicted: those no
final object of the first run holds, at half their score, each of the category of the first run's objects under
most of its pixels, and the first run's objects the second scale does not find again ranked down
(engine.method.second_scale). They are stored beside each image's predictions
(``Project.overlapping_path``, the predictions' format) and the label state adds them to the export and the scores;
the review's one label map per image shows them as a layer of their own.
"""
from __future__ import annotations

import shutil

import numpy as np

from engine.masks import mask_rle
from engine.method.second_scale import SCORE_WEIGHT, agreement_weights, categories_under, scale_iou, unheld_in
from engine.state.project import Project, load_image_predictions, save_image_predictions, weigh_image_predictions
from engine.state.schema import read_images


def centres_gate(distilled: dict) -> dict | None:
    """The first run's learnt-centres decisions, for its second scale to follow ({"image": used, "crops": used or
    None}); None where it made none (dense objects). Whether the folder's lone objects teach where an object ends is
    the folder's question: at 672 px feral_cats' held-out R^2 sat on the gate (0.294-0.315) and rounding decided."""
    cut = distilled.get("group_cut")
    if not cut:
        return None
    return {"image": bool(cut["used"]), "crops": (cut.get("in_crops") or {}).get("used")}


def add_overlapping_objects(project: Project, entries: list) -> dict:
    """Each image's overlapping objects written beside its predictions (all of them replaced at once), and its
    predicted objects' scores weighed by whether the second scale finds them again. Returns {"overlapping":
    {"images": images with some, "objects": their number, "first_objects": the predicted objects compared,
    "found_again": those of them the second scale found again} or None, "second_scale_missing": the run asked for a
    second scale whose project has no finished prediction}. An image whose pixels changed since the
    second scale's run is left out until the next run."""
    config = project.read_config().get("config", {})
    target = project.overlapping_dir
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    finer = Project(project.second_scale_dir)
    ready = (finer.predictions_dir / "stamp.json").exists() and finer.images_path.exists()
    if not config.get("second_scale") or not ready:
        shutil.rmtree(target, ignore_errors=True)
        return {"overlapping": None, "second_scale_missing": bool(config.get("second_scale"))}
    hashes = {e["image_id"]: e.get("pixel_hash") for e in read_images(finer.images_path)}
    images, objects, first_objects, found_again = 0, 0, 0, 0
    for entry in entries:
        image_id = entry["image_id"]
        first_path, finer_path = project.predictions_path(image_id), finer.predictions_path(image_id)
        if hashes.get(image_id) != entry.get("pixel_hash") or not first_path.exists() or not finer_path.exists():
            continue
        semantic, first, _, _ = load_image_predictions(first_path)
        _, finer_masks, _, finer_scores = load_image_predictions(finer_path)
        overlap = scale_iou([mask_rle(first, i) for i in range(len(first))],
                            [mask_rle(finer_masks, i) for i in range(len(finer_masks))])
        weights = agreement_weights(overlap)
        weigh_image_predictions(first_path, weights)  # the objects both scales find on top
        first_objects, found_again = first_objects + len(weights), found_again + int((weights == 1).sum())
        added = unheld_in(overlap)
        categories = categories_under(semantic, finer_masks[added]) if len(added) else np.zeros(0, int)
        added, categories = added[categories > 0], categories[categories > 0]  # an image without objects: none
        if not len(added):
            continue
        path = project.overlapping_path(image_id, staging)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image_predictions(path, np.zeros(semantic.shape, np.uint16), finer_masks[added], categories,
                               np.asarray(finer_scores, np.float32)[added] * SCORE_WEIGHT)
        images, objects = images + 1, objects + len(added)
    shutil.rmtree(target, ignore_errors=True)
    if staging.exists():
        staging.rename(target)
    return {"overlapping": {"images": images, "objects": objects, "first_objects": first_objects,
                            "found_again": found_again}, "second_scale_missing": False}
