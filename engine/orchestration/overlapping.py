"""The views' final objects over the first run's, once all are predicted (RunConfig.second_scale: the whole method at
a larger input size; RunConfig.mirror_view: on the images mirrored, its objects mirrored back): those no final
object of the first run (nor of an earlier view) holds, at half their score, each of the category of the first run's
objects under most of its pixels; and the first run's objects the second scale does not find again ranked down
(engine.method.second_scale), in a folder of 50 images or more by half as much where they look like the objects it
finds again (engine.method.learnt_agreement; a second pass once every image is compared). They are stored beside
each image's predictions (``Project.overlapping_path``, the predictions' format) and the label state adds them to the
export and the scores; the review's one label map per image shows them as a layer of their own. Then, in a folder of
50 images or more, each image's first objects of both -- its own and the views' -- are seen as crops and weighed by
how like the folder's first objects they look (engine.orchestration.typical_ranking.CropTypicality): the first run
left them for this pass, as each view's run would weigh only its own (measured: the crops' gain was undone).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engine.io.images import ImageSource
from engine.masks import mask_rle
from engine.method.features import FeatureCache
from engine.method.learnt_agreement import learnt_agreement_weights, learnt_found, shape_features
from engine.method.second_scale import (
    SCORE_WEIGHT,
    agreement_weights,
    categories_under,
    found_again,
    scale_iou,
    unheld_in,
)
from engine.method.typicality import MIN_TYPICAL_IMAGES, object_embeddings
from engine.orchestration.typical_ranking import CropTypicality, typical_crop_embedder
from engine.orchestration.views import SECOND_SCALE, asked_views
from engine.state.project import (
    Project,
    load_image_predictions,
    predicted_scores,
    save_image_predictions,
    weigh_image_predictions,
)
from engine.state.schema import read_images, read_predictions_stamp


def view_decisions(distilled: dict) -> dict:
    """What the first run decided for its views' runs to follow (``first_run`` of a view's predict_project):
    {"centres": its learnt-centres decisions ({"image": used, "crops": used or None}; None where it made none:
    dense objects)}. Whether the folder's lone objects teach where an object ends is the folder's question: at 672 px
    feral_cats' held-out R^2 sat on the gate (0.294-0.315) and rounding decided."""
    cut = distilled.get("group_cut")
    return {"centres": {"image": bool(cut["used"]), "crops": (cut.get("in_crops") or {}).get("used")} if cut
            else None}


class _View:
    """A view's project and how its images relate to the first run's: the same pixels (the second scale: the same
    pixel hash) or the same file read mirrored (the same size and modification time: its stamp)."""

    def __init__(self, name: str, project: Project, mirrored: bool):
        self.name, self.project, self.mirrored = name, project, mirrored
        self.ready = (project.predictions_dir / "stamp.json").exists() and project.images_path.exists()
        self.entries = {e["image_id"]: e for e in read_images(project.images_path)} if self.ready else {}

    def objects(self, entry: dict) -> tuple | None:
        """(masks as the first run sees the image, scores) of an image, or None when this view has no prediction
        of the image as it is now."""
        seen, path = self.entries.get(entry["image_id"]), self.project.predictions_path(entry["image_id"])
        if seen is None or not path.exists():
            return None
        if self.mirrored:
            same = seen.get("stamp") is not None and seen["stamp"][:2] == (entry.get("stamp") or [])[:2]
        else:
            same = seen.get("pixel_hash") == entry.get("pixel_hash")
        if not same:
            return None
        _, masks, _, scores = load_image_predictions(path)
        masks = np.asarray(masks, bool)
        return (np.ascontiguousarray(masks[:, :, ::-1]) if self.mirrored else masks), np.asarray(scores, np.float32)


def _views(project: Project, config: dict) -> list:
    return [_View(view.name, Project(project.view_dir(view.folder)), view.mirrored) for view in asked_views(config)]


class _Compared(NamedTuple):
    """One image's first-run objects as the second scale compared them."""
    path: Path  # the image's predictions
    found: np.ndarray  # (m,) bool: found again
    shapes: np.ndarray  # (m, 6) learnt_agreement.shape_features
    embeddings: np.ndarray | None  # (m, D) typicality embeddings; None without cached features


class _Agreement:
    """The first run's objects the second scale compared, gathered over the folder, then weighed
    (engine.method.learnt_agreement): by the folder's model where it is learnt, else by each object's own vote."""

    def __init__(self, project: Project):
        self.cache = FeatureCache(project.features_dir)
        self.images: list[_Compared] = []

    def add(self, path: Path, entry: dict, masks, found: np.ndarray) -> None:
        features = self.cache.get(entry.get("feature_key", ""))
        stack = np.asarray(masks, bool)
        shapes = shape_features(stack, predicted_scores(path))
        embedded = object_embeddings(features, stack) if features is not None and len(stack) else None
        self.images.append(_Compared(path, found, shapes, embedded))

    def weights(self) -> tuple:
        """({predictions path: its objects' weights}, {"learnt": whether the folder's model weighed them,
        "first_objects", "found_again"}) over every gathered image."""
        usable = [image for image in self.images if image.embeddings is not None]
        learnt = learnt_found([i.shapes for i in usable], [i.embeddings for i in usable], [i.found for i in usable])
        p = {id(image): probability for image, probability in zip(usable, learnt or [])}
        weights = {image.path: learnt_agreement_weights(image.found, p[id(image)]) if id(image) in p else
                   agreement_weights(image.found) for image in self.images}
        return weights, {"learnt": learnt is not None, "first_objects": sum(len(i.found) for i in self.images),
                         "found_again": sum(int(i.found.sum()) for i in self.images)}


def add_overlapping_objects(project: Project, entries: list, device: str = "auto") -> dict:
    """Each image's overlapping objects written beside its predictions (all of them replaced at once), and its
    predicted objects' scores weighed by whether the second scale finds them again, in a folder of 50 images or more
    half by what the folder's objects found again look like (engine.method.learnt_agreement; the mirrored view's
    agreement is not used: measured, it moved real-dev down); then, where the run asked for views, both weighed by
    their first objects' crops (:func:`_crop_weights`; ``device``: where the crops are embedded). Returns
    {"overlapping": {"images": images with some, "objects": their number, "by_view": {view: objects},
    "first_objects": the predicted objects the second scale compared, "found_again": those of them it found again,
    "learnt_agreement": whether the folder's model weighed them} or None, "views_missing": the views asked for whose
    project has no finished prediction, "typical_crops": {"images", "crops", "seconds"} or None where no crops
    weighed the objects}. An image whose pixels changed since a view's run takes nothing from it until the next
    run."""
    project_config = project.read_config()
    asked = _views(project, project_config.get("config", {}))
    target = project.overlapping_dir
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    if not asked:
        shutil.rmtree(target, ignore_errors=True)
        return {"overlapping": None, "views_missing": [], "typical_crops": None}
    missing = [view.name for view in asked if not view.ready]
    views = [view for view in asked if view.ready]
    images, by_view, with_objects = 0, {view.name: 0 for view in views}, 0
    agreement = _Agreement(project)
    for entry in entries:
        first_path = project.predictions_path(entry["image_id"])
        if not first_path.exists():
            continue
        semantic, first, _, _ = load_image_predictions(first_path)
        held = [mask_rle(first, i) for i in range(len(first))]  # the first run's objects, then those added
        masks_added, scores_added, categories_added = [], [], []
        for view in views:
            seen = view.objects(entry)
            if seen is None:
                continue
            masks, scores = seen
            overlap = scale_iou(held, [mask_rle(masks, i) for i in range(len(masks))])
            if view.name == SECOND_SCALE:  # the objects both scales find on top, weighed once all are compared
                agreement.add(first_path, entry, first, found_again(overlap[:, :len(first)]))
            added = unheld_in(overlap)
            categories = categories_under(semantic, masks[added]) if len(added) else np.zeros(0, int)
            added, categories = added[categories > 0], categories[categories > 0]  # an image without objects: none
            held += [mask_rle(masks, i) for i in added]
            masks_added += list(masks[added])
            scores_added += list(scores[added] * SCORE_WEIGHT)
            categories_added += list(categories)
            by_view[view.name] += len(added)
        with_objects += bool(len(held))
        if not masks_added:
            continue
        path = project.overlapping_path(entry["image_id"], staging)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image_predictions(path, np.zeros(semantic.shape, np.uint16), np.stack(masks_added), categories_added,
                               np.asarray(scores_added, np.float32))
        images += 1
    weights, weighed = agreement.weights()
    crops = _crop_weights(project, project_config, entries, weights, staging, device) \
        if with_objects >= MIN_TYPICAL_IMAGES else None
    for path, image_weights in weights.items():
        weigh_image_predictions(path, image_weights)
    shutil.rmtree(target, ignore_errors=True)
    if staging.exists():
        staging.rename(target)
    overlapping = {"images": images, "objects": sum(by_view.values()), "by_view": by_view,
                   "first_objects": weighed["first_objects"], "found_again": weighed["found_again"],
                   "learnt_agreement": weighed["learnt"]} if views else None
    return {"overlapping": overlapping, "views_missing": missing, "typical_crops": crops}


def _crop_weights(project: Project, project_config: dict, entries: list, weights: dict, staging: Path,
                  device: str) -> dict | None:
    """Each image's first objects, of its predictions (scores times their ``weights``: {predictions path: the
    second scale's agreement}) and its overlapping objects (in ``staging``) together, seen as crops
    (engine.orchestration.typical_ranking.CropTypicality; the user's objects, as predictions/stamp.json lists them,
    neither looked at nor moved); ``weights`` then holds each predictions file's weights times the crops' and each
    overlapping file is weighed by its own. Returns {"images", "crops", "seconds"}, or None when no crops weighed
    them (no loadable weights, too few images looked at)."""
    embed_crops = typical_crop_embedder(project_config, ImageSource.of_project(project_config), device)
    if embed_crops is None:
        return None
    users = read_predictions_stamp(project.predictions_dir / "stamp.json").get("user_objects", {})
    crops, counts = CropTypicality(embed_crops), {}
    for entry in entries:
        first_path = project.predictions_path(entry["image_id"])
        if not first_path.exists():
            continue
        _, masks, _, _ = load_image_predictions(first_path)
        scores = predicted_scores(first_path) * weights.get(first_path, 1.0)
        counts[entry["image_id"]] = len(masks)
        added_path = project.overlapping_path(entry["image_id"], staging)
        if added_path.exists():
            _, added, _, added_scores = load_image_predictions(added_path)
            masks, scores = np.concatenate([masks, added]), np.concatenate([scores, added_scores])
        crops.look(entry["image_id"], entry, masks, scores, users.get(entry["image_id"], ()))
    factors = crops.factors()
    if factors is None:
        return None
    for entry in entries:
        factor = factors.get(entry["image_id"])
        if factor is None:
            continue
        first_path, count = project.predictions_path(entry["image_id"]), counts[entry["image_id"]]
        weights[first_path] = np.asarray(weights.get(first_path, np.ones(count, np.float32)), np.float32) * \
            factor[:count]
        if len(factor) > count:
            weigh_image_predictions(project.overlapping_path(entry["image_id"], staging), factor[count:])
    return {"images": len(factors), "crops": crops.objects, "seconds": round(crops.seconds, 2)}
