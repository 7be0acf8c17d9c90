"""What each view adds (issue 20, item 4): a project run with ``--second-scale N --mirror-view`` holds its first run
and three views (``second_scale/``, ``mirror_view/``, ``mirror_second_scale/``, engine.orchestration.views). Here
the views' objects are added over the first run's as the engine adds them (in order, those no object before holds
at IoU < 0.5, at half their score; the first run's objects x0.7 where the second scale does not find them again),
for subsets of the views, and each subset scored: CorLoc / box AP50 / mask AP50 / recall@0.5 (real-dev: pooled,
then the mean of its sources). Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/views_ablation.py FOLDER PROJECT"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.real_dev import StagePrediction, StagePredictions  # noqa: E402
from engine.atomic import read_json  # noqa: E402
from engine.method.second_scale import SCORE_WEIGHT, UNCONFIRMED_WEIGHT  # noqa: E402
from engine.orchestration.views import VIEWS  # noqa: E402
from engine.state.project import Project, joined_masks, load_image_predictions  # noqa: E402

REAL_DEV = "real-dev"


def ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    a, b = a.reshape(len(a), -1).astype(np.float32), b.reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    return inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)


def best(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = ious(a, b)
    return m.max(1) if m.shape[1] else np.zeros(len(a))


def load(folder: Path, project_dir: Path) -> tuple:
    project = Project(project_dir)
    views = {view.name: (view, Project(project_dir / view.folder)) for view in VIEWS
             if (project_dir / view.folder / "images.json").exists()}
    images = real_dev.load_ground_truth(folder, default_source=folder.name)
    if folder.name == REAL_DEV:
        images = [i for i in images if i.source not in real_dev.DENSE_SOURCES]
    entries = {Path(e["relative_path"]).name: e for e in read_json(project.images_path)}
    view_entries = {name: {Path(e["relative_path"]).name: e for e in read_json(p.images_path)}
                    for name, (_, p) in views.items()}
    data = {}
    for image in images:
        name = Path(image.file_name).name
        entry = entries.get(name)
        if entry is None or not project.predictions_path(entry["image_id"]).exists():
            continue
        path = project.predictions_path(entry["image_id"])
        semantic, own, _, scores = load_image_predictions(path)
        with np.load(path) as stored:  # the scores as predicted
            if "scale_weights" in stored.files:
                scores = scores / stored["scale_weights"]
        own = np.asarray(own, bool)
        seen = {}
        for view_name, (view, view_project) in views.items():
            other = view_entries[view_name].get(name)
            masks, view_scores = np.zeros((0,) + own.shape[1:], bool), np.zeros(0)
            if other is not None and view_project.predictions_path(other["image_id"]).exists():
                _, masks, _, view_scores = load_image_predictions(view_project.predictions_path(other["image_id"]))
                masks = np.asarray(masks, bool)
                masks = np.ascontiguousarray(masks[:, :, ::-1]) if view.mirrored else masks
            seen[view_name] = (masks, np.asarray(view_scores, float))
        data[image.file_name] = dict(own=own, scores=np.asarray(scores, float), views=seen, semantic=semantic)
    return images, data, list(views)


def combined(d: dict, used: tuple, agree_with: tuple, votes: tuple | None = None) -> StagePrediction:
    """``agree_with``: the first run's objects none of these views finds again (IoU >= 0.5) x0.7; ``votes``: instead,
    weight ``votes[n]`` for an object ``n`` of the views find again."""
    own = d["own"]
    masks, scores, held = [own], [d["scores"]], own
    for name in used:
        view, view_scores = d["views"][name]
        if len(view):
            keep = np.flatnonzero(best(view, held) < 0.5)
            masks.append(view[keep])
            scores.append(view_scores[keep] * SCORE_WEIGHT)
            held = np.concatenate([held, view[keep]])
    found = np.zeros(len(own), int)
    for name in agree_with:
        found += best(own, d["views"][name][0]) >= 0.5
    if votes is not None:
        scores[0] = scores[0] * np.asarray(votes)[found]
    elif agree_with:
        scores[0] = scores[0] * np.where(found > 0, 1.0, UNCONFIRMED_WEIGHT)
    stacked = masks[0]
    for extra in masks[1:]:
        if len(extra):
            stacked = joined_masks(stacked, extra)
    return StagePrediction(stacked, np.concatenate(scores), d["semantic"])


def score(images: list, data: dict, real: bool, **kw) -> str:
    loaders = {name: (lambda d=d: combined(d, **kw)) for name, d in data.items()}
    result = real_dev.score_stage(images, StagePredictions(loaders), None, per_source=real)
    line = " / ".join(real_dev._fmt(result["total"][k]) for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"))
    if real:
        line += "   source mean " + " / ".join(real_dev._fmt(result["source_mean"][k])
                                                for k in ("corloc", "box_ap50", "mask_ap50"))
    return line


def main() -> None:
    folder, project_dir = Path(sys.argv[1]), Path(sys.argv[2])
    images, data, names = load(folder, project_dir)
    real = folder.name == REAL_DEV
    scale = ("second scale",)
    subsets = [("first run alone", (), ())]
    for k in range(1, len(names) + 1):
        subsets.append((" + ".join(names[:k]), tuple(names[:k]), scale))
    if len(names) == 3:
        subsets.append((f"{names[0]} + {names[2]}", (names[0], names[2]), scale))
        subsets.append(("all three, either scale agrees", tuple(names), (names[0], names[2])))
    runs = [(label, dict(used=used, agree_with=agree)) for label, used, agree in subsets]
    if len(names) == 3:
        for votes in ((0.7, 0.85, 1.0, 1.0), (0.5, 0.7, 0.85, 1.0), (0.6, 0.8, 0.9, 1.0)):
            runs.append((f"all three, votes of the three views {votes}",
                         dict(used=tuple(names), agree_with=tuple(names), votes=votes)))
    for label, kw in runs:
        print(f"{label:<60}", score(images, data, real, **kw), flush=True)


if __name__ == "__main__":
    main()
