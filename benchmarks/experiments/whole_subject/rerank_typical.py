"""Does what recurs across the folder tell the object from salient background? (issue 20: on feral_cats seed 0 the
top final object is background -- a bin, a wheel, a shelter -- in 21 of the 57 images CorLoc misses.) Each final
object's embedding (the mean of the cached tokens it covers at least half, unit length) is compared with the
folder's prototype (the score-weighted mean of the images' top objects, unit length) or with its nearest top objects
of other images; the final objects are re-ranked by score x a power of that similarity and scored; nothing is
written. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/rerank_typical.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.masks import coverage_of_crop  # noqa: E402
from engine.method.clustering import pooled_embeddings  # noqa: E402


def embeddings(masks: np.ndarray, features) -> np.ndarray:
    if os.environ.get("EMBED") == "pooled":  # the clustering's own: coverage-weighted, not centred
        vectors = pooled_embeddings(features, masks)
        if os.environ.get("CENTRE"):
            vectors = vectors - features.tokens.mean(axis=0)
        return vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-8)
    tokens = features.tokens - features.tokens.mean(axis=0)
    out = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        cells, cover = coverage_of_crop(mask[box], box, mask.shape, features.grid_hw)
        keep = cells[cover >= 0.5] if (cover >= 0.5).any() else cells[[np.argmax(cover)]]
        vector = tokens[keep].mean(axis=0)
        out.append(vector / (np.linalg.norm(vector) + 1e-8))
    return np.stack(out)


project, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = common.scored_images(folder)
features_of = common.project_features(project)
loaded = {}
for name, (masks, scores) in common.final_objects(project, images).items():
    if len(masks):
        loaded[name] = (masks, scores, embeddings(masks, features_of(name)))
names = list(loaded)
tops = np.stack([loaded[n][2][np.argmax(loaded[n][1])] for n in names])
top_scores = np.array([loaded[n][1].max() for n in names])
prototype = (tops * top_scores[:, None]).sum(0)
prototype /= np.linalg.norm(prototype)
print(f"{len(names)} images; top objects' mean cosine to the prototype {np.mean(tops @ prototype):.3f}, "
      f"mean pairwise {np.mean(tops @ tops.T):.3f}")
others = np.concatenate([loaded[n][2][np.argsort(-loaded[n][1])[1:]] for n in names])
print(f"cosine to the prototype: tops {np.mean(tops @ prototype):.3f}, the other objects {np.mean(others @ prototype):.3f}"
      f" (spread {np.std(others @ prototype):.3f})")
owner = np.arange(len(names))
similarity = {}
for i, n in enumerate(names):
    e = loaded[n][2]
    near = e @ tops[owner != i].T  # nearest top objects of the other images
    similarity[n] = {"prototype": e @ prototype, "knn10": np.sort(near, axis=1)[:, -10:].mean(1)}

print(f"baseline: {common.figures(images, {n: real_dev.StagePrediction(m, s, None) for n, (m, s, _) in loaded.items()})}")
for kind in ("prototype", "knn10"):
    for power in (1.0, 2.0, 4.0, 8.0):
        stage = {n: real_dev.StagePrediction(m, s * np.power(np.clip((1 + similarity[n][kind]) / 2, 0, 1), power), None)
                 for n, (m, s, _) in loaded.items()}
        print(f"{kind} ((1+cos)/2)^{power}: {common.figures(images, stage)}", flush=True)

# the prototype sharpened: the tops re-chosen by the re-ranked scores, the prototype rebuilt from them
for power in (2.0, 4.0):
    proto = prototype
    for round_ in range(3):
        weights = {n: np.power(np.clip((1 + loaded[n][2] @ proto) / 2, 0, 1), power) for n in names}
        ranked = {n: loaded[n][1] * weights[n] for n in names}
        stage = {n: real_dev.StagePrediction(loaded[n][0], ranked[n], None) for n in names}
        print(f"prototype round {round_} ^{power}: {common.figures(images, stage)}", flush=True)
        picks = np.stack([loaded[n][2][np.argmax(ranked[n])] for n in names])
        proto = (picks * np.array([ranked[n].max() for n in names])[:, None]).sum(0)
        proto /= np.linalg.norm(proto)
# a direction: the tops' mean against every object's mean
every = np.concatenate([loaded[n][2] for n in names])
direction = tops.mean(0) - every.mean(0)
projections = every @ direction
spread_ = projections.std()
for beta in (0.5, 1.0, 2.0):
    stage = {n: real_dev.StagePrediction(loaded[n][0], loaded[n][1] * np.exp(beta * (loaded[n][2] @ direction
                                                                                     - projections.mean()) / spread_), None)
             for n in names}
    print(f"direction exp({beta} z): {common.figures(images, stage)}", flush=True)

# what the folder's images leave outside every object (ProMerge's background) voting against an object
background = []
for n in names:
    features = features_of(n)
    covered = np.asarray(loaded[n][0], bool).any(axis=0)
    from engine.masks import coverage_on_grid
    cover = coverage_on_grid(covered, features.grid_hw).ravel()
    tokens = features.tokens.astype(np.float32)
    if (cover < 0.1).any():
        vector = tokens[cover < 0.1].mean(0) - tokens.mean(0)
        background.append(vector / (np.linalg.norm(vector) + 1e-8))
back = np.mean(background, axis=0)
back /= np.linalg.norm(back)
print(f"background prototype: cosine to the top prototype {back @ prototype:.3f}; tops {np.mean(tops @ back):.3f}, "
      f"others {np.mean(others @ back):.3f}")
for a in (1.0, 2.0, 4.0):
    stage = {n: real_dev.StagePrediction(loaded[n][0], loaded[n][1] * np.power((1 + loaded[n][2] @ prototype) / 2, 2)
                                         * np.power(np.clip((1 - loaded[n][2] @ back) / 2, 0, 1), a), None)
             for n in names}
    print(f"top^2 x background-opposed^{a}: {common.figures(images, stage)}", flush=True)
    stage = {n: real_dev.StagePrediction(loaded[n][0], loaded[n][1]
                                         * np.power(np.clip((1 - loaded[n][2] @ back) / 2, 0, 1), a), None)
             for n in names}
    print(f"background-opposed^{a} alone: {common.figures(images, stage)}", flush=True)

# several prototypes: the tops in k groups (k-means), an object weighted by its nearest
from sklearn.cluster import KMeans  # noqa: E402
for k in (2, 3, 5):
    groups = KMeans(k, n_init=10, random_state=0).fit(tops, sample_weight=top_scores)
    centres_ = groups.cluster_centers_ / np.linalg.norm(groups.cluster_centers_, axis=1, keepdims=True)
    stage = {n: real_dev.StagePrediction(loaded[n][0], loaded[n][1] * np.power(
        np.clip((1 + (loaded[n][2] @ centres_.T).max(axis=1)) / 2, 0, 1), 2), None) for n in names}
    print(f"{k} prototypes, the nearest ^2: {common.figures(images, stage)} (sizes {np.bincount(groups.labels_)})",
          flush=True)
