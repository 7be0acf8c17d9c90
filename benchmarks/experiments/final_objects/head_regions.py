"""Which of the final head's own regions (those no proposal covers) should be final objects? (issue 20; the
figures in docs/decisions.md#d-head-regions-small). A finished project is copied (its feature cache linked, the
closer look's memo copied, so the recuts are the same) and predicted again with one variant, then scored. Run from
the repository root:
    .venv/bin/python benchmarks/experiments/final_objects/head_regions.py PROJECT KIND VARIANT OUT
KIND: feral (../shared/data/domains/feral_cats), realdev (../shared/data/real-dev, trees left out) or generated
(the run_benchmark quality project: its ../quality_data/ground_truth.json, scored by mIoU).
VARIANT: all (every region), none, sure (mean foreground >= 0.85 over the region; the decision's 0.248 was measured
over its free pixels) or small<share> (regions up to
that share of the image, e.g. small0.1, the default)."""
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

import engine.orchestration.distillation as distillation  # noqa: E402
from benchmarks import real_dev  # noqa: E402
from engine.method import instances  # noqa: E402
from engine.orchestration.pipeline import evaluate_project, predict  # noqa: E402

project, kind, variant, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(project, out, ignore=shutil.ignore_patterns("features"))
(out / "features").symlink_to((project / "features").resolve())


def regions(semantic, probs):
    if variant == "none":
        return np.zeros((0, *semantic.shape), bool), np.zeros(0, int), np.zeros(0, np.float32)
    share = float(variant[len("small"):]) if variant.startswith("small") else 1.0
    masks, classes, scores = instances.foreground_instances(semantic, probs, max_area_fraction=share)
    if variant == "sure":
        keep = np.flatnonzero(scores >= instances.READMIT_FOREGROUND)
        masks, classes, scores = (masks[keep] if len(keep) else np.zeros((0, *semantic.shape), bool),
                                  classes[keep], scores[keep])
    return masks, classes, scores


distillation.foreground_instances = regions
predict(out, device="cpu")
if kind == "generated":
    truth = project.parent / "quality_data" / "ground_truth.json"
    clustered, final = evaluate_project(out, truth, "proposals"), evaluate_project(out, truth, "predictions")
    print(f"{variant}: clustering mIoU {clustered['miou']:.4f}, final mIoU {final['miou']:.4f}, "
          f"final AP50 {final['ap50']:.4f}, background IoU {final['per_class_iou'].get('0', float('nan')):.3f}")
else:
    folder = Path("../shared/data/domains/feral_cats" if kind == "feral" else "../shared/data/real-dev")
    images = [i for i in real_dev.load_ground_truth(folder, default_source=folder.name)
              if i.source not in real_dev.DENSE_SOURCES]
    scores = real_dev.score_project(out, images, recurring=None, per_source=False)
    for stage in ("clustered", "final"):
        s = scores[stage]["total"]
        print(f"{variant} {stage}: " + " / ".join(f"{s[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50",
                                                                           "mask_recall50"))
              + f" ({s['predicted_masks']} objects)")
