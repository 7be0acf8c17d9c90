"""Small objects the run never proposes, found by what the folder's objects look like patch by patch (issue 20:
on feral_cats 233 of 785 cats cover under 1 % of the image, and 80-94 % of them have no final object at IoU 0.1).
A logistic regression over patch inputs (engine.method.centres.patch_inputs: the token centred on its image, beside
its 3 x 3 neighbourhood) learns, from a finished project's own final objects, the patches inside the images' top
objects (positives) against the patches under no final object (negatives). Then: (1) how well its probability
tells annotated small objects' patches from the patches of no annotated object (ROC AUC, by object size); (2) its
blobs (probability upsampled to the image, >= T) that no final object holds (IoU < 0.5), added below every final
object at their mean probability x a small factor: CorLoc / box AP50 / mask AP50 / recall@0.5. Nothing is written.
From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/folder_patch_classifier.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.feature import peak_local_max  # noqa: E402
from skimage.segmentation import watershed  # noqa: E402
from skimage.transform import resize  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.masks import coverage_on_grid  # noqa: E402
from engine.method.centres import patch_inputs  # noqa: E402

THRESHOLDS = (0.5, 0.7, 0.85)
TOP_OBJECTS = int(os.environ.get("TOP_OBJECTS", "1"))  # per image, the positives


def main(project: Path, folder: Path) -> None:
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    loaded = common.final_objects(project, images)
    features_of = common.project_features(project)
    inputs, cover, grid = {}, {}, {}
    x, y = [], []
    for image in images:
        if image.file_name not in loaded:
            continue
        features = features_of(image.file_name)
        masks, scores = loaded[image.file_name]
        grid[image.file_name] = features.grid_hw
        inputs[image.file_name] = patch_inputs(features.tokens, features.grid_hw)
        any_object = coverage_on_grid(masks.any(0), features.grid_hw).ravel() if len(masks) else \
            np.zeros(features.grid_hw[0] * features.grid_hw[1])
        top = np.argsort(scores)[::-1][:TOP_OBJECTS]
        inside = np.zeros_like(any_object)
        for t in top:
            inside = np.maximum(inside, coverage_on_grid(masks[t], features.grid_hw).ravel())
        cover[image.file_name] = any_object
        positive, negative = inside >= 0.5, any_object < 0.05
        x.append(inputs[image.file_name][positive | negative])
        y.append(positive[positive | negative])
    x, y = np.concatenate(x), np.concatenate(y)
    print(f"{len(y)} patches, {int(y.sum())} positive", flush=True)
    model = LogisticRegression(C=0.01, max_iter=500, class_weight="balanced").fit(x, y)
    probability = {name: model.predict_proba(v)[:, 1].reshape(grid[name]) for name, v in inputs.items()}

    # (1) annotated objects' patches against patches of no annotated object, by the object's share of the image
    by_size: dict = {"< 0.5 %": [], "0.5-1 %": [], "1-5 %": [], ">= 5 %": []}
    background = []
    for image in images:
        if image.file_name not in probability:
            continue
        stack = np.asarray(image.masks, bool)
        p = probability[image.file_name].ravel()
        gt_cover = coverage_on_grid(stack.any(0), grid[image.file_name]).ravel()
        background.extend(p[gt_cover == 0])
        for mask in stack:
            share = mask.mean()
            cells = coverage_on_grid(mask, grid[image.file_name]).ravel()
            if not (cells > 0).any():
                continue
            value = float(p[np.argmax(cells)])  # the patch most inside it
            key = "< 0.5 %" if share < 0.005 else "0.5-1 %" if share < 0.01 else "1-5 %" if share < 0.05 else ">= 5 %"
            by_size[key].append(value)
    for key, values in by_size.items():
        if values:
            auc = roc_auc_score([1] * len(values) + [0] * len(background), values + background)
            print(f"objects {key} of the image: {len(values)}, their most-inside patch against background "
                  f"patches ROC AUC {auc:.3f}; >= 0.5: {np.mean(np.array(values) >= 0.5):.2f} "
                  f"(background {np.mean(np.array(background) >= 0.5):.3f})", flush=True)

    # (2) blobs no final object holds, added below the final objects
    as_they_are = {name: real_dev.StagePrediction(m, s, None) for name, (m, s) in loaded.items()}
    print(f"final objects as they are: {common.figures(images, as_they_are)}", flush=True)
    for power in (0.25, 0.5, 1.0):
        stage = {}
        for name, (masks, scores) in loaded.items():
            if not len(masks):
                stage[name] = as_they_are[name]
                continue
            upsampled = resize(probability[name], masks.shape[1:], order=1)
            inside = np.array([upsampled[m].mean() if m.any() else 0.0 for m in masks])
            new = scores * np.maximum(inside, 1e-3) ** power
            order = np.argsort(new)[::-1]
            stage[name] = real_dev.StagePrediction(masks[order], new[order], None)
        print(f"final objects ranked x mean probability inside ^ {power}: {common.figures(images, stage)}",
              flush=True)
    for split in (False, True):
        for threshold in THRESHOLDS:
            stage, added = {}, 0
            for name, (masks, scores) in loaded.items():
                height, width = masks.shape[1:] if len(masks) else next(
                    i.masks.shape[1:] for i in images if i.file_name == name)
                upsampled = resize(probability[name], (height, width), order=1)
                blobs, count = ndimage.label(upsampled >= threshold)
                if split and count:
                    blobs = split_at_peaks(upsampled, blobs, min(height, width) / max(grid[name]))
                    count = int(blobs.max())
                extra, extra_scores = [], []
                floor = float(scores.min()) if len(scores) else 1.0
                for label in range(1, count + 1):
                    blob = blobs == label
                    if blob.sum() < 64:
                        continue
                    if len(masks):
                        inter = (masks & blob).sum((1, 2))
                        union = (masks | blob).sum((1, 2))
                        if (inter / union).max() >= 0.5:
                            continue
                    extra.append(blob)
                    extra_scores.append(floor * 0.5 * float(upsampled[blob].mean()))
                added += len(extra)
                all_masks = np.concatenate([masks, np.asarray(extra, bool).reshape(-1, height, width)])
                all_scores = np.concatenate([scores, extra_scores])
                order = np.argsort(all_scores)[::-1]
                stage[name] = real_dev.StagePrediction(all_masks[order], all_scores[order], None)
            print(f"blobs >= {threshold}{' split at peaks' if split else ''} no final object holds, added below "
                  f"({added}): {common.figures(images, stage)}", flush=True)


def split_at_peaks(probability: np.ndarray, blobs: np.ndarray, patch_pixels: float) -> np.ndarray:
    """Each blob cut by a watershed of its probability from its peaks at least two patches apart."""
    peaks = peak_local_max(probability, min_distance=max(1, int(2 * patch_pixels)), labels=blobs,
                           exclude_border=False)
    markers = np.zeros(blobs.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-probability, markers, mask=blobs > 0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
