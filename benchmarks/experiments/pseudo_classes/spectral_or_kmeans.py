"""Diagnostic (docs/decisions.md#d-dominant): would scikit-learn's spectral clustering (a k-nearest-neighbour graph)
tell a folder's kinds apart better than the engine's k-means, on the same embeddings (pooled tokens without the
folder's dominant directions, whitened)? ARI against the annotated categories, mean and spread of 5 seeds, for the
proposals (fitted on each image's best as the engine fits, every other mask to its nearest class centre; scored on
those matching an object at IoU 0.5) and for the annotated masks, K the number of annotated kinds, at several
neighbourhood sizes. Any finished project with the ground truth of its folder (the generated set's, real-dev's).
Run from the repository root:
    .venv/bin/python benchmarks/experiments/pseudo_classes/spectral_or_kmeans.py PROJECT GROUND_TRUTH_JSON"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.cluster import SpectralClustering  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from benchmarks.experiments.pseudo_classes.positional_directions import load_folder  # noqa: E402
from engine.method.clustering import cluster_masks, dominant_directions, project_out, whiten  # noqa: E402

SEEDS = 5
NEIGHBOURS = (5, 10, 15, 20, 30)


def nearest_centre(x: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Every row of ``x`` (unit rows) in the class whose fitted rows' mean it is most like (cosine)."""
    centres = np.stack([x[rows][labels == c].mean(axis=0) for c in np.unique(labels)])
    return np.argmax(x @ (centres / np.linalg.norm(centres, axis=1, keepdims=True)).T, axis=1)


def main(project: Path, truth_path: Path) -> None:
    folder = load_folder(project, truth_path)
    k, matched = len(set(folder.truth_kinds.tolist())), folder.proposal_kinds > 0
    directions = dominant_directions(f.tokens for f in folder.features)
    proposals = project_out(folder.pooled(folder.proposal_masks), directions)
    annotated = project_out(folder.pooled(folder.truth_masks), directions)
    fit = np.asarray(folder.fit)
    rows = np.nonzero(fit)[0] if fit.dtype == bool else fit
    print(f"K {k}, {len(rows)} fitted proposals, {matched.sum()} matching an object, {len(annotated)} annotated masks")

    def line(name: str, on_proposals: list, on_annotated: list) -> None:
        print(f"{name}: proposals {np.mean(on_proposals):.3f} ± {np.std(on_proposals):.3f}, annotated masks "
              f"{np.mean(on_annotated):.3f} ± {np.std(on_annotated):.3f}", flush=True)

    line("k-means (the engine's)",
         [adjusted_rand_score(folder.proposal_kinds[matched],
                              cluster_masks(proposals.copy(), k=k, seed=s, fit_rows=folder.fit).labels[matched])
          for s in range(SEEDS)],
         [adjusted_rand_score(folder.truth_kinds, cluster_masks(annotated.copy(), k=k, seed=s).labels)
          for s in range(SEEDS)])
    fitted, every = whiten(proposals)[rows], whiten(proposals)
    annotated = whiten(annotated)
    for neighbours in NEIGHBOURS:
        def spectral(x, seed):
            return SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=min(neighbours, len(x) - 1),
                                      random_state=seed).fit_predict(x)
        line(f"spectral, {neighbours} neighbours",
             [adjusted_rand_score(folder.proposal_kinds[matched],
                                  nearest_centre(every, rows, spectral(fitted, s))[matched]) for s in range(SEEDS)],
             [adjusted_rand_score(folder.truth_kinds, spectral(annotated, s)) for s in range(SEEDS)])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
