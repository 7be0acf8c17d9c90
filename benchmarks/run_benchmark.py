"""The benchmark: quality of each stage on labelled synthetic photos, and CPU/GPU speed and memory.

    .venv/bin/python -m benchmarks.run_benchmark [--out runs/benchmark] [--quality-images 60]
                                                 [--speed-images 50 200] [--device auto]
                                                 [--real-dev PATH] [--domains PATH] [--dense-images 20]
                                                 [--dense-size 512]

Prints a table and writes OUT/results.json. Quality: a dataset generated from real photo pixels
(benchmarks/synthetic.py) with ground-truth instances; each stage is scored with engine.output.evaluation.
Real images: the 13 annotated photos of real-dev (benchmarks/real_dev.py; default ../shared/data/real-dev
next to the repository), scored per source into ``quality.real`` (pooled and as the mean over the sources);
skipped, with a message, when absent.
Domain folders: every folder of ``--domains`` (default ../shared/data/domains; benchmarks/domains.py), each run
with the default settings and scored per stage, class-agnostically, with real-dev's scorer, over the same seeds,
into ``quality.domains.<name>.<stage>.{corloc,box_ap50,mask_ap50,mask_recall50}`` and
``quality.domains.<name>.seed_spread``, and with ``--noise-runs`` (default 3) ``quality.domains.<name>.noise_spread``
(run k again at seed k on copies of the images with +-1 grey level of noise: benchmarks.domains.noise_spread);
skipped, with a message, when absent.
Dense objects: benchmarks/dense.py (generated cells, engine vs Otsu + watershed, and real-dev's tree tiles)
into ``quality.dense`` (``--dense-images`` images, at most ``--quality-images``; 0 skips it).
Speed: each size runs in a fresh subprocess so that its peak RSS is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks import dense, domains, real_dev  # noqa: E402
from benchmarks.synthetic import CATEGORIES, write_dataset  # noqa: E402
from engine.atomic import atomic_write_json, read_json  # noqa: E402
from engine.orchestration.pipeline import RunConfig, evaluate_project, run  # noqa: E402

TARGETS = {"engine_over_backbone_max": 1.25, "engine_over_feature_pass_max": 2.0, "retrain_predict_100_s_max": 30.0,
           "peak_rss_mb_200_max": 3000.0}


def quality(out: Path, n_images: int, config: RunConfig, seeds: int = 3) -> dict:
    """Each stage's scores, averaged over ``seeds`` seeds (the segments proposals' k-means, clustering and
    training): k-means on a few hundred masks moves by several mIoU points from seed to seed."""
    data = out / "quality_data"
    write_dataset(data, n_images, seed=1)
    project = out / "quality_project"
    gt = data / "ground_truth.json"
    per_seed = []
    for seed in range(seeds):
        result = run(data / "images", project, replace(config, seed=seed))
        proposals = evaluate_project(project, gt, "proposals")
        final = evaluate_project(project, gt, "predictions")
        per_seed.append({
            "seed": seed,
            "proposals": {"ap50": proposals["ap50_agnostic"], "ap": proposals["ap_agnostic"],
                          "corloc": proposals["corloc"], "masks": result.masks},
            "clustering": {"miou": proposals["miou"], "ap50": proposals["ap50"]},
            "final": {"miou": final["miou"], "ap50": final["ap50"], "ap": final["ap"],
                      "ap50_agnostic": final["ap50_agnostic"], "corloc": final["corloc"],
                      "per_class_iou": final["per_class_iou"]},
            "filtering": read_json(project / "report.json").get("distillation", {}),
        })

    def mean(stage, key):
        return round(sum(r[stage][key] for r in per_seed) / len(per_seed), 4)

    return {
        "images": result.images,
        "categories": len(CATEGORIES),
        "seeds": seeds,
        "proposals": {key: mean("proposals", key) for key in ("ap50", "ap", "corloc")},
        "clustering": {key: mean("clustering", key) for key in ("miou", "ap50")},
        "final": {key: mean("final", key) for key in ("miou", "ap50", "ap", "ap50_agnostic", "corloc")},
        "per_seed": per_seed,
    }


def peak_rss_mb() -> float:
    """This process's own peak resident memory. Linux's ru_maxrss survives fork + exec, so a speed run started
    from a benchmark that had grown (the dense section: 3.8 GB) reported the parent's peak; VmHWM belongs to the
    process image and starts afresh at exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def speed_child(n_images: int, out: Path, config: RunConfig) -> dict:
    """One speed run (called in a subprocess): the whole pipeline, then retrain + predict 100 images."""
    from engine.device import resolve_device
    from engine.io.images import ImageSource
    from engine.orchestration.distillation import predict_project, train_project_head
    from engine.state.project import open_project

    data = out / f"speed_data_{n_images}"
    write_dataset(data, n_images, seed=2)
    project_dir = out / f"speed_project_{n_images}"
    start = time.perf_counter()
    result = run(data / "images", project_dir, config)
    total = time.perf_counter() - start
    timings = result.timings
    distillation = read_json(project_dir / "report.json").get("distillation", {})
    closer_look = distillation.get("closer_look_seconds")
    crops_cut = ((distillation.get("group_cut") or {}).get("in_crops") or {}).get("seconds")
    project, project_config, entries, clusters = open_project(project_dir)
    subset = entries[:100]
    device = str(resolve_device(config.device))  # chosen per command; the project does not store it
    start = time.perf_counter()
    head = train_project_head(project, subset, clusters, device)
    predict_project(project, subset, head, ImageSource.of_project(project_config), clusters=clusters)
    retrain_predict = time.perf_counter() - start
    backbone = timings.get("backbone", 0.0) + timings.get("embeddings", 0.0)
    engine_total = sum(v for k, v in timings.items() if k != "setup")
    return {
        "images": n_images,
        "device": device,
        "wall_s": round(total, 2),
        "stage_s": timings,
        "images_per_s": {k: round(n_images / v, 2) for k, v in timings.items() if v > 0 and k != "setup"},
        "overall_images_per_s": round(n_images / engine_total, 3),
        "backbone_forward_s": round(backbone, 2),
        "engine_over_backbone": round(engine_total / backbone, 3),
        # the honest ratio: everything the user waits for (model loading included) over the image feature pass
        "engine_over_feature_pass": round(total / timings["backbone"], 3),
        # the same without the final objects' closer look and the centre cut in its crops (optional work, both
        # off with RunConfig.closer_look)
        "closer_look_s": closer_look,
        "crops_cut_s": crops_cut,
        "engine_over_feature_pass_without_closer_look": round(
            (total - (closer_look or 0) - (crops_cut or 0)) / timings["backbone"], 3),
        "retrain_predict_100_s": round(retrain_predict, 2),
        "retrain_predict_images": len(subset),
        "peak_rss_mb": peak_rss_mb(),
    }


def speed(out: Path, n_images: int, args) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.run_benchmark", "--speed-child", str(n_images),
                           "--out", str(out), "--device", args.device, "--proposals", args.proposals,
                           "--precision", args.precision,
                           *(["--weights", args.weights] if args.weights else []),
                           *(["--input-size", str(args.input_size)] if args.input_size else [])],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"speed run on {n_images} images failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict) -> str:
    q = results["quality"]
    finals = [r["final"]["miou"] for r in q["per_seed"]]
    clusterings = [r["clustering"]["miou"] for r in q["per_seed"]]
    rows = [(f"quality ({q['images']} images, mean of {q['seeds']} seeds)", "", ""),
            ("proposals AP50 (class-agnostic)", f"{q['proposals']['ap50']:.3f}", ""),
            ("proposals CorLoc", f"{q['proposals']['corloc']:.3f}", ""),
            ("clustering mIoU", f"{q['clustering']['miou']:.3f}",
             f"seeds: {', '.join(f'{v:.3f}' for v in clusterings)}"),
            ("final mIoU", f"{q['final']['miou']:.3f}",
             f"must beat clustering; seeds: {', '.join(f'{v:.3f}' for v in finals)}"),
            ("final AP50 (class-aware)", f"{q['final']['ap50']:.3f}", ""),
            ("clustering AP50 (class-aware)", f"{q['clustering']['ap50']:.3f}", "")]
    for run_ in results["speed"]["runs"]:
        n = run_["images"]
        rows += [(f"speed, {n} images ({run_['device']})", "", ""),
                 ("  images/s overall", f"{run_['overall_images_per_s']:.2f}", ""),
                 ("  images/s backbone", f"{run_['images_per_s'].get('backbone', 0):.2f}", ""),
                 ("  images/s proposals", f"{run_['images_per_s'].get('proposals', 0):.2f}", ""),
                 ("  engine / backbone time", f"{run_['engine_over_backbone']:.3f}",
                  "backbone = feature pass + mask-embedding forwards"),
                 ("  whole run / feature pass", f"{run_.get('engine_over_feature_pass', float('nan')):.3f}",
                  "<= 2.0; model loading included"),
                 ("  ... without the closer look",
                  f"{run_.get('engine_over_feature_pass_without_closer_look', float('nan')):.3f}",
                  "--no-closer-look"),
                 ("  retrain + predict 100 images (s)", f"{run_['retrain_predict_100_s']:.1f}", "<= 30"),
                 ("  peak RSS (MB)", f"{run_['peak_rss_mb']:.0f}", "<= 3000 at 200")]
    width = max(len(r[0]) for r in rows)
    text = "\n".join(f"{a:<{width}}  {b:>8}  {c}" for a, b, c in rows)
    if "real" in q:
        text += "\n\n" + real_dev.table(q["real"])
    if "domains" in q:
        text += "\n\n" + domains.table(q["domains"])
    if "dense" in q and "skipped" not in q["dense"]:
        text += "\n\n" + dense.table(q["dense"])
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark"))
    parser.add_argument("--quality-images", type=int, default=60)
    parser.add_argument("--speed-images", type=int, nargs="*", default=[50, 200])
    parser.add_argument("--seeds", type=int, default=3, help="clustering/training seeds averaged for quality")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--proposals", default=RunConfig.proposals, help="proposal method to benchmark")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="backbone arithmetic (default auto: float32 on CPUs, mixed on GPUs)")
    parser.add_argument("--weights", default=None, help="checkpoint or 'random' (default: the real weights)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--real-dev", type=Path, default=real_dev.DEFAULT_REAL_DEV,
                        help="real-dev folder (ground_truth.json, images/) scored into quality.real; "
                             "skipped when absent (default: ../shared/data/real-dev)")
    parser.add_argument("--domains", type=Path, default=domains.DEFAULT_DOMAINS,
                        help="folder of domain folders (images/, ground_truth.json) scored into quality.domains; "
                             "skipped when absent (default: ../shared/data/domains)")
    parser.add_argument("--dense-images", type=int, default=20,
                        help="generated cell images of the dense section (at most --quality-images; 0: skip)")
    parser.add_argument("--dense-size", type=int, default=512, help="side of the generated cell images")
    parser.add_argument("--noise-runs", type=int, default=3, help="real-dev's and each domain folder's default run "
                        "again on this many copies of the images with +-1 grey level of noise: the spread a change "
                        "of the features makes (benchmarks.real_dev.noise_spread, benchmarks.domains.noise_spread)")
    parser.add_argument("--speed-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    config = RunConfig(num_classes=len(CATEGORIES), device=args.device, proposals=args.proposals,
                       weights=args.weights, input_size=args.input_size, precision=args.precision)
    if args.speed_child is not None:
        print(json.dumps(speed_child(args.speed_child, args.out, config)))
        return 0
    results = {"config": asdict(config), "quality": quality(args.out, args.quality_images, config, args.seeds)}
    results["quality"]["real"] = real_dev.benchmark(args.real_dev, args.out / "real",
                                                    replace(config, num_classes=None, seed=0), seeds=args.seeds,
                                                    noise_runs=args.noise_runs)
    results["quality"]["domains"] = domains.benchmark(args.domains, args.out / "domains",
                                                      replace(config, num_classes=None, seed=0), seeds=args.seeds,
                                                      noise_runs=args.noise_runs)
    dense_images = min(args.dense_images, args.quality_images)
    results["quality"]["dense"] = (
        dense.benchmark(args.out / "dense", dense_images, args.dense_size, args.weights, args.device, args.real_dev)
        if dense_images > 0 else {"skipped": "dense section skipped (--dense-images 0)"})
    runs = [speed(args.out, n, args) for n in args.speed_images]
    largest = max(runs, key=lambda r: r["images"]) if runs else None
    results["speed"] = {
        "runs": runs,
        "engine_over_backbone": largest["engine_over_backbone"] if largest else None,
        "engine_over_feature_pass": largest["engine_over_feature_pass"] if largest else None,
        "retrain_predict_100_s": largest["retrain_predict_100_s"] if largest else None,
    }
    results["memory"] = {f"peak_rss_mb_{r['images']}": r["peak_rss_mb"] for r in runs}
    results["targets"] = TARGETS
    atomic_write_json(args.out / "results.json", results)
    print(table(results))
    print(f"\nwritten: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
