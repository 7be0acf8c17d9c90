"""The engine's steps as plain functions over a project folder, and ``run`` chaining them.

Data flows one way: images -> features -> proposals (+ embeddings) -> clusters -> COCO and overview.
Every step reads and writes the project folder, so any step can be re-run alone and a re-run skips
the work already on disk. Progress reaches callers through ``progress(stage, done, total)``; the CLI
maps it to a terminal bar, the napari plugin to its activity dock. A callback may raise :class:`Cancelled`
to stop: every finished image is already on disk, so the next run continues from there.
"""
from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import __version__
from .atomic import atomic_write_json, read_json
from .backbones import DEFAULT_BACKBONE, get_backbone_spec
from .clustering import EMBEDDINGS, box_crop, cluster_masks, pooled_embedding
from .corrections import load_categories, load_correction
from .distill import (
    HeadConfig,
    class_probabilities,
    instances_from_semantic,
    keep_by_class_percentile,
    keep_by_image_threshold,
    load_head,
    paint_label_map,
    patch_targets,
    sample_patches,
    save_head,
    score_proposals,
    semantic_map,
    train_head,
)
from .evaluation import ImagePrediction, evaluate, load_ground_truth
from .export import export_coco, export_label_images, iter_image_proposals, iter_instances, write_overview
from .features import FeatureCache, FeatureExtractor
from .images import ImageError, discover_images, load_image, pixel_hash
from .project import Project, load_image_predictions, save_image_predictions, save_image_proposals
from .proposals import PROPOSAL_METHODS, propose
from .review import import_coco

Progress = Callable[[str, int, int], None]


class Cancelled(Exception):
    """Raise this from a progress callback to stop a step; the project stays resumable (a GUI's Cancel)."""
FILTER_RULES = ("class_percentile", "image_threshold")


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class RunConfig:
    """Everything that decides a run's result; stored in project.json."""

    backbone: str = DEFAULT_BACKBONE
    weights: Optional[str] = None  # checkpoint file, "random", or None for the automatic chain
    device: str = "auto"
    input_size: Optional[int] = None  # shorter image side fed to the network; None: the backbone's default
    proposals: str = "split"  # "split", "ncut" (MaskCut) or "seed" (MaskDistill's single mask); see engine.proposals
    max_masks: int = 3  # ncut: masks per image at most
    num_classes: Optional[int] = None  # K for k-means; None: the suggested K
    embedding: str = "masked_crop_cls"  # see engine.clustering; chosen by measurement (ARCHITECTURE.md)
    recursive: bool = False
    batch_size: int = 4
    seed: int = 0
    distill: bool = True  # train the head, drop weak masks, retrain, predict (False: export the clustered proposals)
    filter_rule: str = "class_percentile"  # or "image_threshold" (the paper's: keep >= threshold, else the best)
    filter_percentile: float = 20.0  # class_percentile: drop each class's masks below this percentile of quality
    filter_threshold: float = 0.9  # image_threshold: keep masks with quality >= this
    self_training_rounds: int = 1  # extra rounds retraining on the final model's own predictions (+0.04 mIoU)

    def check(self) -> None:
        """Reject bad settings before any work starts."""
        get_backbone_spec(self.backbone)
        if self.proposals not in PROPOSAL_METHODS:
            raise ValueError(f"proposals must be one of {', '.join(PROPOSAL_METHODS)}, not {self.proposals!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, not {self.embedding!r}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"the number of classes must be at least 1, not {self.num_classes}")
        if self.input_size is not None and not 28 <= self.input_size <= 2048:
            raise ValueError(f"input size must be between 28 and 2048 pixels, not {self.input_size}")
        if not 1 <= self.max_masks <= 20:
            raise ValueError(f"masks per image must be between 1 and 20, not {self.max_masks}")
        if self.filter_rule not in FILTER_RULES:
            raise ValueError(f"filter rule must be one of {', '.join(FILTER_RULES)}, not {self.filter_rule!r}")
        if not 0 <= self.filter_percentile < 100:
            raise ValueError(f"filter percentile must be in [0, 100), not {self.filter_percentile}")
        if not 0 <= self.filter_threshold <= 1:
            raise ValueError(f"filter threshold must be in [0, 1], not {self.filter_threshold}")
        if not 0 <= self.self_training_rounds <= 10:
            raise ValueError(f"self-training rounds must be between 0 and 10, not {self.self_training_rounds}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.weights not in (None, "random") and not Path(self.weights).is_file():
            raise FileNotFoundError(f"weights file {self.weights} does not exist")

    def proposal_key(self, feature_key: str) -> str:
        """Proposals and embeddings depend on the features and on these settings only."""
        text = f"{feature_key}|{self.proposals}|{self.max_masks}|{self.embedding}|v1"
        return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class RunResult:
    project: Path
    images: int
    skipped: list
    masks: int
    clusters: int
    suggested_k: int
    annotations: Path
    overview: Path
    timings: dict = field(default_factory=dict)


class StageTimer:
    def __init__(self):
        self.seconds: dict = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def extract_and_propose(project: Project, discovery, extractor: FeatureExtractor, config: RunConfig,
                        progress: Progress = _no_progress, timer: StageTimer | None = None) -> tuple:
    """Features (cached), proposals and embeddings for every image; one image in memory per batch.

    Returns (image entries for images.json, skipped files as dicts).
    """
    timer = timer or StageTimer()
    cache = FeatureCache(project.features_dir)
    coco_ids = project.stable_coco_ids([r.relative_path for r in discovery.images])
    entries, skipped = [], [{"relative_path": s.relative_path, "reason": s.reason} for s in discovery.skipped]
    family = extractor.spec.family
    done = 0
    progress("images", 0, len(discovery.images))
    for batch in _chunks(discovery.images, config.batch_size):
        loaded = []
        with timer("load"):
            for record in batch:
                try:
                    image = load_image(record.path)
                except ImageError as error:
                    skipped.append({"relative_path": record.relative_path, "reason": error.reason})
                    continue
                feature_key = extractor.cache_key(pixel_hash(image))
                loaded.append((record, image, feature_key, cache.get(feature_key)))
        missing = [i for i, item in enumerate(loaded) if item[3] is None]
        if missing:
            with timer("backbone"):
                computed = extractor.extract([loaded[i][1] for i in missing])
            with timer("cache_write"):
                for i, features in zip(missing, computed):
                    cache.put(loaded[i][2], features)
                    loaded[i] = (*loaded[i][:3], features)
        for record, image, feature_key, features in loaded:
            key = config.proposal_key(feature_key)
            path = project.proposals_path(record.image_id)
            n_masks = _reusable_mask_count(path, key, image.shape[:2])
            if n_masks is None:
                with timer("proposals"):
                    proposals = propose(image, features, family, config.proposals, max_masks=config.max_masks)
                with timer("embeddings"):
                    embeddings = _embed(proposals, image, features, extractor, config.embedding)
                with timer("save"):
                    save_image_proposals(path, proposals, embeddings, key)
                n_masks = len(proposals)
            entries.append({
                "image_id": record.image_id,
                "feature_key": feature_key,
                "coco_id": coco_ids[record.relative_path],
                "relative_path": record.relative_path,
                "width": int(image.shape[1]),
                "height": int(image.shape[0]),
                "masks": int(n_masks),
            })
            done += 1
            progress("images", done, len(discovery.images))
    return entries, skipped


def _reusable_mask_count(path: Path, key: str, image_hw: tuple):
    """Mask count of an up-to-date proposals file, or None when it must be (re)computed."""
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return int(len(data["scores"])) if str(data["config_key"]) == key else None
    except Exception:  # torn or foreign file: recompute
        return None


def _embed(proposals, image, features, extractor, embedding: str) -> np.ndarray:
    if len(proposals) == 0:
        return np.zeros((0, extractor.spec.embed_dim), np.float32)
    if embedding in ("crop_cls", "masked_crop_cls"):
        masked = embedding == "masked_crop_cls"
        return extractor.cls_embeddings([box_crop(image, m, mask_background=masked) for m in proposals.masks])
    return np.stack([pooled_embedding(features, m) for m in proposals.masks]).astype(np.float32)


def cluster_project(project: Project, entries: list, num_classes: int | None, seed: int = 0) -> dict:
    """k-means over every mask embedding of the project; writes and returns clusters.json."""
    owners, blocks = [], []
    for entry, proposals, embeddings in iter_image_proposals(project, entries):
        owners += [(entry["image_id"], i, float(proposals.scores[i])) for i in range(len(proposals))]
        blocks.append(embeddings)
    if not owners:
        raise ValueError("No object masks were proposed in any image, so there is nothing to cluster. "
                         "Check the images in report.json, or try --proposals seed.")
    result = cluster_masks(np.concatenate(blocks), num_classes, seed=seed)
    clusters = {
        "k": len(result.sizes),
        "suggested_k": int(result.suggested_k),
        "silhouettes": {str(k): round(v, 4) for k, v in result.silhouettes.items()},
        "masks": [
            {"image_id": image_id, "index": index, "score": score, "cluster": int(label),
             "confidence": round(float(conf), 4)}
            for (image_id, index, score), label, conf in zip(owners, result.labels, result.confidence)
        ],
        "clusters": [
            {"id": j, "name": f"cluster_{j + 1}", "size": size,
             "representatives": [[owners[m][0], owners[m][1]] for m in reps]}
            for j, (size, reps) in enumerate(zip(result.sizes, result.representatives))
        ],
    }
    atomic_write_json(project.clusters_path, clusters)
    return clusters


def feature_identity(project_config: dict) -> dict:
    """What cached features (and so a trained head) depend on, from project.json."""
    spec = project_config["backbone"]
    return {"backbone": spec["name"], "weights": project_config["weights"]["identity"],
            "input_size": project_config["config"]["input_size"] or spec["default_input_size"]}


def _load_features(cache: FeatureCache, entry: dict):
    features = cache.get(entry["feature_key"])
    if features is None:
        raise FileNotFoundError(f"Cached features of {entry['relative_path']} are missing; re-run "
                                "`maskdistill run` on the image folder to recompute them.")
    return features


CORRECTION_WEIGHT = 3.0  # a user-corrected image counts this many times a pseudo-labelled one


def _training_set(project: Project, entries: list, label_maps, num_classes: int, head_config: HeadConfig):
    """Sampled patch tokens, soft targets and weights over all images (bounded: a few hundred per image).

    ``label_maps`` yields (label map, weight) per entry.
    """
    cache = FeatureCache(project.features_dir)
    rng = np.random.default_rng(head_config.seed)
    parts = []
    for entry, (label_map, image_weight) in zip(entries, label_maps):
        features = _load_features(cache, entry)
        targets, weights = patch_targets(label_map, features.grid_hw, num_classes)
        tokens, targets, weights = sample_patches(features.tokens, targets, weights,
                                                  head_config.patches_per_image, rng)
        parts.append((tokens, targets, weights * np.float16(image_weight)))
    return tuple(np.concatenate(column) for column in zip(*parts))


def _training_label_maps(project: Project, entries: list, clusters: dict, keep: dict | None = None):
    """(label map, weight) per image: the user's correction where there is one (weighted up), else the
    clustered proposals with the masks not in ``keep`` ignored. Categories go through the user's table:
    merged ones train as their target, discarded ones as background or not at all."""
    table = load_categories(project.root, clusters)
    for entry, masks, classes, _ in iter_instances(project, entries, clusters, "proposals"):
        correction = load_correction(project.root, entry["image_id"])
        weight = 1.0
        if correction is not None:
            masks, classes = correction.instances()
            weight = CORRECTION_WEIGHT
        kept = keep[entry["image_id"]] if keep is not None and correction is None else np.ones(len(masks), bool)
        resolved = np.array([table.resolve(int(c)) or 0 for c in classes], int)
        by_id = table.by_id()
        ignored = ~kept | np.array([getattr(by_id.get(int(c)), "discarded", None) == "ignore" for c in classes],
                                   bool)
        labelled = ~ignored & (resolved > 0)
        label_map = paint_label_map((entry["height"], entry["width"]), masks[labelled], resolved[labelled],
                                    ignore_masks=masks[ignored])
        yield label_map, weight


def _self_training_label_maps(project: Project, entries: list, head, cache: FeatureCache, image_root: Path):
    """(label map, weight) per image: the model's own edge-refined prediction (better targets than its
    patch-grid arg-max: final mIoU 0.652 vs 0.627 on the benchmark), or the user's correction."""
    for entry in entries:
        correction = load_correction(project.root, entry["image_id"])
        if correction is not None:
            masks, classes = correction.instances()
            yield paint_label_map(correction.labels.shape, masks, classes), CORRECTION_WEIGHT
        else:
            probs = _probabilities(head, cache, entry, image_root)
            yield semantic_map(probs, (entry["height"], entry["width"])).astype(np.int32), 1.0


def _probabilities(head, cache, entry, image_root: Path):
    features = _load_features(cache, entry)
    image = load_image(image_root / entry["relative_path"])
    return class_probabilities(head, features.tokens, features.grid_hw, image)


def _train(project, entries, label_maps, num_classes, head_config, device, name, identity):
    tokens, targets, weights = _training_set(project, entries, label_maps, num_classes, head_config)
    head = train_head(tokens, targets, weights, num_classes, head_config, device)
    save_head(project.models_dir / f"head_{name}.pt", head, head_config, identity)
    return head


def score_and_filter(project: Project, entries: list, clusters: dict, head, image_root: Path, config: RunConfig,
                     progress: Progress = _no_progress) -> dict:
    """Score every proposal with ``head``, drop the weakest; writes filtering.json, returns kept flags per image."""
    cache = FeatureCache(project.features_dir)
    rows = []
    for done, (entry, masks, classes, _) in enumerate(iter_instances(project, entries, clusters, "proposals")):
        probs = _probabilities(head, cache, entry, image_root)
        confidence, agreement, quality = score_proposals(probs, masks, classes)
        rows += [(entry["image_id"], i, int(c), float(a), float(b), float(q))
                 for i, (c, a, b, q) in enumerate(zip(classes, confidence, agreement, quality))]
        progress("scoring", done + 1, len(entries))
    quality = np.array([r[5] for r in rows])
    classes = np.array([r[2] for r in rows])
    if config.filter_rule == "class_percentile":
        kept = keep_by_class_percentile(quality, classes, config.filter_percentile)
    else:
        image_index = np.unique([r[0] for r in rows], return_inverse=True)[1]
        kept = keep_by_image_threshold(quality, image_index, config.filter_threshold)
    keep = {e["image_id"]: np.zeros(e["masks"], bool) for e in entries}
    for (image_id, index, *_), flag in zip(rows, kept):
        keep[image_id][index] = flag
    per_class = {c["name"]: {"masks": int((classes == c["id"] + 1).sum()),
                             "dropped": int(((classes == c["id"] + 1) & ~kept).sum())} for c in clusters["clusters"]}
    atomic_write_json(project.filtering_path, {
        "rule": config.filter_rule, "percentile": config.filter_percentile, "threshold": config.filter_threshold,
        "kept": int(kept.sum()), "dropped": int((~kept).sum()), "per_class": per_class,
        "masks": [{"image_id": r[0], "index": r[1], "class": r[2], "confidence": round(r[3], 4),
                   "agreement": round(r[4], 4), "quality": round(r[5], 4), "kept": bool(k)}
                  for r, k in zip(rows, kept)],
    })
    return keep


def predict_project(project: Project, entries: list, head, image_root: Path,
                    progress: Progress = _no_progress) -> int:
    """Semantic map and scored instances of every image into predictions/; returns the instance count."""
    cache = FeatureCache(project.features_dir)
    total = 0
    for done, entry in enumerate(entries):
        probs = _probabilities(head, cache, entry, image_root)
        semantic = semantic_map(probs, (entry["height"], entry["width"]))
        masks, classes, scores = instances_from_semantic(semantic, probs)
        save_image_predictions(project.predictions_path(entry["image_id"]), semantic, masks, classes, scores)
        total += len(masks)
        progress("predict", done + 1, len(entries))
    return total


def _num_classes(project: Project, clusters: dict) -> int:
    """Head outputs: every pseudo-class and every category the user added (splits)."""
    return max([clusters["k"]] + [c.id for c in load_categories(project.root, clusters).categories])


def train_project_head(project: Project, entries: list, clusters: dict, device: str = "cpu", seed: int = 0):
    """One head trained on the project's current labels (corrections, else clustered proposals), not saved."""
    num_classes = _num_classes(project, clusters)
    head_config = HeadConfig(seed=seed)
    labels = _training_label_maps(project, entries, clusters)
    tokens, targets, weights = _training_set(project, entries, labels, num_classes, head_config)
    return train_head(tokens, targets, weights, num_classes, head_config, device)


def distill_project(project: Project, entries: list, clusters: dict, config: RunConfig,
                    progress: Progress = _no_progress, timer: StageTimer | None = None) -> dict:
    """Initial head on all clustered masks -> drop the weakest masks -> final head on the clean set ->
    optional self-training rounds -> predictions for every image. Returns a summary for report.json."""
    timer = timer or StageTimer()
    project_config = project.read_config()
    image_root = Path(project_config["image_root"])
    identity = feature_identity(project_config)
    num_classes = _num_classes(project, clusters)
    head_config = HeadConfig(seed=config.seed)
    device = project_config.get("device", "cpu")
    with timer("train_initial"):
        labels = _training_label_maps(project, entries, clusters)
        head = _train(project, entries, labels, num_classes, head_config, device, "initial", identity)
    with timer("filter"):
        keep = score_and_filter(project, entries, clusters, head, image_root, config, progress)
    with timer("train_final"):
        labels = _training_label_maps(project, entries, clusters, keep)
        head = _train(project, entries, labels, num_classes, head_config, device, "final", identity)
    cache = FeatureCache(project.features_dir)
    for _ in range(config.self_training_rounds):
        with timer("self_training"):
            labels = _self_training_label_maps(project, entries, head, cache, image_root)
            head = _train(project, entries, labels, num_classes, head_config, device, "final", identity)
    with timer("predict"):
        instances = predict_project(project, entries, head, image_root, progress)
    kept = int(sum(k.sum() for k in keep.values()))
    return {"masks_kept": kept, "masks_dropped": int(sum(len(k) for k in keep.values())) - kept,
            "instances_predicted": instances}


def run(image_folder, project_dir, config: RunConfig | None = None, progress: Progress | None = None) -> RunResult:
    """Images -> features -> proposals -> clusters -> COCO export and overview, resuming finished work."""
    config = config or RunConfig()
    config.check()
    progress = progress or _no_progress
    timer = StageTimer()
    discovery = discover_images(image_folder, recursive=config.recursive)
    if not discovery.images:
        reasons = "; ".join(f"{s.relative_path}: {s.reason}" for s in discovery.skipped[:5])
        raise ValueError(f"No usable images in {discovery.root}." + (f" Skipped: {reasons}" if reasons else
                         " Supported: PNG, JPEG, TIFF, BMP, WebP."))
    with Project(project_dir).lock() as project:
        return _run_locked(project, discovery, config, progress, timer)


def _run_locked(project: Project, discovery, config: RunConfig, progress: Progress, timer: StageTimer) -> RunResult:
    with timer("setup"):
        extractor = FeatureExtractor(config.backbone, config.weights, config.device, config.input_size,
                                     config.batch_size)
    entries, skipped = extract_and_propose(project, discovery, extractor, config, progress, timer)
    if not entries:  # nothing written but the lock: no half project.json a later command would trust
        reasons = "; ".join(f"{s['relative_path']}: {s['reason']}" for s in skipped[:5])
        raise ValueError(f"None of the images in {discovery.root} could be read. Skipped: {reasons}")
    project.write_config({
        "software": f"maskdistill {__version__}",
        "image_root": str(discovery.root),
        "config": asdict(config),
        "backbone": asdict(extractor.spec),
        "weights": asdict(extractor.weights),
        "device": str(extractor.device),
    })
    atomic_write_json(project.images_path, entries)
    progress("clustering", 0, 1)
    with timer("clustering"):
        clusters = cluster_project(project, entries, config.num_classes, config.seed)
    progress("clustering", 1, 1)
    if config.distill:
        distilled = distill_project(project, entries, clusters, config, progress, timer)
    else:  # predictions of an earlier run no longer match these clusters
        distilled = {}
        shutil.rmtree(project.predictions_dir, ignore_errors=True)
    source = "current" if config.distill else "proposals"
    progress("export", 0, 1)
    with timer("export"):
        export_coco(project, entries, clusters, discovery.root, source)
    with timer("overview"):
        write_overview(project, entries, clusters, discovery.root, source)
    progress("export", 1, 1)
    result = RunResult(project.root, len(entries), skipped, len(clusters["masks"]), clusters["k"],
                       clusters["suggested_k"], project.annotations_path, project.overview_path,
                       {k: round(v, 3) for k, v in timer.seconds.items()})
    atomic_write_json(project.report_path, {
        "images": len(entries), "skipped": skipped, "masks": result.masks, "clusters": result.clusters,
        "suggested_k": result.suggested_k, "distillation": distilled, "timings_s": result.timings,
    })
    return result


def open_project(project_dir) -> tuple:
    """(project, project.json, images.json entries, clusters.json) of a project made by ``run``."""
    project = Project(project_dir)
    project_config = project.read_config()
    for path in (project.images_path, project.clusters_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the run that made {project.root} did not finish. Run "
                                    f"`maskdistill run IMAGE_FOLDER --project {project.root}` again to complete it.")
    return project, project_config, read_json(project.images_path), read_json(project.clusters_path)


def _stored_config(project_config: dict, **overrides) -> RunConfig:
    config = RunConfig(**{**project_config["config"], **{k: v for k, v in overrides.items() if v is not None}})
    config.check()
    return config


def distill(project_dir, progress: Progress | None = None, **overrides) -> dict:
    """Re-run distillation (and the COCO export) on a finished project; ``overrides`` are RunConfig fields."""
    project, project_config, entries, clusters = open_project(project_dir)
    config = _stored_config(project_config, **overrides)
    timer = StageTimer()
    image_root = Path(project_config["image_root"])
    with project.lock():
        summary = distill_project(project, entries, clusters, config, progress or _no_progress, timer)
        summary["export"] = export_coco(project, entries, clusters, image_root)
        write_overview(project, entries, clusters, image_root)
    summary["timings_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
    return summary


def predict(project_dir, progress: Progress | None = None) -> dict:
    """Predict every image of the project with its final head, then export COCO and the overview."""
    project, project_config, entries, clusters = open_project(project_dir)
    path = project.models_dir / "head_final.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; train it with: maskdistill distill --project {project.root}")
    head = load_head(path, feature_identity(project_config))
    image_root = Path(project_config["image_root"])
    with project.lock():
        instances = predict_project(project, entries, head, image_root, progress or _no_progress)
        export = export_coco(project, entries, clusters, image_root)
        write_overview(project, entries, clusters, image_root)
    return {"instances_predicted": instances, "export": export}


def project_predictions(project: Project, entries: list, clusters: dict, source: str) -> dict:
    """ImagePrediction per image (keyed by relative path) from the proposals or the final model."""
    predictions = {}
    for entry, masks, classes, scores in iter_instances(project, entries, clusters, source):
        if source == "predictions":
            semantic = load_image_predictions(project.predictions_path(entry["image_id"]))[0].astype(np.int64)
        else:
            semantic = paint_label_map((entry["height"], entry["width"]), masks, classes)
        predictions[entry["relative_path"]] = ImagePrediction(entry["relative_path"], semantic, masks,
                                                              np.asarray(classes, int), np.asarray(scores, float))
    return predictions


def evaluate_project(project_dir, ground_truth, source: str = "predictions") -> dict:
    """Scores of ``source`` against ground truth (COCO json or label-image folder); writes evaluation.json."""
    project, _, entries, clusters = open_project(project_dir)
    truths = load_ground_truth(ground_truth)
    scores = evaluate(project_predictions(project, entries, clusters, source), truths)
    scores = {"source": source, "ground_truth": str(Path(ground_truth).resolve()), **scores}
    previous = read_json(project.evaluation_path) if project.evaluation_path.exists() else {}
    atomic_write_json(project.evaluation_path, {**previous, source: scores})
    return scores


def export_project(project_dir, output=None, polygons: bool = False, labels=None, label_format: str = "png",
                   source: str = "current") -> dict:
    """COCO (and optionally label images) of a finished project, under its lock."""
    project, project_config, entries, clusters = open_project(project_dir)
    image_root = Path(project_config["image_root"])
    path = Path(output) if output else project.annotations_path
    with project.lock():
        summary = {"path": str(path), "coco": export_coco(project, entries, clusters, image_root, source, path,
                                                          polygons)}
        if labels is not None:
            summary["labels"] = export_label_images(project, entries, clusters, Path(labels), source, label_format)
    return summary


def import_annotations(project_dir, coco_path) -> dict:
    """An existing COCO file's masks as the project's starting corrections (engine.review.import_coco)."""
    project = open_project(project_dir)[0]
    with project.lock():
        return import_coco(project.root, coco_path)
