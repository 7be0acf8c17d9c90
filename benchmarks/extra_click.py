"""One click vs one more: how much an extra positive / negative point (issue 21 item 3) fixes a click's mask.

    .venv/bin/python -m benchmarks.extra_click --project DIR [--truth ground_truth.json] [--images N]

Read-only on a finished project (its cached features and images). Per annotated object of the first N images:
the one-click mask at the object's interior point farthest from its boundary, then, with the largest error
region (missed part: a positive point; wrongly held part: a negative point) at its pixel farthest from the
region's boundary, the mask of both points (engine.state.prompt_review.object_mask). Prints a table of mean IoU.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402


def deepest_point(region: np.ndarray) -> tuple:
    """(x, y) of the pixel of ``region`` farthest from its boundary."""
    row, col = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(region))), region.shape)
    return (col + 0.5, row + 0.5)


def largest_error(mask: np.ndarray, truth: np.ndarray) -> tuple:
    """(region, positive?): the largest connected region the mask misses or holds wrongly."""
    best, positive = np.zeros_like(mask), True
    for wrong, is_missed in ((truth & ~mask, True), (mask & ~truth, False)):
        parts, count = ndimage.label(wrong)
        if count:
            part = parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
            if part.sum() > best.sum():
                best, positive = part, is_missed
    return best, positive


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def measure(project_dir: Path, truth_path: Path, images: int) -> list:
    from pycocotools import mask as coco_mask

    from engine.atomic import read_json
    from engine.state.project import Project
    from engine.state.prompt_review import object_mask

    project, truth = Project(project_dir), read_json(truth_path)
    config, entries = project.read_config(), {e["relative_path"]: e for e in read_json(project.images_path)}
    rows = []
    for image in sorted(truth["images"], key=lambda i: i["file_name"])[:images]:
        entry = entries.get(image["file_name"])
        if entry is None:
            continue
        for annotation in (a for a in truth["annotations"] if a["image_id"] == image["id"]):
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, list):
                segmentation = coco_mask.merge(coco_mask.frPyObjects(segmentation, image["height"], image["width"]))
            gt = coco_mask.decode(segmentation).astype(bool)
            if gt.shape != (entry["height"], entry["width"]) or gt.sum() < 16:
                continue
            first = deepest_point(gt)
            one = object_mask(project, config, entry, positive=[first])
            region, positive = largest_error(one, gt)
            extra = deepest_point(region)
            two = object_mask(project, config, entry, positive=[first, extra] if positive else [first],
                              negative=[] if positive else [extra])
            rows.append((image["file_name"], int(gt.sum()), "+" if positive else "-", iou(one, gt), iou(two, gt)))
    return rows


def table(rows: list) -> str:
    lines = ["| extra click | objects | IoU one click | IoU + extra click | improved | IoU>=0.8 one / two |",
             "|---|---|---|---|---|---|"]
    for sign, label in (("+", "positive"), ("-", "negative"), (None, "all")):
        chosen = [r for r in rows if sign is None or r[2] == sign]
        if not chosen:
            continue
        one, two = np.array([r[3] for r in chosen]), np.array([r[4] for r in chosen])
        lines.append(f"| {label} | {len(chosen)} | {one.mean():.3f} | {two.mean():.3f} | {(two > one).mean():.0%} | "
                     f"{(one >= 0.8).mean():.0%} / {(two >= 0.8).mean():.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--truth", type=Path, default=Path("../shared/data/domains/feral_cats/ground_truth.json"))
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args(argv)
    print(table(measure(args.project, args.truth, args.images)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
