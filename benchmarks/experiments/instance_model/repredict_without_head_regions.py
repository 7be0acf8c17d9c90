"""Re-predict a copy of a finished project with / without the head-only regions; score the final stage.

    python benchmarks/experiments/instance_model/repredict_without_head_regions.py PROJECT FOLDER domain|real
"""
import sys, json, shutil
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np
from pathlib import Path
import engine.orchestration.distillation as D
from benchmarks import real_dev as bench
from engine.orchestration.pipeline import predict
src, folder, kind = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if kind == "domain":
    images = sorted(bench.load_ground_truth(folder, default_source=folder.name), key=lambda i: i.file_name)
    recurring, per_source = None, False
else:
    images = [i for i in bench.load_ground_truth(folder) if i.source not in bench.DENSE_SOURCES]
    recurring, per_source = bench.recurring_classes(images), True
original = D.foreground_instances
for variant in ("with head regions", "without"):
    D.foreground_instances = original if variant.startswith("with ") else (
        lambda semantic, probs: (np.zeros((0, *semantic.shape), bool), np.zeros(0, int), np.zeros(0, np.float32)))
    dst = Path(f"runs/repredict-{src.parent.name}-{variant.split()[0]}")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    predict(dst)
    s = bench.score_project(dst, images, recurring, per_source)
    row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s["final"]["total"].items() if k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50", "miou")}
    sm = s["final"].get("source_mean", {})
    print(variant, row, "clustered", {k: round(s["clustered"]["total"][k], 4) for k in ("corloc", "mask_ap50", "mask_recall50")},
          "source_mean", {k: round(v, 4) for k, v in sm.items() if isinstance(v, float)}, flush=True)
