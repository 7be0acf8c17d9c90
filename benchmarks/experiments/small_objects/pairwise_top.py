"""Pairwise ranking of an image's first two objects, learnt across the folder (issue 20; the learnt agreement's next
idea: in 22 of feral_cats' 52 CorLoc misses the right object is ranked second). The first run's objects are weighed
as the engine weighs them (engine.method.learnt_agreement), then in every image the two best, a and b, are compared:
first what the views say of them against the ground truth (is a pairwise label any good?), then a logistic model
over the pair's difference (shape, typicality embedding's PCA) and how the two relate (IoU, the share of each
inside the other), fitted two-fold over the images on the pairs the views tell apart (votes of the three views, or
the second scale alone), puts b first where it says b is the better with probability above a margin. Nothing is
written. From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/pairwise_top.py FOLDER PROJECT [--label votes|found]
        [--signals-only]"""
import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from skimage.morphology import convex_hull_image  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.small_objects.learnt_agreement import embeddings  # noqa: E402
from benchmarks.experiments.small_objects.mirror_view import REAL_DEV, best, score  # noqa: E402
from benchmarks.experiments.small_objects.views_ablation import combined, load  # noqa: E402
from engine.masks import bbox_xywh  # noqa: E402
from engine.method.learnt_agreement import learnt_agreement_weights, learnt_found, shape_features  # noqa: E402


def relation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How mask a relates to mask b: IoU, share of b inside a, share of a inside b, log area ratio a / b."""
    inter = float((a & b).sum())
    area_a, area_b = float(a.sum()), float(b.sum())
    return np.array([inter / max(area_a + area_b - inter, 1), inter / max(area_b, 1), inter / max(area_a, 1),
                     np.log(max(area_a, 1) / max(area_b, 1))])


def pair_inputs(d: dict, first: int, second: int) -> np.ndarray:
    """The pair's inputs, antisymmetric: swapping a and b negates them (the relation's shares swap places)."""
    rel = relation(d["own"][first], d["own"][second])
    swapped = relation(d["own"][second], d["own"][first])
    return np.concatenate([d["x"][first] - d["x"][second], rel - swapped])


def signals_of_pairs(data: dict, pairs: dict, pooled: dict) -> None:
    """Which per-object signal tells b from a where only b is right, without turning the pairs where only a is:
    the share of each kind of pair where the signal is higher for b."""
    tops = np.stack([pooled[k][np.argmax(data[k]["weighted"])] for k in pairs])
    prototype = tops.mean(0) / np.linalg.norm(tops.mean(0))
    names = ("log area", "box fill", "border", "score as predicted", "rank", "log count")
    rows = {"a miss, b hit": [], "a hit, b miss": [], "both miss": []}
    for k, (a, b) in pairs.items():
        d = data[k]
        kind = ("a miss, b hit" if d["hit"][b] and not d["hit"][a] else "a hit, b miss" if d["hit"][a] and
                not d["hit"][b] else "both miss" if not d["hit"][a] and not d["hit"][b] else None)
        if kind is None:
            continue
        cosine = pooled[k] @ prototype
        solidity = [m.sum() / max(float(convex_hull_image(m).sum()), 1) for m in d["own"][[a, b]]]
        values = list(d["x"][[a, b], :6].T) + [cosine[[a, b]], np.array(solidity), d["votes"][[a, b]],
                                               d["weighted"][[a, b]]]
        rows[kind].append([float(v[1] > v[0]) for v in values])
    labels = names + ("typicality cosine", "solidity", "views' votes", "engine score")
    print("share of pairs where the signal is higher for b:", {k: len(v) for k, v in rows.items()})
    for i, label in enumerate(labels):
        print(f"  {label:<22}", "  ".join(f"{kind} {np.mean([r[i] for r in v]):.2f}" for kind, v in rows.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("project", type=Path)
    parser.add_argument("--label", choices=("votes", "found"), default="votes")
    parser.add_argument("--signals-only", action="store_true", help="the label's and the signals' tables, no model")
    args = parser.parse_args()
    images, data, names = load(args.folder, args.project)
    real = args.folder.name == REAL_DEV
    truth = {i.file_name: i for i in images}
    keys = sorted(k for k in data if len(data[k]["own"]))
    for k in keys:
        d = data[k]
        d["found"] = best(d["own"], d["views"][names[0]][0]) >= 0.5
        d["votes"] = sum((best(d["own"], d["views"][n][0]) >= 0.5).astype(int) for n in names)
        d["x"] = shape_features(d["own"], d["scores"])
    pooled = embeddings(args.project, {k: data[k] for k in keys})
    p = learnt_found([data[k]["x"] for k in keys], [pooled[k] for k in keys], [data[k]["found"] for k in keys])
    pca = PCA(16, random_state=0).fit(np.concatenate([pooled[k] for k in keys]))
    for k, probability in zip(keys, p):
        d = data[k]
        d["weighted"] = d["scores"] * learnt_agreement_weights(d["found"], probability)
        d["x"] = np.concatenate([d["x"], pca.transform(pooled[k])], 1)
        image = truth[k]
        boxes = np.array([bbox_xywh(m) for m in d["own"]], float)
        d["hit"] = (real_dev._box_iou_matrix(boxes, image.boxes) >= 0.5).any(1) if len(image.boxes) else \
            np.zeros(len(boxes), bool)
    engine = {k: dict(data[k], scores=data[k]["weighted"]) for k in data}
    for k in data:
        if k not in keys:
            engine[k]["scores"] = data[k]["scores"]
    print("engine (learnt agreement)".ljust(44), score(images, engine, real, combine=combined, used=tuple(names),
                                                      agree_with=()), flush=True)
    # is the views' pairwise label any good? the first two objects by the engine's weighing
    table = Counter()
    pairs = {}
    for k in keys:
        d = data[k]
        if len(d["own"]) < 2:
            continue
        a, b = np.argsort(-d["weighted"], kind="stable")[:2]
        pairs[k] = (a, b)
        label = d["votes"] if args.label == "votes" else d["found"].astype(int)
        says = "b" if label[b] > label[a] else "a" if label[a] > label[b] else "tie"
        table[(f"a {'hit' if d['hit'][a] else 'miss'}, b {'hit' if d['hit'][b] else 'miss'}", f"views say {says}")] += 1
    for key in sorted(table):
        print(key, table[key])
    signals_of_pairs(data, pairs, pooled)
    # the pairwise model, two-fold over images
    usable = sorted(pairs)
    halves = (usable[0::2], usable[1::2])
    probability_b = {}
    for fit, use in ((halves[0], halves[1]), (halves[1], halves[0])):
        x, y = [], []
        for k in fit:
            d, (a, b) = data[k], pairs[k]
            label = d["votes"] if args.label == "votes" else d["found"].astype(int)
            if label[a] == label[b]:
                continue
            forward = pair_inputs(d, a, b)
            x += [forward, -forward]  # both orders: the model has no side
            y += [int(label[b] > label[a]), int(label[a] > label[b])]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(np.array(x), np.array(y))
        for k in use:
            a, b = pairs[k]
            probability_b[k] = float(model.predict_proba(pair_inputs(data[k], a, b)[None])[0, 1])
    if args.signals_only:
        return
    for margin in (0.5, 0.6, 0.7, 0.8):
        swapped = {}
        moved = Counter()
        for k in data:
            d = engine[k]
            scores = d["scores"].copy()
            if k in probability_b and probability_b[k] > margin:
                a, b = pairs[k]
                scores[a], scores[b] = scores[b], scores[a]
                moved[(bool(data[k]["hit"][a]), bool(data[k]["hit"][b]))] += 1
            swapped[k] = dict(d, scores=scores)
        print(f"swap where P(b better) > {margin}".ljust(44),
              score(images, swapped, real, combine=combined, used=tuple(names), agree_with=()),
              "swaps (a hit, b hit):", dict(moved), flush=True)


if __name__ == "__main__":
    main()
