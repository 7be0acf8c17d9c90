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
run_settings = dict(config["config"])
if os.environ.get("CROP_INPUT"):  # the crops' input size (default: the run's, 448 for DINOv2)
    run_settings["input_size"] = int(os.environ["CROP_INPUT"])
if os.environ.get("CROP_PRECISION"):
    run_settings["precision"] = os.environ["CROP_PRECISION"]
embed = crop_embedder(run_settings)
images = sorted(real_dev.load_ground_truth(folder, default_source="d"), key=lambda i: i.file_name)
images = [i for i in images if i.source not in real_dev.DENSE_SOURCES]  # real-dev's tree tiles: the dense section
per_source = len({i.source for i in images}) > 1
final = real_dev.project_stages(project_dir)["final"]
wanted = {i.file_name for i in images} | {os.path.basename(i.file_name) for i in images}
final = {k: final[k] for k in final if k in wanted or os.path.basename(k) in wanted}
entries = {e["relative_path"]: e for e in read_json(project.images_path)}
source = ImageSource.of_project(config)
recut, kept_only_close, disjoint_free = {}, {}, {}
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
    # disjoint, as a label map needs: each recut takes its own pixels and free ones (i), or also those of
    # lower-scored objects, best first (ii)
    order = np.argsort(-np.asarray(pred.scores), kind="stable")
    held = np.zeros(shape[1:], np.int32)
    for i, m in enumerate(pred.masks):
        held[m] = i + 1
    own_free = [masks[i] & ((held == i + 1) | (held == 0)) for i in range(len(masks))]
    taken, ranked = np.zeros(shape[1:], bool), [None] * len(masks)
    for i in order:
        lower = np.isin(held, [j + 1 for j in order[list(order).index(i) + 1:]])
        ranked[i] = masks[i] & ~taken & ((held == i + 1) | (held == 0) | lower)
        taken |= ranked[i]
    disjoint_free.setdefault("i", {})[name] = real_dev.StagePrediction(np.array(own_free).reshape(shape), pred.scores, None)
    disjoint_free.setdefault("ii", {})[name] = real_dev.StagePrediction(np.array(ranked).reshape(shape), pred.scores, None)
    recut[name] = real_dev.StagePrediction(np.array(masks).reshape(shape), pred.scores, None)
    kept_only_close[name] = real_dev.StagePrediction(np.array(close).reshape(shape), pred.scores, None)
    if n % 20 == 0:
        print(n, name, f"{passes} passes, {time.time() - start:.0f} s", flush=True)
print(f"{passes} closer looks in {time.time() - start:.0f} s")
for label, preds in (("final (project)", {k: final[k] for k in final}), ("final, every object recut", recut),
                     ("final, recut where it agrees (IoU >= 0.5)", kept_only_close),
                     ("recut, own + free pixels", disjoint_free["i"]),
                     ("recut, own + free + lower-scored objects'", disjoint_free["ii"])):
    scored = real_dev.score_stage(images, real_dev._keyed(preds, images), None, per_source=per_source)
    for part in ("total", "source_mean"):
        if part in scored:
            s = scored[part]
            print(f"{label:45s} {part:12s}", {k: None if s.get(k) is None else round(s[k], 3)
                                              for k in ("corloc", "box_ap50", "mask_ap50", "mask_recall50")},
                  flush=True)
