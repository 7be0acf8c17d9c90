"""Diagnostic (docs/decisions.md#d-fit-top): how well do pooled tokens tell the generated set's kinds apart once
the main directions of the folder's per-cell mean token (where in the image a token lies) are projected out?
ARI against the kinds, mean of 5 k-means seeds, for the annotated masks and for the proposals (fitted on each
image's best, scored on those matching an object at IoU 0.5). Needs a generated-set project (images of one size).
Run from the repository root:
    .venv/bin/python benchmarks/experiments/pseudo_classes/positional_directions.py PROJECT GROUND_TRUTH_JSON"""
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from engine.masks import coverage_on_grid  # noqa: E402
from engine.method.clustering import cluster_masks, fitted_rows  # noqa: E402
from engine.method.features import FeatureCache  # noqa: E402
from engine.state.project import Project, load_image_proposals  # noqa: E402
from engine.state.schema import read_images  # noqa: E402

SEEDS = 5


def decode(annotation: dict) -> np.ndarray:
    rle = annotation["segmentation"]
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


@dataclass
class Folder:
    """A finished project's cached features, its annotated masks and proposals, each with its annotated kind
    (a proposal's: the object it matches at IoU 0.5, else 0), and the proposals k-means is fitted on."""
    features: list
    truth_masks: list
    truth_kinds: np.ndarray
    proposal_masks: list
    proposal_kinds: np.ndarray
    fit: np.ndarray

    def pooled(self, mask_lists, basis=None) -> np.ndarray:
        """Every mask's mean token, ``basis`` (orthonormal rows) projected out of the tokens first."""
        out = []
        for image_features, masks in zip(self.features, mask_lists):
            tokens = image_features.tokens.astype(np.float32)
            if basis is not None:
                tokens = tokens - (tokens @ basis.T) @ basis
            for mask in masks:
                weights = coverage_on_grid(mask, image_features.grid_hw).ravel()
                out.append(weights @ tokens / max(weights.sum(), 1e-9))
        return np.array(out, np.float32)


def load_folder(project: Path, truth_path: Path) -> Folder:
    truth = json.loads(truth_path.read_text())
    by_name = {image["file_name"]: image for image in truth["images"]}
    annotations: dict = {}
    for annotation in truth["annotations"]:
        annotations.setdefault(annotation["image_id"], []).append(annotation)
    cache = FeatureCache(Project(project).features_dir)
    features, truth_masks, truth_kinds = [], [], []
    proposal_masks, proposal_kinds, proposal_images, proposal_scores = [], [], [], []
    for entry in read_images(project / "images.json"):
        objects = annotations.get(by_name[Path(entry["relative_path"]).name]["id"], [])
        features.append(cache.get(entry["feature_key"]))
        masks = [decode(a) for a in objects]
        truth_masks.append(masks)
        truth_kinds += [a["category_id"] for a in objects]
        proposals, _, _ = load_image_proposals(project / "proposals" / f"{entry['image_id']}.npz", None)
        proposal_masks.append(np.asarray(proposals.masks, bool))
        for index, mask in enumerate(proposal_masks[-1]):
            ious = [(mask & t).sum() / max((mask | t).sum(), 1) for t in masks]
            best = int(np.argmax(ious)) if ious else -1
            proposal_kinds.append(objects[best]["category_id"] if ious and ious[best] >= 0.5 else 0)
            proposal_images.append(entry["image_id"])
            proposal_scores.append(float(proposals.scores[index]))
    kinds = len(set(truth_kinds))
    return Folder(features, truth_masks, np.array(truth_kinds), proposal_masks, np.array(proposal_kinds),
                  fitted_rows(np.array(proposal_images), np.array(proposal_scores), kinds))


def main(project: Path, truth_path: Path) -> None:
    folder = load_folder(project, truth_path)
    kinds, found = folder.truth_kinds, folder.proposal_kinds
    matched = found > 0
    cell_mean = np.stack([f.tokens.astype(np.float32) for f in folder.features]).mean(0)
    directions = np.linalg.svd(cell_mean - cell_mean.mean(0), full_matrices=False)[2]

    for count in (0, 4, 8, 12, 16, 20, 24, 32):
        basis = directions[:count] if count else None
        on_truth = folder.pooled(folder.truth_masks, basis)
        on_proposals = folder.pooled(folder.proposal_masks, basis)
        truth_ari = np.mean([adjusted_rand_score(kinds, cluster_masks(on_truth.copy(), k=5, seed=s).labels)
                             for s in range(SEEDS)])
        proposal_ari = np.mean([
            adjusted_rand_score(found[matched], cluster_masks(on_proposals.copy(), k=5, seed=s,
                                                              fit_rows=folder.fit).labels[matched])
            for s in range(SEEDS)])
        print(f"{count:2d} directions out: annotated masks ARI {truth_ari:.3f}, proposals {proposal_ari:.3f}",
              flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
