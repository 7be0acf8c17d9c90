"""Two scales' final objects together (issue 20, item 4: "a second scale"): a folder's project at the default input
size and one at a larger size (``--input-size 672``), each image's objects combined: the finer project's objects that
no default object holds (IoU < T) added (below every default object, or at half their own score, or at their
score: overlapping the default ones, as a detections list may); or, as one label map can hold them, only those at
least mostly free of the default objects, their free pixels; or the default objects that hold two or more finer
ones replaced by them. CorLoc / box AP50 / mask AP50 / recall@0.5. Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/two_scales.py DEFAULT_PROJECT FINER_PROJECT FOLDER [IOUS]
IOUS (e.g. 0.5,0.7): only the finer objects no default object holds at each, at half score."""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402

MIN_PIXELS = 64


def ious(masks: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (masks & mask).sum((1, 2)) / np.maximum((masks | mask).sum((1, 2)), 1)


def added_overlapping(coarse, fine, threshold: float, how: str):
    masks, scores = coarse
    fine_masks, fine_scores = fine
    keep = [j for j in range(len(fine_masks)) if not len(masks) or ious(masks, fine_masks[j]).max() < threshold]
    if how == "below":
        extra = fine_scores[keep] / max(fine_scores.max(), 1e-9) * (scores.min() if len(scores) else 1.0) * 0.99
    else:
        extra = fine_scores[keep] * (0.5 if how == "half" else 1.0)
    return np.concatenate([masks, fine_masks[keep]]), np.concatenate([scores, extra]), len(keep)


def added_free(coarse, fine, free_share: float):
    masks, scores = coarse
    fine_masks, fine_scores = fine
    taken = masks.any(0) if len(masks) else np.zeros(fine_masks.shape[1:], bool)
    extra, extra_scores = [], []
    for j in np.argsort(-fine_scores):
        free = fine_masks[j] & ~taken
        if free.sum() >= max(free_share * fine_masks[j].sum(), MIN_PIXELS):
            extra.append(free)
            extra_scores.append(fine_scores[j] * 0.5)
            taken = taken | free
    stacked = np.asarray(extra, bool).reshape(-1, *fine_masks.shape[1:])
    return np.concatenate([masks, stacked]), np.concatenate([scores, extra_scores]), len(extra)


def replaced(coarse, fine, inside_share: float = 0.8, cover: float = 0.5):
    masks, scores = coarse
    fine_masks, fine_scores = fine
    area = fine_masks.sum((1, 2))
    out_masks, out_scores, count = [], [], 0
    for i, mask in enumerate(masks):
        inside = (fine_masks & mask).sum((1, 2))
        pieces = np.nonzero((inside >= inside_share * area) & (area >= MIN_PIXELS))[0]
        covered = (fine_masks[pieces].any(0) & mask).sum() / max(mask.sum(), 1) if len(pieces) else 0.0
        if len(pieces) >= 2 and covered >= cover:
            count += 1
            for j in pieces:
                out_masks.append(fine_masks[j] & mask)
                out_scores.append(scores[i] * fine_scores[j] / fine_scores[pieces].max())
        else:
            out_masks.append(mask)
            out_scores.append(scores[i])
    return np.asarray(out_masks, bool), np.asarray(out_scores), count


def main(default: Path, finer: Path, folder: Path, thresholds: tuple = ()) -> None:
    """``thresholds``: only the finer objects under each of these IoUs, at half score (else every variant)."""
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    coarse, fine = common.final_objects(default, images), common.final_objects(finer, images)

    def report(label: str, combine) -> None:
        stage, changed = {}, 0
        for name, objects in coarse.items():
            masks, scores = objects
            if name in fine and len(fine[name][0]) and len(masks):
                masks, scores, count = combine(objects, fine[name])
                changed += count
            order = np.argsort(-np.asarray(scores))
            stage[name] = real_dev.StagePrediction(np.asarray(masks)[order], np.asarray(scores)[order], None)
        print(f"{label} ({changed}): {common.figures(images, stage)}", flush=True)

    report("the default project alone", lambda c, f: (*c, 0))
    for threshold in thresholds:
        report(f"finer objects no default object holds (IoU < {threshold}), added half",
               lambda c, f, t=threshold: added_overlapping(c, f, t, "half"))
    if thresholds:
        return
    for threshold in (0.3, 0.5):
        for how in ("below", "half", "as scored"):
            report(f"finer objects no default object holds (IoU < {threshold}), added {how}",
                   lambda c, f, t=threshold, h=how: added_overlapping(c, f, t, h))
    for free_share in (0.8, 0.5):
        report(f"finer objects at least {free_share:.0%} free, their free pixels at half score (one label map)",
               lambda c, f, s=free_share: added_free(c, f, s))
    report("default objects holding two or more finer ones (80 % inside, covering half) replaced by them", replaced)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),
         tuple(float(v) for v in sys.argv[4].split(",")) if len(sys.argv) > 4 else ())
