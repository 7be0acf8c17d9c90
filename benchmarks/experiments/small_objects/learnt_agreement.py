"""Agreement learnt across the folder (issue 20, item 4; the next idea of the views' ablation): whether the second
scale finds a first-run object again is a noisy per-object label; a logistic model over each object's shape (area,
its box's fill, touching the border, its score and rank in the image), fitted across the folder's images two-fold
(each half scored by the model of the other), gives every object a probability p of being found again. The first
run's objects weighed 0.7 + 0.3 x (a x found + (1 - a) x p) for a = 1 (the engine), 0.5, 0; the three views' objects
added as the engine adds them. Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/learnt_agreement.py FOLDER PROJECT"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from benchmarks.experiments.small_objects.mirror_view import REAL_DEV, best, score  # noqa: E402
from benchmarks.experiments.small_objects.views_ablation import combined, load  # noqa: E402
from engine.method.second_scale import UNCONFIRMED_WEIGHT  # noqa: E402


def shape_features(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    if not len(masks):
        return np.zeros((0, 6))
    height, width = masks.shape[1:]
    rows, cols = masks.any(2), masks.any(1)
    area = masks.sum((1, 2)).astype(float)
    box = np.array([(np.ptp(r.nonzero()[0]) + 1) * (np.ptp(c.nonzero()[0]) + 1) if a else 1
                    for r, c, a in zip(rows, cols, area)], float)
    border = (rows[:, 0] | rows[:, -1] | cols[:, 0] | cols[:, -1]).astype(float)
    rank = np.argsort(np.argsort(-scores)) / max(len(scores), 1)
    return np.stack([np.log(area / (height * width) + 1e-6), area / box, border, scores, rank,
                     np.full(len(masks), np.log(len(masks)))], 1)


def main() -> None:
    folder, project_dir = Path(sys.argv[1]), Path(sys.argv[2])
    images, data, names = load(folder, project_dir)
    real = folder.name == REAL_DEV
    keys = sorted(data)
    for name in keys:
        d = data[name]
        d["found"] = best(d["own"], d["views"][names[0]][0]) >= 0.5
        d["x"] = shape_features(d["own"], d["scores"])
    p = {}
    halves = [keys[0::2], keys[1::2]]
    for fit, use in ((halves[0], halves[1]), (halves[1], halves[0])):
        x = np.concatenate([data[k]["x"] for k in fit])
        y = np.concatenate([data[k]["found"] for k in fit])
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        for k in use:
            p[k] = model.predict_proba(data[k]["x"])[:, 1] if len(data[k]["x"]) else np.zeros(0)
    for a in (1.0, 0.5, 0.0):
        for k in keys:
            d = data[k]
            soft = a * d["found"] + (1 - a) * p[k]
            d["weighted"] = d["scores"] * (UNCONFIRMED_WEIGHT + (1 - UNCONFIRMED_WEIGHT) * soft)
        view = {k: dict(data[k], scores=data[k]["weighted"]) for k in keys}
        print(f"a = {a}: found x {a}, learnt x {1 - a}".ljust(40),
              score(images, view, real, combine=combined, used=tuple(names), agree_with=()), flush=True)


if __name__ == "__main__":
    main()
