"""What the whole_subject experiments share: the folder's scored images, a finished project's final objects and
cached features, the learnt centres fitted on those objects, a mask's solidity, the candidate-tree experiment's
cached features, and one line of figures. Imported by the
scripts beside it (run from the repository root, each puts the repository on the path first)."""
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.measure import regionprops
from skimage.segmentation import watershed

from benchmarks import real_dev
from engine.masks import LabelMasks, coverage_of_crop
from engine.method import centres
from engine.method.features import FeatureCache, ImageFeatures
from engine.method.instances import object_solidities
from engine.state.project import Project
from engine.state.schema import read_images

METRICS = ("corloc", "box_ap50", "mask_ap50", "mask_recall50")


def scored_images(folder: Path) -> list:
    """The folder's annotated images, its dense sources (real-dev's tree tiles) left out as the benchmark does."""
    return [i for i in real_dev.load_ground_truth(folder, default_source=folder.name)
            if i.source not in real_dev.DENSE_SOURCES]


def final_objects(project: Path, images: list) -> dict:
    """{file name: (masks (m, H, W) bool, scores (m,))} of a finished project's final objects."""
    final = real_dev._keyed(real_dev.project_stages(project)["final"], images)
    loaded = {}
    for image in images:
        prediction = final.get(image.file_name)
        if prediction is not None:
            loaded[image.file_name] = (np.asarray(prediction.masks, bool), np.asarray(prediction.scores, float))
    return loaded


def project_features(project: Path):
    """A function: an image's file name -> its ImageFeatures from a finished project's feature cache."""
    project = Project(project)
    cache = FeatureCache(project.features_dir)
    keys = {Path(e["relative_path"]).name: e["feature_key"] for e in read_images(project.images_path)}
    return lambda file_name: cache.get(keys[Path(file_name).name])


class FittedCentres:
    """A project's final objects as label maps, their solidities, and the learnt centre model fitted on them
    (engine.method.centres, as the engine fits it), with each image's predicted depth; the fit is printed."""

    def __init__(self, project: Path, loaded: dict):
        features_of = project_features(project)
        self.features = {name: features_of(name) for name in loaded}
        self.label_masks = {name: LabelMasks.from_stack(masks) for name, (masks, _) in loaded.items()}
        self.solidity = {name: object_solidities(m) for name, m in self.label_masks.items()}
        self.examples = centres.CentreExamples()
        for name, masks in self.label_masks.items():
            self.examples.add(self.features[name].tokens, self.features[name].grid_hw, masks, self.solidity[name])
        self.fit = centres.fit_centre_model(self.examples)
        print(self.fit.summary(), flush=True)
        self.depth = {name: self.fit.model.depth_map(self.features[name].tokens, self.features[name].grid_hw,
                                                     m.labels.shape) for name, m in self.label_masks.items()}


def fitted_from_command_line(argv: list) -> tuple:
    """(scored images, final objects, FittedCentres) of the PROJECT and GROUND_TRUTH_FOLDER the centres
    experiments take as their two arguments (``argv``: sys.argv)."""
    project, folder = Path(argv[1]), Path(argv[2])
    images = scored_images(folder)
    loaded = final_objects(project, images)
    return images, loaded, FittedCentres(project, loaded)


def offset_examples(fitted: FittedCentres) -> tuple:
    """(inputs (N, 2D), offsets (N, 2) float32, object index (N,)) of the fitted project's lone objects (solidity
    >= LONE_SOLIDITY, MIN_EXAMPLE_PIXELS or more): each patch at least half inside, its engine inputs and its offset
    (rows, columns) to the object's centre of mass over the object's radius (its deepest distance to its edge)."""
    inputs, offsets, groups = [], [], []
    for name, masks in fitted.label_masks.items():
        features = fitted.features[name]
        gh, gw = features.grid_hw
        height, width = masks.labels.shape
        patch_inputs = centres.patch_inputs(features.tokens, features.grid_hw)
        for position, object_id in enumerate(masks.ids):
            box, crop = masks.crop(position)
            if box is None or crop.sum() < centres.MIN_EXAMPLE_PIXELS \
                    or fitted.solidity[name].get(int(object_id), 0.0) < centres.LONE_SOLIDITY:
                continue
            cells, cover = coverage_of_crop(crop, box, (height, width), (gh, gw))
            cells = cells[cover >= 0.5]
            if not len(cells):
                continue
            radius = float(ndimage.distance_transform_edt(np.pad(crop, 1)).max())
            rows, cols = np.nonzero(crop)
            centre = np.array([rows.mean() + box[0].start, cols.mean() + box[1].start])
            patch_centres = np.stack([(cells // gw + 0.5) * height / gh, (cells % gw + 0.5) * width / gw], axis=1)
            inputs.append(patch_inputs[cells])
            offsets.append((centre - patch_centres) / radius)
            groups.append(np.full(len(cells), len(groups)))
    return np.concatenate(inputs), np.concatenate(offsets).astype(np.float32), np.concatenate(groups)


def solidity(mask: np.ndarray) -> float:
    """Area over convex-hull area (1 for a speck of two pixels or fewer, as engine.method.instances has it)."""
    regions = regionprops(mask.astype(np.uint8))
    return regions[0].solidity if regions and regions[0].area > 2 else 1.0


def tree_features(feats_dir: Path, file_name: str) -> ImageFeatures:
    """An image's 448-px features as the candidate-tree experiment cached them (keys and CLS attention kept)."""
    stem = Path(file_name).stem
    path = feats_dir / f"{stem}.npz"
    data = np.load(path if path.exists() else feats_dir / f"{stem.replace('.', '_')}.npz")
    return ImageFeatures(tuple(int(v) for v in data["grid_hw"]), tuple(data["input_hw"]), data["keys"],
                         data["tokens"], data["cls_token"], data["cls_attention"])


def figures(images: list, stage: dict) -> str:
    """CorLoc / box AP50 / mask AP50 / mask recall@0.5 of {file name: StagePrediction}, and the mask count."""
    scores = real_dev.score_images(images, stage)
    return " / ".join(f"{scores[k]:.3f}" for k in METRICS) + f" ({scores['predicted_masks']} masks)"


def waist_pieces(mask: np.ndarray, depth_share: float) -> list:
    """A mask cut by a watershed of its distance transform from the peaks at least ``depth_share`` as deep as its
    deepest; pieces under 15 % of it dropped; [mask] when fewer than two pieces remain."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.pad(mask[y0:y1, x0:x1], 1)
    dist = ndimage.distance_transform_edt(crop)
    peaks = peak_local_max(dist, min_distance=max(2, int(dist.max() * 0.5)), threshold_abs=dist.max() * depth_share,
                           labels=crop.astype(int), exclude_border=False)
    if len(peaks) < 2:
        return [mask]
    markers = np.zeros(crop.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=crop)[1:-1, 1:-1]
    area = mask.sum()
    out = []
    for i in range(1, len(peaks) + 1):
        piece = labels == i
        if piece.sum() >= 0.15 * area:
            full = np.zeros_like(mask)
            full[y0:y1, x0:x1] = piece
            out.append(full)
    return out if len(out) >= 2 else [mask]
