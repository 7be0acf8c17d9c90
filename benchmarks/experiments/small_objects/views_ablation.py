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
from benchmarks.experiments.small_objects.mirror_view import REAL_DEV, as_predicted, best, score  # noqa: E402
from benchmarks.real_dev import StagePrediction  # noqa: E402
from engine.atomic import read_json  # noqa: E402
from engine.method.second_scale import SCORE_WEIGHT, UNCONFIRMED_WEIGHT  # noqa: E402
from engine.orchestration.views import VIEWS  # noqa: E402
from engine.state.project import Project, joined_masks, load_image_predictions  # noqa: E402


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
        semantic, own, scores = as_predicted(project.predictions_path(entry["image_id"]))
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


def promote_wholes(own: np.ndarray, own_scores: np.ndarray, added: np.ndarray, added_scores: np.ndarray,
                   factor: float, cover: float = 0.8, ratio: tuple = (1.5, 4.0)) -> np.ndarray:
    """Added objects that hold a first-run object (>= ``cover`` of it, ``ratio`` times its area) scored
    ``factor`` x that object's score where that is higher: the whole a view sees ranked beside its part."""
    if not len(own) or not len(added):
        return added_scores
    a = own.reshape(len(own), -1).astype(np.float32)
    b = added.reshape(len(added), -1).astype(np.float32)
    inter, own_area, added_area = a @ b.T, a.sum(1), b.sum(1)
    holds = (inter >= cover * own_area[:, None]) & (added_area[None] >= ratio[0] * own_area[:, None]) & \
        (added_area[None] <= ratio[1] * own_area[:, None])
    lifted = np.where(holds, own_scores[:, None] * factor, 0).max(0)
    return np.maximum(added_scores, lifted)


def combined(d: dict, used: tuple, agree_with: tuple, votes: tuple | None = None,
             wholes: float | None = None) -> StagePrediction:
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
    if wholes is not None and len(masks) > 1:
        added, added_scores = np.concatenate(masks[1:]), np.concatenate(scores[1:])
        masks, scores = [masks[0], added], [scores[0], promote_wholes(own, scores[0], added, added_scores, wholes)]
    stacked = masks[0]
    for extra in masks[1:]:
        if len(extra):
            stacked = joined_masks(stacked, extra)
    return StagePrediction(stacked, np.concatenate(scores), d["semantic"])


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
        runs.append(("all three, votes of the two scales' views (0.7, 0.85, 1.0)",
                     dict(used=tuple(names), agree_with=(names[0], names[2]), votes=(0.7, 0.85, 1.0))))
        for factor in (0.8, 1.05):
            runs.append((f"all three, wholes over a part at {factor} x its score",
                         dict(used=tuple(names), agree_with=scale, wholes=factor)))
    for label, kw in runs:
        print(f"{label:<60}", score(images, data, real, combine=combined, **kw), flush=True)


if __name__ == "__main__":
    main()
