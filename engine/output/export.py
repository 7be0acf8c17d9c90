"""Everything that leaves the engine: COCO, label images and the overview.

The instances of an image and their categories come from engine.state.label_state (the one owner of the label state):
``current`` is what a user would export: the user's corrections where an image has them, otherwise the final
model's predictions (or the clustered proposals when there are none); merged categories are exported under
the one they were merged into, discarded ones are left out.

Category ids in an export are 1..N in the order of the category table (the order the Categories tab shows),
over the categories exported: the project's own ids stay stable (a split or a discard never renumbers them) and
are translated only as the file is written (:func:`numbered_categories`).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from engine import __version__
from engine.atomic import atomic_write_bytes
from engine.io.coco import CocoWriter, annotation_record, count_annotations
from engine.io.images import ImageSource, display_name
from engine.output.overview import render_overview
from engine.state.label_state import SOURCES, LabelState
from engine.state.project import Project, load_image_proposals
from engine.state.schema import contained_path

INSTANCE_SOURCES = SOURCES


def iter_image_proposals(project: Project, entries: list):
    """(entry, proposals, embeddings) per image, read back from the project one at a time."""
    for entry in entries:
        proposals, embeddings, _ = load_image_proposals(project.proposals_path(entry["image_id"]),
                                                        (entry["height"], entry["width"]))
        yield entry, proposals, embeddings


def iter_exported(project: Project, entries: list, clusters: dict, source: str = "current"):
    """(entry, masks, category ids as exported, scores) per image (engine.state.label_state.LabelState)."""
    yield from LabelState.load(project, clusters).iter_exported(entries, source)


def export_coco(project: Project, entries: list, clusters: dict, image_root: Path, source: str = "current",
                path: Path | None = None, polygons: bool = False) -> dict:
    """COCO of ``source`` (default: annotations.json), validated before it replaces the previous file; written
    one image at a time (engine.io.coco.CocoWriter), so memory does not grow with the folder.

    polygons: write polygons instead of compressed RLE (holes are lost: a warning names the masks).
    Returns pycocotools' counts plus warnings: unreadable corrections, assignments of an older format, masks a
    polygon cannot keep, and an export with fewer annotations than the file it replaces (said, never silent).
    """
    state = LabelState.load(project, clusters)
    path = Path(path or project.annotations_path)
    previous = count_annotations(path) if path.exists() else None
    warnings: list[str] = []
    annotation_id = 0
    used: set[int] = set()
    if source == "current" and (note := state.predictions_note()):
        warnings.append(note)
    if note := state.assignments_note():
        warnings.append(note)
    overlapping = 0  # annotations of the views' overlapping objects, among the written ones
    with CocoWriter(path, None, str(image_root), f"maskdistill {__version__} ({source})",
                    exact_masks=not polygons) as writer:
        for entry in entries:
            result = state.exported(entry, source)
            if result is None:
                continue
            masks, classes, scores, numbers, found = result
            used.update(int(c) for c in classes)
            if found.warning:
                warnings.append(found.warning)
            annotations = []
            for mask, cls, score, number in zip(masks, classes, scores, numbers):
                annotation_id += 1
                record = annotation_record(annotation_id, entry["coco_id"], int(cls), mask, float(score))
                if number:  # a view's, over the image's own objects: a trainer may keep or drop them
                    record["overlapping"] = True
                    overlapping += 1
                if polygons:
                    record["segmentation"], problem = mask_to_polygons(mask)
                    if problem:
                        warnings.append(f"{entry['relative_path']} annotation {record['id']}: {problem}")
                annotations.append(record)
            writer.add_image({"id": entry["coco_id"], "file_name": entry["relative_path"],
                              "width": entry["width"], "height": entry["height"],
                              **({"plane": entry["plane"]} if entry.get("plane") is not None else {})}, annotations)
        if not writer.counts["images"]:
            raise ValueError(f"Nothing to export from {project.root} ({source}): no image has masks from that "
                             f"source; {path} was left as it was.")
        # after the images: ids found in them get a name, and the numbers 1..N in the table's order
        writer.categories, writer.renumber = numbered_categories(state.exported_categories(used))
    if previous is not None and writer.counts["annotations"] < previous:
        warnings.append(f"{path} had {previous} annotations and now has {writer.counts['annotations']}")
    return {**writer.counts, "overlapping": overlapping, "warnings": warnings}


def numbered_categories(categories: list) -> tuple:
    """(the categories with ids 1..N in their order, {project category id: exported id})."""
    renumber = {category["id"]: number for number, category in enumerate(categories, start=1)}
    return [{**category, "id": renumber[category["id"]]} for category in categories], renumber


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
    ``instances.json`` giving each instance's category (numbered 1..N as in the COCO export). Nothing else is
    written: the project's annotations.json stays as it was. A label image holds one object per pixel, so the
    second scale's overlapping objects are left out (counted in ``overlapping_left_out``; the COCO export has
    them). Returns counts and the folder."""
    from PIL import Image

    if fmt not in ("png", "tiff"):
        raise ValueError(f"label image format must be png or tiff, not {fmt!r}")
    folder = Path(folder)
    state = LabelState.load(project, clusters)
    # every target checked before the first is written: no path from images.json leaves the folder
    targets = {entry["image_id"]: contained_path(folder, _label_name(entry, fmt), "label image")
               for entry in entries}
    index, sixteen_bit, left_out = {}, 0, 0
    used: set[int] = set()
    for entry in entries:
        found = state.exported(entry, source)
        if found is None:
            continue
        # one label per pixel: the second scale's overlapping objects cannot be painted in (the COCO export has them)
        own = found[3] == 0
        masks, classes, left_out = found[0][own], found[1][own], left_out + int((~own).sum())
        dtype = np.uint8 if len(masks) <= 255 else np.uint16
        sixteen_bit += dtype == np.uint16
        labels = np.zeros((entry["height"], entry["width"]), dtype)
        for k, mask in enumerate(masks, start=1):
            labels[mask] = k
        name = _label_name(entry, fmt)
        buffer = io.BytesIO()
        Image.fromarray(labels).save(buffer, format="PNG" if fmt == "png" else "TIFF")
        atomic_write_bytes(targets[entry["image_id"]], buffer.getvalue())
        index[name] = {"image": entry["relative_path"], "instances": {str(k): int(c) for k, c in
                                                                        enumerate(classes, start=1)}}
        used.update(int(c) for c in classes)
    numbered, renumber = numbered_categories(state.exported_categories(used))
    for item in index.values():
        item["instances"] = {k: renumber[c] for k, c in item["instances"].items()}
    categories = {c["id"]: c["name"] for c in numbered}
    atomic_write_bytes(folder / "instances.json", json.dumps({"categories": categories, "images": index},
                                                             indent=1).encode())
    return {"images": len(index), "sixteen_bit": int(sixteen_bit), "folder": str(folder),
            "overlapping_left_out": left_out}


def _label_name(entry: dict, fmt: str) -> str:
    """The label image's path inside the export folder: the image's relative path with the format's suffix."""
    return str(Path(entry["relative_path"]).with_suffix(f".{fmt}"))


def write_overview(project: Project, entries: list, clusters: dict, images: ImageSource,
                   source: str = "current") -> Path:
    """overview.png: thumbnails with the outlines of ``source``'s masks coloured by category."""
    state = LabelState.load(project, clusters)
    num_classes = state.num_classes()

    def items():
        for entry, masks, classes, _ in state.iter_exported(entries, source, overlapping=False):  # the image's own
            yield (display_name(entry), lambda entry=entry: images.load(entry), masks,
                   [int(c) - 1 for c in classes])

    sheet = render_overview(items(), num_classes, f"{len(entries)} images, {source}")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(project.overview_path, buffer.getvalue())
    return project.overview_path
