"""Groups of touching objects cut at the centres the folder's lone objects teach (engine.method.centres), over
the staged predictions of a whole folder: ``predict_project`` shows every image's final objects to
``GroupCutting.observe`` as it stages them (lone objects become examples, concave ones candidates), then
``cut_staged`` fits the depth model once and rewrites only the images with a candidate it cuts. Two passes,
because the model needs the whole folder's lone objects before it can cut any image's group; the second reads
back only what the first staged (one image at a time, no masks held in memory between them)."""
from __future__ import annotations

from pathlib import Path

from engine.masks import LabelMasks
from engine.method.centres import CentreExamples, cut_groups, fit_centre_model, group_candidates
from engine.state.project import load_image_predictions, save_image_predictions


class GroupCutting:
    """One folder's lone-object examples and group candidates, gathered while its predictions are staged."""

    def __init__(self, seed: int = 0):
        self.examples = CentreExamples(seed)
        self.candidates: dict = {}  # image id -> (images.json entry, candidate positions in the staged order)

    def observe(self, entry: dict, features, masks: LabelMasks, solidity: dict, skip=()) -> None:
        """An image's final objects, as staged (ranked), with their solidities; ``skip``: ids never cut (the
        user's objects carried from a correction; they still teach what one object is)."""
        self.examples.add(features.tokens, features.grid_hw, masks, solidity)
        positions = group_candidates(masks, solidity, skip)
        if positions:
            self.candidates[entry["image_id"]] = (entry, set(positions))

    def cut_staged(self, staging: Path, features_of) -> dict:
        """Fit the model; where it is used, cut the candidates of each staged image and write it again
        (``features_of(entry)``: the image's cached features). Returns the fit's summary with ``objects_cut`` and
        ``images_changed``."""
        fit = fit_centre_model(self.examples)
        cut_objects, changed = 0, 0
        if fit.model is not None:
            for image_id, (entry, positions) in self.candidates.items():
                path = staging / f"{image_id}.npz"
                _, stored, classes, scores = load_image_predictions(path)
                masks = LabelMasks.from_stack(stored)
                features = features_of(entry)
                depth = fit.model.depth_map(features.tokens, features.grid_hw, masks.labels.shape)
                masks, classes, scores, cut = cut_groups(masks, classes, scores, depth,
                                                         fit.model.min_centre_distance(masks.labels.shape), positions)
                if cut:
                    save_image_predictions(path, masks.painted(classes), masks, classes, scores)
                    cut_objects, changed = cut_objects + cut, changed + 1
        return {**fit.summary(), "objects_cut": cut_objects, "images_changed": changed}

