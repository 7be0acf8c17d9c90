"""The crops of cache_layers.py embedded again mirrored left-right, block 8's outputs mirrored back
(issue 21: does test-time flipping steady a box's answer?).
.venv/bin/python benchmarks/experiments/box_prompt/cache_flipped.py IN.pkl OUT.pkl"""
import os, pickle, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np
from engine.method.features import FeatureExtractor

items = pickle.load(open(sys.argv[1], "rb"))
fx = FeatureExtractor("dinov2_vits14", precision="float32")
fx.keep_middle_block(8)
for n, it in enumerate(items):
    f = fx.extract([np.ascontiguousarray(it["crop"][:, ::-1])])[0]
    gh, gw = f.grid_hw
    assert (gh, gw) == tuple(it["grid"])
    it["block8_flipped"] = f.middle_tokens.reshape(gh, gw, -1)[:, ::-1].reshape(gh * gw, -1)
    if n % 40 == 0:
        print(n, flush=True)
pickle.dump(items, open(sys.argv[2], "wb"))
