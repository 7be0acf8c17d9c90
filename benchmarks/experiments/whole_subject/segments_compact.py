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
from skimage.measure import regionprops  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from engine.method import proposals  # noqa: E402
from engine.method.features import ImageFeatures  # noqa: E402

feats_dir, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = [i for i in real_dev.load_ground_truth(folder, default_source=folder.name)
          if i.source not in real_dev.DENSE_SOURCES]
plain = proposals.attention_ratio


def solidity(patch_mask):
    regions = regionprops(patch_mask.astype(np.uint8))
    return regions[0].solidity if regions and regions[0].area > 2 else 1.0


results = {}
for threshold in (None, 0.7):
    proposals.attention_ratio = plain if threshold is None else (
        lambda f, m, t=threshold: plain(f, m) * min(1.0, solidity(m) / t))
    stage = {}
    for image in images:
        stem = Path(image.file_name).stem
        path = feats_dir / f"{stem}.npz"
        d = np.load(path if path.exists() else feats_dir / f"{stem.replace('.', '_')}.npz")
        f = ImageFeatures(tuple(int(v) for v in d["grid_hw"]), tuple(d["input_hw"]), d["keys"], d["tokens"],
                          d["cls_token"], d["cls_attention"])
        pixels = np.asarray(Image.open(folder / "images" / image.file_name).convert("RGB"))
        p = proposals.segment_proposals(pixels, f, True)
        stage[image.file_name] = real_dev.StagePrediction(p.masks, np.asarray(p.scores, float), None)
    s = real_dev.score_images(images, stage)
    print(f"solidity floor {threshold}: " + " / ".join(
        f"{s[k]:.3f}" for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"))
        + f" ({s['predicted_masks']} masks)",
        flush=True)
