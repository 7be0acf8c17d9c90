"""Domain folders: real single-domain folders (hundreds of images of one kind), scored class-agnostically.

    .venv/bin/python -m benchmarks.domains [--domains PATH] [--out runs/benchmark-domains] [--seeds N]
                                           [--limit N] [--device auto] [--weights FILE|random] [--input-size N]

``--domains`` (default ``../shared/data/domains`` next to the repository; see its README) is a folder of domain
folders, or one domain folder itself; a domain folder holds ``images/`` and ``ground_truth.json`` (COCO, instance
masks; categories are ignored). Absent, it is skipped with a message. The engine runs on each folder with the given
settings (``make benchmark``: the defaults, K suggested) into ``OUT/<name>/project``, once per seed (each seed
runs the segments proposals again, as their k-means takes it, and so the features too, as the cache keeps no keys;
clustering and the head's training change as well), and each stage is scored with real-dev's scorer
(benchmarks/real_dev.py, :func:`real_dev.score_project`), class-agnostically:

* ``proposals``: the proposal masks by their proposal score; ``clustered``: the same masks after clustering (the
  same figures while clustering keeps every mask and its score); ``final``: the distilled model's predictions;
* ``corloc`` (top mask's box at IoU >= 0.5 with some object's box), ``box_ap50`` and ``mask_ap50`` (COCO, useCats
  0), ``box_recall50`` / ``mask_recall50`` (share of annotated objects some predicted box / mask matches at IoU >=
  0.5, every predicted mask counted: large groups are only partly annotated, so a right mask can count as a false
  positive in AP but never in recall).

``--limit N`` runs on the first N images (by file name) only, copied to ``OUT/<name>/images``.

``--noise-runs N`` runs the engine N more times on copies of the images each given its own invisible noise (every
pixel's channels moved by -1, 0 or +1 grey level, stored losslessly: :func:`real_dev.noised_images`), run k at seed
``--seed`` + k on noise draw k (``OUT/<name>/noise-k``): the seeds never reach the features, and a change of the
features as small as bfloat16's moves the figures too, so a setting is judged against the spread over seeds and
noise draws together (docs/decisions.md#d-noise-spread).

JSON (``OUT/results.json``; ``quality.domains`` of ``make benchmark``): ``<name>.<stage>.{corloc, box_ap50,
mask_ap50, box_recall50, mask_recall50, ...}`` of the first seed, ``<name>.seed_spread`` (``seeds`` and
``<stage>.<metric>.{min, max, mean}`` over every seed), ``<name>.per_seed``, ``<name>.pool`` (the candidate
tree's recall at IoU 0.5 before any ranking: :func:`real_dev.tree_pool_recall`), with noise runs
``<name>.noise_spread`` (``runs``, ``grey_levels``, ``per_run`` (seed, noise draw, images scored, the final
stage's metrics), ``noisy`` and ``with_seeds``: ``<metric>.{min, max, mean}`` of the final stage over the noisy
runs, and over them and every seed's unperturbed run); or ``{"skipped": reason}``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks import real_dev  # noqa: E402
from engine.atomic import atomic_write_json, read_json  # noqa: E402

DEFAULT_DOMAINS = real_dev.REPO_ROOT.parent / "shared" / "data" / "domains"
METRICS = ("corloc", "box_ap50", "mask_ap50", "box_recall50", "mask_recall50")


def domain_folders(path) -> list:
    """The domain folders under ``path`` (sorted by name), or ``[path]`` when it is one itself."""
    path = Path(path)
    if (path / "ground_truth.json").is_file():
        return [path]
    if not path.is_dir():
        return []
    return [folder for folder in sorted(path.iterdir())
            if folder.is_dir() and real_dev.ground_truth_missing(folder, folder.name) is None]


def _run_images(folder: Path, images: list, out: Path, limit: int | None) -> Path:
    """The folder the engine runs on: the domain's own images/, or the first ``limit`` copied to OUT/images."""
    if limit is None:
        return folder / "images"
    return real_dev.stage_images(folder / "images", [image.file_name for image in images], out / "images")


def spread(per_seed: list) -> dict:
    """``seeds`` and min / max / mean of each stage's metrics over the seeds' scores."""
    result = {"seeds": [entry["seed"] for entry in per_seed]}
    for stage in real_dev.STAGES:
        if all(stage in entry for entry in per_seed):
            result[stage] = {m: real_dev._min_max_mean([entry[stage][m] for entry in per_seed]) for m in METRICS}
    return result


def noise_spread(folder: Path, images: list, out: Path, config, per_seed: list, runs: int, log=print) -> dict:
    """The engine again on ``runs`` noised copies of the folder's ``images``, run k at seed ``config.seed`` + k on
    noise draw k (``OUT/noise-k``), its final stage scored; min / max / mean over the noisy runs (``noisy``) and
    over them and the unperturbed seeds of ``per_seed`` (``with_seeds``: the spread to hold a setting against)."""
    noisy = []
    for index in range(runs):
        seed = config.seed + index
        noised, final = real_dev.noisy_run(folder / "images", images, out / f"noise-{index}",
                                           replace(config, seed=seed), noise_seed=index)
        scores = real_dev.score_stage(noised, final, recurring=None, per_source=False)["total"]
        noisy.append({"seed": seed, "noise": index, "images_predicted": len(final),
                      **{m: scores[m] for m in METRICS}})
        log(f"{folder.name}, seed {seed} on noise draw {index}: final CorLoc {real_dev._fmt(scores['corloc'])}, "
            f"mask AP50 {real_dev._fmt(scores['mask_ap50'])}")
    unperturbed = [entry["final"] for entry in per_seed if "final" in entry]
    return {"runs": runs, "grey_levels": real_dev.NOISE_GREY_LEVELS, "per_run": noisy,
            "noisy": {m: real_dev._min_max_mean([run[m] for run in noisy]) for m in METRICS},
            "with_seeds": {m: real_dev._min_max_mean([run[m] for run in noisy + unperturbed]) for m in METRICS}}


def score_domain(folder, out, config, seeds: int = 1, limit: int | None = None, log=print,
                 noise_runs: int = 0) -> dict:
    """Run the engine on one domain folder for ``seeds`` seeds (from ``config.seed``) and score every stage; then
    ``noise_runs`` runs on noised copies (:func:`noise_spread`)."""
    from engine.orchestration.pipeline import run

    folder, out = Path(folder), Path(out)
    images = sorted(real_dev.load_ground_truth(folder, default_source=folder.name), key=lambda i: i.file_name)
    images = images[:limit] if limit is not None else images
    image_folder = _run_images(folder, images, out, limit)
    project = out / "project"
    per_seed = []
    for seed in range(config.seed, config.seed + seeds):
        start = time.perf_counter()
        result = run(image_folder, project, replace(config, seed=seed))
        seconds = time.perf_counter() - start
        scores = real_dev.score_project(project, images, recurring=None, per_source=False)
        per_seed.append({"seed": seed, "seconds": round(seconds, 1), "k": result.clusters, "masks": result.masks,
                         "distillation": read_json(project / "report.json").get("distillation", {}),
                         **{stage: stage_scores["total"] for stage, stage_scores in scores.items()}})
        log(f"{folder.name}, seed {seed}: {seconds:.0f} s, " + ", ".join(
            f"{stage} CorLoc {real_dev._fmt(per_seed[-1][stage]['corloc'])} mask AP50 "
            f"{real_dev._fmt(per_seed[-1][stage]['mask_ap50'])}" for stage in scores))
    first = per_seed[0]
    pool = real_dev.tree_pool_recall(project, images)
    log(f"{folder.name}: the candidate tree holds {real_dev._fmt(pool['tree_mask_recall50'])} of the objects at "
        "IoU 0.5 before any ranking")
    result = {"path": str(folder.resolve()), "images": len(images), "objects": first["proposals"]["objects"],
              "limit": limit, "seed": first["seed"], "k": first["k"], "masks": first["masks"],
              "seconds": first["seconds"], "pool": pool,
              **{stage: first[stage] for stage in real_dev.STAGES if stage in first},
              "seed_spread": spread(per_seed), "per_seed": per_seed}
    if noise_runs:
        result["noise_spread"] = noise_spread(folder, images, out, config, per_seed, noise_runs, log)
    return result


def benchmark(domains, out, config=None, seeds: int = 1, limit: int | None = None, log=print,
              noise_runs: int = 0) -> dict:
    """Every domain folder under ``domains``: ``{name: scores}`` (also OUT/results.json), or ``{"skipped": reason,
    "path": domains}`` when there is none."""
    from engine.orchestration.pipeline import RunConfig

    domains, out = Path(domains), Path(out)
    folders = domain_folders(domains)
    if not folders:
        reason = (f"domain folders skipped: no folder with images/ and ground_truth.json in {domains}"
                  if domains.is_dir() else f"domain folders skipped: {domains} not found")
        log(reason)
        return {"skipped": reason, "path": str(domains)}
    config = config or RunConfig()
    results = {folder.name: score_domain(folder, out / folder.name, config, seeds, limit, log, noise_runs)
               for folder in folders}
    atomic_write_json(out / "results.json", results)
    return results


def _range(value: dict | None) -> str:
    return "-" if value is None else f"{value['min']:.3f}-{value['max']:.3f}"


def table(results: dict) -> str:
    """Per folder: one row per stage with the first seed's figures, then the min-max over the seeds."""
    if "skipped" in results:
        return results["skipped"]
    lines = []
    for name, domain in results.items():
        seeds = domain["seed_spread"]["seeds"]
        lines.append(f"domain {name} ({domain['images']} images, {domain['objects']} objects), K = {domain['k']}, "
                     f"{domain['masks']} proposals, seed {domain['seed']}"
                     + (f"; min-max over seeds {seeds}" if len(seeds) > 1 else ""))
        lines.append(f"{'stage':<12}" + "".join(f"{m:>15}" for m in METRICS))
        for stage in real_dev.STAGES:
            if stage not in domain:
                continue
            lines.append(f"{stage:<12}" + "".join(f"{real_dev._fmt(domain[stage][m]):>15}" for m in METRICS))
            if len(seeds) > 1:
                row = domain["seed_spread"][stage]
                lines.append(f"{'  spread':<12}" + "".join(f"{_range(row[m]):>15}" for m in METRICS))
        pool = domain.get("pool") or {}
        if pool.get("tree_mask_recall50") is not None:
            lines.append(f"candidate tree before any ranking ({pool['tree_nodes_per_image']} nodes per image): "
                         f"mask recall@0.5 {real_dev._fmt(pool['tree_mask_recall50'])}")
        noise = domain.get("noise_spread")
        if noise:
            lines.append(f"final stage on copies with +-{noise['grey_levels']} grey level of noise, noise draw k at "
                         f"seed {domain['seed']} + k (differences inside the last row are noise)")
            for run in noise["per_run"]:
                lines.append(f"{'  noise ' + str(run['noise']):<12}"
                             + "".join(f"{real_dev._fmt(run[m]):>15}" for m in METRICS))
            lines.append(f"{'  noisy runs':<12}" + "".join(f"{_range(noise['noisy'][m]):>15}" for m in METRICS))
            lines.append(f"{'  + seeds':<12}" + "".join(f"{_range(noise['with_seeds'][m]):>15}" for m in METRICS))
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=Path, default=DEFAULT_DOMAINS,
                        help="a folder of domain folders, or one domain folder (default: ../shared/data/domains)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-domains"))
    parser.add_argument("--seeds", type=int, default=1, help="seeds run per folder; the spread is reported")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each folder")
    parser.add_argument("--noise-runs", type=int, default=0,
                        help="the run again on this many copies of the images with +-1 grey level of noise, seed "
                             "--seed + k on noise draw k, and that spread reported (default 0: no)")
    real_dev.add_run_options(parser)
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.limit is not None and args.limit < 1) or args.noise_runs < 0:
        parser.error("--seeds and --limit must be at least 1, --noise-runs at least 0")
    config = real_dev.run_config(args)
    results = benchmark(args.domains, args.out.resolve(), config, args.seeds, args.limit,
                        noise_runs=args.noise_runs)
    print(table(results))
    if "skipped" not in results:
        print(f"\nwritten: {args.out.resolve() / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
