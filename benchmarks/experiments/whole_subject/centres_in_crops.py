"""Small objects cut again at centres learnt on their closer-look crops (engine.method.centres.cut_in_crops), replayed
on a project predicted without that cut: each final object a closer look takes (under a tenth of the image, at most
20 an image, best first) embedded in a crop 1.5x its own box (the engine's crop embedder: block 9, 3/4 of the input
size; the engine reads the recut's crop instead where one holds the object), the lone ones the examples of a second
centre model, every such object cut where its crop's predicted depth holds two centres SPACING typical radii apart
(concave) or its pieces agree better (compact). A small cat in a group is a few patches of the whole image, too few
to hold a centre; its crop has 20-40x more. The crops' tokens are kept in CACHE (a pickle) between runs. Nothing in
the project is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_in_crops.py PROJECT GROUND_TRUTH_FOLDER CACHE \
        [SPACING ...]   (default: 0.4 0.5 0.75 1.0)"""
import json
import os
import pickle
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.io.images import load_image  # noqa: E402
from engine.masks import LabelMasks  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.closer_look import RECUT_INPUT_SHARE, crop_embedder, cropped, small_object_windows  # noqa: E402
from engine.method.instances import object_solidities  # noqa: E402

project, folder, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
images = common.scored_images(folder)
loaded = common.final_objects(project, images)
label_masks = {name: LabelMasks.from_stack(masks) for name, (masks, _) in loaded.items()}
if cache.exists():
    with open(cache, "rb") as file:
        crops = pickle.load(file)
else:
    embed = crop_embedder(json.loads((project / "project.json").read_text())["config"], RECUT_INPUT_SHARE)
    crops = {}
    for name, masks in label_masks.items():
        windows = small_object_windows(masks.labels, masks.ids)
        used = list(dict.fromkeys(windows.values()))
        image = load_image(folder / "images" / name)
        vectors = dict(zip(used, embed([cropped(image, window) for window in used])))
        crops[name] = {value: (window, vectors[window][0].astype(np.float16), vectors[window][1])
                       for value, window in windows.items()}
    with open(cache, "wb") as file:
        pickle.dump(crops, file)
examples = centres.CentreExamples()
for name, embedded in crops.items():
    for value, ((x0, y0, x1, y1), tokens, grid_hw) in embedded.items():
        own = LabelMasks((label_masks[name].labels[y0:y1, x0:x1] == value).astype(np.int32))
        examples.add(tokens, grid_hw, own, object_solidities(own))
fit = centres.fit_centre_model(examples, spacing=centres.CROP_CENTRE_SPACING)
print(f"{sum(map(len, crops.values()))} small objects in "
      f"{sum(len({window for window, _, _ in c.values()}) for c in crops.values())} crops; the crops' model: "
      f"{fit.summary()}", flush=True)
print("without the crops' cut:", common.figures(images, {name: real_dev.StagePrediction(masks, scores, None)
                                                         for name, (masks, scores) in loaded.items()}))
for spacing in [float(v) for v in sys.argv[4:]] or [0.4, 0.5, 0.75, 1.0]:
    fit.model.spacing = spacing
    stage = {}
    for name, masks in label_masks.items():
        by_position = {value - 1: crop for value, crop in crops[name].items()}  # ids 1..n: position + 1
        cut, _, scores, _ = centres.cut_in_crops(masks, np.ones(len(masks), int), loaded[name][1], by_position,
                                                 fit.model)
        stage[name] = real_dev.StagePrediction(np.asarray(cut), np.asarray(scores, float), None)
    print(f"centres {spacing} x the crops' typical lone radius apart:", common.figures(images, stage), flush=True)
