"""Compactness in the `segments` ranking itself (issue 20; the final objects' ranking already weighs it,
docs/decisions.md#d-compact): each candidate's CLS attention ratio times min(1, solidity / T) of its patch mask,
before overlaps are resolved (the ranked candidates claim pixels in that order). Proposal stage only, from the
candidate-tree experiment's 448-px features. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/segments_compact.py FEATS_DIR GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import proposals  # noqa: E402

feats_dir, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = common.scored_images(folder)
plain = proposals.attention_ratio
for threshold in (None, 0.7):
    proposals.attention_ratio = plain if threshold is None else (
        lambda f, m, t=threshold: plain(f, m) * min(1.0, common.solidity(m) / t))
    stage = {}
    for image in images:
        features = common.tree_features(feats_dir, image.file_name)
        pixels = np.asarray(Image.open(folder / "images" / image.file_name).convert("RGB"))
        p = proposals.segment_proposals(pixels, features, True)
        stage[image.file_name] = real_dev.StagePrediction(p.masks, np.asarray(p.scores, float), None)
    print(f"solidity floor {threshold}: {common.figures(images, stage)}", flush=True)
