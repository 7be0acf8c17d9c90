"""A closer look at every final object of a finished project: each object's box answered from its crop's own
tokens (engine.method.closer_look), scored class-agnostically against the folder's ground truth, beside the
project's own final objects. Run from the repository root:
    .venv/bin/python benchmarks/experiments/zoom_click/recut_final.py PROJECT FOLDER [MAX_AREA_SHARE]
MAX_AREA_SHARE: only objects smaller than this share of the image are recut (default 1: all)."""
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from engine.io.images import ImageSource  # noqa: E402
from engine.method.closer_look import closer_look_mask, crop_embedder  # noqa: E402
from engine.state.project import Project  # noqa: E402
from engine.atomic import read_json  # noqa: E402

project_dir, folder = sys.argv[1], sys.argv[2]
max_share = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
project = Project(project_dir)
config = project.read_config()
embed = crop_embedder(config["config"])
images = sorted(real_dev.load_ground_truth(folder, default_source="d"), key=lambda i: i.file_name)
final = real_dev.project_stages(project_dir)["final"]
entries = {e["relative_path"]: e for e in read_json(project.images_path)}
source = ImageSource.of_project(config)
recut, kept_only_close = {}, {}
start, passes = time.time(), 0
for n, name in enumerate(final):
    pred = final[name]
    image = source.load(entries[name])
    masks, close = [], []
    for m in pred.masks:
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if not len(rows) or m.mean() >= max_share:
            masks.append(m); close.append(m); continue
        new = closer_look_mask(embed, image, (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
        passes += 1
        masks.append(new)
        agree = (new & m).sum() / max((new | m).sum(), 1)
        close.append(new if agree >= 0.5 else m)
    shape = pred.masks.shape
    recut[name] = real_dev.StagePrediction(np.array(masks).reshape(shape), pred.scores, None)
    kept_only_close[name] = real_dev.StagePrediction(np.array(close).reshape(shape), pred.scores, None)
    if n % 20 == 0:
        print(n, name, f"{passes} passes, {time.time() - start:.0f} s", flush=True)
print(f"{passes} closer looks in {time.time() - start:.0f} s")
for label, preds in (("final (project)", {k: final[k] for k in final}), ("final, every object recut", recut),
                     ("final, recut where it agrees (IoU >= 0.5)", kept_only_close)):
    s = real_dev.score_stage(images, real_dev._keyed(preds, images), None, per_source=False)["total"]
    print(f"{label:45s}", {k: s.get(k) for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")}, flush=True)
