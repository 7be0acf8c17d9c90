"""overview.png: a contact sheet of the images with mask outlines coloured by cluster."""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from engine.masks import resize_nearest

THUMB_SIZE = 240
MAX_THUMBS = 48


def cluster_colour(cluster: int) -> tuple:
    """Distinct, stable colours: golden-ratio hue steps at full saturation."""
    r, g, b = colorsys.hsv_to_rgb((cluster * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def category_colour(category) -> tuple:
    """RGB 0-255 of a category (engine.state.corrections.Category) in the layers, the overview and the listing:
    the user's colour, else its cluster colour by id."""
    return tuple(category.colour) if category.colour else cluster_colour(category.id - 1)


def _thumbnail(image: np.ndarray, masks: list, clusters: list) -> Image.Image:
    height, width = image.shape[:2]
    scale = THUMB_SIZE / max(height, width)
    th, tw = max(1, round(height * scale)), max(1, round(width * scale))
    thumb = np.asarray(Image.fromarray(image).resize((tw, th), Image.Resampling.BILINEAR)).copy()
    for mask, cluster in zip(masks, clusters):
        small = resize_nearest(mask, th, tw)
        edge = small & ~ndimage.binary_erosion(small, iterations=2)
        thumb[edge] = cluster_colour(cluster)
    picture = Image.fromarray(thumb)
    draw = ImageDraw.Draw(picture)
    for mask, cluster in zip(masks, clusters):
        small = resize_nearest(mask, th, tw)
        if small.any():
            y, x = ndimage.center_of_mass(small)
            draw.rectangle([x - 9, y - 7, x + 9, y + 7], fill=(0, 0, 0))
            draw.text((x - 6, y - 6), str(cluster + 1), fill=cluster_colour(cluster))
    return picture


def render_overview(items, num_classes: int, title: str = "") -> Image.Image:
    """A grid of thumbnails with a legend of mask counts per class.

    ``items``: iterable of (name, load_image, masks, class indices from 0); ``load_image()`` is only called for
    the first MAX_THUMBS images, the others are only counted.
    """
    thumbs: list = []
    cluster_sizes = [0] * num_classes
    for name, load, masks, clusters in items:
        for cluster in clusters:
            cluster_sizes[cluster] += 1
        if len(thumbs) < MAX_THUMBS:
            thumbs.append((name, _thumbnail(load(), masks, clusters)))
    title = f"{title}: {sum(cluster_sizes)} masks in {num_classes} classes (outline colour = class)"
    columns = max(1, min(6, len(thumbs)))
    rows = max(1, -(-len(thumbs) // columns))
    cell_w, cell_h = THUMB_SIZE + 8, THUMB_SIZE + 22
    legend_h = 24 + 18 * (-(-len(cluster_sizes) // 4))
    sheet = Image.new("RGB", (columns * cell_w, 24 + rows * cell_h + legend_h), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), title, fill=(255, 255, 255))
    for i, (name, thumb) in enumerate(thumbs):
        x, y = (i % columns) * cell_w + 4, 24 + (i // columns) * cell_h
        sheet.paste(thumb, (x, y))
        draw.text((x, y + thumb.height + 4), name[:38], fill=(220, 220, 220))
    top = 24 + rows * cell_h
    for cluster, size in enumerate(cluster_sizes):
        x, y = (cluster % 4) * 180 + 6, top + 6 + 18 * (cluster // 4)
        draw.rectangle([x, y, x + 12, y + 12], fill=cluster_colour(cluster))
        draw.text((x + 18, y), f"class {cluster + 1}: {size} masks", fill=(255, 255, 255))
    return sheet
