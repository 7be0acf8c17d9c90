"""Fewer closer looks: how much do the final objects lose when fewer are recut (issue 20: the closer look is what
keeps the engine over 2x its feature pass on a CPU)? A finished project is copied (feature cache linked, the
closer look's memo dropped, so every crop is embedded again and counted) and predicted with the recut limits
given, then scored. Run from the repository root:
    .venv/bin/python benchmarks/experiments/final_objects/recut_count.py PROJECT KIND MAX_SHARE MAX_OBJECTS OUT
KIND: feral, realdev or generated (as head_regions.py)."""
import functools
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import engine.orchestration.distillation as distillation  # noqa: E402
from benchmarks import real_dev  # noqa: E402
from engine.orchestration.pipeline import evaluate_project, predict  # noqa: E402

project, kind, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[5])
max_share, max_objects = float(sys.argv[3]), int(sys.argv[4])
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(project, out, ignore=shutil.ignore_patterns("features", "closer_look"))
(out / "features").symlink_to((project / "features").resolve())
crops = []
original_embedder = distillation._recut_embedder


def counting_embedder(*args, **kwargs):
    embed = original_embedder(*args, **kwargs)

    def counted(batch):
        crops.append(len(batch))
        return embed(batch)
    return None if embed is None else counted


distillation._recut_embedder = counting_embedder
distillation.recut_objects = functools.partial(distillation.recut_objects, max_share=max_share,
                                               max_objects=max_objects)
started = time.perf_counter()
predict(out, device="cpu")
print(f"share {max_share} objects {max_objects}: {sum(crops)} crops, predict {time.perf_counter() - started:.0f} s")
if kind == "generated":
    truth = project.parent / "quality_data" / "ground_truth.json"
    final = evaluate_project(out, truth, "predictions")
    print(f"  final mIoU {final['miou']:.4f}, AP50 {final['ap50']:.4f}, agnostic AP50 {final['ap50_agnostic']:.4f}")
else:
    folder = Path("../shared/data/domains/feral_cats" if kind == "feral" else "../shared/data/real-dev")
    images = [i for i in real_dev.load_ground_truth(folder, default_source=folder.name)
              if i.source not in real_dev.DENSE_SOURCES]
    scores = real_dev.score_project(out, images, recurring=None, per_source=kind == "realdev")
    s = scores["final"]["total"]
    line = " / ".join(f"{s[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"))
    if kind == "realdev":
        m = scores["final"]["source_mean"]
        line += "; source mean " + " / ".join(f"{m[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50"))
    print("  final " + line)
