"""Diagnostic (docs/decisions.md#d-dominant): how well do pooled tokens tell a folder's kinds apart once the top
principal directions of its patch tokens are projected out (engine.method.clustering.dominant_directions)?
ARI against the annotated categories, mean of 5 k-means seeds, for the annotated masks and for the proposals
(fitted on each image's best, scored on those matching an object at IoU 0.5), and beside them a label-free
reading: the mean silhouette of the fitted proposals' k-means (could a folder choose its own count by it?). Any finished project with the
ground truth of its folder (the generated set's, real-dev's). Run from the repository root:
    .venv/bin/python benchmarks/experiments/pseudo_classes/dominant_directions.py PROJECT GROUND_TRUTH_JSON"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from benchmarks.experiments.pseudo_classes.positional_directions import load_folder  # noqa: E402
from engine.method.clustering import cluster_masks, dominant_directions, project_out, silhouette, whiten  # noqa: E402

SEEDS = 5


def main(project: Path, truth_path: Path) -> None:
    folder = load_folder(project, truth_path)
    matched = folder.proposal_kinds > 0
    k = len(set(folder.truth_kinds.tolist()))
    on_truth, on_proposals = folder.pooled(folder.truth_masks), folder.pooled(folder.proposal_masks)
    directions = dominant_directions((f.tokens for f in folder.features), 32)
    for count in (0, 1, 2, 4, 8, 12, 16, 24):
        truth, proposals = (project_out(x.copy(), directions[:count]) for x in (on_truth, on_proposals))
        truth_ari = np.mean([adjusted_rand_score(folder.truth_kinds, cluster_masks(truth.copy(), k=k, seed=s).labels)
                             for s in range(SEEDS)])
        proposal_ari = np.mean([
            adjusted_rand_score(folder.proposal_kinds[matched],
                                cluster_masks(proposals.copy(), k=k, seed=s, fit_rows=folder.fit).labels[matched])
            for s in range(SEEDS)])
        fitted = whiten(proposals)[folder.fit]  # the space k-means is fitted in
        label_free = np.mean([silhouette(fitted, cluster_masks(proposals.copy(), k=k, seed=s,
                                                               fit_rows=folder.fit).labels[folder.fit])
                              for s in range(SEEDS)])
        print(f"{count:2d} directions out: annotated masks ARI {truth_ari:.3f}, proposals {proposal_ari:.3f} "
              f"({matched.sum()} matching an object); fitted proposals' silhouette {label_free:.3f}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
