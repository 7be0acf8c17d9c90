"""Everything that leaves the engine: instances per image, COCO, label images and the overview.

The instances of an image come from one of the sources below; ``current`` is what a user would export: the
user's corrections where an image has them, otherwise the final model's predictions (or the clustered
proposals when there are none). Categories go through the user's table (engine.corrections): merged
categories are exported under the one they were merged into, discarded ones are left out.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_write_bytes
from .coco import annotation_record, build_coco, write_coco
from .corrections import load_assignments, load_categories, load_correction
from .images import load_image
from .overview import render_overview
from .project import Project, load_image_predictions, load_image_proposals


def iter_image_proposals(project: Project, entries: list):
    """(entry, proposals, embeddings) per image, read back from the project one at a time."""
    for entry in entries:
        proposals, embeddings, _ = load_image_proposals(project.proposals_path(entry["image_id"]),
                                                        (entry["height"], entry["width"]))
        yield entry, proposals, embeddings


def _labels_by_image(clusters: dict) -> dict:
    by_image: dict = {}
    for m in clusters["masks"]:
        by_image.setdefault(m["image_id"], {})[m["index"]] = m["cluster"]
    return by_image


INSTANCE_SOURCES = ("current", "predictions", "proposals", "corrections")


def iter_instances(project: Project, entries: list, clusters: dict, source: str = "current"):
    """(entry, masks, category ids >= 1, scores) per image from ``source`` (module docstring).

    Category ids here are the raw ones (cluster + 1 or the user's); :func:`iter_exported` applies merges
    and discards.
    """
    if source not in INSTANCE_SOURCES:
        raise ValueError(f"source must be one of {', '.join(INSTANCE_SOURCES)}, not {source!r}")
    labels = _labels_by_image(clusters)
    assignments = load_assignments(project.root)
    for entry in entries:
        image_id = entry["image_id"]
        correction = load_correction(project.root, image_id) if source in ("current", "corrections") else None
        prediction = project.predictions_path(image_id)
        if correction is not None:
            masks, classes = correction.instances()
            yield entry, masks, classes, np.ones(len(masks), np.float32)
        elif source == "corrections":
            continue
        elif source == "predictions" or (source == "current" and prediction.exists()):
            if not prediction.exists():
                raise FileNotFoundError(f"No prediction for {entry['relative_path']} in {project.root}; run: "
                                        f"maskdistill distill --project {project.root}")
            _, masks, classes, scores = load_image_predictions(prediction)
            yield entry, masks, classes, scores
        else:
            proposals, _, _ = load_image_proposals(project.proposals_path(image_id),
                                                   (entry["height"], entry["width"]))
            classes = np.array([assignments.get(f"{image_id}/{i}", labels[image_id][i] + 1)
                                for i in range(len(proposals))], int)
            yield entry, proposals.masks, classes, proposals.scores


def iter_exported(project: Project, entries: list, clusters: dict, source: str = "current"):
    """Like :func:`iter_instances`, with categories resolved through the user's table."""
    table = load_categories(project.root, clusters)
    for entry, masks, classes, scores in iter_instances(project, entries, clusters, source):
        resolved = [table.resolve(int(c)) for c in classes]
        keep = np.array([r is not None for r in resolved], bool)
        yield entry, masks[keep], np.array([r for r in resolved if r is not None], int), np.asarray(scores)[keep]


def export_coco(project: Project, entries: list, clusters: dict, image_root: Path, source: str = "current",
                path: Path | None = None, polygons: bool = False) -> dict:
    """COCO of ``source`` (default: annotations.json), validated before it replaces the previous file.

    polygons: write polygons instead of compressed RLE (holes are lost: a warning names the masks).
    Returns pycocotools' counts plus any warnings.
    """
    table = load_categories(project.root, clusters)
    images, annotations, warnings = [], [], []
    for entry, masks, classes, scores in iter_exported(project, entries, clusters, source):
        images.append({"id": entry["coco_id"], "file_name": entry["relative_path"],
                       "width": entry["width"], "height": entry["height"]})
        for mask, cls, score in zip(masks, classes, scores):
            record = annotation_record(len(annotations) + 1, entry["coco_id"], int(cls), mask, float(score))
            if polygons:
                record["segmentation"], problem = mask_to_polygons(mask)
                if problem:
                    warnings.append(f"{entry['relative_path']} annotation {record['id']}: {problem}")
            annotations.append(record)
    document = build_coco(images, annotations, table.exported(), str(image_root),
                          f"maskdistill {__version__} ({source})")
    counts = write_coco(document, path or project.annotations_path, exact_masks=not polygons)
    return {**counts, "warnings": warnings}


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.5) -> tuple:
    """Outer outlines of a mask's parts as COCO polygons ([x0, y0, x1, y1, ...], x = column).

    Outlines run along pixel edges (corner coordinates, which pycocotools fills exactly): they are traced on
    the mask upsampled 2x, so a part one pixel thin (or a single pixel) still gets an outline with an area;
    traced through pixel centres such a part collapsed to a line that rasterises to nothing.
    Returns (polygons, problem): problem names what a polygon cannot keep (holes, several parts).
    """
    from scipy import ndimage
    from skimage import measure

    mask = np.asarray(mask, bool)
    padded = np.pad(np.kron(mask, np.ones((2, 2), bool)), 1)
    polygons = []
    for contour in measure.find_contours(padded.astype(np.uint8), 0.5):
        if not _is_outer(contour, padded):
            continue
        outline = measure.approximate_polygon(contour, 2 * tolerance)
        if len(outline) < 4:  # closed: the last point repeats the first
            outline = contour
        corners = (outline - 1 + 0.5) / 2  # undo the padding, then sub-pixel index -> pixel corner coordinates
        polygons.append([round(float(v), 2) for point in corners[:, ::-1] for v in point])
    problems = []
    if (ndimage.binary_fill_holes(mask) & ~mask).any():
        problems.append("the mask has holes, which polygons fill")
    if ndimage.label(mask)[1] > 1:
        problems.append("the mask has several parts")
    return polygons, "; ".join(problems)


def _is_outer(contour: np.ndarray, padded: np.ndarray) -> bool:
    """find_contours traces holes too; an outer outline has the object on its left (clockwise in rows/cols)."""
    rows, cols = contour[:, 0], contour[:, 1]
    signed_area = 0.5 * np.sum(cols[:-1] * rows[1:] - cols[1:] * rows[:-1])
    return signed_area > 0


def export_label_images(project: Project, entries: list, clusters: dict, folder: Path, source: str = "current",
                        fmt: str = "png") -> dict:
    """One instance label image per image (0 background, k = instance k; 16-bit above 255 instances) and
    ``instances.json`` giving each instance's category. Returns counts."""
    import json

    from PIL import Image

    if fmt not in ("png", "tiff"):
        raise ValueError(f"label image format must be png or tiff, not {fmt!r}")
    folder = Path(folder)
    table = load_categories(project.root, clusters)
    index, sixteen_bit = {}, 0
    for entry, masks, classes, _ in iter_exported(project, entries, clusters, source):
        dtype = np.uint8 if len(masks) <= 255 else np.uint16
        sixteen_bit += dtype == np.uint16
        labels = np.zeros((entry["height"], entry["width"]), dtype)
        for k, mask in enumerate(masks, start=1):
            labels[mask] = k
        name = str(Path(entry["relative_path"]).with_suffix(f".{fmt}"))
        buffer = io.BytesIO()
        Image.fromarray(labels).save(buffer, format="PNG" if fmt == "png" else "TIFF")
        atomic_write_bytes(folder / name, buffer.getvalue())
        index[name] = {"image": entry["relative_path"], "instances": {str(k): int(c) for k, c in
                                                                        enumerate(classes, start=1)}}
    categories = {c["id"]: c["name"] for c in table.exported()}
    atomic_write_bytes(folder / "instances.json", json.dumps({"categories": categories, "images": index},
                                                             indent=1).encode())
    return {"images": len(index), "sixteen_bit": int(sixteen_bit), "folder": str(folder)}


def write_overview(project: Project, entries: list, clusters: dict, image_root: Path,
                   source: str = "current") -> Path:
    """overview.png: thumbnails with the outlines of ``source``'s masks coloured by category."""
    table = load_categories(project.root, clusters)
    num_classes = max([c.id for c in table.categories], default=0)

    def items():
        for entry, masks, classes, _ in iter_exported(project, entries, clusters, source):
            path = image_root / entry["relative_path"]
            yield entry["relative_path"], lambda: load_image(path), list(masks), [int(c) - 1 for c in classes]

    sheet = render_overview(items(), num_classes, f"{len(entries)} images, {source}")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(project.overview_path, buffer.getvalue())
    return project.overview_path
