"""The hand-written k-means and silhouette against scikit-learn's, on the sizes a run meets (issue 19 item 7).

    .venv/bin/python -m benchmarks.kmeans_library [--out runs/kmeans-library] [--seeds 3] [--real-dev PATH]
    .venv/bin/python -m benchmarks.kmeans_library --real-dev-with sklearn|hand [real_dev options ...]

Cases, every one single-threaded (torch and the BLAS / OpenMP pools limited to one thread, as
engine.device.single_threaded_lapack does), each implementation run for seeds 0 .. N-1:

* ``project``: the clustering of a project's mask embeddings, 5,000 x 384 into K = 20 with 10 restarts
  (engine.method.clustering.cluster_masks), on a generated mixture of 20 overlapping Gaussians of unequal
  sizes (``mixture``) and on 5,000 real DINOv2 patch tokens of real-dev's images (``tokens``), both whitened;
* ``suggest_k``: the K suggestion: k-means with 3 restarts and the silhouette at K = 2..12 on a 2,000-row sample
  (engine.method.clustering.suggest_k), on the same two sets;
* ``silhouette``: the silhouette alone of the 2,000-row sample's K = 8 labels;
* ``segments``: the ``segments`` proposals' k-means (engine.method.proposals._kmeans_labels: 30 iterations, 2
  restarts) of the unit centred keys of real-dev's images (about 1,000-1,800 x 384) at K = 2, 3, 4, 6, 8.

Agreement: the adjusted Rand index between the two implementations' labels for the same seed (``cross``),
beside each implementation's own seed spread (ARI between its labels for different seeds); the inertia ratio
sklearn / hand (mean over seeds) beside the hand-written one's own max / min over seeds. ``suggest_k`` reports
how often the two pick the same K and the largest silhouette difference. Memory: the peak resident memory
added by the whole clustering step (cluster_masks, K suggested) on 15,000 and 50,000 rows (5,000 images at 3
and 10 masks), each implementation in a fresh process.

``--real-dev-with IMPL`` runs benchmarks.real_dev with that implementation patched into the engine (the other
arguments go to real_dev), for the end-quality comparison against real_dev's seed spread. real_dev's seeds do
not reach the segments proposals (their k-means always runs with seed 0), so ``--proposals-with IMPL
SEGMENT_SEED OUT`` gives the proposals' own spread: one run without distillation on real-dev's images with the
segments' k-means seeded ``SEGMENT_SEED``, printing the proposals' CorLoc / box AP50 / mask AP50 / mask recall,
the suggested K and the clustered mIoU as one JSON line.

"hand" is the torch implementation the engine had until issue 19, kept below as the reference; "sklearn" is
the engine's own (engine.method.clustering).

Prints a table and writes OUT/results.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

# bound at import: use("hand") patches the module's names, these stay the engine's own
from engine.method.clustering import kmeans as engine_kmeans  # noqa: E402
from engine.method.clustering import silhouette as engine_silhouette  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL_DEV = REPO_ROOT.parent / "shared" / "data" / "real-dev"
SEGMENT_KS = (2, 3, 4, 6, 8)
MEMORY_ROWS = (15_000, 50_000)


# ------------------------------------------------------------------------------------- the implementations
# "hand": the torch k-means and silhouette the engine had until issue 19 (commit b58b3db), kept here as the
# reference to measure against; "sklearn": the engine's own (engine.method.clustering, scikit-learn's).
def _chunk_rows(n: int):
    from engine.method.clustering import ROWS_PER_CHUNK

    return (slice(start, min(start + ROWS_PER_CHUNK, n)) for start in range(0, n, ROWS_PER_CHUNK))


def _hand_distances(data, centres):
    import torch

    out = torch.empty(len(data), len(centres), dtype=data.dtype)
    for rows in _chunk_rows(len(data)):
        out[rows] = torch.cdist(data[rows], centres)
    return out


def _hand_squared_distances(x, point):
    import torch

    out = torch.empty(len(x), dtype=x.dtype)
    for rows in _chunk_rows(len(x)):
        out[rows] = ((x[rows] - point) ** 2).sum(1)
    return out


def _hand_kmeans_pp(x, k: int, generator):
    import torch

    first = torch.randint(len(x), (1,), generator=generator)
    centres = [x[first[0]]]
    closest = _hand_squared_distances(x, centres[0])
    for _ in range(1, k):
        probs = closest / closest.sum() if closest.sum() > 0 else torch.full_like(closest, 1 / len(x))
        pick = torch.multinomial(probs, 1, generator=generator)[0]
        centres.append(x[pick])
        closest = torch.minimum(closest, _hand_squared_distances(x, x[pick]))
    return torch.stack(centres)


def hand_kmeans(x, k, restarts=10, iterations=100, seed=0):
    """Lloyd's k-means in torch with k-means++ seeding, chunked distances; the best restart by inertia."""
    import torch

    if not 1 <= k <= len(x):
        raise ValueError(f"Cannot make {k} clusters from {len(x)} masks; choose 1 <= K <= {len(x)}.")
    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    generator = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(restarts):
        centres = _hand_kmeans_pp(data, k, generator)
        for _ in range(iterations):
            labels = _hand_distances(data, centres).argmin(1)
            members = torch.nn.functional.one_hot(labels, k).T.to(data.dtype)  # (k, n)
            counts = members.sum(1, keepdim=True)
            updated = torch.where(counts > 0, (members @ data) / counts.clamp(min=1), centres)
            if torch.allclose(updated, centres, atol=1e-6):
                break
            centres = updated
        labels = _hand_distances(data, centres).argmin(1)
        inertia = sum(float(((data[rows] - centres[labels[rows]]) ** 2).sum()) for rows in _chunk_rows(len(data)))
        if best is None or inertia < best[2] - 1e-9:
            best = (labels.numpy(), centres.numpy(), inertia)
    return best


def hand_silhouette(x, labels):
    """Mean silhouette from the full distance matrix (torch.cdist) and one matmul per cluster indicator."""
    import torch

    clusters, labels = np.unique(labels, return_inverse=True)
    if len(clusters) < 2:
        return 0.0
    dist = torch.cdist(torch.from_numpy(x), torch.from_numpy(x)).numpy()
    onehot = np.eye(len(clusters))[labels]
    counts = onehot.sum(axis=0)
    mean_to = (dist @ onehot) / counts
    own_count = counts[labels]
    a = mean_to[np.arange(len(x)), labels] * own_count / np.maximum(own_count - 1, 1)
    mean_to[np.arange(len(x)), labels] = np.inf
    b = mean_to.min(axis=1)
    scores = np.where(own_count > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(scores.mean())


def sklearn_kmeans(x, k, restarts=10, iterations=100, seed=0):
    # on a copy: the engine's kmeans centres its input in place and restores it, up to the last bits
    return engine_kmeans(np.array(x, np.float32), k, restarts=restarts, iterations=iterations, seed=seed)


def sklearn_silhouette(x, labels):
    return engine_silhouette(x, labels)


IMPLEMENTATIONS = {"hand": (hand_kmeans, hand_silhouette), "sklearn": (sklearn_kmeans, sklearn_silhouette)}


def use(name: str) -> None:
    """Patch implementation ``name`` into engine.method.clustering (whose k-means the segments proposals, the
    project clustering and the review's split all call); "sklearn" is the module's own."""
    import engine.method.clustering as clustering

    if name == "hand":
        clustering.kmeans, clustering.silhouette = hand_kmeans, hand_silhouette
    elif name != "sklearn":
        raise SystemExit(f"no implementation {name!r}: choose one of {', '.join(IMPLEMENTATIONS)}")


def single_threaded():
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    return threadpool_limits(1)


# ------------------------------------------------------------------------------------------------ the data
def gaussian_mixture(n=5000, d=384, k=20, spread=3.0, seed=0) -> tuple:
    """``k`` Gaussians of unequal sizes whose members overlap (the truth is not recovered exactly, as with
    real embeddings), whitened as cluster_masks does."""
    from engine.method.clustering import whiten

    rng = np.random.default_rng(seed)
    truth = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 2.0)))
    x = rng.normal(size=(k, d))[truth] + spread * rng.normal(size=(n, d))
    return whiten(x.astype(np.float32)), truth


def real_dev_features(real_dev: Path, limit: int = 11) -> list:
    """ImageFeatures (keys included) of real-dev's first ``limit`` images, by the default backbone."""
    from engine.io.images import load_image
    from engine.method.features import FeatureExtractor
    from engine.orchestration.config import RunConfig

    config = RunConfig()
    files = sorted(p for p in (real_dev / "images").iterdir() if p.suffix.lower() in (".jpg", ".png"))[:limit]
    extractor = FeatureExtractor(config.backbone, config.weights, "cpu", config.input_size, 1)
    return [extractor.extract([load_image(path)])[0] for path in files]


def token_sample(features: list, n=5000, seed=0) -> np.ndarray:
    from engine.method.clustering import whiten

    tokens = np.concatenate([f.tokens.astype(np.float32) for f in features])
    rows = np.random.default_rng(seed).choice(len(tokens), min(n, len(tokens)), replace=False)
    return whiten(tokens[rows])


def segment_keys(features) -> np.ndarray:
    from engine.method.proposals import _unit, key_matrix

    return _unit(key_matrix(features, centre=True))


# ---------------------------------------------------------------------------------------------- agreement
def ari(a, b) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def compare_kmeans(x, k, seeds, **options) -> dict:
    """Both implementations for every seed: seconds (mean), cross ARI, each one's seed spread, inertia."""
    runs = {}
    for name, (kmeans, _) in IMPLEMENTATIONS.items():
        results = [timed(kmeans, x, k, seed=seed, **options) for seed in seeds]
        runs[name] = {"labels": [r[0][0] for r in results], "inertia": [r[0][2] for r in results],
                      "seconds": float(np.mean([r[1] for r in results]))}
    hand, library = runs["hand"], runs["sklearn"]

    def spread(labels):
        return min((ari(a, b) for a, b in itertools.combinations(labels, 2)), default=1.0)

    return {"rows": len(x), "k": k, "hand_s": round(hand["seconds"], 4), "sklearn_s": round(library["seconds"], 4),
            "cross_ari": round(float(np.mean([ari(a, b) for a, b in zip(hand["labels"], library["labels"])])), 4),
            "hand_seed_ari_min": round(spread(hand["labels"]), 4),
            "sklearn_seed_ari_min": round(spread(library["labels"]), 4),
            "inertia_ratio": round(float(np.mean(np.array(library["inertia"]) / np.array(hand["inertia"]))), 5),
            "hand_inertia_max_over_min": round(max(hand["inertia"]) / min(hand["inertia"]), 5)}


def compare_suggest_k(x, seeds, sample=2000) -> dict:
    """suggest_k's loop (K = 2..12, 3 restarts, silhouette on the sample) by each implementation."""
    rows = {}
    for name, (kmeans, silhouette) in IMPLEMENTATIONS.items():
        best, scores, seconds = [], [], []
        for seed in seeds:
            part = x[np.random.default_rng(seed).choice(len(x), min(sample, len(x)), replace=False)]
            start = time.perf_counter()
            by_k = {k: silhouette(part, kmeans(part, k, restarts=3, seed=seed)[0]) for k in range(2, 13)}
            seconds.append(time.perf_counter() - start)
            best.append(max(by_k, key=by_k.get))
            scores.append(by_k)
        rows[name] = {"best": best, "scores": scores, "seconds": float(np.mean(seconds))}
    hand, library = rows["hand"], rows["sklearn"]
    difference = max(abs(a[k] - b[k]) for a, b in zip(hand["scores"], library["scores"]) for k in a)
    return {"rows": min(sample, len(x)), "hand_s": round(hand["seconds"], 3),
            "sklearn_s": round(library["seconds"], 3), "hand_k": hand["best"], "sklearn_k": library["best"],
            "same_k": sum(a == b for a, b in zip(hand["best"], library["best"])),
            "silhouette_max_difference": round(float(difference), 4)}


def compare_silhouette(x, sample=2000, k=8) -> dict:
    part = x[np.random.default_rng(0).choice(len(x), min(sample, len(x)), replace=False)]
    labels = hand_kmeans(part, k, restarts=3)[0]
    (hand, hand_s), (library, library_s) = (timed(f, part, labels) for f in (hand_silhouette, sklearn_silhouette))
    return {"rows": len(part), "k": k, "hand_s": round(hand_s, 4), "sklearn_s": round(library_s, 4),
            "hand": round(hand, 6), "sklearn": round(library, 6), "difference": float(abs(hand - library))}


# ------------------------------------------------------------------------------------------------- memory
def clustering_peak_mb(name: str, rows: int) -> float:
    """Peak resident memory (MB) that cluster_masks (K suggested) adds on ``rows`` x 384, in this process."""
    from engine.method.clustering import cluster_masks

    use(name)
    x, _ = gaussian_mixture(n=rows)
    cluster_masks(x[:200].copy(), k=None, in_place=True)  # libraries loaded and warm: not part of the step
    before = _status_mb("VmRSS")
    _reset_peak()
    cluster_masks(x, k=None, in_place=True)
    return round(_status_mb("VmHWM") - before, 1)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current resident size (Linux >= 4.0)


def memory_in_fresh_process(name: str, rows: int) -> float:
    done = subprocess.run([sys.executable, "-m", "benchmarks.kmeans_library", "--memory", name, str(rows)],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"memory of {name} at {rows} rows failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ real-dev, proposals stage
def use_segment_seed(offset: int) -> None:
    """The segments proposals' k-means with the run's seed + ``offset``: the proposals' own spread, the
    clustering's seed left as it is."""
    import engine.method.proposals as proposals

    original = proposals._kmeans_labels
    proposals._kmeans_labels = lambda x, k, seed, **options: original(x, k, seed + offset, **options)


def proposal_spread(real_dev: Path, out: Path, name: str, segment_seed: int, log=print) -> dict:
    """One run without distillation (K suggested) on real-dev's images with implementation ``name`` and the
    segments' k-means seed ``segment_seed``: the proposals' scores, the suggested K and the clustered mIoU."""
    from benchmarks import real_dev as bench
    from engine.orchestration.config import RunConfig
    from engine.orchestration.pipeline import run

    use(name)
    use_segment_seed(segment_seed)
    images = [i for i in bench.load_ground_truth(real_dev) if i.source not in bench.DENSE_SOURCES]
    folder = bench.stage_images(real_dev / "images", [i.file_name for i in images], out / "images")
    result = run(folder, out / "project", RunConfig(distill=False))
    scores = bench.score_project(out / "project", images, bench.recurring_classes(images))
    proposals, clustered = scores["proposals"]["total"], scores["clustered"]["total"]
    row = {"implementation": name, "segment_seed": segment_seed, "masks": result.masks, "k": result.clusters,
           **{m: round(proposals[m], 4) for m in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")},
           "clustered_miou": round(clustered["miou"], 4)}
    log(json.dumps(row))
    return row


# ------------------------------------------------------------------------------------------------- report
def measure(real_dev: Path, seeds: list, log=print) -> dict:
    import sklearn

    results = {"sklearn_version": sklearn.__version__, "seeds": seeds, "threads": 1}
    with single_threaded():
        log("real-dev features ...")
        features = real_dev_features(real_dev)
        sets = {"mixture": gaussian_mixture()[0], "tokens": token_sample(features)}
        for name, x in sets.items():
            log(f"project k-means, {name} ...")
            results[f"project/{name}"] = compare_kmeans(x, 20, seeds, restarts=10, iterations=100)
            log(f"suggest_k, {name} ...")
            results[f"suggest_k/{name}"] = compare_suggest_k(x, seeds)
            results[f"silhouette/{name}"] = compare_silhouette(x)
        log("segments k-means ...")
        for k in SEGMENT_KS:
            per_image = [compare_kmeans(segment_keys(f), k, seeds, restarts=2, iterations=30) for f in features]
            results[f"segments/K={k}"] = pooled(per_image)
    results["memory_mb"] = {name: {rows: memory_in_fresh_process(name, rows) for rows in MEMORY_ROWS}
                            for name in IMPLEMENTATIONS}
    return results


def pooled(per_image: list) -> dict:
    """One row for the images of a segments case: total seconds, mean ARI and inertia ratio, worst spreads."""
    return {"rows": f"{min(r['rows'] for r in per_image)}-{max(r['rows'] for r in per_image)}",
            "k": per_image[0]["k"], "images": len(per_image),
            "hand_s": round(sum(r["hand_s"] for r in per_image), 4),
            "sklearn_s": round(sum(r["sklearn_s"] for r in per_image), 4),
            "cross_ari": round(float(np.mean([r["cross_ari"] for r in per_image])), 4),
            "hand_seed_ari_min": round(float(np.mean([r["hand_seed_ari_min"] for r in per_image])), 4),
            "sklearn_seed_ari_min": round(float(np.mean([r["sklearn_seed_ari_min"] for r in per_image])), 4),
            "inertia_ratio": round(float(np.mean([r["inertia_ratio"] for r in per_image])), 5),
            "hand_inertia_max_over_min": round(max(r["hand_inertia_max_over_min"] for r in per_image), 5)}


def table(results: dict) -> str:
    lines = [f"scikit-learn {results['sklearn_version']}, one thread, seeds {results['seeds']} (segments: mean over "
             "real-dev's images, seconds summed; seed ARI: the lowest between two seeds)", "",
             f"{'case':<22}{'rows':>11}{'K':>4}{'hand s':>9}{'sklearn s':>10}{'ARI h-s':>9}{'ARI seeds h':>12}"
             f"{'ARI seeds s':>12}{'inertia s/h':>12}{'h max/min':>10}"]
    for case, row in results.items():
        if case.startswith(("project/", "segments/")):
            lines.append(f"{case:<22}{row['rows']:>11}{row['k']:>4}{row['hand_s']:>9.3f}{row['sklearn_s']:>10.3f}"
                         f"{row['cross_ari']:>9.3f}{row['hand_seed_ari_min']:>12.3f}"
                         f"{row['sklearn_seed_ari_min']:>12.3f}{row['inertia_ratio']:>12.4f}"
                         f"{row['hand_inertia_max_over_min']:>10.4f}")
    lines += ["", f"{'case':<22}{'rows':>11}{'hand s':>9}{'sklearn s':>10}  K picked (hand / sklearn), "
                  "largest silhouette difference"]
    for case, row in results.items():
        if case.startswith("suggest_k/"):
            lines.append(f"{case:<22}{row['rows']:>11}{row['hand_s']:>9.3f}{row['sklearn_s']:>10.3f}  "
                         f"{row['hand_k']} / {row['sklearn_k']}, {row['silhouette_max_difference']:.4f}")
        if case.startswith("silhouette/"):
            lines.append(f"{case:<22}{row['rows']:>11}{row['hand_s']:>9.3f}{row['sklearn_s']:>10.3f}  "
                         f"difference {row['difference']:.1e}")
    lines += ["", "peak memory added by cluster_masks (K suggested), MB: " + "; ".join(
        f"{name} " + ", ".join(f"{rows:,} rows {mb:.0f}" for rows, mb in by_rows.items())
        for name, by_rows in results["memory_mb"].items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--memory"]:
        print(clustering_peak_mb(argv[1], int(argv[2])))
        return 0
    if argv[:1] == ["--proposals-with"]:  # IMPL SEGMENT_SEED OUT [REAL_DEV]: one row of the proposals' spread
        real_dev = Path(argv[4]) if len(argv) > 4 else DEFAULT_REAL_DEV
        proposal_spread(real_dev, Path(argv[3]), argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["--real-dev-with"]:
        from benchmarks import real_dev

        use(argv[1])
        return real_dev.main(argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/kmeans-library"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--real-dev", type=Path, default=DEFAULT_REAL_DEV)
    args = parser.parse_args(argv)
    results = measure(args.real_dev, list(range(args.seeds)))
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nwritten: {args.out.resolve() / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
