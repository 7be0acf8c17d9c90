"""Objects the final objects miss, added where the learnt centre model sees a centre no object holds (issue 20,
item 3: "adds objects the candidates miss"; docs/decisions.md#d-centres). On a project predicted with the centre
model, its depth model is fitted again from the final objects; each predicted peak of depth >= P (half a typical
lone radius from any other) that no final object agreeing with the model (depth agreement >= 0.5) holds grows
into the watershed basin of the predicted depth above 0.25 around it; a basin of 0.25-4x the typical lone
object's area that overlaps the final objects (or only those agreeing with the model: the missed cats lie mostly
under groups and background regions) by less than half is added, ranked below every final object
(score = the lowest final score x its peak depth x 0.5). Nothing is written. Run from the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_add_missed.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from skimage.feature import peak_local_max  # noqa: E402
from skimage.segmentation import watershed  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)
label_masks, depth, fit, examples = fitted.label_masks, fitted.depth, fitted.fit, fitted.examples
areas = [np.pi * (share ** 2) for _, _, share in examples.items]  # a share of the image's area
typical_area = float(np.median(areas))


def added(name: str, peak_depth: float, inside_others: bool) -> list:
    masks, scores = loaded[name]
    predicted = depth[name]
    held = np.zeros(predicted.shape, bool)
    covered = np.zeros(predicted.shape, bool)
    for position, m in enumerate(label_masks[name]):
        covered |= m
        box, crop = label_masks[name].crop(position)
        if box is not None and centres.depth_agreement(crop, predicted[box]) >= 0.5:
            held |= m
    distance = fit.model.min_centre_distance(predicted.shape)
    peaks = peak_local_max(predicted, min_distance=distance, threshold_abs=peak_depth, exclude_border=False)
    peaks = [p for p in peaks if not held[tuple(p)]]
    if not peaks:
        return []
    markers = np.zeros(predicted.shape, np.int32)
    for k, p in enumerate(peaks, 1):
        markers[tuple(p)] = k
    basins = watershed(-predicted, markers, mask=predicted >= 0.25)
    image_area = predicted.size
    floor = float(np.min(scores)) if len(scores) else 1.0
    out = []
    for k, p in enumerate(peaks, 1):
        basin = basins == k
        share = basin.sum() / image_area
        if not 0.25 * typical_area <= share <= 4 * typical_area:
            continue
        if (basin & (held if inside_others else covered)).sum() > 0.5 * basin.sum():
            continue
        out.append((basin, floor * float(predicted[tuple(p)]) * 0.5))
    return out


for peak_depth, inside_others in ((None, False), (0.3, False), (0.4, False), (0.3, True), (0.4, True), (0.5, True)):
    stage, count = {}, 0
    for name, (masks, scores) in loaded.items():
        extra = added(name, peak_depth, inside_others) if peak_depth is not None else []
        count += len(extra)
        all_masks = list(masks) + [m for m, _ in extra]
        all_scores = list(scores) + [s for _, s in extra]
        stage[name] = real_dev.StagePrediction(np.array(all_masks) if all_masks else masks, np.array(all_scores),
                                               None)
    print(f"centres no object holds, depth >= {peak_depth}, inside objects that disagree {inside_others} "
          f"({count} objects added): "
          f"{common.figures(images, stage)}", flush=True)
