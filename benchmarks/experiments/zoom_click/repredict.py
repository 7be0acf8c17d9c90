"""The final objects of finished projects predicted again with and without the closer look, same head, same
proposals (engine.api.predict on copies), scored as `make benchmark` scores them. Run from the repository root:
    .venv/bin/python benchmarks/experiments/zoom_click/repredict.py OUT NAME=PROJECT=GROUND_TRUTH_FOLDER ...
NAME "generated": GROUND_TRUTH_FOLDER is the generated set's quality_data (evaluate_project, as run_benchmark);
else a folder with images/ + ground_truth.json (or real-dev), scored with benchmarks.real_dev's scorer."""
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks import real_dev  # noqa: E402
from engine import api  # noqa: E402

out = Path(sys.argv[1])
# VARIANTS=plain,closer (default), or closer-float32 / closer-bfloat16: the stored precision the crops follow
variants = os.environ.get("VARIANTS", "plain,closer").split(",")
for spec in sys.argv[2:]:
    name, project, truth = spec.split("=")
    for variant in variants:
        closer = variant.startswith("closer")
        copy = out / f"{name}-{variant}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("features", "closer_look"))
        os.symlink(Path(project).resolve() / "features", copy / "features")
        stored = json.loads((copy / "project.json").read_text())
        stored["config"]["closer_look"] = closer
        if "-" in variant:
            stored["config"]["precision"] = variant.split("-")[1]
        (copy / "project.json").write_text(json.dumps(stored, indent=1))
        start = time.perf_counter()
        predicted = api.predict(copy)
        seconds = time.perf_counter() - start
        print(f"{name} {variant} closer look {predicted.get('closer_look_seconds')} s", flush=True)
        if name == "generated":
            gt = Path(truth) / "ground_truth.json"
            p, f = api.evaluate_project(copy, gt, "proposals"), api.evaluate_project(copy, gt, "predictions")
            print(f"{name} {variant} predict {seconds:.0f} s: clustering mIoU {p['miou']:.3f}, final mIoU "
                  f"{f['miou']:.3f} AP50 {f['ap50']:.3f} agnostic AP50 {f['ap50_agnostic']:.3f} CorLoc "
                  f"{f['corloc']:.3f}", flush=True)
            continue
        images = sorted(real_dev.load_ground_truth(truth, default_source=name), key=lambda i: i.file_name)
        images = [i for i in images if i.source not in real_dev.DENSE_SOURCES]
        per_source = len({i.source for i in images}) > 1
        scores = real_dev.score_project(copy, images, recurring=None, per_source=per_source)
        for stage in ("clustered", "final"):
            for part in ("total", "source_mean"):
                if part in scores[stage]:
                    s = scores[stage][part]
                    print(f"{name} {variant} predict {seconds:.0f} s {stage:9s} {part:11s} " + " ".join(
                        f"{k} {s[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")
                        if s.get(k) is not None), flush=True)
