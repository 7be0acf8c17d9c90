"""Does a nonlinear centre model predict held-out objects' depth better than the ridge regression
(engine.method.centres)? The same examples the engine gathers from a project's final objects (lone ones, 48
patches each), the same grouped 5-fold held-out R^2; ridge at the engine's strengths against scikit-learn's
MLPRegressor (one hidden layer, early stopping) and kernel ridge on random Fourier features. Nothing is written.
From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_nonlinear.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.kernel_approximation import RBFSampler  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GroupKFold, cross_val_score  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from benchmarks.experiments.whole_subject import common  # noqa: E402

images, _, fitted = common.fitted_from_command_line(sys.argv)
items = fitted.examples.all()
x = np.concatenate([item[0] for item in items]).astype(np.float32)
y = np.concatenate([item[1] for item in items])
groups = np.concatenate([np.full(len(item[1]), i) for i, item in enumerate(items)])
print(f"{len(items)} objects, {len(y)} patches, {x.shape[1]} inputs", flush=True)


def mlp(l2: float):
    return make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(256,), alpha=l2, early_stopping=True,
                                                        random_state=0, max_iter=200))


fourier = make_pipeline(StandardScaler(), RBFSampler(gamma=1.0 / x.shape[1] / 4, n_components=2048, random_state=0),
                        Ridge(alpha=30.0))
models = {"ridge 3000 (the engine's usual strength)": Ridge(alpha=3000.0), "MLP 256, L2 1e-2": mlp(1e-2),
          "MLP 256, L2 1.0": mlp(1.0), "random Fourier features 2048 + ridge": fourier}
for name, model in models.items():
    start = time.perf_counter()
    r2 = cross_val_score(model, x, y, groups=groups, cv=GroupKFold(5), scoring="r2").mean()
    print(f"{name}: held-out R^2 {r2:.3f} ({time.perf_counter() - start:.0f} s for 5 folds)", flush=True)
