"""The review's "split into parts" without a stroke (engine.state.object_edits.split_into_parts): does it give the
objects a reviewer wants? On the annotated objects' unions of exactly two touching objects (is each piece one of
them, IoU >= 0.5?) and on a finished project's final objects holding one annotated object (>= 80 % of it inside)
and more (IoU with it < 0.5: is one piece the object?), the first pair of parts the engine tries that are both at
least MIN_PART_PIXELS, and how many of those splits give a part in pieces: with the colour cut first (the
engine) and with the candidate tree alone (before it).
Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/split_into_parts.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.masks import MIN_PART_PIXELS  # noqa: E402
from engine.state import object_edits  # noqa: E402
from engine.state.project import Project  # noqa: E402
from engine.state.schema import read_images  # noqa: E402


def iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def largest_share(mask) -> float:
    """The share of a mask in its largest 4-connected piece."""
    pieces, count = ndimage.label(mask)
    return float(np.bincount(pieces.ravel())[1:].max() / mask.sum()) if count else 1.0


def first_split(tree, image, mask):
    """The parts split_into_parts would keep, or None."""
    for part, rest in object_edits._two_parts(tree, image, mask):
        if part.sum() >= MIN_PART_PIXELS and rest.sum() >= MIN_PART_PIXELS:
            return part, rest
    return None


def main(project_dir: Path, folder: Path) -> None:
    project = Project(project_dir)
    entries = {Path(e["relative_path"]).name: e for e in read_images(project.images_path)}
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    loaded = common.final_objects(project_dir, images)
    cases = {"pairs": [], "one and more": []}  # (image, tree, mask, wanted masks)
    for image in images:
        tree, pixels = object_edits.image_tree(project, entries[Path(image.file_name).name])
        stack = np.asarray(image.masks, bool)
        unions, count = ndimage.label(stack.any(0))
        for label in range(1, count + 1):
            region = unions == label
            members = [m for m in stack if m.sum() and (m & region).sum() > 0.5 * m.sum()]
            if len(members) == 2 and region.sum() >= 400:
                cases["pairs"].append((tree, pixels, region, members))
        for mask in loaded.get(image.file_name, (np.zeros((0, 1, 1), bool),))[0]:
            inside = [m for m in stack if m.sum() and (m & mask).sum() >= 0.8 * m.sum()]
            if len(inside) == 1 and iou(mask, inside[0]) < 0.5 and mask.sum() >= 400:
                cases["one and more"].append((tree, pixels, mask, inside))
    colour_halves = object_edits.colour_halves
    for name, colour in (("colour cut, then the tree (the engine)", colour_halves),
                         ("the tree alone", lambda image, mask: None)):
        object_edits.colour_halves = colour
        right, in_pieces, splits = {}, 0, 0
        for kind, found in cases.items():
            right[kind] = 0
            for tree, pixels, mask, wanted in found:
                split = first_split(tree, pixels, mask)
                if split is None:
                    continue
                splits += 1
                in_pieces += any(largest_share(piece) < 0.95 for piece in split)
                if kind == "pairs":
                    a, b = split
                    right[kind] += max(min(iou(a, wanted[0]), iou(b, wanted[1])),
                                       min(iou(a, wanted[1]), iou(b, wanted[0]))) >= 0.5
                else:
                    right[kind] += max(iou(piece, wanted[0]) for piece in split) >= 0.5
        print(f"{name}: pairs of touching objects split right {right['pairs']}/{len(cases['pairs'])}; final objects "
              f"holding one object and more, a piece the object {right['one and more']}/{len(cases['one and more'])}; "
              f"splits with a part under 95 % in one piece {in_pieces}/{splits}", flush=True)
    object_edits.colour_halves = colour_halves


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
