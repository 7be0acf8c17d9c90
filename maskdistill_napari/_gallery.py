"""Numbers and pictures for the categories panel, computed in a worker: masks per category and small crops
of a category's representative masks (from clusters.json) with the mask outlined. Both run in workers
and import ``engine.api`` there."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from scipy import ndimage

THUMB = 96


def category_sizes(project_dir) -> dict:
    """{category id: number of masks exported under it right now} over every image of the project."""
    from engine.api import iter_exported, open_project

    project, _, entries, clusters = open_project(project_dir)
    counts: Counter = Counter()
    for _, _, classes, _ in iter_exported(project, entries, clusters, "current"):
        counts.update(int(c) for c in classes)
    return dict(counts)


def representative_crops(project_dir, category_id: int, rgb: tuple, limit: int = 4) -> list:
    """Up to ``limit`` RGB thumbnails (uint8, THUMB px on the longer side) of the category's representatives."""
    from engine.api import ImageSource, label_state, load_image_proposals, open_project

    project, config, entries, clusters = open_project(project_dir)
    by_id = {e["image_id"]: e for e in entries}
    bound = label_state(project.root, clusters).table.by_id().get(category_id)
    cluster = next((c for c in clusters["clusters"] if bound is not None and c["id"] == bound.cluster), None)
    crops = []
    for image_id, index in (cluster or {}).get("representatives", [])[:limit]:
        entry = by_id.get(image_id)
        if entry is None:
            continue
        proposals, _, _ = load_image_proposals(project.proposals_path(image_id), (entry["height"], entry["width"]))
        if index >= len(proposals):
            continue
        crops.append(_outlined_crop(ImageSource.of_project(config).load(entry),
                                    proposals.masks[index], rgb))
    return crops


def _outlined_crop(image: np.ndarray, mask: np.ndarray, rgb: tuple) -> np.ndarray:
    from engine.api import bbox_xywh, resize_nearest

    x, y, w, h = bbox_xywh(mask)
    pad = max(4, (w + h) // 10)
    top, left = max(0, y - pad), max(0, x - pad)
    bottom, right = min(image.shape[0], y + h + pad), min(image.shape[1], x + w + pad)
    crop, part = image[top:bottom, left:right], mask[top:bottom, left:right]
    scale = THUMB / max(crop.shape[:2])
    th, tw = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    rows = (np.arange(th) / scale).astype(int).clip(0, crop.shape[0] - 1)
    cols = (np.arange(tw) / scale).astype(int).clip(0, crop.shape[1] - 1)
    thumb = np.ascontiguousarray(crop[rows][:, cols])
    small = resize_nearest(part, th, tw)
    thumb[small & ~ndimage.binary_erosion(small, iterations=2)] = rgb
    return thumb
