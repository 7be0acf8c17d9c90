"""Groups of touching objects cut where their colours part (issue 20: a group of cats as one mask is the largest
class of feral_cats' top-object misses). The patch tokens do not see the seam between two touching cats (a
normalized cut of their affinity inside a pair of touching annotated cats splits it right in 17 of 61 and its cost
tells pairs from lone cats at ROC AUC 0.51); the pixels may: engine.method.colour_cut (superpixels inside the
object, a graph of adjacent ones weighted by their mean Lab colours' likeness, its normalized cut in two).

First on the annotated cats themselves: pairs of touching cats against lone cats, how often the cut splits a pair
right (each piece IoU >= 0.5 with one cat) and how well its cost tells pairs from lone cats. Then on a finished
project's final objects: each object whose cut costs under T is replaced by its two pieces (each at least
MIN_PIECE_SHARE of it), scored as the object times the piece's compactness weight; or kept, its pieces added at
half that score; or cut unless it is the image's top object; or not cut but ranked down (a group is no one object); CorLoc / box AP50 / mask AP50 / recall@0.5 for T
over a few values. Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/colour_cut.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method.colour_cut import colour_halves  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.instances import compactness_weight  # noqa: E402

THRESHOLDS = (0.001, 0.003, 0.01, 0.03)


def colour_cut(rgb: np.ndarray, mask: np.ndarray) -> tuple:
    """(cost, halves over the box, the box) of engine.method.colour_cut.colour_halves; cost 2.0 and no halves where
    it gives none."""
    found = colour_halves(rgb, mask)
    return (2.0, None, None) if found is None else (found[0], found[2], found[1])


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def pairs_and_lone(images, pixels_of) -> None:
    pairs, lone = [], []
    for image in images:
        stack = np.asarray(image.masks, bool)
        rgb = pixels_of(image)
        unions, count = ndimage.label(stack.any(0))
        for label in range(1, count + 1):
            region = unions == label
            members = [m for m in stack if m.sum() and (m & region).sum() > 0.5 * m.sum()]
            if len(members) not in (1, 2) or region.sum() < 400:
                continue
            cost, pieces, box = colour_cut(rgb, region)
            if len(members) == 1:
                lone.append(cost)
                continue
            right = False
            if pieces is not None:
                one, two = (np.zeros(region.shape, bool) for _ in range(2))
                one[box], two[box] = pieces == 1, pieces == 2
                right = max(min(iou(one, members[0]), iou(two, members[1])),
                            min(iou(one, members[1]), iou(two, members[0]))) >= 0.5
            pairs.append((cost, right))
    print(f"{len(pairs)} pairs of touching annotated objects, {len(lone)} lone ones: the cut splits "
          f"{sum(r for _, r in pairs)} pairs right; its cost tells pairs from lone objects at ROC AUC "
          f"{roc_auc_score([1] * len(pairs) + [0] * len(lone), [-c for c, _ in pairs] + [-c for c in lone]):.3f}")
    for threshold in THRESHOLDS:
        print(f"  cut under {threshold}: pairs split right {sum(r and c < threshold for c, r in pairs)}, "
              f"lone objects kept whole {sum(c >= threshold for c in lone)}/{len(lone)}", flush=True)


def main(project: Path, folder: Path) -> None:
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    paths = {path.name: path for path in folder.rglob("*") if path.is_file()}
    pixels = {}

    def pixels_of(image):
        if image.file_name not in pixels:
            pixels[image.file_name] = np.asarray(Image.open(paths[Path(image.file_name).name]).convert("RGB"))
        return pixels[image.file_name]

    pairs_and_lone(images, pixels_of)
    loaded = common.final_objects(project, images)
    cuts = {}
    for image in images:
        if image.file_name in loaded:
            rgb = pixels_of(image)
            cuts[image.file_name] = [colour_cut(rgb, m) if m.sum() >= 400 else (2.0, None, None)
                                     for m in loaded[image.file_name][0]]
    as_they_are = {name: real_dev.StagePrediction(masks, scores, None) for name, (masks, scores) in loaded.items()}
    print(f"final objects as they are: {common.figures(images, as_they_are)}")
    for how in ("replaced", "kept, pieces added at half", "cut unless top", "ranked down (x0.5), not cut"):
        for threshold in THRESHOLDS:
            stage, cut_count = {}, 0
            for name, (masks, scores) in loaded.items():
                out_masks, out_scores = [], []
                top = int(np.argmax(scores)) if len(scores) else -1
                for position, (mask, score, (cost, pieces, box)) in enumerate(zip(masks, scores, cuts[name])):
                    parts = []
                    if cost < threshold and pieces is not None and not (how == "cut unless top" and position == top):
                        for piece in (1, 2):
                            full = np.zeros(mask.shape, bool)
                            full[box] = pieces == piece
                            parts.append(full)
                        if min(p.sum() for p in parts) < centres.MIN_PIECE_SHARE * mask.sum():
                            parts = []
                    cut_count += bool(parts)
                    if parts and how == "ranked down (x0.5), not cut":
                        score, parts = score * 0.5, []
                    if not parts or how == "kept, pieces added at half":
                        out_masks.append(mask)
                        out_scores.append(score)
                    factor = 0.5 if how == "kept, pieces added at half" else 1.0
                    for part in parts:
                        out_masks.append(part)
                        out_scores.append(score * factor * compactness_weight(common.solidity(part)))
                order = np.argsort(out_scores)[::-1]
                stage[name] = real_dev.StagePrediction(np.array(out_masks)[order], np.array(out_scores)[order], None)
            print(f"{how}, cost under {threshold} ({cut_count} cut): {common.figures(images, stage)}", flush=True)

if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
