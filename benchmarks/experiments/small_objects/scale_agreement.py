"""Consensus across scales (issue 20, item 4): a project run with ``--second-scale``, each first-scale object the
second scale finds again (IoU >= 0.5 with one of its final objects) kept at its score, the others weighed down
(x w, or by their best IoU), the overlapping objects as the engine adds them, optionally weighed again.
CorLoc / box AP50 / mask AP50 / recall@0.5 (real-dev: pooled, then the mean of its sources). Scores are read as
predicted (any ``scale_weights`` the engine applied divided out). Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/scale_agreement.py PROJECT FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.real_dev import StagePrediction, StagePredictions  # noqa: E402
from engine.atomic import read_json  # noqa: E402
from engine.state.project import Project, joined_masks, load_image_predictions  # noqa: E402

METRICS = ("corloc", "box_ap50", "mask_ap50", "mask_recall50")


def load(project_dir: Path, folder: Path) -> tuple:
    project, finer = Project(project_dir), Project(project_dir / "second_scale")
    real = (folder / "ground_truth.json").exists() and folder.name == "real-dev"
    images = real_dev.load_ground_truth(folder, default_source=folder.name)
    if real:
        images = [i for i in images if i.source not in real_dev.DENSE_SOURCES]
    entries = {Path(e["relative_path"]).name: e for e in read_json(project.images_path)}
    data = {}
    for image in images:
        entry = entries.get(Path(image.file_name).name)
        path = project.predictions_path(entry["image_id"]) if entry else None
        if path is None or not path.exists():
            continue
        semantic, own, _, scores = load_image_predictions(path)
        with np.load(path) as stored:
            if "scale_weights" in stored.files:
                scores = scores / stored["scale_weights"]
        extra, extra_scores = np.zeros((0,) + own.shape[1:], bool), np.zeros(0)
        if project.overlapping_path(entry["image_id"]).exists():
            _, extra, _, extra_scores = load_image_predictions(project.overlapping_path(entry["image_id"]))
        fine_path = finer.predictions_path(entry["image_id"])
        fine = load_image_predictions(fine_path)[1] if fine_path.exists() else np.zeros((0,) + own.shape[1:], bool)
        best = np.zeros(len(own))
        if len(own) and len(fine):
            a = np.asarray(own, bool).reshape(len(own), -1).astype(np.float32)
            b = np.asarray(fine, bool).reshape(len(fine), -1).astype(np.float32)
            inter = a @ b.T
            best = (inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)).max(1)
        data[image.file_name] = (own, np.asarray(scores, float), extra, np.asarray(extra_scores, float), best, semantic)
    return images, data, real


def score(images, data, real, weight, extra_factor: float = 1.0) -> str:
    loaders = {}
    for name, (own, scores, extra, extra_scores, best, semantic) in data.items():
        def predicted(own=own, scores=scores, extra=extra, extra_scores=extra_scores, best=best, semantic=semantic):
            return StagePrediction(joined_masks(own, extra),
                                   np.concatenate([scores * weight(best), extra_scores * extra_factor]), semantic)
        loaders[name] = predicted
    result = real_dev.score_stage(images, StagePredictions(loaders), None, per_source=real)
    line = " / ".join(real_dev._fmt(result["total"][m]) for m in METRICS)
    if real:
        line += "   source mean " + " / ".join(real_dev._fmt(result["source_mean"][m]) for m in METRICS[:3])
    return line


def main() -> None:
    images, data, real = load(Path(sys.argv[1]), Path(sys.argv[2]))
    print("as predicted (no agreement)        ", score(images, data, real, np.ones_like))
    for w in (0.5, 0.7, 0.85):
        print(f"not found again x{w:<4}             ",
              score(images, data, real, lambda b, w=w: np.where(b >= .5, 1, w)))
    print("x (0.5 + 0.5 best IoU)             ", score(images, data, real, lambda b: 0.5 + 0.5 * b))
    print("x best IoU^0.5                     ", score(images, data, real, lambda b: np.maximum(b, .05) ** .5))
    for factor in (0.7, 1.4):
        print(f"x0.7, overlapping ones x{factor} again ",
              score(images, data, real, lambda b: np.where(b >= .5, 1, .7), factor))


if __name__ == "__main__":
    main()
