"""The dense benchmark: many small objects per image, the engine's ``dense`` proposals against a classical baseline.

    .venv/bin/python -m benchmarks.dense [--out runs/benchmark-dense] [--images 20] [--size 512]
                                         [--weights FILE|random] [--device auto] [--real-dev PATH]
                                         [--figure docs/dense_cells.png] [--large-image]

Two parts, both scored class-agnostically with pycocotools (``useCats = 0``, AP at IoU 0.5):

* **cells**: a generated microscopy-like set (:func:`make_cells_image`): ``--images`` grey images of
  ``--size`` pixels with 50-200 touching round and elongated cells of several sizes each, blurred, with shot
  noise and uneven illumination, and their known instance masks. The engine runs through
  ``engine.orchestration.pipeline.run`` with ``proposals="dense"``, ``object_size`` = the generated typical diameter and
  ``distill=False`` (the class-agnostic proposals are what is scored; pooled embeddings, K = 2, so hundreds
  of masks per image cost no extra forwards). The classical baseline (:func:`classical_instances`: Gaussian
  blur, Otsu threshold, hole filling, distance-transform watershed with seeds ``0.35 x`` the same diameter
  apart) runs on the same images in the same run. Both are scored by mask AP50; both rank their masks by
  solidity-based scores (the engine: mean foreground probability x solidity; the baseline: solidity).
* **trees**: the ``deepforest`` source of real-dev (2 aerial tiles, 98 tree-crown boxes; real-dev's own figures
  leave them out, ``real_dev.DENSE_SOURCES``), the engine with
  ``proposals="dense"`` and ``object_size`` = ``TREE_CROWN_SIZE`` (one crown diameter for both tiles), scored
  by box AP50 (real_dev's loader and scoring), in total and per tile, beside a classical crown detector
  (:func:`classical_crowns`: excess green, Otsu, local maxima, watershed; settings from the crown size only).

* **large image** (only with ``--large-image``: tens of minutes on a CPU): one generated 4,000 x 4,000 cells
  image (``LARGE_IMAGE_CELLS`` objects of ``LARGE_IMAGE_OBJECT_SIZE`` px) through ``maskdistill run --proposals
  dense --object-size 20 --embedding pooled`` in a child process; its peak resident memory (VmHWM, read from
  /proc at the child's exit) is ``large_image_peak_rss_mb`` (target: 3 GB), with its wall time and mask count.

Seconds per megapixel: the engine's whole ``run`` wall time (model loading included) over the megapixels it
processed; the baseline's likewise. JSON (``OUT/results.json``, and ``quality.dense`` of ``make benchmark``):
``trees_box_ap50``, ``trees_classical_box_ap50``, ``cells_mask_ap50``, ``cells_classical_mask_ap50``,
``seconds_per_megapixel`` (engine),
``classical_seconds_per_megapixel``, plus counts and settings; with ``--large-image`` also
``large_image_peak_rss_mb`` and the run's details under ``large_image``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.real_dev import RealImage, StagePrediction  # noqa: E402
from engine.atomic import atomic_write_json  # noqa: E402
from engine.masks import bbox_xywh  # noqa: E402

TYPICAL_DIAMETER = 20.0  # pixels at 512 px; scaled with --size
TARGETS = {"engine_beats_classical_cells": True, "trees_box_ap50_min": 0.25}
# crown diameter passed as --object-size for both aerial tiles: the median side of the annotated crown boxes
# (35 px, about 3.5 m at NEON's 10 cm pixels), one value for the source as a user would give it; without it the
# size estimated per image was 4 px (800+ fragments per tile, box AP50 0.003)
TREE_CROWN_SIZE = 35.0
LARGE_IMAGE_SIZE = 4000
LARGE_IMAGE_OBJECT_SIZE = 20.0  # pixels: the cells keep the size of the 512 px set, so there are ~60x more
LARGE_IMAGE_CELLS = 12000  # the crowded end of the 512 px set's 50-200 objects, per 512 x 512 of area
LARGE_IMAGE_TARGET_MB = 3072


# --------------------------------------------------------------------------------------------- generator


def _ellipse(shape, cy, cx, a, b, angle):
    """Normalised squared radius of an ellipse (semi-axes a, b, rotation angle) on a local window."""
    reach = int(np.ceil(max(a, b))) + 2
    y0, y1 = max(0, int(cy) - reach), min(shape[0], int(cy) + reach + 1)
    x0, x1 = max(0, int(cx) - reach), min(shape[1], int(cx) + reach + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (slice(y0, y1), slice(x0, x1)), (u / a) ** 2 + (v / b) ** 2


def make_cells_image(rng: np.random.Generator, size: int = 512, typical: float = TYPICAL_DIAMETER,
                     n_range=(50, 200), max_overlap: float = 0.12) -> tuple:
    """(RGB uint8 (size, size, 3), instance label map int32) of one microscopy-like image.

    Objects: 60 % round, 40 % elongated (axis ratio 1.6-2.6), diameters 0.6-1.5 x ``typical``; half are placed
    touching an earlier one (centre about the sum of the radii away), every new object may overlap earlier
    ones by at most ``max_overlap`` of its area (later objects are painted over earlier ones). Brightness
    varies per object, falls off towards the rim (touching cells show a shallow dip), has texture; then
    uneven illumination (0.35-1.0), Gaussian blur and Poisson shot noise.
    """
    shape = (size, size)
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    target = int(rng.integers(n_range[0], n_range[1] + 1))
    centres: list = []
    placed, attempts = 0, 0
    while placed < target and attempts < target * 40:
        attempts += 1
        diameter = typical * rng.uniform(0.6, 1.5)
        if rng.random() < 0.4:
            b = diameter / 2 * rng.uniform(0.75, 0.9)
            a = b * rng.uniform(1.6, 2.6)
        else:
            a = b = diameter / 2 * rng.uniform(0.9, 1.1)
            a *= rng.uniform(1.0, 1.2)
        angle = rng.uniform(0, np.pi)
        if centres and rng.random() < 0.5:
            py, px, pr = centres[int(rng.integers(len(centres)))]
            direction = rng.uniform(0, 2 * np.pi)
            reach = 0.9 * (pr + 0.5 * (a + b))
            cy, cx = py + reach * np.sin(direction), px + reach * np.cos(direction)
        else:
            cy, cx = rng.uniform(0, size), rng.uniform(0, size)
        found = _ellipse(shape, cy, cx, a, b, angle)
        if found is None:
            continue
        window, r2 = found
        inside = r2 <= 1.0
        if inside.sum() < 12:
            continue
        if (labels[window][inside] > 0).mean() > max_overlap:
            continue
        placed += 1
        labels[window][inside] = placed
        brightness = rng.uniform(0.45, 1.0)
        texture = 1.0 + 0.08 * rng.standard_normal(inside.sum()).astype(np.float32)
        signal[window][inside] = brightness * (1.0 - 0.4 * r2[inside]) * texture
        centres.append((cy, cx, 0.5 * (a + b)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gy, gx = rng.uniform(-0.3, 1.3, 2)
    illumination = np.exp(-((yy - gy) ** 2 + (xx - gx) ** 2) / (2 * rng.uniform(0.3, 0.6) ** 2))
    illumination = 0.35 + 0.65 * (illumination - illumination.min()) / max(np.ptp(illumination), 1e-6)
    image = (0.06 + signal) * illumination
    image = ndimage.gaussian_filter(image, rng.uniform(1.0, 1.8))
    photons = rng.uniform(40, 120)
    image = rng.poisson(np.clip(image, 0, None) * photons).astype(np.float32) / photons
    image = np.clip(image / max(np.percentile(image, 99.8), 1e-6), 0, 1)
    grey = (image * 255).astype(np.uint8)
    # a label painted over loses its pixels: relabel so every id in 1..n has some
    present = np.unique(labels)
    lookup = np.zeros(labels.max() + 1, np.int32)
    lookup[present[present > 0]] = np.arange(1, (present > 0).sum() + 1)
    return np.repeat(grey[:, :, None], 3, axis=2), lookup[labels]


def write_cells(folder: Path, n_images: int, size: int, seed: int = 0) -> list:
    """Writes folder/images/cells_XXX.png; returns RealImage ground truth (class-agnostic, masks)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    truth = []
    typical = TYPICAL_DIAMETER * size / 512
    for index in range(n_images):
        image, labels = make_cells_image(rng, size, typical)
        name = f"cells_{index:03d}.png"
        Image.fromarray(image).save(folder / "images" / name)
        masks = labels[None] == np.arange(1, labels.max() + 1)[:, None, None]
        boxes = np.array([bbox_xywh(m) for m in masks], float).reshape(-1, 4)
        truth.append(RealImage(name, "cells", "mask", size, size, boxes, np.ones(len(masks), int), masks))
    return truth


# -------------------------------------------------------------------------------------------- baseline


def classical_instances(image: np.ndarray, object_size: float) -> tuple:
    """Otsu + distance-transform watershed: (masks (n, H, W) bool, scores = solidity)."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.measure import regionprops
    from skimage.segmentation import watershed

    grey = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    smooth = ndimage.gaussian_filter(grey, 1.0)
    foreground = ndimage.binary_fill_holes(smooth > threshold_otsu(smooth))  # bright objects (fluorescence)
    distance = ndimage.distance_transform_edt(foreground)
    components, _ = ndimage.label(foreground)
    peaks = peak_local_max(distance, min_distance=max(1, int(round(0.35 * object_size))), labels=components,
                           exclude_border=False)
    markers = np.zeros(grey.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=foreground)
    min_area = 0.1 * np.pi * (object_size / 2) ** 2
    masks, scores = [], []
    for region in regionprops(labels):
        if region.area < min_area:
            continue
        masks.append(labels == region.label)
        scores.append(region.solidity)
    masks = np.stack(masks) if masks else np.zeros((0, *grey.shape), bool)
    return masks, np.asarray(scores, float)


def classical_crowns(image: np.ndarray, object_size: float) -> tuple:
    """A classical tree-crown detector for the aerial tiles, the trees' side-by-side baseline: excess green
    (2G - R - B) smoothed at a quarter of the crown size, Otsu foreground, a marker per local maximum at least
    0.4 crown sizes apart, watershed. Its settings follow from the object size alone, as the engine's do (not
    tuned on the tiles). Returns (masks (n, H, W) bool, scores = mean smoothed excess green)."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    rgb = image.astype(np.float32)
    green = ndimage.gaussian_filter(2 * rgb[..., 1] - rgb[..., 0] - rgb[..., 2], object_size / 4)
    foreground = green > threshold_otsu(green)
    peaks = peak_local_max(green, min_distance=max(1, int(round(0.4 * object_size))), labels=foreground.astype(int),
                           exclude_border=False)
    markers = np.zeros(green.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-green, markers, mask=foreground)
    keep = [k for k in range(1, len(peaks) + 1) if (labels == k).sum() >= (0.3 * object_size) ** 2]
    masks = np.stack([labels == k for k in keep]) if keep else np.zeros((0, *green.shape), bool)
    return masks, np.array([green[labels == k].mean() for k in keep], float)


# ---------------------------------------------------------------------------------------------- figure


def figure(image: np.ndarray, masks, title: str = "") -> Image.Image:
    """The image and, beside it, the image with each mask's outline in its own colour (docs/dense_cells.png)."""
    from engine.output.overview import cluster_colour

    outlined = image.copy()
    for index, mask in enumerate(masks):
        edge = mask & ~ndimage.binary_erosion(mask)
        outlined[edge] = cluster_colour(index)
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    picture = Image.fromarray(np.concatenate([image, gap, outlined], axis=1))
    if title:
        from PIL import ImageDraw

        canvas = Image.new("RGB", (picture.width, picture.height + 22), (255, 255, 255))
        canvas.paste(picture, (0, 22))
        ImageDraw.Draw(canvas).text((4, 5), title, fill=(0, 0, 0))
        picture = canvas
    return picture


def write_figure(path: Path, cells_dir: Path, predictions: dict, scores: tuple) -> None:
    """docs/dense_cells.png from the first generated image and the engine's masks of it."""
    name = sorted(predictions)[0]
    image = np.asarray(Image.open(cells_dir / "images" / name).convert("RGB"))
    engine_ap, classical_ap = scores
    title = (f"generated image {name}: engine dense masks (right), mask AP50 over the set {engine_ap:.3f} "
             f"vs classical {classical_ap:.3f}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure(image, predictions[name].masks, title).save(path)


# ------------------------------------------------------------------------------------------ large image


def write_large_image(folder: Path, size: int = LARGE_IMAGE_SIZE, cells: int = LARGE_IMAGE_CELLS,
                      seed: int = 0) -> Path:
    """folder/images/cells_large.png: one crowded generated image (no ground truth kept: memory is measured)."""
    path = folder / "images" / "cells_large.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        image, _ = make_cells_image(np.random.default_rng(seed), size, LARGE_IMAGE_OBJECT_SIZE, (cells, cells))
        Image.fromarray(image).save(path)
    return path.parent


def _vm_hwm_mb() -> float:
    """This process's peak resident memory (VmHWM: it starts afresh at exec, unlike ru_maxrss after a fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (Linux only)")


def cli_with_peak(report: Path, argv: list) -> int:
    """Run ``maskdistill`` with ``argv`` in this process, then write its exit code and VmHWM to ``report``."""
    from engine.cli import main as cli_main

    start = time.perf_counter()
    code = cli_main(argv)
    atomic_write_json(report, {"exit_code": code, "peak_rss_mb": round(_vm_hwm_mb(), 1),
                               "seconds": round(time.perf_counter() - start, 1)})
    return code


def large_image(out: Path, weights=None, device: str = "auto", distill: bool = True, seed: int = 0,
                size: int = LARGE_IMAGE_SIZE, cells: int = LARGE_IMAGE_CELLS, log=print) -> dict:
    """Peak memory and wall time of one dense run on one generated ``size`` x ``size`` image (a child process,
    so the figure is the run's own and nothing of this benchmark counts in it)."""
    import json
    import subprocess

    images = write_large_image(out / "large", size, cells, seed)
    project = out / "large_project"
    shutil.rmtree(project, ignore_errors=True)
    report = out / "large_run.json"
    argv = ["run", str(images), "--project", str(project), "--proposals", "dense", "--object-size",
            str(LARGE_IMAGE_OBJECT_SIZE), "--embedding", "pooled", "--num-classes", "2", "--device", device,
            "--seed", str(seed), "--quiet"]
    argv += ["--weights", str(weights)] if weights else []
    argv += [] if distill else ["--no-distill"]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.dense", "--cli-with-peak", str(report), "--", *argv],
                   check=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - start
    child = json.loads(report.read_text())
    masks = json.loads((project / "report.json").read_text())["masks"]
    result = {"size": size, "cells_generated": cells, "object_size": LARGE_IMAGE_OBJECT_SIZE, "distill": distill,
              "peak_rss_mb": child["peak_rss_mb"], "seconds": round(wall, 1), "masks": masks,
              "target_mb": LARGE_IMAGE_TARGET_MB}
    log(f"large image {size} x {size}: peak RSS {child['peak_rss_mb']:.0f} MB, {wall:.0f} s, {masks} masks")
    return result


# ---------------------------------------------------------------------------------------------- driver


def _engine_run(images_dir: Path, project: Path, config, stage: str | None = "proposals") -> tuple:
    """(predictions {file name: StagePrediction} of ``stage``, or every stage's {stage: predictions} with None;
    seconds) of one pipeline run into a new ``project``."""
    from engine.orchestration.pipeline import run

    shutil.rmtree(project, ignore_errors=True)
    start = time.perf_counter()
    run(images_dir, project, config)
    seconds = time.perf_counter() - start
    stages = real_dev.project_stages(project)
    return (stages if stage is None else stages[stage]), seconds


def _defaults_run(images_dir: Path, project: Path, truth: list, config) -> dict:
    """A run as a user without flags makes it (``--proposals auto``, distillation on, K suggested): what auto
    chose, and the mask AP50 of its proposals and of its final (exported) objects."""
    stages, seconds = _engine_run(images_dir, project, config, stage=None)
    scores = {stage: real_dev._coco_ap50(truth, real_dev._keyed(stages[stage], truth), "segm")
              for stage in ("proposals", "final")}
    stored = json.loads((project / "project.json").read_text())
    return {"choice": stored.get("proposal_choice"), "object_size": stored["config"]["object_size"],
            "proposals_mask_ap50": scores["proposals"], "final_mask_ap50": scores["final"],
            "seconds": round(seconds, 2)}


def _megapixels(truth: list) -> float:
    return sum(t.height * t.width for t in truth) / 1e6


def benchmark(out, n_images: int = 20, size: int = 512, weights=None, device: str = "auto",
              real_dev_path=real_dev.DEFAULT_REAL_DEV, seed: int = 0, log=print, figure_path=None,
              large: bool = False) -> dict:
    """Both parts (and the large image with ``large``); writes OUT/results.json and returns the results."""
    from engine.orchestration.pipeline import RunConfig

    out = Path(out)
    typical = TYPICAL_DIAMETER * size / 512
    config = RunConfig(weights=weights, device=device, proposals="dense", distill=False, num_classes=2,
                       embedding="pooled", seed=seed)
    cells_dir = out / "cells"
    shutil.rmtree(cells_dir, ignore_errors=True)
    truth = write_cells(cells_dir, n_images, size, seed)
    megapixels = _megapixels(truth)
    predictions, engine_s = _engine_run(cells_dir / "images", out / "cells_project",
                                        replace(config, object_size=typical))
    predictions = real_dev._keyed(predictions, truth)
    start = time.perf_counter()
    classical = {}
    for t in truth:
        image = np.asarray(Image.open(cells_dir / "images" / t.file_name).convert("RGB"))
        masks, scores = classical_instances(image, typical)
        classical[t.file_name] = StagePrediction(masks, scores, None)
    classical_s = time.perf_counter() - start
    cells = {
        "images": len(truth), "size": size, "objects": int(sum(len(t.masks) for t in truth)),
        "object_size": typical,
        "engine": {"mask_ap50": real_dev._coco_ap50(truth, predictions, "segm"),
                   "box_ap50": real_dev._coco_ap50(truth, predictions, "bbox"),
                   "masks": int(sum(len(p.masks) for p in predictions.values())),
                   "seconds": round(engine_s, 2)},
        "classical": {"mask_ap50": real_dev._coco_ap50(truth, classical, "segm"),
                      "box_ap50": real_dev._coco_ap50(truth, classical, "bbox"),
                      "masks": int(sum(len(p.masks) for p in classical.values())),
                      "seconds": round(classical_s, 2)},
    }
    cells["defaults"] = _defaults_run(cells_dir / "images", out / "cells_defaults_project", truth,
                                      RunConfig(weights=weights, device=device, seed=seed))
    log(f"cells: engine mask AP50 {cells['engine']['mask_ap50']:.3f} ({engine_s:.0f} s), classical "
        f"{cells['classical']['mask_ap50']:.3f}, no flags (auto) {cells['defaults']['final_mask_ap50']:.3f} "
        f"({cells['defaults']['choice']})")
    if figure_path is not None:
        write_figure(Path(figure_path), cells_dir, predictions,
                     (cells["engine"]["mask_ap50"], cells["classical"]["mask_ap50"]))
    trees = _trees(Path(real_dev_path), out, replace(config, object_size=TREE_CROWN_SIZE), log)
    results = {
        "trees_box_ap50": trees.get("box_ap50"),
        "trees_classical_box_ap50": trees.get("classical_box_ap50"),
        "cells_mask_ap50": cells["engine"]["mask_ap50"],
        "cells_classical_mask_ap50": cells["classical"]["mask_ap50"],
        "seconds_per_megapixel": round(engine_s / megapixels, 3),
        "classical_seconds_per_megapixel": round(classical_s / megapixels, 4),
        "weights": "random" if weights == "random" else (weights or "default (offline DINOv2 ViT-S/14)"),
        "distill": False,
        "cells": cells,
        "trees": trees,
        "targets": TARGETS,
    }
    if large:  # slow: only on request
        results["large_image"] = large_image(out, weights, device, seed=seed, log=log)
        results["large_image_peak_rss_mb"] = results["large_image"]["peak_rss_mb"]
    atomic_write_json(out / "results.json", results)
    return results


def _trees(path: Path, out: Path, config, log) -> dict:
    missing = real_dev.real_dev_missing(path)
    if missing:
        log(missing)
        return {"skipped": missing}
    truth = [t for t in real_dev.load_ground_truth(path) if t.source in real_dev.DENSE_SOURCES]
    if not truth:
        return {"skipped": f"{path} has no images of {', '.join(real_dev.DENSE_SOURCES)}"}
    folder = real_dev.stage_images(path / "images", [t.file_name for t in truth], out / "trees" / "images")
    predictions, seconds = _engine_run(folder, out / "trees_project", config)
    predictions = real_dev._keyed(predictions, truth)
    scores = real_dev.score_images(truth, predictions)
    classical = {t.file_name: StagePrediction(*classical_crowns(
        np.asarray(Image.open(path / "images" / t.file_name).convert("RGB")), config.object_size), None)
        for t in truth}
    baseline = real_dev.score_images(truth, classical)
    per_tile = {t.file_name: {name: real_dev.score_images([t], {t.file_name: found[t.file_name]})["box_ap50"]
                              for name, found in (("engine", predictions), ("classical", classical))}
                for t in truth}
    log(f"trees: box AP50 {real_dev._fmt(scores['box_ap50'])}, recall {real_dev._fmt(scores['box_recall50'])}; "
        f"classical crowns {real_dev._fmt(baseline['box_ap50'])}")
    return {"images": len(truth), "objects": scores["objects"], "box_ap50": scores["box_ap50"],
            "box_recall50": scores["box_recall50"], "masks": scores["predicted_masks"],
            "classical_box_ap50": baseline["box_ap50"], "classical_box_recall50": baseline["box_recall50"],
            "classical_masks": baseline["predicted_masks"], "per_tile_box_ap50": per_tile,
            "seconds": round(seconds, 2), "seconds_per_megapixel": round(seconds / _megapixels(truth), 3),
            "object_size": config.object_size}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: dict) -> str:
    cells, trees = results["cells"], results["trees"]
    rows = [
        (f"dense: generated cells ({cells['images']} x {cells['size']} px, {cells['objects']} objects)", "", ""),
        ("  engine mask AP50 (dense proposals)", _fmt(results["cells_mask_ap50"]),
         f"{cells['engine']['masks']} masks; must beat classical"),
        ("  classical mask AP50 (Otsu + watershed)", _fmt(results["cells_classical_mask_ap50"]),
         f"{cells['classical']['masks']} masks"),
        ("  engine mask AP50, no flags (auto), final", _fmt(cells["defaults"]["final_mask_ap50"]),
         f"{cells['defaults']['choice']}; its proposals {_fmt(cells['defaults']['proposals_mask_ap50'])}"),
        ("  engine s / megapixel", f"{results['seconds_per_megapixel']:.2f}", "whole run, model loading included"),
        ("  classical s / megapixel", f"{results['classical_seconds_per_megapixel']:.3f}", ""),
    ]
    if "skipped" in trees:
        rows.append(("dense: real-dev tree tiles", "-", trees["skipped"]))
    else:
        rows += [(f"dense: real-dev tree tiles ({trees['images']} images, {trees['objects']} boxes)", "", ""),
                 ("  engine box AP50", _fmt(trees["box_ap50"]),
                  f"target >= 0.25; {trees['masks']} masks; object size {trees.get('object_size')} px"),
                 ("  engine box recall50", _fmt(trees["box_recall50"]), ""),
                 ("  classical box AP50 (excess green + watershed)", _fmt(trees.get("classical_box_ap50")),
                  f"{trees.get('classical_masks')} masks; per tile (engine / classical): " + ", ".join(
                      f"{Path(name).stem.split('_')[1]} {_fmt(v['engine'])} / {_fmt(v['classical'])}"
                      for name, v in trees.get("per_tile_box_ap50", {}).items()))]
    if "large_image" in results:
        large = results["large_image"]
        rows.append((f"dense: one generated {large['size']} x {large['size']} image ({large['masks']} masks, "
                     f"distill {'on' if large['distill'] else 'off'})", "", ""))
        rows.append(("  peak resident memory (MB)", f"{results['large_image_peak_rss_mb']:.0f}",
                     f"target <= {large['target_mb']}; {large['seconds']:.0f} s"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>8}  {c}" for a, b, c in rows)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--cli-with-peak"]:  # the child of large_image(): REPORT -- maskdistill arguments
        return cli_with_peak(Path(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-dense"))
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--weights", default=None, help="checkpoint or 'random' (default: the real weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--real-dev", type=Path, default=real_dev.DEFAULT_REAL_DEV)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, default=None,
                        help="also write the first generated image with the engine's masks here")
    parser.add_argument("--large-image", action="store_true",
                        help=f"also measure the peak memory of one {LARGE_IMAGE_SIZE} x {LARGE_IMAGE_SIZE} dense run "
                             "(slow: tens of minutes on a CPU)")
    args = parser.parse_args(argv)
    results = benchmark(args.out.resolve(), args.images, args.size, args.weights, args.device, args.real_dev,
                        args.seed, figure_path=args.figure, large=args.large_image)
    print(table(results))
    print(f"\nwritten: {args.out.resolve() / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
