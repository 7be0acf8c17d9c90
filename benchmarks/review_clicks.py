"""Clicks to a right mask: a simulated reviewer corrects a finished project through engine.api alone.

    .venv/bin/python -m benchmarks.review_clicks [--feral PATH] [--project DIR] [--real-dev PATH]
                                                 [--real-dev-project DIR] [--out runs/benchmark-review-clicks]
                                                 [--limit N] [--skip N] [--device auto] [--weights FILE|random]
                                                 [--input-size N] [--first-prompt click|box]
                                                 [--only clicks|corrections] [--seeds N]

Folders: ``--feral`` (default ``../shared/data/domains/feral_cats``) and ``--real-dev`` (default
``../shared/data/real-dev``, its mask-annotated images only), each a folder with ``images/`` and a COCO
``ground_truth.json`` with instance masks; an absent one is skipped with a message. ``--limit N``: the first N
images (by file name) of each.

Project: the engine's default run (``engine.api.run(images, project, RunConfig(...))``) made once into
``OUT/<folder>/base-project`` (kept and reused by later runs), or a finished project given with ``--project``
(feral_cats) / ``--real-dev-project``, which is never modified. The reviewer works on a fresh copy,
``OUT/<folder>/project``.

The simulated reviewer, per annotated object (as interactive-segmentation papers do: NoC, the number of
actions until a mask reaches an IoU, capped at 10). Objects are matched class-agnostically: a mask of the image
is any object whose category is exported (not discarded). The reviewer sees the ground truth and the image's
objects (``engine.api.image_objects``) and, until some object reaches IoU >= 0.8 with the annotated one or 10
actions are spent, takes the first step that applies:

1. 0 actions when an existing object already matches;
2. *grow* (``engine.api.grow_object``) the best-overlapping object when it lies mostly inside the annotated object
   (precision >= recall, precision >= 0.5), else *shrink* it (``shrink_object``) when it holds most of the annotated
   object (recall >= 0.5), again while the IoU improves (neither: go on to 3); a grow or shrink
   that does not improve it is undone (``restore_object``, one more action) and not tried again on that mask;
3. *merge* (``merge_objects``) the best object with the objects lying mostly (>= half) inside the annotated one,
   added greedily while the IoU of their union rises (a merge's result is known before it is made);
4. *click* (``add_object`` with a point) at the pixel of the missed part of the annotated object farthest from
   its boundary (distance transform; the first click is the object's interior point farthest from its boundary)
   on pixels no object holds, as add_object takes only those. When the best object is one the reviewer made by
   clicks, a further click is an *extra click* (``refine_object`` with all its points): positive at the centre of
   the largest missed free region, or negative at the centre of the largest region it holds outside the
   annotated object, whichever is wider (distance transform), undone (one more action) when it does not improve
   the IoU. Otherwise a further click makes a new object in the largest missed region, which step 3 then merges
   into the best one. A click whose new object lies mostly outside the annotated object and does not improve the
   IoU is undone (one more action). A region clicked at is not clicked at again;
5. *reject* (``reject_object``) the object holding most of the missed part when no free pixel is left to click
   (the object lies mostly outside the annotated one), so the next click can take its place.

``--first-prompt box``: before step 2, unless an object already matches at IoU 0.8, the reviewer drags the
annotated object's bounding box (``add_object`` with a box, one action: the engine takes a closer look at the
crop and takes in the generated parts lying inside the box's mask). The boxed object is kept even when its first
answer is worse than the object it replaced, as box-then-clicks protocols (SAM's, micro-sam's) keep their first
prompt (undoing it would cost one more action and leave only new clicks): every further action is an extra click
on it with its box (``refine_object`` with the box and the points), as the plugin's clicks after a box are, or a
reject of an object lying mostly outside the annotated one that holds the missed part (step 5). Like the box,
these clicks take the pixels of generated objects (never reviewed ones), so a positive click may land on those.
The default, ``click``, is the papers' protocol.

Every engine call counts as one action, a refused one (e.g. "cannot grow") and an undo included. After each
annotated object every action is undone (``restore_object``, newest first), so each object starts from the
project as the engine left it.

The correction curve (feral_cats only; real-dev has its own in benchmarks.real_dev): a simulated reviewer
corrects the first k = 0, 5, 10, 20 images (file-name order, ``real_dev.reviewer_order``) with their ground
truth (``engine.api.set_image_masks``, each object in the category on screen), the project is retrained as the
GUI's Retrain does (``engine.api.distill``) and the final predictions are scored class-agnostically (mask and box
AP50, CorLoc, mask and box recall at IoU 0.5) on the other images, the same held-out images for every k
(``real_dev.correction_curve`` on a copy of the project, ``OUT/<folder>/seed-N/corrections-project``). Once per
retraining seed (``--seeds``, default 2, from ``--seed``'s 0): the spread is the retraining's, the project's
proposals and clusters stay. With ``--limit N`` the curve takes part of the first N images (20 corrected, the
rest held out); the retraining covers every image of the project. ``--only`` runs one of the two parts.

JSON (``OUT/results.json``): ``review.clicks.<folder>.{noc50, noc80, reached50, reached80, objects, images,
limit, actions}`` (NoC means over the annotated objects, the share of objects reached at IoU 0.5 / 0.8, the
count of each kind of action), or ``review.clicks.<folder>.skipped``; ``review.corrections.<folder>.<k>.{
mask_ap50, box_ap50, corloc, mask_recall50, box_recall50, corrected, carried_to_held_out, seconds}`` (the first
seed's), ``review.corrections.<folder>.seed_spread.{seeds, <k>.<metric>.{min, max, mean}}``, ``held_out``,
``per_seed``, ``seconds``; or ``review.corrections.<folder>.skipped``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from engine.atomic import atomic_write_json, read_json  # noqa: E402

DEFAULT_FERAL = real_dev.REPO_ROOT.parent / "shared" / "data" / "domains" / "feral_cats"
MAX_ACTIONS = 10
THRESHOLDS = (0.5, 0.8)
MOSTLY_INSIDE = 0.5  # an object with at least this share of its pixels inside the annotated one is a part of it
MIN_CLICK_PIXELS = 16  # engine.state.prompt_review.MIN_OBJECT_PIXELS: a smaller free region makes no object
CORRECTED_COUNTS = (0, 5, 10, 20)  # images corrected before each retraining of the correction curve
CURVE_SEEDS = 2


# ------------------------------------------------------------------------------------------ the reviewer


class Reviewer:
    """One annotated object of one image: the reviewer's view (IoUs of the shown objects) and its actions."""

    def __init__(self, project, image_id: str, truth: np.ndarray, exported):
        self.project, self.image_id, self.truth = project, image_id, truth
        self.exported = exported  # category id -> whether its objects are shown and exported
        self.undo: list = []
        self.made: dict = {}  # id of an object the reviewer made -> {"positive": [...], "negative": [...], "box"?}
        self.counts: dict = {}
        self.history: list = []  # best IoU after 0, 1, 2, ... actions
        self.refresh()
        self.history.append(self.best_iou)

    def refresh(self) -> None:
        from engine import api

        objects = api.image_objects(self.project, self.image_id)
        labels = objects.labels
        if labels.shape != self.truth.shape:
            labels = api.resize_nearest(labels, self.truth.shape)
        self.labels = labels
        ids = [int(k) for k, c in zip(objects.ids, objects.categories) if self.exported(int(c))]
        top = max([int(objects.ids.max(initial=0)), int(labels.max(initial=0))]) + 1
        self.areas = np.bincount(labels.ravel(), minlength=top)
        self.inside = np.bincount(labels[self.truth], minlength=top)
        self.shown = ids
        self.reviewed_ids = [int(k) for k, r in zip(objects.ids, objects.reviewed) if r]
        ious = {k: self.inside[k] / (self.areas[k] + self.truth.sum() - self.inside[k]) for k in ids}
        self.best = max(ious, key=ious.get) if ious and max(ious.values()) > 0 else None
        self.best_iou = float(ious[self.best]) if self.best is not None else 0.0

    @property
    def actions(self) -> int:
        return len(self.history) - 1

    def act(self, kind: str, call, *args, **kwargs):
        """One engine call (one action): its undo record, or None when the engine refused it."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        try:
            record = call(self.project, self.image_id, *args, **kwargs)
        except (ValueError, KeyError):
            record = None
        if record is not None:
            self.undo.append(record)
        self.refresh()
        self.history.append(self.best_iou)
        return record

    def take_back(self, record) -> None:
        """Undo the last action (one more action)."""
        from engine import api

        self.counts["undo"] = self.counts.get("undo", 0) + 1
        api.restore_object(self.project, record)
        self.undo = [r for r in self.undo if r is not record]  # by identity: records hold arrays
        self.refresh()
        self.history.append(self.best_iou)

    def restore_project(self) -> None:
        """Undo every action, newest first (not counted: the next object starts from the engine's result)."""
        from engine import api

        for record in reversed(self.undo):
            api.restore_object(self.project, record)
        self.undo.clear()


def simulate(project, image_id: str, truth: np.ndarray, exported, max_actions: int = MAX_ACTIONS,
             first_prompt: str = "click") -> Reviewer:
    """Run the policy of the module docstring for one annotated object; the project is left as found.
    ``first_prompt`` "box": the first new object comes from the annotated object's box, not a click."""
    reviewer = Reviewer(project, image_id, truth, exported)
    boxed = first_prompt != "box"  # whether the box was drawn (or is not to be)
    tried: set = set()  # (step, object, its area): a grow / shrink / click that did not help is not repeated
    blocked = np.zeros_like(truth)
    try:
        while reviewer.actions < max_actions and reviewer.best_iou < THRESHOLDS[-1]:
            if not boxed:
                boxed = _box(reviewer)
                if boxed:
                    continue
            made_by_box = next((k for k, v in reviewer.made.items() if "box" in v and k in reviewer.shown), None)
            if made_by_box is not None:  # a drawn box's object is what the reviewer refines
                acted = _extra_click(reviewer, made_by_box, blocked) or _reject_blocker(reviewer)
            else:
                acted = (_grow_or_shrink(reviewer, tried) or _merge_parts(reviewer) or _click(reviewer, blocked)
                         or _reject_blocker(reviewer))
            if not acted:
                break
    finally:
        reviewer.restore_project()
    return reviewer


def _grow_or_shrink(reviewer: Reviewer, tried: set) -> bool:
    from engine import api

    best = reviewer.best
    if best is None or "box" in reviewer.made.get(best, {}):
        return False
    inside, area, truth_area = reviewer.inside[best], reviewer.areas[best], reviewer.truth.sum()
    precision, recall = inside / area, inside / truth_area
    if max(precision, recall) < MOSTLY_INSIDE:  # neither a part of it nor a whole holding it: click instead
        return False
    grow = precision >= recall  # a part grows into its whole, a region holding the object shrinks
    key = ("grow" if grow else "shrink", best, int(area))
    if key in tried:
        return False
    tried.add(key)
    before = reviewer.best_iou
    record = reviewer.act(key[0], api.grow_object if grow else api.shrink_object, best)
    if record is not None and reviewer.best_iou <= before and reviewer.actions < MAX_ACTIONS:
        reviewer.take_back(record)
    return True


def _merge_parts(reviewer: Reviewer) -> bool:
    from engine import api

    truth_area = reviewer.truth.sum()
    parts = [k for k in reviewer.shown if k != reviewer.best
             and reviewer.inside[k] >= MOSTLY_INSIDE * reviewer.areas[k] > 0]
    chosen = [reviewer.best] if reviewer.best is not None else []
    inside = sum(int(reviewer.inside[k]) for k in chosen)
    area = sum(int(reviewer.areas[k]) for k in chosen)
    best_iou = reviewer.best_iou
    for k in sorted(parts, key=lambda k: -int(reviewer.inside[k])):
        iou = (inside + reviewer.inside[k]) / (area + reviewer.areas[k] + truth_area - inside - reviewer.inside[k])
        if iou > best_iou:
            chosen, inside, area, best_iou = chosen + [k], inside + int(reviewer.inside[k]), \
                area + int(reviewer.areas[k]), iou
    if len(chosen) < 2:
        return False
    reviewer.act("merge", api.merge_objects, chosen)
    for k in chosen:  # a merged object is no longer what its clicks make (refine_object would drop the rest)
        reviewer.made.pop(k, None)
    return True


def _click(reviewer: Reviewer, blocked: np.ndarray) -> bool:
    """A click at the centre of the largest missed free region; undone when its object misses the truth."""
    from scipy import ndimage

    from engine import api

    best = reviewer.best
    if best in reviewer.made:
        return _extra_click(reviewer, best, blocked)
    free = reviewer.truth & (reviewer.labels == 0) & ~blocked
    if free.sum() < MIN_CLICK_PIXELS:
        return False
    distance = ndimage.distance_transform_edt(np.pad(free, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    before = reviewer.best_iou
    record = reviewer.act("click", api.add_object, point=(col + 0.5, row + 0.5))
    _block(blocked, row, col, distance[row, col])
    if record is None:
        return True
    new = int(record["instance_id"])
    reviewer.made[new] = {"positive": [(col + 0.5, row + 0.5)], "negative": []}
    mostly_inside = reviewer.inside[new] >= MOSTLY_INSIDE * reviewer.areas[new] if new < len(reviewer.areas) else False
    if not mostly_inside and reviewer.best_iou <= before and reviewer.actions < MAX_ACTIONS:
        reviewer.take_back(record)
        reviewer.made.pop(new, None)
    return True


def _extra_click(reviewer: Reviewer, made: int, blocked: np.ndarray) -> bool:
    """One more point on the object made by clicks (engine.api.refine_object), at the centre of its largest
    error region: positive on a missed free part (a boxed object's: a part no reviewed object holds), negative on
    a part it holds wrongly; undone when it does not improve the IoU."""
    from scipy import ndimage

    from engine import api

    own = reviewer.labels == made
    takeable = reviewer.labels == 0  # a boxed object's clicks also take generated objects' pixels, as its box did
    if "box" in reviewer.made[made]:
        takeable |= ~np.isin(reviewer.labels, reviewer.reviewed_ids)
    missed = reviewer.truth & ~own & takeable & ~blocked
    spilled = own & ~reviewer.truth & ~blocked
    regions = {kind: ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
               for kind, mask in (("positive", missed), ("negative", spilled)) if mask.sum() >= MIN_CLICK_PIXELS}
    if not regions:
        return False
    kind = max(regions, key=lambda k: float(regions[k].max()))
    distance = regions[kind]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    points = reviewer.made[made]
    tried = {**points, kind: points[kind] + [(col + 0.5, row + 0.5)]}
    before = reviewer.best_iou
    record = reviewer.act("extra click", api.refine_object, made, positive=tried["positive"],
                          negative=tried["negative"], box=points.get("box"), newest=kind)
    _block(blocked, row, col, distance[row, col])
    if record is None:
        return True
    if reviewer.best_iou <= before and reviewer.actions < MAX_ACTIONS:
        reviewer.take_back(record)
    else:
        reviewer.made[made] = tried
    return True


def _block(blocked: np.ndarray, row: int, col: int, distance: float) -> None:
    """The region around a point clicked at is not clicked at again (the same click would give the same mask)."""
    radius = max(float(distance) / 2, 1.0)
    rows, cols = np.ogrid[:blocked.shape[0], :blocked.shape[1]]
    blocked |= (rows - row) ** 2 + (cols - col) ** 2 <= radius ** 2


def _box(reviewer: Reviewer) -> bool:
    """The annotated object's bounding box as a prompt (the loop calls it only while no object matches at IoU
    0.8), kept: further clicks refine it with its box, as the plugin's do (never grow / shrink it)."""
    from engine import api

    rows, cols = np.flatnonzero(reviewer.truth.any(axis=1)), np.flatnonzero(reviewer.truth.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    record = reviewer.act("box", api.add_object, box=box)
    if record is not None:
        reviewer.made[int(record["instance_id"])] = {"positive": [], "negative": [], "box": box}
    return True


def _reject_blocker(reviewer: Reviewer) -> bool:
    """Reject the object (not the best one, mostly outside the truth) holding most of the truth's missed part."""
    from engine import api

    holders = [k for k in np.unique(reviewer.labels[reviewer.truth]).tolist()
               if k and k != reviewer.best and reviewer.inside[k] < MOSTLY_INSIDE * reviewer.areas[k]]
    if not holders:
        return False
    reviewer.act("reject", api.reject_object, max(holders, key=lambda k: int(reviewer.inside[k])))
    return True


def clicks_needed(history: list, threshold: float, cap: int = MAX_ACTIONS) -> int:
    """NoC: the first action count after which the best IoU reaches ``threshold``, else ``cap``."""
    return next((i for i, iou in enumerate(history) if iou >= threshold and i <= cap), cap)


# ------------------------------------------------------------------------------------------ folders


def base_project(images_folder: Path, given, out: Path, config, log=print) -> Path:
    """``given``, or the default run made once into ``out/base-project``; never modified afterwards."""
    from engine import api

    if given is None:
        given = out / "base-project"
        if not (given / "report.json").is_file():
            log(f"running the engine on {images_folder} into {given}")
            api.run(images_folder, given, config)
    given = Path(given)
    if not (given / "images.json").is_file():
        raise FileNotFoundError(f"{given}: no finished project (images.json missing)")
    return given


def working_project(images_folder: Path, given, out: Path, config, log=print) -> Path:
    """A fresh copy (``out/project``) of :func:`base_project`."""
    given = base_project(images_folder, given, out, config, log)
    copy = out / "project"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(given, copy, ignore=shutil.ignore_patterns("*.lock"))
    return copy


def folder_images(folder: Path, out: Path, given_project, limit: int | None, mask_sources_only: bool,
                  skip: int = 0) -> tuple:
    """(the folder's first ``limit`` mask images by file name after the first ``skip``, the image folder a new
    run takes: only those images, staged into ``out/images``, when limited and no project is given)."""
    images = [i for i in real_dev.load_ground_truth(folder, default_source=folder.name) if i.annotation == "mask"]
    if mask_sources_only:
        images = [i for i in images if i.source.split("/")[0] not in real_dev.DENSE_SOURCES]
    images = sorted(images, key=lambda i: i.file_name)[skip:][:limit]
    images_folder = folder / "images"
    if given_project is None and (limit is not None or skip):
        images_folder = real_dev.stage_images(folder / "images", [i.file_name for i in images], out / "images")
    return images, images_folder


def review_folder(folder: Path, out: Path, config, given_project=None, limit: int | None = None,
                  mask_sources_only: bool = False, log=print, first_prompt: str = "click", skip: int = 0) -> dict:
    """Simulate the reviewer on every annotated object of the folder's first ``limit`` mask images after the
    first ``skip``."""
    from engine import api
    from engine.state.schema import read_images

    images, images_folder = folder_images(folder, out, given_project, limit, mask_sources_only, skip)
    project = working_project(images_folder, given_project, out, config, log)
    entries = {e["relative_path"]: e["image_id"] for e in read_images(project / "images.json")}
    state = api.label_state(project)
    exported = lambda category: state.resolve(category) is not None  # noqa: E731
    per_object, counts, start = [], {}, time.perf_counter()
    for image in images:
        if image.file_name not in entries:
            raise KeyError(f"{project}: no image {image.file_name} (the project was made from other images)")
        for truth in image.masks:
            if truth.any():
                reviewer = simulate(project, entries[image.file_name], truth, exported, first_prompt=first_prompt)
                per_object.append({"image": image.file_name, "history": [round(v, 4) for v in reviewer.history],
                                   **{f"noc{round(t * 100)}": clicks_needed(reviewer.history, t) for t in THRESHOLDS}})
                for kind, n in reviewer.counts.items():
                    counts[kind] = counts.get(kind, 0) + n
        log(f"{folder.name}: {image.file_name} done ({len(per_object)} objects, "
            f"{time.perf_counter() - start:.0f} s)")
    summary = {"path": str(folder.resolve()), "images": len(images), "objects": len(per_object), "limit": limit,
               "skip": skip, "first_prompt": first_prompt,
               "actions": counts, "seconds": round(time.perf_counter() - start, 1)}
    for t in THRESHOLDS:
        key = round(t * 100)
        nocs = [o[f"noc{key}"] for o in per_object]
        summary[f"noc{key}"] = round(float(np.mean(nocs)), 3) if nocs else None
        summary[f"reached{key}"] = round(float(np.mean([max(o["history"][:MAX_ACTIONS + 1]) >= t
                                                         for o in per_object])), 3) if nocs else None
    atomic_write_json(out / "objects.json", per_object)
    return summary


def correction_folder(folder: Path, out: Path, config, given_project=None, limit: int | None = None,
                      seeds: int = CURVE_SEEDS, counts=CORRECTED_COUNTS, log=print) -> dict:
    """The correction curve of the module docstring on one folder, once per retraining seed (from
    ``config.seed``); the first seed's points, the spread over the seeds and every seed's curve."""
    images, images_folder = folder_images(folder, out, given_project, limit, False)
    if len(images) <= max(counts):
        return {"skipped": f"{folder.name}: the correction curve needs more than {max(counts)} mask images "
                           f"(corrected) and some to score on; {len(images)} given", "path": str(folder)}
    project = base_project(images_folder, given_project, out, config, log)
    start, per_seed = time.perf_counter(), []
    for seed in range(config.seed, config.seed + seeds):
        curve = real_dev.correction_curve(project, out / f"seed-{seed}", images, counts, log, seed=seed,
                                          device=config.device, label=f"{folder.name}, seed {seed},")
        per_seed.append({"seed": seed, **curve})
    first = per_seed[0]
    return {"path": str(folder.resolve()), "project": str(project), "images": len(images), "limit": limit,
            **first["curve"], "held_out": first["held_out"],
            "seed_spread": {"seeds": [c["seed"] for c in per_seed],
                            **real_dev.curve_spread([c["curve"] for c in per_seed])},
            "per_seed": [{"seed": c["seed"], **{k: {m: row[m] for m in real_dev.CURVE_METRICS}
                                                 for k, row in c["curve"].items()}} for c in per_seed],
            "seconds": round(time.perf_counter() - start, 1)}


def benchmark(folders: dict, out, config=None, limit: int | None = None, log=print,
              first_prompt: str = "click", clicks: bool = True, corrections: tuple = (),
              seeds: int = CURVE_SEEDS, counts=CORRECTED_COUNTS, skip: int = 0) -> dict:
    """``folders``: {name: (folder, given project or None, mask_sources_only)}; ``clicks``: simulate the
    clicks on each (``skip``: after the first ``skip`` images); ``corrections``: the names of the folders to
    draw the correction curve of. Returns and writes ``{"review": {"clicks": {name: summary or {"skipped":
    reason}}, "corrections": {name: curve or {"skipped": reason}}}}`` (merged into OUT/results.json; a part not
    run is left out)."""
    from engine.orchestration.config import RunConfig

    out = Path(out)
    config = config or RunConfig()
    parts: dict = {"clicks": {}, "corrections": {}}
    for name, (folder, project, mask_only) in folders.items():
        if not clicks and name not in corrections:
            continue
        missing = real_dev.ground_truth_missing(folder, name)
        if missing is not None:
            log(missing)
            for part in (["clicks"] if clicks else []) + (["corrections"] if name in corrections else []):
                parts[part][name] = {"skipped": missing, "path": str(folder)}
            continue
        if clicks:
            parts["clicks"][name] = review_folder(Path(folder), out / name, config, project, limit, mask_only, log,
                                                  first_prompt, skip)
        if name in corrections:
            parts["corrections"][name] = correction_folder(Path(folder), out / name, config, project, limit, seeds,
                                                           counts, log)
    parts = {part: rows for part, rows in parts.items() if rows}
    results = read_json(out / "results.json") if (out / "results.json").is_file() else {}
    for part, rows in parts.items():
        results.setdefault("review", {}).setdefault(part, {}).update(rows)
    atomic_write_json(out / "results.json", results)
    return {"review": parts}


def table(results: dict) -> str:
    """The clicks table and, when drawn, the correction curve's."""
    blocks = []
    if "clicks" in results["review"]:
        blocks.append(clicks_table(results["review"]["clicks"]))
    if "corrections" in results["review"]:
        blocks.append(corrections_table(results["review"]["corrections"]))
    return "\n\n".join(blocks)


def corrections_table(corrections: dict) -> str:
    """Per folder, one row per k: the first seed's figures and their min-max over the seeds."""
    metrics = ("mask_ap50", "box_ap50", "corloc", "mask_recall50")
    lines = []
    for name, curve in corrections.items():
        if "skipped" in curve:
            lines.append(curve["skipped"])
            continue
        spread = curve["seed_spread"]
        lines.append(f"{name}: correction curve, scored on the {len(curve['held_out'])} images never corrected; "
                     f"first seed (min-max over seeds {spread['seeds']}); {curve['seconds']:.0f} s")
        lines.append(f"{'corrected':<11}" + "".join(f"{m:>22}" for m in metrics))
        for k in (k for k in curve if k.isdigit()):
            lines.append(f"{k:<11}" + "".join(
                f"{real_dev._fmt(curve[k][m]) + ' (' + _range(spread[k][m]) + ')':>22}" for m in metrics))
    return "\n".join(lines)


def _range(value) -> str:
    return "-" if value is None else f"{value['min']:.3f}-{value['max']:.3f}"


def clicks_table(clicks: dict) -> str:
    lines = [f"{'folder':<14}{'images':>8}{'objects':>9}{'NoC@50':>9}{'NoC@80':>9}{'reached80':>11}  actions"]
    for name, row in clicks.items():
        if "skipped" in row:
            lines.append(f"{name:<14}{row['skipped']}")
            continue
        actions = ", ".join(f"{k} {v}" for k, v in sorted(row["actions"].items()))
        lines.append(f"{name:<14}{row['images']:>8}{row['objects']:>9}{real_dev._fmt(row['noc50']):>9}"
                     f"{real_dev._fmt(row['noc80']):>9}{real_dev._fmt(row['reached80']):>11}  {actions}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from engine.orchestration.config import RunConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feral", type=Path, default=DEFAULT_FERAL, help="feral_cats folder (images/, COCO)")
    parser.add_argument("--project", type=Path, default=None,
                        help="a finished default project of the feral folder to copy (never modified)")
    parser.add_argument("--real-dev", type=Path, default=real_dev.DEFAULT_REAL_DEV)
    parser.add_argument("--real-dev-project", type=Path, default=None,
                        help="a finished default project of real-dev's mask images to copy (never modified)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-review-clicks"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each folder")
    parser.add_argument("--skip", type=int, default=0,
                        help="the clicks on the images after the first N (by file name; before --limit): images "
                             "the defaults were not chosen on")
    parser.add_argument("--first-prompt", choices=("click", "box"), default="click",
                        help="box: the first new object of an unmatched object comes from its bounding box")
    parser.add_argument("--only", choices=("clicks", "corrections"), default=None,
                        help="run one part: the clicks, or the correction curve on the feral folder")
    parser.add_argument("--seeds", type=int, default=CURVE_SEEDS,
                        help=f"retraining seeds of the correction curve, from --seed (default {CURVE_SEEDS})")
    parser.add_argument("--seed", type=int, default=0, help="the first retraining seed; also a new run's seed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default=None, help="checkpoint or 'random' (default: the real weights)")
    parser.add_argument("--input-size", type=int, default=None)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.skip < 0:
        parser.error("--skip must be at least 0")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    config = RunConfig(device=args.device, weights=args.weights, input_size=args.input_size, seed=args.seed)
    folders = {args.feral.name: (args.feral, args.project, False),
               args.real_dev.name: (args.real_dev, args.real_dev_project, True)}
    results = benchmark(folders, args.out.resolve(), config, args.limit, first_prompt=args.first_prompt,
                        clicks=args.only != "corrections",
                        corrections=() if args.only == "clicks" else (args.feral.name,), seeds=args.seeds,
                        skip=args.skip)
    print(table(results))
    print(f"\nwritten: {args.out.resolve() / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
