"""As cache_crops.py, plus the crop's last-block keys and the outputs of earlier blocks (issue 21: does a box
choose better patches from more than the final tokens?).
.venv/bin/python benchmarks/experiments/box_prompt/cache_layers.py OUT.pkl   (LAYERS=5,8 by default)"""
import os, pickle, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np
import torch
from engine.method.features import FeatureExtractor, preprocess

base = pickle.load(open(os.environ.get("CROPS", "/work/exp/box/crops.pkl"), "rb"))
fx = FeatureExtractor("dinov2_vits14", precision="float32")
layers = [int(v) for v in os.environ.get("LAYERS", "5,8").split(",")]
kept = {}
hooks = [fx.model.blocks[i].register_forward_hook(lambda m, a, o, i=i: kept.__setitem__(i, o.detach()))
         for i in layers]
prefix = fx.spec.num_prefix_tokens
for n, it in enumerate(base):
    crop = it["crop"]
    hw = fx.input_hw(crop)
    batch = preprocess(crop, fx.spec, hw)[None]
    keys, _, tokens = fx._forward(batch)
    it["keys"] = keys[0].numpy().astype(np.float16)
    for i in layers:
        it[f"block{i}"] = kept[i][0, prefix:].float().numpy().astype(np.float16)
    if n % 20 == 0:
        print(n, flush=True)
pickle.dump(base, open(sys.argv[1], "wb"))
