"""The per-image part of a run: decode, features (through the feature cache), proposals and embeddings.

A step works on one batch of images and is pure with respect to the project folder: it reads the images, the
feature cache and the files earlier runs left, writes only its own images' files (atomically, to the usual
layout) and returns each image's images.json entry. So an executor (engine.orchestration.executors) may run
the batches here, one after another, or on other machines that see the same folders (Ray), in any order; the
driver gathers the outcomes in the folder's order and everything after (clustering, head, export) is unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.atomic import ProjectFileError
from engine.io.images import ImageError, ImageOptions, ImageSource, load_image_once, pixel_hash
from engine.method.backbones import get_backbone_spec
from engine.method.closer_look import crop_precision
from engine.method.clustering import box_crop, pooled_embeddings
from engine.method.features import FeatureCache, FeatureExtractor
from engine.method.proposals import propose
from engine.method.tiling import scale_for_object_size
from engine.state.project import PROPOSALS_HINT, Project, load_image_proposals, plane_key, save_image_proposals
from engine.state.schema import check_feature_keys, read_images


@dataclass(frozen=True)
class ImageTask:
    """One image to process: where it is, its ids, and its images.json entry of the previous run (to resume).
    Plain values only, so a task travels as JSON to another process or machine."""

    index: int  # position in the folder's order
    image_id: str
    path: str  # absolute: the same on every machine of a cluster (shared filesystem)
    relative_path: str
    plane: int | None
    coco_id: int
    previous: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ImageTask:
        return cls(**data)


@dataclass(frozen=True)
class ImageOutcome:
    """What a step made of one image: its images.json entry, or why it was skipped, and the damaged files of
    the image it found and recomputed (one message each)."""

    index: int
    entry: dict | None = None
    skipped: dict | None = None  # {"relative_path", "reason"}: the file could not be decoded
    notes: list | None = None  # "<file>: damaged ...; recomputed"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ImageOutcome:
        return cls(**data)


def image_tasks(project: Project, discovery) -> list:
    """One ImageTask per discovered image, in the folder's order, with stable COCO ids and the previous entry."""
    coco_ids = project.stable_coco_ids([plane_key(r.relative_path, r.plane) for r in discovery.images])
    previous = previous_entries(project)
    return [ImageTask(index, record.image_id, str(record.path), record.relative_path, record.plane,
                      coco_ids[plane_key(record.relative_path, record.plane)], previous.get(record.image_id))
            for index, record in enumerate(discovery.images)]


def project_outputs(project: Project, image_root) -> list:
    """What image discovery must skip so the project never takes its own files for inputs: the whole project
    folder when it lies apart from the images (e.g. inside the image folder), or, when the images lie in the
    project folder itself, everything the project writes there."""
    if not Path(image_root).resolve().is_relative_to(project.root):
        return [project.root]
    root = project.root
    return [project.overview_path, project.features_dir, project.proposals_dir, project.predictions_dir,
            project.models_dir, root / "predictions.partial", root / "predictions.old", root / "corrections",
            root / "backups"]


def batches_of(tasks: list, size: int) -> list:
    """The tasks in consecutive batches of ``size``: every executor forwards exactly these batches, so
    same-sized images share the same forward passes (and give the same bits) however the work is spread."""
    return [tasks[start:start + size] for start in range(0, len(tasks), size)]


def notes_of(outcomes: list) -> list:
    """The outcomes' notes (damaged files recomputed), in the folder's order."""
    return [note for outcome in sorted(outcomes, key=lambda o: o.index) for note in outcome.notes or ()]


def gather(discovery, outcomes: list) -> tuple:
    """(images.json entries, skipped files as dicts), both in the folder's order however the outcomes came."""
    ordered = sorted(outcomes, key=lambda outcome: outcome.index)
    skipped = [{"relative_path": s.relative_path, "reason": s.reason} for s in discovery.skipped]
    skipped += [outcome.skipped for outcome in ordered if outcome.skipped is not None]
    return [outcome.entry for outcome in ordered if outcome.entry is not None], skipped


def previous_entries(project: Project) -> dict:
    """images.json of the previous run by image id ({} when there is none or it cannot be read)."""
    try:
        return {e["image_id"]: e for e in read_images(project.images_path)} if project.images_path.exists() else {}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def build_extractor(config, device: str | None = None) -> FeatureExtractor:
    """The feature extractor a RunConfig asks for (on ``device``, default the config's)."""
    scale = None if config.object_size is None else scale_for_object_size(
        config.object_size, get_backbone_spec(config.backbone).patch_size)
    return FeatureExtractor(config.backbone, config.weights, device or config.device, config.input_size,
                            config.batch_size, scale=scale, tile_size=config.tile_size, precision=config.precision)


def repair_feature_cache(project: Project, project_config: dict, entries: list, config) -> list:
    """Recompute, with the project's stored settings (``config``: its RunConfig), the cached features of the
    images of ``entries`` whose file is missing or cannot be read, before a command that reads them all
    (distill, predict). One message per file recomputed; raises ValueError when the image itself changed since
    the run (its features would not fit the project's masks): then only a new run helps, and it says so."""
    check_feature_keys(project.images_path, entries)
    cache = FeatureCache(project.features_dir)
    broken = []
    for entry in entries:
        features, problem = cache.read(entry["feature_key"])
        if features is None:
            broken.append((entry, problem or f"{cache.path(entry['feature_key'])}: missing from the feature cache"))
    if not broken:
        return []
    try:
        config.check_weights_file()
    except FileNotFoundError as error:
        names = ", ".join(entry["relative_path"] for entry, _ in broken[:3]) + (" ..." if len(broken) > 3 else "")
        raise FileNotFoundError(f"{error}: the run's weights are needed to recompute the features of {len(broken)} "
                                f"image(s) ({names}); put the file back, or run `maskdistill run` again with "
                                "--weights where it is now") from None
    extractor = build_extractor(config)
    images = ImageSource.of_project(project_config)
    for entry, _ in broken:
        image = images.load(entry)
        if extractor.cache_key(pixel_hash(image)) != entry["feature_key"]:
            raise ValueError(f"{images.root / entry['relative_path']} changed since the last run, so the features "
                             f"its masks were made from cannot be recomputed; run `maskdistill run {images.root} "
                             f"--project {project.root}` to process it again")
        cache.put(entry["feature_key"], extractor.extract([image])[0])
    return [f"{problem} (image {entry['relative_path']}); recomputed" for entry, problem in broken]


def _no_timer(stage: str):
    return contextlib.nullcontext()


class ProposalStep:
    """Features, proposals and embeddings of a batch of images, written into the project folder.

    ``config`` is the run's RunConfig; ``timer(stage)`` a context manager adding up seconds per stage.
    """

    def __init__(self, project_root, config, extractor: FeatureExtractor,
                 timer: Callable[[str], Any] | None = None):
        self.project = Project(project_root)
        self.config = config
        self.extractor = extractor
        self.cache = FeatureCache(self.project.features_dir)
        self.timer = timer or _no_timer
        self._damage: dict = {}  # task index -> {file: problem}, found while reading the image's files

    def __call__(self, tasks: list, on_done: Callable[[ImageOutcome], None] | None = None) -> list:
        """ImageOutcomes of ``tasks`` (in the order they finished: unchanged images first). ``on_done`` is
        called after each image, its files on disk; it may raise to stop (a cancel): what is done stays done."""
        on_done = on_done or (lambda outcome: None)
        outcomes, loaded = [], []
        self._damage.clear()

        def finish(outcome: ImageOutcome) -> None:
            found = self._damage.pop(outcome.index, {})
            if found:
                outcome = replace(outcome, notes=[f"{message}; recomputed" for message in found.values()])
            outcomes.append(outcome)
            on_done(outcome)

        with self.timer("load"):
            for task in tasks:
                stamp = file_stamp(task.path, self.config.image_options)
                reused = self._reusable_entry(task, stamp)
                if reused is not None:
                    finish(ImageOutcome(task.index, entry=reused))
                    continue
                try:
                    loaded.append(self._load(task, stamp))
                except ImageError as error:
                    finish(ImageOutcome(task.index, skipped={"relative_path": task.relative_path,
                                                             "reason": error.reason}))
        self._extract_missing(loaded)
        for task, image, feature_key, features, digest, stamp in loaded:
            n_masks = self._proposals(task, image, features, feature_key)
            finish(ImageOutcome(task.index, entry=_entry(task, image.shape[:2], digest, stamp, feature_key,
                                                         n_masks)))
        return outcomes

    def _reusable_entry(self, task: ImageTask, stamp: list) -> dict | None:
        """The image's entry without decoding it, when its file, features and proposals are unchanged."""
        known = task.previous
        if known is None or known.get("stamp") != stamp:
            return None
        feature_key = self.extractor.cache_key(known["pixel_hash"])  # unchanged file: trust the stored hash
        hw = (known["height"], known["width"])
        n_masks = self._mask_count(task, self.config.proposal_key(feature_key), hw)
        if n_masks is None or self._cached_features(task, feature_key) is None:
            return None
        return _entry(task, hw, known["pixel_hash"], stamp, feature_key, n_masks)

    def _cached_features(self, task: ImageTask, feature_key: str):
        """The cache's features of the image, or None (missing, or damaged: noted for the image)."""
        features, problem = self.cache.read(feature_key)
        if problem:
            self._note_damage(task, self.cache.path(feature_key), problem)
        return features

    def _note_damage(self, task: ImageTask, path: Path, problem: str) -> None:
        self._damage.setdefault(task.index, {})[path] = f"{problem} (image {task.relative_path})"

    def _mask_count(self, task: ImageTask, key: str, image_hw: tuple):
        """Mask count of the image's up-to-date proposals file (:func:`proposals_state`), or None; damage noted."""
        path = self.project.proposals_path(task.image_id)
        n_masks, problem = proposals_state(path, key, image_hw)
        if problem:
            self._note_damage(task, path, problem)
        return n_masks

    def _load(self, task: ImageTask, stamp: list) -> tuple:
        image = load_image_once(Path(task.path), task.plane, self.config.image_options)  # kept for later steps
        digest = pixel_hash(image)
        feature_key = self.extractor.cache_key(digest)
        features = self._cached_features(task, feature_key)
        if features is not None and not features.has_proposal_inputs and self._mask_count(
                task, self.config.proposal_key(feature_key), image.shape[:2]) is None:
            features = None  # the cache keeps no keys (engine.method.features): new proposals need a new pass
        return task, image, feature_key, features, digest, stamp

    def _extract_missing(self, loaded: list) -> None:
        """Features of the loaded images the cache lacks, in one batched pass, written to the cache."""
        missing = [i for i, item in enumerate(loaded) if item[3] is None]
        if not missing:
            return
        with self.timer("backbone"):
            computed = self.extractor.extract([loaded[i][1] for i in missing])
        with self.timer("cache_write"):
            for i, features in zip(missing, computed):
                self.cache.put(loaded[i][2], features)
                loaded[i] = (*loaded[i][:3], features, *loaded[i][4:])

    def _proposals(self, task: ImageTask, image: np.ndarray, features, feature_key: str) -> int:
        """Mask count of the image's proposals file, computed and written unless an up-to-date one exists."""
        config = self.config
        key = config.proposal_key(feature_key)
        path = self.project.proposals_path(task.image_id)
        n_masks = self._mask_count(task, key, image.shape[:2])
        if n_masks is not None:
            return n_masks
        with self.timer("proposals"):
            proposals = propose(image, features, self.extractor.spec.family, config.proposals,
                                max_masks=config.max_masks, object_size=config.object_size, seed=config.seed)
        with self.timer("embeddings"):
            embeddings = embed(proposals, image, features, self.extractor, config.embedding, config.precision)
        with self.timer("save"):
            save_image_proposals(path, proposals, embeddings, key)
        return len(proposals)


def _entry(task: ImageTask, image_hw, digest: str, stamp: list, feature_key: str, n_masks: int) -> dict:
    """The image's images.json entry."""
    return {"image_id": task.image_id, **({"plane": task.plane} if task.plane is not None else {}),
            "feature_key": feature_key, "coco_id": task.coco_id, "relative_path": task.relative_path,
            "width": int(image_hw[1]), "height": int(image_hw[0]), "masks": int(n_masks), "pixel_hash": digest,
            "stamp": stamp}


def file_stamp(path, options: ImageOptions) -> list:
    """Size, modification time and reading options of an image file: when all three are unchanged, a re-run
    trusts the stored pixel hash instead of decoding and hashing the image again."""
    stat = Path(path).stat()
    return [int(stat.st_size), int(stat.st_mtime_ns), hashlib.sha1(repr(options).encode()).hexdigest()[:8]]


def proposals_state(path: Path, key: str, image_hw: tuple) -> tuple:
    """(mask count or None, problem or None) of a proposals file: the count when it is up to date and fully
    readable; the problem (naming the file) when it is damaged. Missing or stale: (None, None)."""
    if not path.exists():
        return None, None
    try:
        proposals, _, stored_key = load_image_proposals(path, None)  # the size is checked below: stale, not damage
    except (ProjectFileError, OSError) as error:  # torn or garbled: recompute
        return None, str(error).removesuffix(f"; {PROPOSALS_HINT}")
    fits = len(proposals) == 0 or tuple(proposals.masks.shape[1:]) == tuple(image_hw)
    return (len(proposals) if stored_key == key and fits else None), None


def embed(proposals, image, features, extractor: FeatureExtractor, embedding: str,
          precision: str = "auto") -> np.ndarray:
    """One clustering embedding per proposed mask (engine.method.names.EMBEDDINGS). The crops go through the
    network at the closer look's crop precision for the run's ``precision`` (bfloat16 under ``auto`` on CPUs with
    native units: an embedding ranks nothing, and on the generated set both precisions gave the same classes,
    2.3x faster: docs/decisions.md#d-fit-top)."""
    if len(proposals) == 0:
        return np.zeros((0, extractor.spec.embed_dim), np.float32)
    if embedding in ("crop_cls", "masked_crop_cls"):
        masked = embedding == "masked_crop_cls"
        return extractor.cls_embeddings([box_crop(image, m, mask_background=masked) for m in proposals.masks],
                                        precision=crop_precision(precision, str(extractor.device)))
    return pooled_embeddings(features, proposals.masks)  # per mask on its bounding box
