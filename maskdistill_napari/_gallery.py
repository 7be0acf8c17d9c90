"""Numbers and pictures for the categories panel, computed in a worker: masks per category and small crops
of masks shown under a category now (the label state's current masks, as on screen) with the mask outlined.
Both run in workers and import ``engine.api`` there."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

THUMB = 96


def category_sizes(project_dir) -> tuple:
    """({category id: number of masks exported under it right now}, {category id: overlapping objects of the
    views exported beside them}) over every image of the project (the engine keeps these counts in its
    project index: no mask is decoded here)."""
    from engine.api import category_sizes as sizes

    return sizes(project_dir), sizes(project_dir, overlapping=True)


def representative_crops(project_dir, category_id: int, rgb: tuple, limit: int = 4) -> list:
    """Up to ``limit`` RGB thumbnails (uint8, THUMB px on the longer side) of masks shown under the category now
    (engine.api.label_state: corrections > predictions > proposals, merges applied), the most confident mask of
    each image, images of the cluster's representatives first."""
    from engine.api import ImageSource, label_state, open_project

    project, config, entries, clusters = open_project(project_dir)
    state = label_state(project.root, clusters)
    bound = state.table.by_id().get(category_id)
    cluster = next((c for c in clusters["clusters"] if bound is not None and c["id"] == bound.cluster), None)
    first = [image_id for image_id, _ in (cluster or {}).get("representatives", [])]
    order = sorted(entries, key=lambda e: first.index(e["image_id"]) if e["image_id"] in first else len(first))
    images, crops = ImageSource.of_project(config), []
    for entry in order:
        found = state.instances(entry, "current")
        shown = [i for i, c in enumerate(found.categories)
                 if int(c) == category_id or state.resolve(int(c)) == category_id]
        if not shown:
            continue
        best = max(shown, key=lambda i: (float(found.scores[i]), int(found.masks[i].sum())))
        crops.append(_outlined_crop(images.load(entry), found.masks[best], rgb))
        if len(crops) >= limit:
            break
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
