"""Is an image crowded with many small objects (nuclei, cells, coins, stars), and how large are they? The
``auto`` proposals choose ``dense`` for a folder of such images, with their object size, and ``segments``
otherwise, before any network runs (the feature pass itself depends on the object size).

The reading is classical and cheap (one Otsu threshold of the grey image at <= 512 px, its connected
components): an image is crowded when its foreground (the minority side of the threshold) falls into many
components and its three largest hold less than ``LARGEST_SHARE`` of it. A photo's foreground is a few large
regions plus specks (its three largest components held at least 0.50 of it on feral_cats' 195 photos, real-dev's
13 and the 15 example photos), a crowded image's is many objects of one size (at most 0.33 on generated cells;
0.40 on scikit-image's coins, 0.13 on its Hubble deep field). The object size is the median equivalent diameter
of the components. See docs/decisions.md#d-auto-proposals.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from engine.method.refine import grey_guide

WORKING_SIDE = 512  # pixels: the reading's longer side (a larger image is read downsampled)
MIN_COMPONENTS = 20  # a crowded image's foreground falls into at least this many components ...
LARGEST_SHARE = 0.45  # ... and its three largest hold less than this share of it
MIN_COMPONENT_AREA = 12  # pixels at the working size: smaller components are noise, not objects
SAMPLED_IMAGES = 8  # images read per folder (evenly spaced over its sorted list)


@dataclass(frozen=True)
class CrowdReading:
    """One image: ``components`` of the foreground (of at least MIN_COMPONENT_AREA), the share of the foreground
    its three largest hold, and the median component diameter in image pixels (None without components)."""

    components: int
    largest_share: float
    object_size: float | None

    @property
    def crowded(self) -> bool:
        return self.components >= MIN_COMPONENTS and self.largest_share < LARGEST_SHARE


@dataclass(frozen=True)
class ProposalChoice:
    """What ``auto`` chose for a folder and why (said in the run's report and project.json)."""

    method: str  # "dense" or "segments"
    object_size: float | None  # image pixels, for dense
    crowded: int  # sampled images read as crowded
    sampled: int

    def describe(self) -> str:
        reading = f"{self.crowded} of {self.sampled} sampled images crowded with small objects"
        if self.method == "dense":
            return f"proposals auto: dense, object size {self.object_size:.0f} px ({reading})"
        return f"proposals auto: segments ({reading})"


def read_crowding(image: np.ndarray) -> CrowdReading:
    """The crowding reading of one image (RGB or grey uint8, as images are loaded)."""
    from skimage.filters import threshold_otsu

    height, width = image.shape[:2]
    factor = max(1.0, max(height, width) / WORKING_SIDE)
    grey = grey_guide(image, max(1, round(height / factor)), max(1, round(width / factor)))
    smooth = ndimage.gaussian_filter(grey, 1.0)
    if not np.ptp(smooth) > 0:
        return CrowdReading(0, 1.0, None)
    foreground = smooth > threshold_otsu(smooth)
    if foreground.mean() > 0.5:  # objects rarely cover more of the frame than the background
        foreground = ~foreground
    labels, _ = ndimage.label(foreground)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas >= MIN_COMPONENT_AREA]
    if not len(areas):
        return CrowdReading(0, 1.0, None)
    largest = float(np.sort(areas)[::-1][:3].sum() / areas.sum())
    diameter = float(np.median(2.0 * np.sqrt(areas / np.pi))) * factor
    return CrowdReading(int(len(areas)), largest, diameter)


def choose_proposals(readings: list[CrowdReading]) -> ProposalChoice:
    """``dense`` when more than half of the sampled images are crowded (object size: the median of theirs),
    else ``segments``."""
    crowded = [r for r in readings if r.crowded]
    if readings and len(crowded) * 2 > len(readings):
        size = float(np.median([r.object_size for r in crowded]))
        return ProposalChoice("dense", round(size, 1), len(crowded), len(readings))
    return ProposalChoice("segments", None, len(crowded), len(readings))


def sample_evenly(items: list, count: int = SAMPLED_IMAGES) -> list:
    """At most ``count`` items spread evenly over ``items`` (first and last included)."""
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]
