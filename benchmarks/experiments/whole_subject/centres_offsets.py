"""Can a patch token say where its object's centre is? Per-patch offsets to the centre (Panoptic-DeepLab's second
head), learnt as the depth is (engine.method.centres): the folder's lone objects (solidity >= 0.8, at least
MIN_EXAMPLE_PIXELS), each patch at least half inside, its offset to the object's centre of mass over the object's
radius (the deepest distance to its edge), regressed by ridge from the engine's patch inputs. Held out by object
(grouped 5-fold): R^2 of the offsets, and the share of patches whose predicted centre lands within half a radius
of the true one, against the share where the patch itself does (no offset). Where the offsets are learnt, a group's
patches can vote for their own cat's centre, instead of falling into the watershed basins of the predicted depth.
Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_offsets.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402

from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)
x, y, g = common.offset_examples(fitted)
print(f"{g.max() + 1} lone objects, {len(x)} patches; no offset lands within half a radius for "
      f"{np.mean(np.hypot(*y.T) <= 0.5):.3f} of them")
for alpha in centres.ALPHAS + (30000.0, 100000.0):  # past the engine's strongest: the offsets want more
    predicted = np.zeros_like(y)
    for train, test in GroupKFold(n_splits=5).split(x, y, g):
        predicted[test] = Ridge(alpha=alpha).fit(x[train], y[train]).predict(x[test])
    r2 = 1 - ((y - predicted) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    landed = np.mean(np.hypot(*(y - predicted).T) <= 0.5)
    print(f"ridge {alpha:g}: held-out R^2 rows {r2[0]:.3f} columns {r2[1]:.3f}; predicted centre within half a "
          f"radius {landed:.3f}", flush=True)
