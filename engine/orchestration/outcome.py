"""What the engine's steps report back: progress, cancellation, seconds per stage and a run's result.

Torch-free on purpose: a GUI that runs the engine in another process (the napari plugin does) receives these
objects pickled, and unpickling one must not load torch into the GUI's process.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.orchestration.views import SECOND_SCALE, view_options

Progress = Callable[[str, int, int], None]  # (stage, done, total); "images"' total shrinks by each unreadable file


class Cancelled(Exception):
    """Raise this from a progress callback to stop a step; the project stays resumable (a GUI's Cancel)."""


def no_progress(stage: str, done: int, total: int) -> None:
    pass


class StageTimer:
    """Seconds per stage of a run (report.json's timings_s): ``with timer("stage"):`` or :meth:`add`."""

    def __init__(self):
        self.seconds: dict = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        """Count seconds spent elsewhere (a Ray actor's) under ``stage``."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


@dataclass
class RunResult:
    project: Path
    images: int
    skipped: list
    masks: int
    clusters: int
    suggested_k: int
    annotations: Path
    overview: Path
    timings: dict = field(default_factory=dict)
    rebinding: list = field(default_factory=list)  # how the user's categories moved to the new clusters
    warnings: list = field(default_factory=list)
    exported: int = 0  # masks in annotations.json (masks above: the proposals that were clustered)
    proposal_choice: str | None = None  # what --proposals auto chose for the folder, in words
    k_stands_out: bool = True  # False: no K stood out in the silhouette and the suggested K is the largest allowed
    k_chosen: bool = False  # the user set the number of classes (the suggestion is then only information)
    overlapping: int = 0  # of the exported masks, the views' overlapping objects (RunConfig.second_scale, mirror_view)

    @property
    def exported_words(self) -> str:
        """The exported masks in words: the image's own, and the views' overlapping objects beside them."""
        own = self.exported - self.overlapping
        return f"{own} masks" + (f" (+ {self.overlapping} overlapping objects)" if self.overlapping else "")

    @property
    def suggestion_words(self) -> str:
        if self.k_stands_out:
            return f"suggested K {self.suggested_k}"
        if self.k_chosen:
            return f"suggested K {self.suggested_k}, the most allowed: no K stands out in the silhouette"
        return (f"suggested K {self.suggested_k}, the most allowed, since no K stands out in the silhouette: "
                "merge the classes that are one, or set the number of classes")


def describe_group_cut(summary: dict | None) -> str | None:
    """One line, in a new user's words, on what a prediction's group cutting (engine.orchestration.group_cutting)
    did, why not where it did not, and what is left to the user; None without a summary (dense objects, an older
    project)."""
    if not summary:
        return None
    reviewed = summary.get("reviewed_objects", 0)  # absent in a project predicted before the user's counted
    lone = (f"{summary['lone_objects']} masks that are clearly single objects"
            + (f" ({reviewed} of them yours)" if reviewed else ""))
    if summary["used"]:
        crops = summary.get("in_crops")  # absent in a project predicted before the crops' cut
        return (f"touching objects split apart, as {lone} show where one object ends: "
                f"{summary['objects_cut']} masks split in {summary['images_changed']} images (checked on objects it "
                f"did not learn from: R^2 {summary['held_out_r2']})"
                + ("" if not crops else
                   f"; small ones split again in close-up, as {crops['lone_objects']} close-ups"
                   + (f" and {crops['known_groups']} pairs of them pasted side by side" if crops.get("known_groups")
                      else "")
                   + f" taught: {crops['objects_cut']} masks (R^2 {crops['held_out_r2']})" if crops["used"] else
                   f"; small ones left as they are: what {crops['lone_objects']} close-ups taught does not carry "
                   f"over (R^2 {crops['held_out_r2']} < {crops['min_held_out_r2']})"))
    if summary["held_out_r2"] is None:
        return (f"touching objects may still share a mask: {lone}, {summary['min_lone_objects']} are needed to "
                "learn where one object ends and the next begins; split such masks by hand (or add more images like "
                "these)")
    return (f"touching objects may still share a mask: where one object ends, as {lone} show it, does not hold "
            f"for the others (R^2 {summary['held_out_r2']} < {summary['min_held_out_r2']}: objects of many kinds?); "
            "split such masks by hand")


def describe_folder_passes(summary: dict) -> list:
    """The lines on what the folder-level passes over the final objects did (a predict summary's ``group_cut``,
    ``typical`` and ``overlapping``), the passes that left none out: what the CLI prints and the plugin's retrain
    panel shows."""
    lines = [describe_group_cut(summary.get("group_cut")), describe_typical(summary.get("typical")),
             describe_overlapping(summary.get("overlapping")), describe_typical_crops(summary.get("typical_crops"))]
    lines += [describe_view_missing(view) for view in summary.get("views_missing", [])]
    return [line for line in lines if line]


def describe_view_missing(view: str) -> str:
    return (f"nothing from the {view}: its project has no finished prediction; run `maskdistill run` again with "
            f"{view_options(view)} to make it")


def describe_overlapping(summary: dict | None) -> str | None:
    """One line on the views' overlapping objects (engine.orchestration.overlapping); None without them."""
    if summary is None:
        return None
    views = summary.get("by_view") or {SECOND_SCALE: summary["objects"]}  # older projects' reports lack it
    names = [f"the {view}" for view in views]
    found_by = " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]
    line = (f"{summary['objects']} overlapping objects added in {summary['images']} images: what {found_by} found "
            "that no mask holds (small objects inside groups and background)")
    if len(views) > 1:
        line += " (" + ", ".join(f"{n} from the {view}" for view, n in views.items()) + ")"
    line += ", exported beside the masks at half their score and outlined in the review"
    if summary.get("first_objects"):
        line += f"; {summary['found_again']} of {summary['first_objects']} masks found again at the second scale, "
        line += ("each ranked by that and by how like the folder's masks found again it looks"
                 if summary.get("learnt_agreement") else "the others ranked below them")
    return line


def describe_typical_crops(summary: dict | None) -> str | None:
    """One line on the crops that weighed each image's first masks and the views' objects together
    (engine.orchestration.overlapping); None where none did."""
    if not summary:
        return None
    return (f"the first masks of {summary['images']} images, theirs and the views' together ({summary['crops']} "
            "masks), looked at whole, alone and in their surroundings, and ranked by how like the folder's first "
            "masks they look")


def describe_typical(summary: dict | None) -> str | None:
    """One line, in a new user's words, on the folder's typicality ranking (engine.orchestration.typical_ranking);
    None without a summary (dense objects, an older project)."""
    if not summary:
        return None
    if not summary["used"]:
        return (f"each image's masks kept in their own order: learning what the folder's images share "
                f"needs {summary['min_images']} images with masks (this folder has {summary['images']})")
    looked = (f", its first {summary['crops']} masks looked at whole, alone and in their surroundings"
              if summary.get("crops") else "")
    return (f"masks reordered so that each image's first is the most like the object the folder's "
            f"{summary['images']} images share{looked}: a different first mask in {summary['images_reordered']} "
            "images")
