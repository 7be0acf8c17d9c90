"""How steady is the suggested K? (issue 20: bfloat16 moved real-dev's K 8 -> 4.) For each finished project, its
mask embeddings are whitened as the clustering does, and the silhouette over K = 2..12 is computed for several
k-means seeds; rules for picking K are compared by what they pick per project. Run from the repository root:
    .venv/bin/python benchmarks/experiments/k_choice/stability.py PROJECT [PROJECT ...]"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from engine.atomic import read_json  # noqa: E402
from engine.method.clustering import MIN_MASKS_PER_CLASS, kmeans, silhouette, stack_rows, whiten  # noqa: E402
from engine.output.export import iter_image_proposals  # noqa: E402
from engine.state.project import Project  # noqa: E402

SEEDS = 5
for path in sys.argv[1:]:
    project = Project(Path(path))
    entries = [e for e in read_json(project.images_path) if e.get("status", "done") == "done" or True]
    x = stack_rows((block for _, _, block in iter_image_proposals(project, entries)))
    x = whiten(x)
    upper = min(12, len(x) - 1, len(x) // MIN_MASKS_PER_CLASS)
    ks = list(range(2, upper + 1))
    table = np.array([[silhouette(x, kmeans(x, k, restarts=3, seed=s)[0]) for k in ks] for s in range(SEEDS)])
    mean, sd = table.mean(0), table.std(0, ddof=1)
    best = int(np.argmax(mean))
    one_se = ks[int(np.flatnonzero(mean >= mean[best] - sd[best] / np.sqrt(SEEDS) * 1.0)[0])]
    seed0 = ks[int(np.argmax(table[0]))]
    per_seed = [ks[int(np.argmax(t))] for t in table]
    print(f"{path}: {len(x)} masks; seed-0 best K {seed0}; per-seed best {per_seed}; mean best {ks[best]}; "
          f"smallest within 1 SE {one_se}")
    print("   K    " + " ".join(f"{k:6d}" for k in ks))
    print("   mean " + " ".join(f"{m:6.3f}" for m in mean))
    print("   sd   " + " ".join(f"{s:6.3f}" for s in sd))
