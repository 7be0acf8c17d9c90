"""The folder's lone objects teach where an object's centre lies (engine.method.centres); over the staged
predictions of the whole folder, groups of touching objects are cut at those centres and every object is ranked
by how well its shape agrees with them. ``predict_project`` shows every image's final objects to
``GroupCutting.observe`` as it stages them (lone objects become examples, concave ones candidates), then
``cut_staged`` fits the depth model once and, where it is used, rewrites every staged image. Two passes, because
the model needs the whole folder's lone objects before it can judge any image's objects; the second reads back
only what the first staged (one image at a time, no masks held in memory between them). Then the small objects
are cut again the same way in their closer-look crops, by a second model learnt on the crops
(``GroupCutting.cut_in_crops``: a small object in a group is a few of the whole image's patches)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.masks import LabelMasks
from engine.method.centres import (
    CROP_CENTRE_SPACING,
    LONE_SOLIDITY,
    CentreExamples,
    Reservoir,
    cut_groups,
    cut_in_crops,
    fit_centre_model,
    group_candidates,
    rank_by_depth_agreement,
)
from engine.method.closer_look import CROP_CUT_MAX_SHARE, cropped, small_object_windows
from engine.method.instances import object_solidities
from engine.method.known_groups import KNOWN_GROUPS, known_group_crops
from engine.state.label_state import CORRECTION_WEIGHT
from engine.state.project import load_crop_tokens, load_image_predictions, save_crop_tokens, save_image_predictions

KNOWN_GROUPS_BATCH = 16  # known groups embedded at a time: their tokens are not all held at once


class GroupCutting:
    """One folder's lone-object examples and group candidates, gathered while its predictions are staged."""

    def __init__(self, seed: int = 0, gate: dict | None = None):
        """``gate``: {"image": bool, "crops": bool | None} decided by another run of the folder (a second scale follows
        its first run's); None: each model's own held-out R^2 decides."""
        self.examples = CentreExamples(seed)
        self.gate = gate or {}
        # image id -> (images.json entry, positions in the staged order of the candidates, of the user's objects),
        # the user's kept true through every rewrite (the folder's typicality ranking reads them after the cuts)
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

    def cut_staged(self, staging: Path, features_of, crops: CropSource | None = None) -> dict | None:
        """Fit the model; where it is used, cut the candidates of each staged image, rank its objects by their
        agreement with the predicted depth (the user's keep their scores) and write it again
        (``features_of(entry)``: the image's cached features); then, with ``crops``, cut the small objects again at
        centres learnt on their crops (:meth:`cut_in_crops`). Returns the fit's summary with ``objects_cut``,
        ``images_changed`` (images where a group was cut), ``objects_added`` (pieces beyond the objects cut, the
        crops' included) and ``in_crops`` (:meth:`cut_in_crops`'s summary, or None); None when no image was
        observed (dense objects, which rank by their own score)."""
        if not self.images:
            return None
        fit = fit_centre_model(self.examples, gate=self.gate.get("image"))
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
                self.images[image_id] = (entry, candidates, _positions_now(masks, users))
            if crops is not None:
                in_crops = self.cut_in_crops(staging, crops)
                added += in_crops["objects_added"]
        return {**fit.summary(), "objects_cut": cut_objects, "images_changed": changed, "objects_added": added,
                "in_crops": in_crops}

    def cut_in_crops(self, staging: Path, crops: CropSource) -> dict:
        """The staged images' small objects (up to CROP_CUT_MAX_SHARE of the image, at most 20 an image, best first,
        not the user's) cut again at centres learnt on their own crops (engine.method.centres.cut_in_crops): a first
        pass takes each image's crops
        (engine.method.closer_look.small_object_windows) from its memo of crops' tokens (those of a cut before) and
        the crops the recut embedded now, embedding only the missing ones, keeps in the memo the crops it reads
        (the others go), and the lone objects as examples, with the members of known groups (pairs of a sample of
        them pasted side by side: :meth:`_add_known_groups`); the model is fitted on them (its centres
        CROP_CENTRE_SPACING typical radii apart) and, where it is used, a second pass cuts and writes each image
        again. Returns the fit's summary with ``objects_cut``, ``images_changed``, ``objects_added``,
        ``crops_embedded``, ``known_groups`` (pairs pasted), ``known_groups_seconds`` and ``seconds``."""
        started = time.perf_counter()
        examples, windows, embedded = CentreExamples(self.examples.seed), {}, 0
        # (image id, window, the object's mask in it) of a seeded sample of the small lone objects: known groups
        lone = Reservoir(2 * KNOWN_GROUPS, np.random.default_rng(self.examples.seed + 3))
        for image_id, (entry, _, users) in self.images.items():
            _, stored, _, _ = load_image_predictions(staging / f"{image_id}.npz")
            masks = LabelMasks.from_stack(stored)
            path, key = crops.memo_of(entry)
            memo = load_crop_tokens(path, key)  # the crops this cut read before
            kept = set(memo)
            memo.update((window, vectors) for window, vectors in load_crop_tokens(crops.recut_of(entry), key).items()
                        if window not in memo)  # the crops the recut embedded now
            windows[image_id] = small_object_windows(masks.labels, masks.ids, skip={p + 1 for p in users},
                                                     known=memo, max_share=CROP_CUT_MAX_SHARE)
            if not windows[image_id]:
                continue
            used = list(dict.fromkeys(windows[image_id].values()))
            missing = [window for window in used if window not in memo]
            if missing:
                image = crops.image_of(entry)
                memo.update(zip(missing, crops.embed([cropped(image, window) for window in missing])))
                embedded += len(missing)
            if set(used) != kept:  # the memo keeps the crops this cut reads (a retrain reads them again)
                save_crop_tokens(path, key, {window: memo[window] for window in used})
            for value, window in windows[image_id].items():
                x0, y0, x1, y1 = window
                own = LabelMasks((masks.labels[y0:y1, x0:x1] == value).astype(np.int32))
                tokens, grid_hw = memo[window]
                solidity = object_solidities(own)
                examples.add(tokens, grid_hw, own, solidity)
                if solidity.get(1, 0.0) >= LONE_SOLIDITY and (slot := lone.slot()) is not None:
                    lone.put(slot, (image_id, window, own.labels > 0))
        known_started = time.perf_counter()
        known = self._add_known_groups(examples, lone.items, crops)
        known_seconds = time.perf_counter() - known_started
        fit = fit_centre_model(examples, spacing=CROP_CENTRE_SPACING, gate=self.gate.get("crops"))
        cut_objects, changed, added = 0, 0, 0
        model = fit.model
        for image_id, (entry, candidates, users) in self.images.items():
            if model is None or not windows[image_id]:
                continue
            memo = load_crop_tokens(*crops.memo_of(entry))
            path = staging / f"{image_id}.npz"
            _, stored, classes, scores = load_image_predictions(path)
            by_position = {value - 1: (window, *memo[window])  # ids 1..n: position + 1
                           for value, window in windows[image_id].items() if window in memo}
            masks, classes, scores, cut = cut_in_crops(LabelMasks.from_stack(stored), classes, scores, by_position,
                                                       model)
            if cut:
                save_image_predictions(path, masks.painted(classes), masks, classes, scores)
                cut_objects, changed, added = cut_objects + cut, changed + 1, added + len(masks) - len(stored)
                self.images[image_id] = (entry, candidates, _positions_now(masks, users))
        return {**fit.summary(), "objects_cut": cut_objects, "images_changed": changed, "objects_added": added,
                "crops_embedded": embedded, "known_groups": known, "known_groups_seconds": round(known_seconds, 2),
                "seconds": round(time.perf_counter() - started, 2)}

    def _add_known_groups(self, examples: CentreExamples, lone: list, crops: CropSource) -> int:
        """KNOWN_GROUPS pairs of the small lone objects ``lone`` pasted side by side
        (engine.method.known_groups.known_group_crops), embedded as crops a few at a time, their members added to
        ``examples``. Returns how many were added."""
        made = known_group_crops(lone, lambda image_id: crops.image_of(self.images[image_id][0]), KNOWN_GROUPS,
                                 np.random.default_rng(self.examples.seed + 4))
        for start in range(0, len(made), KNOWN_GROUPS_BATCH):
            batch = made[start:start + KNOWN_GROUPS_BATCH]
            for (_, labels), (tokens, grid_hw) in zip(batch, crops.embed([pixels for pixels, _ in batch])):
                examples.add_known_group(tokens, grid_hw, LabelMasks(labels))
        return len(made)


def _positions_now(masks: LabelMasks, users: set) -> set:
    """Where the user's objects (at positions ``users`` of the order before a rewrite; ids are position + 1) are in
    ``masks``, the order just written: they are never cut, only moved."""
    ids = {p + 1 for p in users}
    return {i for i, value in enumerate(masks.ids) if value in ids}


@dataclass
class CropSource:
    """Where the crops' cut gets its crops: ``image_of(entry)`` an image's pixels, ``embed`` a closer look's
    (engine.method.closer_look.crop_embedder), ``memo_of(entry)`` (path, key) of the image's memo of crops' tokens
    (the key: its features and the crop settings), ``recut_of(entry)`` the path where this prediction's recut left
    the vectors of the crops it embedded (same key; absent when it embedded none)."""

    image_of: Callable
    embed: Callable
    memo_of: Callable
    recut_of: Callable
