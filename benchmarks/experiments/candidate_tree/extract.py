"""Extract full features (keys, tokens, cls attention) for a folder into $TREE_EXPERIMENT_DIR/feats/<name>/<file>.npz."""
import os as _os
import sys as _sys
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
_sys.path[:0] = [str(_HERE), str(_HERE.parents[2])]  # these scripts and the repository (engine)
WORK = _Path(_os.environ.get("TREE_EXPERIMENT_DIR", "runs/tree-experiment"))  # features and nodes go here
import os, sys, json, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
import numpy as np
from engine.method.features import FeatureExtractor
from engine.io.images import ImageSource, discover_images

folder, name = Path(sys.argv[1]), sys.argv[2]
out = WORK / "feats" / name
out.mkdir(parents=True, exist_ok=True)
gt = json.loads((folder / "ground_truth.json").read_text())
ex = FeatureExtractor("dinov2_vits14", device="cpu")
print(ex.weights)
from PIL import Image
t = time.time()
for i, im in enumerate(gt["images"]):
    p = out / (Path(im["file_name"]).stem + ".npz")
    if p.exists():
        continue
    img = np.asarray(Image.open(folder / "images" / im["file_name"]).convert("RGB"))
    f = ex.extract([img])[0]
    np.savez(p, keys=f.keys, tokens=f.tokens, cls_token=f.cls_token, cls_attention=f.cls_attention,
             grid_hw=np.array(f.grid_hw), input_hw=np.array(f.input_hw))
    if i % 20 == 0:
        print(i, time.time() - t, flush=True)
print("done", time.time() - t)
