"""The first run's prediction takes the second scale's final objects (RunConfig.second_scale) as overlapping
objects: those no final object of its own holds, at half their score, each of the category the first run's head
gives the pixels under it (engine.method.second_scale). They are stored beside each image's predictions
(``Project.overlapping_path``), in the same format, and the label state adds them to the export and the scores;
the review's one label map per image shows them as a layer of their own.
"""
from __future__ import annotations

import numpy as np

from engine.masks import mask_rle
from engine.method.second_scale import SCORE_WEIGHT, categories_under, unheld
from engine.state.project import Project, load_image_predictions, save_image_predictions
from engine.state.schema import read_images


class SecondScaleObjects:
    """Reads the second scale's project for the first run's prediction: :meth:`observe` each image with its head's
    category map as it is predicted, :meth:`write` once the first run's objects are final (after the folder passes,
    which move them)."""

    def __init__(self, project: Project, project_config: dict):
        self.project = project
        self.finer = None
        self._categories: dict = {}  # image id -> the finer objects' categories from the head
        self.asked = bool(project_config.get("config", {}).get("second_scale"))
        if not self.asked:
            return
        finer = Project(project.second_scale_dir)
        if (finer.predictions_dir / "stamp.json").exists() and finer.images_path.exists():
            self.finer = finer
            # an image whose pixels changed since the second scale's run is left out until the next run
            self._hashes = {e["image_id"]: e.get("pixel_hash") for e in read_images(finer.images_path)}

    @property
    def missing(self) -> bool:
        """The run asked for a second scale but its project has no finished prediction (never run, or removed)."""
        return self.asked and self.finer is None

    def _finer_objects(self, entry: dict):
        if self.finer is None or self._hashes.get(entry["image_id"]) != entry.get("pixel_hash"):
            return None
        path = self.finer.predictions_path(entry["image_id"])
        if not path.exists():
            return None
        _, masks, _, scores = load_image_predictions(path)
        return masks, scores

    def observe(self, entry: dict, head_categories: np.ndarray) -> None:
        """Remember the categories the first run's head (``head_categories``: its category map of the image, 0
        background) gives the image's finer objects."""
        found = self._finer_objects(entry)
        if found is not None and len(found[0]):
            self._categories[entry["image_id"]] = categories_under(head_categories, found[0])

    def write(self, predictions_dir, entries: list) -> dict | None:
        """Each observed image's overlapping objects into ``predictions_dir`` (the staging folder, its first-run
        objects final). Returns {"images": images with some, "objects": their number}; None without a second
        scale."""
        if self.finer is None:
            return None
        images, objects = 0, 0
        for entry in entries:
            categories = self._categories.get(entry["image_id"])
            if categories is None:
                continue
            finer_masks, finer_scores = self._finer_objects(entry)
            _, first, _, _ = load_image_predictions(predictions_dir / f"{entry['image_id']}.npz")
            added = unheld([mask_rle(first, i) for i in range(len(first))],
                           [mask_rle(finer_masks, i) for i in range(len(finer_masks))])
            added = added[categories[added] > 0]  # the head sees no object anywhere in the image: none added
            if not len(added):
                continue
            hw = (int(entry["height"]), int(entry["width"]))
            path = self.project.overlapping_path(entry["image_id"], predictions_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image_predictions(path, np.zeros(hw, np.uint16), finer_masks[added], categories[added],
                                   np.asarray(finer_scores, np.float32)[added] * SCORE_WEIGHT)
            images, objects = images + 1, objects + len(added)
        return {"images": images, "objects": objects}
