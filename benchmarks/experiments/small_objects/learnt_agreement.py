"""Agreement learnt across the folder (issue 20, item 4; the next idea of the views' ablation): whether the views
find a first-run object again is a noisy per-object label; a logistic model fitted across the folder's images
two-fold (each half scored by the model of the other) gives every object a probability p of being found again. Its
inputs: each object's shape (area, its box's fill, touching the border, its score and rank in the image), and with
``--embeddings`` also what it looks like (its typicality embedding, engine.method.typicality.object_embeddings,
reduced by a PCA fitted on the folder's objects). Its label: found again by the second scale (``found``), or by
at least two of the three views (``--label votes``). The first run's objects weighed 0.7 + 0.3 x (a x found +
(1 - a) x p) for a = 1 (the engine), 0.5, 0; the three views' objects added as the engine adds them. Nothing is
written. From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/learnt_agreement.py FOLDER PROJECT [--embeddings N]
        [--label found|votes] [--views 1] [--floor 0.5]"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from benchmarks.experiments.small_objects.mirror_view import REAL_DEV, best, score  # noqa: E402
from benchmarks.experiments.small_objects.views_ablation import combined, load  # noqa: E402
from engine.atomic import read_json  # noqa: E402
from engine.method.features import FeatureCache  # noqa: E402
from engine.method.learnt_agreement import SHAPE_FEATURES, shape_features  # noqa: E402
from engine.method.second_scale import UNCONFIRMED_WEIGHT  # noqa: E402
from engine.method.typicality import object_embeddings  # noqa: E402
from engine.state.project import Project  # noqa: E402


def embeddings(project_dir: Path, data: dict) -> dict:
    """{file name: (m, D) typicality embeddings of its first-run objects} from the project's cached features."""
    project = Project(project_dir)
    cache = FeatureCache(project.features_dir)
    entries = {Path(e["relative_path"]).name: e for e in read_json(project.images_path)}
    out = {}
    for name, d in data.items():
        features = cache.get(entries[Path(name).name]["feature_key"])
        out[name] = object_embeddings(features, d["own"]) if len(d["own"]) else np.zeros((0, features.tokens.shape[1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("project", type=Path)
    parser.add_argument("--embeddings", type=int, default=0, help="PCA components of the embeddings (0: shape only)")
    parser.add_argument("--label", choices=("found", "votes"), default="found")
    parser.add_argument("--c", type=float, default=1.0, help="the logistic model's inverse regularisation")
    parser.add_argument("--floor", type=float, default=UNCONFIRMED_WEIGHT, help="the weight of an object surely not "
                        "found again (the engine's 0.7)")
    parser.add_argument("--views", type=int, default=3, help="how many of the project's views to add (1: the "
                        "second scale alone, as a run with --second-scale only)")
    args = parser.parse_args()
    images, data, names = load(args.folder, args.project)
    real = args.folder.name == REAL_DEV
    keys = sorted(data)
    for name in keys:
        d = data[name]
        d["found"] = best(d["own"], d["views"][names[0]][0]) >= 0.5
        votes = sum((best(d["own"], d["views"][n][0]) >= 0.5).astype(int) for n in names)
        d["label"] = d["found"] if args.label == "found" else votes >= 2
        d["x"] = shape_features(d["own"], d["scores"])
    if args.embeddings:
        pooled = embeddings(args.project, {k: data[k] for k in keys})
        pca = PCA(args.embeddings, random_state=0).fit(np.concatenate([pooled[k] for k in keys]))
        for k in keys:
            if len(pooled[k]):
                data[k]["x"] = np.concatenate([data[k]["x"], pca.transform(pooled[k])], 1)
            else:
                data[k]["x"] = np.zeros((0, SHAPE_FEATURES + args.embeddings))
    print(f"{len(keys)} images, {sum(len(data[k]['own']) for k in keys)} objects, "
          f"{np.mean(np.concatenate([data[k]['label'] for k in keys])):.2f} labelled found", flush=True)
    p = {}
    halves = [keys[0::2], keys[1::2]]
    for fit, use in ((halves[0], halves[1]), (halves[1], halves[0])):
        x = np.concatenate([data[k]["x"] for k in fit])
        y = np.concatenate([data[k]["label"] for k in fit])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=args.c, max_iter=2000)).fit(x, y)
        for k in use:
            p[k] = model.predict_proba(data[k]["x"])[:, 1] if len(data[k]["x"]) else np.zeros(0)
    for a in (1.0, 0.5, 0.0):
        for k in keys:
            d = data[k]
            soft = a * d["found"] + (1 - a) * p[k]
            d["weighted"] = d["scores"] * (args.floor + (1 - args.floor) * soft)
        view = {k: dict(data[k], scores=data[k]["weighted"]) for k in keys}
        print(f"a = {a}: found x {a}, learnt x {1 - a}".ljust(40),
              score(images, view, real, combine=combined, used=tuple(names[:args.views]), agree_with=()), flush=True)


if __name__ == "__main__":
    main()
