"""How many pieces a cut object makes, chosen by the learnt centres (engine.method.centres): the predicted depth
often has more peaks than the group has objects (3-5 cats, 5-12 peaks at depth 0.4), so its pieces are fragments
that agree with the model worse than the whole, and the agreement cut leaves the group whole. Here an object is
cut at its k deepest peaks for each k from 2 to MAX_K, and the k whose pieces agree best with the predicted depth
(area-weighted) is kept; a compact object only where that beats the whole by the engine's margin. Run on a
project predicted without the cut; nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_best_k.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from skimage.feature import peak_local_max  # noqa: E402
from skimage.segmentation import watershed  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.masks import LabelMasks  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.instances import compactness_weight, mask_solidity  # noqa: E402

MAX_K = 6
images, loaded, fitted = common.fitted_from_command_line(sys.argv)


def weighted_agreement(pieces, depth_crop) -> float:
    areas = np.bincount(pieces.ravel())[1:]
    values = [centres.depth_agreement(pieces == k, depth_crop) for k in range(1, len(areas) + 1)]
    return float(np.average(values, weights=np.maximum(areas, 1)))


def best_k_pieces(crop, depth_crop, min_distance):
    """(pieces, their agreement) at the best k of 2..MAX_K deepest peaks; None under two peaks."""
    peaks = peak_local_max(np.where(crop, depth_crop, 0.0), min_distance=min_distance,
                           threshold_abs=centres.PEAK_DEPTH, labels=crop.astype(np.int32), exclude_border=False)
    if len(peaks) < 2:
        return None
    best = None
    for k in range(2, min(MAX_K, len(peaks)) + 1):
        markers = np.zeros(crop.shape, np.int32)
        markers[tuple(peaks[:k].T)] = np.arange(1, k + 1)
        pieces = watershed(-depth_crop, markers, mask=crop)
        areas = np.bincount(pieces.ravel(), minlength=k + 1)[1:]
        if (areas < centres.MIN_PIECE_SHARE * crop.sum()).any():
            continue  # a fragment: more peaks than objects
        agreement = weighted_agreement(pieces, depth_crop)
        if best is None or agreement > best[1]:
            best = (pieces, agreement)
    return best


def variant(concave_best_k: bool) -> tuple:
    stage, cut_total = {}, 0
    for name, masks in fitted.label_masks.items():
        depth = fitted.depth[name]
        distance = fitted.fit.model.min_centre_distance(masks.labels.shape)
        concave = set(centres.group_candidates(masks, fitted.solidity[name]))
        labels = masks.labels.copy()
        next_id = int(labels.max()) + 1
        scores = dict(zip((int(i) for i in masks.ids), loaded[name][1]))
        for position, object_id in enumerate(masks.ids):
            box, crop = masks.crop(position)
            if box is None:
                continue
            if position in concave and not concave_best_k:
                pieces = centres.centre_pieces(crop, depth[box], distance)
            else:
                found = best_k_pieces(crop, depth[box], distance)
                pieces = None if found is None else found[0]
                if found is not None and position not in concave \
                        and found[1] <= centres.depth_agreement(crop, depth[box]) + centres.CUT_AGREEMENT_MARGIN:
                    pieces = None
            if pieces is None:
                continue
            cut_total += 1
            score = scores.pop(int(object_id))
            whole = compactness_weight(mask_solidity(crop))
            for piece in range(1, int(pieces.max()) + 1):
                inside = pieces == piece
                labels[box][inside] = next_id
                scores[next_id] = score * compactness_weight(mask_solidity(inside)) / whole
                next_id += 1
        ids = np.array(list(scores), np.int32)
        cut = LabelMasks(labels, ids)
        ranked, _, ranked_scores = centres.rank_by_depth_agreement(cut, np.zeros(len(ids), int),
                                                                   np.array([scores[i] for i in ids], np.float32),
                                                                   depth)
        stage[name] = real_dev.StagePrediction(np.asarray(ranked), np.asarray(ranked_scores, float), None)
    return stage, cut_total


for concave_best_k in (False, True):
    stage, cut = variant(concave_best_k)
    label = "every object" if concave_best_k else "compact objects (concave ones at all their peaks, as the engine)"
    print(f"best k of 2..{MAX_K} for {label}: {cut} cut; {common.figures(images, stage)}", flush=True)
