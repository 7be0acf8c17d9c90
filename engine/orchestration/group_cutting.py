"""The folder's lone objects teach where an object's centre lies (engine.method.centres); over the staged
predictions of the whole folder, groups of touching objects are cut at those centres and every object is ranked
by how well its shape agrees with them. ``predict_project`` shows every image's final objects to
``GroupCutting.observe`` as it stages them (lone objects become examples, concave ones candidates), then
``cut_staged`` fits the depth model once and, where it is used, rewrites every staged image. Two passes, because
the model needs the whole folder's lone objects before it can judge any image's objects; the second reads back
only what the first staged (one image at a time, no masks held in memory between them)."""
from __future__ import annotations

from pathlib import Path

from engine.masks import LabelMasks
from engine.method.centres import (
    CentreExamples,
    cut_groups,
    fit_centre_model,
    group_candidates,
    rank_by_depth_agreement,
)
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

    def cut_staged(self, staging: Path, features_of) -> dict | None:
        """Fit the model; where it is used, cut the candidates of each staged image, rank its objects by their
        agreement with the predicted depth (the user's keep their scores) and write it again
        (``features_of(entry)``: the image's cached features). Returns the fit's summary with ``objects_cut``,
        ``images_changed`` (images where a group was cut) and ``objects_added`` (pieces beyond the objects cut);
        None when no image was observed (dense objects, which rank by their own score)."""
        if not self.images:
            return None
        fit = fit_centre_model(self.examples)
        cut_objects, changed, added = 0, 0, 0
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
                masks, classes, scores = rank_by_depth_agreement(masks, classes, scores, depth,
                                                                 skip={p + 1 for p in users})
                save_image_predictions(path, masks.painted(classes), masks, classes, scores)
                cut_objects, changed, added = cut_objects + cut, changed + (cut > 0), added + len(masks) - len(stored)
        return {**fit.summary(), "objects_cut": cut_objects, "images_changed": changed, "objects_added": added}
