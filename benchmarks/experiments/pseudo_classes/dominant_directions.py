"""Diagnostic (docs/decisions.md#d-dominant): how well do pooled tokens tell a folder's kinds apart once the top
principal directions of its patch tokens are projected out (engine.method.clustering.dominant_directions)?
ARI against the annotated categories, mean of 5 k-means seeds, for the annotated masks and for the proposals
(fitted on each image's best, scored on those matching an object at IoU 0.5), and beside them three label-free
readings (could a folder choose its own count by one?): the mean silhouette of the fitted proposals' k-means, the
agreement (ARI) of k-means fitted on two random halves of the fitted proposals, both labelling all of them, and of
two k-means seeds on all of them (6 draws each). Any finished project with the ground truth of its folder (the
generated set's, real-dev's). Run from the repository root:
    .venv/bin/python benchmarks/experiments/pseudo_classes/dominant_directions.py PROJECT GROUND_TRUTH_JSON"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from benchmarks.experiments.pseudo_classes.positional_directions import load_folder  # noqa: E402
from engine.method.clustering import cluster_masks, dominant_directions, project_out, silhouette, whiten  # noqa: E402

SEEDS = 5
DRAWS = 6  # random halves and seed pairs of the stability readings


def stability(fitted: np.ndarray, k: int) -> tuple:
    """(halves, seeds): mean ARI between k-means fitted on two random halves of ``fitted`` (each labelling all
    rows), and between two single-start k-means runs on all rows, over DRAWS draws."""
    rng, halves, seeds = np.random.default_rng(0), [], []
    for draw in range(DRAWS):
        order = rng.permutation(len(fitted))
        first, second = (KMeans(k, n_init=4, random_state=draw + offset).fit(fitted[rows]).predict(fitted)
                         for offset, rows in ((0, order[::2]), (100, order[1::2])))
        halves.append(adjusted_rand_score(first, second))
        seeds.append(adjusted_rand_score(*(KMeans(k, n_init=1, random_state=draw + offset).fit(fitted).labels_
                                          for offset in (0, 50))))
    return float(np.mean(halves)), float(np.mean(seeds))


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
        halves, seeds = stability(fitted, k)
        print(f"{count:2d} directions out: annotated masks ARI {truth_ari:.3f}, proposals {proposal_ari:.3f} "
              f"({matched.sum()} matching an object); fitted proposals' silhouette {label_free:.3f}, "
              f"halves' agreement {halves:.3f}, seeds' {seeds:.3f}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
