"""Parts merged into wholes where both parts are typical of the folder's objects (issue 20; the top object is a cat's
face beside its body in 9-12 of feral_cats' 195 images). ``centres_merge_parts.py`` merged touching objects whose
union agrees with the learnt centres better and lost: a part and the background beside it agree as well as a cat
does. Here a pair is merged only where both parts are like the folder's prototype (engine.method.typicality:
cosine >= TAU), the union holds fewer than two predicted centres and agrees with the predicted depth at least as
well as the parts by MARGIN; then every object is weighted by its typicality, as the engine does after the cuts.
Run on a finished project (its final objects before the typicality ranking); nothing is written:
    .venv/bin/python benchmarks/experiments/whole_subject/merge_typical_parts.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres, typicality  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)
embedded = {name: typicality.object_embeddings(fitted.features[name], masks) for name, (masks, _) in loaded.items()
            if len(masks)}
tops = np.stack([embedded[n][np.argmax(loaded[n][1])] for n in embedded])
prototype = typicality.folder_prototype(tops, np.array([loaded[n][1].max() for n in embedded]))


def agreement(mask, depth):
    return max(centres.AGREEMENT_FLOOR, centres.depth_agreement(mask, depth))


def merged(name, tau, margin):
    masks, scores = list(loaded[name][0]), list(loaded[name][1])
    cosine = list(embedded[name] @ prototype)
    depth = fitted.depth[name]
    distance = fitted.fit.model.min_centre_distance(depth.shape)
    merges = 0
    while True:
        best = None
        grown = [ndimage.binary_dilation(m, iterations=2) for m in masks]
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                if cosine[i] < tau or cosine[j] < tau or not (grown[i] & masks[j]).any():
                    continue
                union = masks[i] | masks[j]
                ys, xs = np.nonzero(union)
                box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
                if centres.centre_pieces(union[box], depth[box], distance) is not None:
                    continue
                whole = agreement(union[box], depth[box])
                parts = np.average([agreement(masks[k], depth) for k in (i, j)],
                                   weights=[masks[i].sum(), masks[j].sum()])
                if whole >= parts + margin and (best is None or whole - parts > best[0]):
                    best = (whole - parts, i, j)
        if best is None:
            break
        _, i, j = best
        union = masks[i] | masks[j]
        scores[i] = max(scores[i], scores[j])
        masks[i] = union
        cosine[i] = float(typicality.object_embeddings(fitted.features[name], union[None])[0] @ prototype)
        del masks[j], scores[j], cosine[j]
        merges += 1
    weights = np.power(np.clip((1 + np.array(cosine)) / 2, 0, 1), typicality.TYPICAL_POWER)
    return np.array(masks), np.array(scores) * weights, merges


as_ranked = {n: real_dev.StagePrediction(m, s * typicality.typicality_weights(embedded[n], prototype), None)
             for n, (m, s) in loaded.items() if n in embedded}
print(f"typicality alone: {common.figures(images, as_ranked)}", flush=True)
for tau in (0.5, 0.7):
    for margin in (0.0, 0.05):
        stage, total = {}, 0
        for name in embedded:
            masks, scores, count = merged(name, tau, margin)
            total += count
            stage[name] = real_dev.StagePrediction(masks, scores, None)
        print(f"typical parts (cosine >= {tau}) merged, margin {margin}: {total} merges; "
              f"{common.figures(images, stage)}", flush=True)
