"""Cut a concave final object at its waists only where its pieces look alike (issue 20: groups of touching cats
cut as one; docs/decisions.md, "Concave objects cut at their waists"). The waist cut of split_concave.py found
27 more cats on feral_cats but halved real-dev's mask AP50 (people and chairs are concave too). A group of like
objects comes apart into pieces that look alike (each piece a cat); a person or a chair into pieces that do not
(head and torso, legs). Each piece's mean patch token (the project's cached tokens, centred on the image's
mean, weighted by the share of each patch the piece covers) against the others: the cut is kept when every pair
of pieces has cosine >= T. Prints, for every cut, whether it helped (its pieces match more annotated objects
at IoU 0.5 than the whole did) against its lowest pair cosine, then the figures per T; nothing is written.
Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/split_alike.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from skimage.transform import resize  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402

project_dir, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = common.scored_images(folder)
truth = {i.file_name: i for i in images}
features_of = common.project_features(project_dir)


def piece_vectors(tokens: np.ndarray, grid_hw: tuple, masks: list) -> np.ndarray:
    centred = tokens - tokens.mean(0)
    out = []
    for mask in masks:
        cover = resize(mask.astype(np.float32), grid_hw, order=1, anti_aliasing=True).reshape(-1)
        vector = cover @ centred / max(cover.sum(), 1e-6)
        out.append(vector / max(np.linalg.norm(vector), 1e-6))
    return np.array(out)


def matched(masks: list, image) -> int:
    if image.masks is None or not len(image.masks):
        return 0
    gt = image.masks.reshape(len(image.masks), -1).astype(np.float32)
    found = set()
    for m in masks:
        flat = m.reshape(-1).astype(np.float32)
        inter = gt @ flat
        iou = inter / (gt.sum(1) + flat.sum() - inter)
        found |= set(np.nonzero(iou >= 0.5)[0].tolist())
    return len(found)


loaded = common.final_objects(project_dir, images)
cuts = {}  # (file name, object index) -> (pieces, lowest pair cosine)
for name, (masks, _) in loaded.items():
    features = features_of(name)
    for index, m in enumerate(masks):
        if common.solidity(m) >= 0.7:
            continue
        parts = common.waist_pieces(m, 0.5)
        if len(parts) < 2:
            continue
        vectors = piece_vectors(features.tokens.astype(np.float32), features.grid_hw, parts)
        cosine = vectors @ vectors.T
        lowest = float(cosine[np.triu_indices(len(parts), 1)].min())
        cuts[(name, index)] = (parts, lowest)
        gain = matched(parts, truth[name]) - matched([m], truth[name])
        print(f"cut {name} #{index}: {len(parts)} pieces, lowest cosine {lowest:.2f}, matched objects {gain:+d}")

for threshold in (None, -1.0, 0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
    stage, kept = {}, 0
    for name, (masks, scores) in loaded.items():
        out_masks, out_scores = [], []
        for index, (m, s) in enumerate(zip(masks, scores)):
            cut = cuts.get((name, index))
            if threshold is not None and cut is not None and cut[1] >= threshold:
                kept += 1
                for part in cut[0]:
                    out_masks.append(part)
                    out_scores.append(s * min(1.0, common.solidity(part) / 0.7))
            else:
                out_masks.append(m)
                out_scores.append(s * min(1.0, common.solidity(m) / 0.7))
        stage[name] = real_dev.StagePrediction(np.array(out_masks) if out_masks else masks, np.array(out_scores), None)
    print(f"cut where pieces' lowest cosine >= {threshold} ({kept} of {len(cuts)} cuts): "
          f"{common.figures(images, stage)}", flush=True)
