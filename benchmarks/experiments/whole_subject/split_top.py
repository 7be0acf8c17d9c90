"""Is the first normalized cut's foreground the object on single-subject images? (issue 20: close-up cats cut
into eyes and fur.) Per image, from the candidate-tree experiment's 448-px features (keys, tokens, CLS attention):
the `split` method's foreground (one normalized cut over the key graph), its 8-connected components, and box
CorLoc of its largest component, with gates on how many components hold the foreground. Run from the repository
root:
    .venv/bin/python benchmarks/experiments/whole_subject/split_top.py FEATS_DIR GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method.proposals import _linked, _object_side, key_matrix, second_eigenvector  # noqa: E402

feats_dir, folder = Path(sys.argv[1]), Path(sys.argv[2])
images = common.scored_images(folder)
rows = []
for image in images:
    f = common.tree_features(feats_dir, image.file_name)
    gh, gw = f.grid_hw
    graph = _linked(key_matrix(f, True), 0.15, 1e-5)
    fg = np.zeros(gh * gw, bool)
    fg[_object_side(second_eigenvector(graph), np.arange(gh * gw), (gh, gw))] = True
    regions, count = ndimage.label(fg.reshape(gh, gw), structure=np.ones((3, 3)))
    sizes = np.bincount(regions.ravel())[1:]
    largest = regions == (1 + int(np.argmax(sizes)))
    ys, xs = np.nonzero(largest)
    sy, sx = image.height / gh, image.width / gw
    box = (xs.min() * sx, ys.min() * sy, (xs.max() - xs.min() + 1) * sx, (ys.max() - ys.min() + 1) * sy)
    best = real_dev._box_iou_matrix(np.array([box]), image.boxes).max()
    share_of_fg = sizes.max() / sizes.sum()
    rows.append((best >= 0.5, share_of_fg, sizes.max() / (gh * gw), count, len(image.boxes), image.source))

hits = np.array([r[0] for r in rows])
share = np.array([r[1] for r in rows])
area = np.array([r[2] for r in rows])
print(f"{len(rows)} images; largest split component CorLoc {hits.mean():.3f}")
for gate in (0.6, 0.8, 0.9, 0.95):
    for min_area in (0.0, 0.1, 0.2):
        g = (share >= gate) & (area >= min_area)
        print(f"  one component >= {gate:.2f} of the foreground, >= {min_area:.1f} of the image: {g.sum()} images, "
              f"hit {hits[g].mean() if g.any() else float('nan'):.3f}; the rest {hits[~g].mean():.3f}")
for r in rows if len(rows) < 30 else []:
    print(r)
