"""The folder's lone objects teach where an object's centre lies (engine.method.centres); over the staged
predictions of the whole folder, groups of touching objects are cut at those centres and every object is ranked
by how well its shape agrees with them. ``predict_project`` shows every image's final objects to
``GroupCutting.observe`` as it stages them (lone objects become examples, concave ones candidates), then
``cut_staged`` fits the depth model once and, where it is used, rewrites every staged image. Two passes, because
the model needs the whole folder's lone objects before it can judge any image's objects; the second reads back
only what the first staged (one image at a time, no masks held in memory between them)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from engine.masks import LabelMasks
from engine.method.centres import (
    CROP_CENTRE_SPACING,
    CentreExamples,
    cut_groups,
    cut_in_crops,
    fit_centre_model,
    group_candidates,
    rank_by_depth_agreement,
)
from engine.method.closer_look import embedded_small_objects
from engine.method.features import dequantise_rows, quantise_rows
from engine.method.instances import object_solidities
from engine.state.label_state import CORRECTION_WEIGHT
from engine.state.project import load_image_predictions, save_image_predictions


class GroupCutting:
    """One folder's lone-object examples and group candidates, gathered while its predictions are staged."""

    def __init__(self, seed: int = 0):
        self.examples = CentreExamples(seed)
        # image id -> (images.json entry, positions in the staged order of the candidates, of the user's objects)
        self.images: dict = {}

    def observe(self, entry: dict, features, masks: LabelMasks, solidity: dict, skip=()) -> None:
        """An image's final objects, as staged (ranked), with their solidities; ``skip``: ids never cut (the
        user's objects carried from a correction; they still teach what one object is)."""
        self.examples.add(features.tokens, features.grid_hw, masks, solidity)
        users = {position for position, object_id in enumerate(masks.ids) if int(object_id) in skip}
        self.images[entry["image_id"]] = (entry, set(group_candidates(masks, solidity, skip)), users)

    def observe_reviewed(self, features, masks) -> None:
        """A corrected image's objects the user reviewed (an (m, H, W) stack): one object each, whatever their shape,
        weighted as a corrected image is in training (CORRECTION_WEIGHT)."""
        self.examples.add_reviewed(features.tokens, features.grid_hw, LabelMasks.from_stack(masks), CORRECTION_WEIGHT)

    def cut_staged(self, staging: Path, features_of, crops=None) -> dict | None:
        """Fit the model; where it is used, cut the candidates of each staged image, rank its objects by their
        agreement with the predicted depth (the user's keep their scores) and write it again
        (``features_of(entry)``: the image's cached features); then, with ``crops`` ((image_of(entry) -> pixels,
        a closer look's embed)), cut the small objects again at centres learnt on their crops
        (:meth:`cut_in_crops`). Returns the fit's summary with ``objects_cut``, ``images_changed`` (images where a
        group was cut), ``objects_added`` (pieces beyond the objects cut, the crops' included) and ``in_crops``
        (:meth:`cut_in_crops`'s summary, or None); None when no image was observed (dense objects, which rank by
        their own score)."""
        if not self.images:
            return None
        fit = fit_centre_model(self.examples)
        cut_objects, changed, added, in_crops = 0, 0, 0, None
        if fit.model is not None:
            for image_id, (entry, candidates, users) in self.images.items():
                path = staging / f"{image_id}.npz"
                _, stored, classes, scores = load_image_predictions(path)
                if not len(stored):
                    continue
                masks = LabelMasks.from_stack(stored)  # ids 1..n: position + 1
                features = features_of(entry)
                depth = fit.model.depth_map(features.tokens, features.grid_hw, masks.labels.shape)
                others = set(range(len(masks))) - candidates - users  # compact ones, cut where the pieces agree
                masks, classes, scores, cut = cut_groups(masks, classes, scores, depth,
                                                         fit.model.min_centre_distance(masks.labels.shape), candidates,
                                                         others)
                users_ids = {p + 1 for p in users}
                masks, classes, scores = rank_by_depth_agreement(masks, classes, scores, depth, skip=users_ids)
                save_image_predictions(path, masks.painted(classes), masks, classes, scores)
                cut_objects, changed, added = cut_objects + cut, changed + (cut > 0), added + len(masks) - len(stored)
                # where the user's objects are in the order just written
                self.images[image_id] = (entry, candidates, {i for i, v in enumerate(masks.ids) if v in users_ids})
            if crops is not None:
                in_crops = self.cut_in_crops(staging, *crops)
                added += in_crops["objects_added"]
        return {**fit.summary(), "objects_cut": cut_objects, "images_changed": changed, "objects_added": added,
                "in_crops": in_crops}

    def cut_in_crops(self, staging: Path, image_of, embed) -> dict:
        """The staged images' small objects (those a closer look takes, not the user's) cut again at centres
        learnt on their own crops (engine.method.centres.cut_in_crops): a first pass embeds each in a crop of its
        box (engine.method.closer_look.embedded_small_objects), keeps the lone ones as examples and the crops'
        tokens in the staging folder (int8, removed at the end); the model is fitted on those examples (its centres
        CROP_CENTRE_SPACING typical radii apart) and, where it is used, a second pass cuts and writes each image
        again. Returns the fit's summary with ``objects_cut``, ``images_changed``, ``objects_added`` and
        ``seconds``."""
        started = time.perf_counter()
        examples, store = CentreExamples(self.examples.seed), staging / CROP_TOKENS_DIR
        store.mkdir(exist_ok=True)
        for image_id, (entry, _, users) in self.images.items():
            _, stored, _, _ = load_image_predictions(staging / f"{image_id}.npz")
            if not len(stored):
                continue
            masks = LabelMasks.from_stack(stored)
            embedded = embedded_small_objects(embed, image_of(entry), masks.labels, masks.ids,
                                              skip={p + 1 for p in users})
            for value, (window, tokens, grid_hw) in embedded.items():
                x0, y0, x1, y1 = window
                own = LabelMasks((masks.labels[y0:y1, x0:x1] == value).astype(np.int32))
                examples.add(tokens, grid_hw, own, object_solidities(own))
            if embedded:
                _save_crop_tokens(store / f"{image_id}.npz", embedded)
        fit = fit_centre_model(examples, spacing=CROP_CENTRE_SPACING)
        cut_objects, changed, added = 0, 0, 0
        for image_id in self.images if fit.model is not None else ():
            path = store / f"{image_id}.npz"
            if not path.exists():
                continue
            staged = staging / f"{image_id}.npz"
            _, stored, classes, scores = load_image_predictions(staged)
            crops = {value - 1: crop for value, crop in _load_crop_tokens(path).items()}  # ids 1..n: position + 1
            masks, classes, scores, cut = cut_in_crops(LabelMasks.from_stack(stored), classes, scores, crops,
                                                       fit.model)
            if cut:
                save_image_predictions(staged, masks.painted(classes), masks, classes, scores)
                cut_objects, changed, added = cut_objects + cut, changed + 1, added + len(masks) - len(stored)
        shutil.rmtree(store, ignore_errors=True)
        return {**fit.summary(), "objects_cut": cut_objects, "images_changed": changed, "objects_added": added,
                "seconds": round(time.perf_counter() - started, 2)}


CROP_TOKENS_DIR = "crop_tokens"  # in the staging folder, between cut_in_crops' two passes


def _save_crop_tokens(path: Path, embedded: dict) -> None:
    """One image's embedded crops ({label value: (window, tokens, grid_hw)}; objects may share a crop), each crop
    once, its tokens int8 per patch as the feature cache keeps them (engine.method.features.quantise_rows)."""
    crops = list({id(crop[1]): crop for crop in embedded.values()}.values())
    index = {id(crop[1]): i for i, crop in enumerate(crops)}
    quantised, scale, mean = quantise_rows(np.concatenate([tokens for _, tokens, _ in crops]))
    np.savez(path, values=np.array(list(embedded), np.int64),
             crop_of_value=np.array([index[id(crop[1])] for crop in embedded.values()], np.int64),
             windows=np.array([window for window, _, _ in crops], np.int64),
             grids=np.array([grid_hw for _, _, grid_hw in crops], np.int64), tokens_q=quantised, tokens_scale=scale,
             tokens_mean=mean)


def _load_crop_tokens(path: Path) -> dict:
    """What :func:`_save_crop_tokens` wrote, the tokens float again."""
    with np.load(path) as data:
        tokens = dequantise_rows(data["tokens_q"], data["tokens_scale"], data["tokens_mean"])
        grids = [tuple(int(v) for v in grid) for grid in data["grids"]]
        ends = np.cumsum([gh * gw for gh, gw in grids])
        crops = [(tuple(int(v) for v in window), rows, grid)
                 for window, grid, rows in zip(data["windows"], grids, np.split(tokens, ends[:-1]))]
        return {int(value): crops[int(i)] for value, i in zip(data["values"], data["crop_of_value"])}
