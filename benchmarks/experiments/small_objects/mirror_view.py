"""Views of a folder together (issue 20, item 4: "test-time variants (flip, a second scale)"): a project run with
``--second-scale`` (its first run and ``second_scale/``) and a project of the same folder mirrored left to right
(made by mirroring the image files and running ``maskdistill run`` on them with the same seed; its masks are mirrored
back here). Each view's objects that no object already there holds (IoU < 0.5) added at half their score; the first
run's objects weighed by whether the second scale, the mirrored run, either or each finds them again (x0.7).
CorLoc / box AP50 / mask AP50 / recall@0.5 (real-dev: pooled, then the mean of its sources). Nothing is written.
From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/mirror_view.py FOLDER PROJECT MIRRORED_PROJECT"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.real_dev import StagePrediction, StagePredictions  # noqa: E402
from engine.atomic import read_json  # noqa: E402
from engine.state.project import Project, joined_masks, load_image_predictions, predicted_scores  # noqa: E402

REAL_DEV = "real-dev"
WEIGHT = 0.7


def ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    a, b = a.reshape(len(a), -1).astype(np.float32), b.reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    return inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)


def best(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = ious(a, b)
    return m.max(1) if m.shape[1] else np.zeros(len(a))


def predictions(project: Project, image_id: str, empty: np.ndarray) -> tuple:
    path = project.predictions_path(image_id)
    if not path.exists():
        return empty, np.zeros(0)
    _, masks, _, scores = load_image_predictions(path)
    return np.asarray(masks, bool), np.asarray(scores, float)


def as_predicted(path: Path) -> tuple:
    """(semantic map, masks, scores) of a prediction file, its scores as predicted (before the second scale's
    agreement weighed them)."""
    semantic, masks, _, _ = load_image_predictions(path)
    return semantic, np.asarray(masks, bool), predicted_scores(path)


def load(folder: Path, project_dir: Path, mirrored_dir: Path) -> tuple:
    project, finer, mirrored = Project(project_dir), Project(project_dir / "second_scale"), Project(mirrored_dir)
    images = real_dev.load_ground_truth(folder, default_source=folder.name)
    if folder.name == REAL_DEV:
        images = [i for i in images if i.source not in real_dev.DENSE_SOURCES]
    entries = {Path(e["relative_path"]).name: e for e in read_json(project.images_path)}
    mirrored_entries = {Path(e["relative_path"]).name: e for e in read_json(mirrored.images_path)}
    data = {}
    for image in images:
        name = Path(image.file_name).name
        entry, other = entries.get(name), mirrored_entries.get(name)
        if entry is None or other is None or not project.predictions_path(entry["image_id"]).exists():
            continue
        semantic, own, scores = as_predicted(project.predictions_path(entry["image_id"]))
        empty = np.zeros((0,) + own.shape[1:], bool)
        fine, fine_scores = predictions(finer, entry["image_id"], empty)
        mirror, mirror_scores = predictions(mirrored, other["image_id"], empty)
        data[image.file_name] = dict(own=own, scores=np.asarray(scores, float), fine=fine, fine_scores=fine_scores,
                                     mirror=np.ascontiguousarray(mirror[:, :, ::-1]), mirror_scores=mirror_scores,
                                     semantic=semantic)
    return images, data


def combined(d: dict, scale: bool, mirror: bool, agree: str) -> StagePrediction:
    own = d["own"]
    masks, scores, held = [own], [d["scores"]], own
    for used, view, view_scores in ((scale, d["fine"], d["fine_scores"]), (mirror, d["mirror"], d["mirror_scores"])):
        if used and len(view):
            keep = np.flatnonzero(best(view, held) < 0.5)
            masks.append(view[keep])
            scores.append(view_scores[keep] * 0.5)
            held = np.concatenate([held, view[keep]])
    by_scale = best(own, d["fine"]) >= 0.5 if scale else np.ones(len(own), bool)
    by_mirror = best(own, d["mirror"]) >= 0.5 if mirror else np.ones(len(own), bool)
    weights = {"none": np.ones(len(own)), "scale": np.where(by_scale, 1, WEIGHT),
               "mirror": np.where(by_mirror, 1, WEIGHT), "any": np.where(by_scale | by_mirror, 1, WEIGHT),
               "each": np.where(by_scale, 1, WEIGHT) * np.where(by_mirror, 1, WEIGHT)}[agree]
    scores[0] = scores[0] * weights
    stacked = masks[0]
    for extra in masks[1:]:
        if len(extra):
            stacked = joined_masks(stacked, extra)
    return StagePrediction(stacked, np.concatenate(scores), d["semantic"])


def score(images: list, data: dict, real: bool, combine=None, **kw) -> str:
    """One line of figures for the images' predictions ``combine(d, **kw)`` (by default :func:`combined`)."""
    combine = combine or combined
    loaders = {name: (lambda d=d: combine(d, **kw)) for name, d in data.items()}
    result = real_dev.score_stage(images, StagePredictions(loaders), None, per_source=real)
    line = " / ".join(real_dev._fmt(result["total"][k]) for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"))
    if real:
        line += "   source mean " + " / ".join(real_dev._fmt(result["source_mean"][k])
                                                for k in ("corloc", "box_ap50", "mask_ap50"))
    return line


def main() -> None:
    folder, project_dir, mirrored_dir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    images, data = load(folder, project_dir, mirrored_dir)
    real = folder.name == REAL_DEV
    for label, kw in (("first run alone", dict(scale=False, mirror=False, agree="none")),
                      ("first + mirrored, no agreement", dict(scale=False, mirror=True, agree="none")),
                      ("first + mirrored, mirrored agreement", dict(scale=False, mirror=True, agree="mirror")),
                      ("two scales (scale agreement)", dict(scale=True, mirror=False, agree="scale")),
                      ("two scales + mirrored, scale agreement", dict(scale=True, mirror=True, agree="scale")),
                      ("two scales + mirrored, either agrees", dict(scale=True, mirror=True, agree="any")),
                      ("two scales + mirrored, each agreement", dict(scale=True, mirror=True, agree="each"))):
        print(f"{label:<40}", score(images, data, real, **kw))


if __name__ == "__main__":
    main()
