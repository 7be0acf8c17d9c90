"""The `segments` limits on a folder of many objects per image (issue 20: 288 of feral_cats' 785 cats have no
final object at IoU 0.1). Proposal stage only, from the candidate-tree experiment's 448-px features: the CLS
attention floor (`min_attention_ratio`, chosen on real-dev's 13 photos) and the per-image cap (`max_masks`).
Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/segments_limits.py FEATS_DIR GROUND_TRUTH_FOLDER [N]"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method.proposals import segment_proposals  # noqa: E402

feats_dir, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = common.scored_images(folder)[:int(sys.argv[3]) if len(sys.argv) > 3 else None]
variants = [(1.0, 12), (0.7, 12), (1.0, 24), (0.7, 24), (0.5, 24)]
predictions: dict = {v: {} for v in variants}
for image in images:
    features = common.tree_features(feats_dir, image.file_name)
    pixels = np.asarray(Image.open(folder / "images" / image.file_name).convert("RGB"))
    for ratio, cap in variants:
        p = segment_proposals(pixels, features, True, max_masks=cap, min_attention_ratio=ratio)
        predictions[(ratio, cap)][image.file_name] = real_dev.StagePrediction(p.masks, np.asarray(p.scores, float),
                                                                             None)
for (ratio, cap), stage in predictions.items():
    print(f"attention >= {ratio}, at most {cap}: {common.figures(images, stage)}")
