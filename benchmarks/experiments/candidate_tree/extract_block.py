"""As extract.py, with a middle block's patch outputs in place of the keys (the Ward tree of nodes.py is built
on the "keys"): does the tree of block 8's outputs hold and rank the objects better? (issue 20, 2026-12-05)
.venv/bin/python benchmarks/experiments/candidate_tree/extract_block.py FOLDER NAME [BLOCK=8]"""
import os as _os
import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:0] = [str(_HERE), str(_HERE.parents[2])]
WORK = _Path(_os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))
import json, sys, time
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
from PIL import Image
from engine.method.features import FeatureExtractor

folder, name = _Path(sys.argv[1]), sys.argv[2]
block = int(sys.argv[3]) if len(sys.argv) > 3 else 8
out = WORK / "feats" / name
out.mkdir(parents=True, exist_ok=True)
gt = json.loads((folder / "ground_truth.json").read_text())
ex = FeatureExtractor("dinov2_vits14", device="cpu")
ex.keep_middle_block(block)
t = time.time()
for i, im in enumerate(gt["images"]):
    p = out / (_Path(im["file_name"]).stem + ".npz")
    if p.exists():
        continue
    f = ex.extract([np.asarray(Image.open(folder / "images" / im["file_name"]).convert("RGB"))])[0]
    np.savez(p, keys=f.middle_tokens, tokens=f.tokens, cls_token=f.cls_token, cls_attention=f.cls_attention,
             grid_hw=np.array(f.grid_hw), input_hw=np.array(f.input_hw))
    if i % 20 == 0:
        print(i, time.time() - t, flush=True)
print("done", time.time() - t)
