"""Groups the second scale splits (issue 20; the views' ablation's next idea 3): a first-run object that holds two
or more of a view's objects -- each mostly inside it (>= 80 % of the piece), each >= 10 % of it, together >= 60 %
of it, none found again as the object itself (IoU < 0.5) -- is taken for a group of touching objects: its score
x ``demote``, and its pieces scored at least ``lift`` x the group's score (before the views' half weight). The
three views added as the engine adds them, the second scale's agreement as the engine has it. Nothing is written.
From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/group_split.py FOLDER PROJECT"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks.experiments.small_objects.mirror_view import REAL_DEV, score  # noqa: E402
from benchmarks.experiments.small_objects.views_ablation import combined, load  # noqa: E402
from engine.method.second_scale import SCORE_WEIGHT  # noqa: E402


def pieces_of(own: np.ndarray, view: np.ndarray, inside: float = 0.8, share: float = 0.1,
              cover: float = 0.6) -> list:
    """For each first-run object, the indices of the view's objects it holds as a group's pieces (empty where it
    is not split into two or more)."""
    if not len(own) or not len(view):
        return [[] for _ in own]
    a = own.reshape(len(own), -1).astype(np.float32)
    b = view.reshape(len(view), -1).astype(np.float32)
    inter, own_area, view_area = a @ b.T, a.sum(1), b.sum(1)
    iou = inter / np.maximum(own_area[:, None] + view_area[None] - inter, 1)
    out = []
    for i in range(len(own)):
        if (iou[i] >= 0.5).any():
            out.append([])
            continue
        held = np.flatnonzero((inter[i] >= inside * view_area) & (view_area >= share * own_area[i]))
        if len(held) < 2:
            out.append([])
            continue
        union = np.logical_or.reduce(view[held].reshape(len(held), -1), axis=0)
        covered = (union & a[i].astype(bool)).sum() / max(own_area[i], 1)
        out.append(list(held) if covered >= cover else [])
    return out


def main() -> None:
    folder, project_dir = Path(sys.argv[1]), Path(sys.argv[2])
    images, data, names = load(folder, project_dir)
    real = folder.name == REAL_DEV
    scale = (names[0],)
    print("engine".ljust(50), score(images, data, real, combine=combined, used=tuple(names), agree_with=scale),
          flush=True)
    split = {k: {n: pieces_of(d["own"], d["views"][n][0]) for n in (names[0], names[-1])} for k, d in data.items()}
    for source in ((names[0],), (names[0], names[-1])):
        groups = sum(any(split[k][n][i] for n in source) for k in data for i in range(len(data[k]["own"])))
        print(f"{' or '.join(source)}: {groups} first-run objects split into >= 2 pieces", flush=True)
        for demote, lift in ((0.7, 0.0), (0.5, 0.0), (0.7, 1.0), (0.5, 1.0), (1.0, 1.0)):
            view = {}
            for k, d in data.items():
                scores = d["scores"].copy()
                views = dict(d["views"])
                for n in source:
                    masks, view_scores = views[n]
                    view_scores = view_scores.copy()
                    for i, held in enumerate(split[k][n]):
                        if held:
                            view_scores[held] = np.maximum(view_scores[held], lift * d["scores"][i] / SCORE_WEIGHT)
                    views[n] = (masks, view_scores)
                grouped = [i for i in range(len(scores)) if any(split[k][n][i] for n in source)]
                scores[grouped] *= demote
                view[k] = dict(d, scores=scores, views=views)
            print(f"  group x {demote}, pieces >= {lift} x the group".ljust(50),
                  score(images, view, real, combine=combined, used=tuple(names), agree_with=scale), flush=True)


if __name__ == "__main__":
    main()
