"""The distillation stage: a head trained on the project's labels, the weakest masks filtered, a final head
(and self-training rounds), and the predictions of every image.

Training sets are sampled patch tokens with soft targets from the label state (engine.state.label_state): the
user's corrections where an image has them, otherwise the clustered proposals; dropped masks are ignored, not
taught as background. engine.orchestration.pipeline calls :func:`distill_project` in ``run`` and ``distill``
and :func:`predict_project` in ``predict``.
"""
from __future__ import annotations

import shutil
import time

import numpy as np

from engine.atomic import atomic_write_json
from engine.device import resolve_device
from engine.io.images import ImageSource
from engine.masks import LabelMasks
from engine.method.backbones import centres_keys
from engine.method.closer_look import recut_objects
from engine.method.distill import (
    HeadConfig,
    class_probabilities,
    keep_by_class_percentile,
    keep_by_image_threshold,
    paint_label_map,
    patch_targets,
    sample_patches,
    save_head,
    score_proposals,
    semantic_map,
    train_head,
)
from engine.method.features import FeatureCache
from engine.method.instances import (
    combine_with_proposals,
    foreground_instances,
    object_solidities,
    rank_by_compactness,
)
from engine.orchestration.carried_corrections import CorrectedScenes
from engine.orchestration.config import RunConfig
from engine.orchestration.group_cutting import CropSource, GroupCutting
from engine.orchestration.outcome import Progress, StageTimer, no_progress
from engine.orchestration.typical_ranking import rank_by_typicality, typical_crop_embedder
from engine.orchestration.views import asked_views
from engine.state.label_state import LabelState
from engine.state.project import (
    Project,
    load_recut_memo,
    save_crop_tokens,
    save_image_predictions,
    save_recut_memo,
)
from engine.state.schema import read_filtering


def feature_identity(project_config: dict) -> dict:
    """What cached features (and so a trained head) depend on, from project.json."""
    spec = project_config["backbone"]
    return {"backbone": spec["name"], "weights": project_config["weights"]["identity"],
            "input_size": project_config["config"].get("input_size") or spec["default_input_size"],
            "settings": project_config.get("features")}


def load_features(cache: FeatureCache, entry: dict):
    """An image's cached features, or FileNotFoundError saying to re-run."""
    features = cache.get(entry["feature_key"])
    if features is None:
        raise FileNotFoundError(f"Cached features of {entry['relative_path']} are missing; re-run "
                                "`maskdistill run` on the image folder to recompute them.")
    return features


def _training_set(project: Project, entries: list, label_maps, num_classes: int, head_config: HeadConfig):
    """Sampled patch tokens, soft targets and weights over all images, in arrays of a bounded size
    (HeadConfig.max_patches in all), filled in place: memory does not grow with the folder.

    ``label_maps`` yields (label map, weight) per entry.
    """
    cache = FeatureCache(project.features_dir)
    rng = np.random.default_rng(head_config.seed)
    per_image = head_config.patches_for(len(entries))
    columns, filled = None, 0
    for entry, (label_map, image_weight) in zip(entries, label_maps):
        features = load_features(cache, entry)
        targets, weights = patch_targets(label_map, features.grid_hw, num_classes)
        sample = sample_patches(features.tokens, targets, weights, per_image, rng)
        sample = (sample[0], sample[1], sample[2] * np.float16(image_weight))
        if columns is None:
            columns = [np.empty((per_image * len(entries), *part.shape[1:]), part.dtype) for part in sample]
        for column, part in zip(columns, sample):
            column[filled:filled + len(part)] = part
        filled += len(sample[0])
    if columns is None:
        raise ValueError("no images to train on")
    return tuple(column[:filled] for column in columns)


def _training_label_maps(state: LabelState, entries: list, keep: dict | None = None):
    """(label map, weight) per image from the label state (engine.state.label_state.LabelState.training_instances)."""
    for entry in entries:
        masks, resolved, ignored, weight = state.training_instances(
            entry, None if keep is None else keep[entry["image_id"]])
        labelled = ~ignored & (resolved > 0)
        yield paint_label_map((entry["height"], entry["width"]), masks[labelled], resolved[labelled],
                              ignore_masks=masks[ignored]), weight


def _self_training_label_maps(state: LabelState, entries: list, head, cache: FeatureCache, images: ImageSource):
    """(label map, weight) per image: the model's own edge-refined prediction (better targets than its
    patch-grid arg-max: docs/decisions.md, "one self-training round"), or the user's correction."""
    for entry in entries:
        if state.instances(entry, "current").origin == "correction":
            masks, resolved, ignored, weight = state.training_instances(entry)
            labelled = ~ignored & (resolved > 0)
            yield paint_label_map(masks.shape[1:], masks[labelled], resolved[labelled],
                                  ignore_masks=masks[ignored]), weight
        else:
            probs = _probabilities(head, cache, entry, images)
            yield semantic_map(probs, (entry["height"], entry["width"])).astype(np.int32), 1.0


def _probabilities(head, cache, entry, images: ImageSource):
    features = load_features(cache, entry)
    image = images.load(entry)
    return class_probabilities(head, features.tokens, features.grid_hw, image)


def _train(project, entries, label_maps, num_classes, head_config, device, name, identity):
    tokens, targets, weights = _training_set(project, entries, label_maps, num_classes, head_config)
    head = train_head(tokens, targets, weights, num_classes, head_config, device)
    save_head(project.models_dir / f"head_{name}.pt", head, head_config, identity)
    return head


def score_and_filter(state: LabelState, entries: list, head, images: ImageSource, config: RunConfig,
                     progress: Progress = no_progress) -> dict:
    """Score every proposal with ``head`` against its category as the user left it (merges applied: the head
    learnt the merged ids), drop the weakest; writes filtering.json, returns kept flags per image."""
    project = state.project
    cache = FeatureCache(project.features_dir)
    rows = []
    for done, entry in enumerate(entries):
        found = state.instances(entry, "proposals")
        resolved = state.resolved(found.categories)
        probs = _probabilities(head, cache, entry, images)
        confidence, agreement, quality = score_proposals(probs, found.masks, resolved)
        rows += [(entry["image_id"], i, int(c), float(a), float(b), float(q))
                 for i, (c, a, b, q) in enumerate(zip(resolved, confidence, agreement, quality))]
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
    per_class = {state.category(c).name: {"masks": int((classes == c).sum()),
                                          "dropped": int(((classes == c) & ~kept).sum())}
                 for c in np.unique(classes) if c > 0}
    atomic_write_json(project.filtering_path, {
        "rule": config.filter_rule, "percentile": config.filter_percentile, "threshold": config.filter_threshold,
        "kept": int(kept.sum()), "dropped": int((~kept).sum()), "per_class": per_class,
        "masks": [{"image_id": r[0], "index": r[1], "class": r[2], "confidence": round(r[3], 4),
                   "agreement": round(r[4], 4), "quality": round(r[5], 4), "kept": bool(k)}
                  for r, k in zip(rows, kept)],
    })
    return keep


def predict_project(project: Project, entries: list, head, images: ImageSource, clusters: dict,
                    progress: Progress = no_progress, device: str = "auto", first_run: dict | None = None) -> dict:
    """Scored instances and their semantic map of every image into predictions/. Returns
    {"instances_predicted": count, "carried": {relative path: objects carried there from a corrected image of
    the same scene}, "closer_look_seconds": the time the final objects' closer look took (None: not taken)}.

    An image's instances: the objects carried from a corrected image of the same scene (CorrectedScenes), the
    proposals the filter kept (filtering.json; all when absent) that are not of a discarded category, each with
    its label-state category and re-scored by the head, then those the filter dropped that the final head is
    sure of, a tier below, then the head's foreground regions they miss under a tenth of the image
    (engine.method.instances.combine_with_proposals); with the run's ``closer_look``, the small ones not carried
    are cut again from their own crops (engine.method.closer_look.recut_objects); then those not carried are
    ranked down where they are not compact (engine.method.instances.rank_by_compactness; not dense objects); the
    semantic map is these objects painted. Once every image is staged, the folder's lone objects (and the objects
    the user reviewed in a correction) teach where an object's centre lies and, where that model carries over to
    objects it did not see, groups are cut at the centres and every object not carried is ranked by its agreement
    with them (engine.orchestration.group_cutting;
    not dense objects); ``group_cut`` in the result says what it did (None for dense objects). Then each image's
    objects are ranked by how typical they are of the folder's first objects (engine.orchestration.typical_ranking),
    its first ones seen as crops unless the run has views (the overlapping objects' pass looks at them with the
    views' objects) or this is a view's run. ``first_run``: a view's run is given its first run's decisions
    (engine.orchestration.overlapping.view_decisions); None in the first run.

    Written into a staging folder that replaces predictions/ only when every image is done, stamped with the
    clustering it was made for: a stopped or cancelled prediction never leaves a mix of old and new files.
    """
    cache = FeatureCache(project.features_dir)
    state = LabelState.load(project, clusters)
    project_config = project.read_config()
    recut = _recut_embedder(project_config, device)
    ranking = _dense_ranking(project_config)
    recut_settings = _recut_settings(project_config, device) if recut is not None else ""
    centre = centres_keys(project_config.get("backbone", {}).get("family"))
    scenes = CorrectedScenes(state, entries, lambda entry: load_features(cache, entry))
    kept: dict = {}
    if project.filtering_path.exists():
        for row in read_filtering(project.filtering_path)["masks"]:
            kept.setdefault(row["image_id"], {})[row["index"]] = bool(row["kept"])

    staging = project.predictions_staging_dir
    shutil.rmtree(staging, ignore_errors=True)
    total, carried_to, recut_seconds = 0, {}, 0.0
    groups = GroupCutting(gate=(first_run or {}).get("centres"))  # a view's run follows its first run's gate
    for _, features, reviewed in scenes.reviewed_objects():
        groups.observe_reviewed(features, reviewed)
    for done, entry in enumerate(entries):
        features, image = load_features(cache, entry), images.load(entry)
        probs = class_probabilities(head, features.tokens, features.grid_hw, image)
        semantic = semantic_map(probs, (entry["height"], entry["width"]))
        head_masks, _, head_scores = foreground_instances(semantic, probs)
        found = state.instances(entry, "proposals")
        resolved = state.resolved(found.categories)
        flags = kept.get(entry["image_id"], {})
        # a proposal of a discarded category stays out: the user said it is not an object; one the filter
        # dropped comes back, ranked below the rest, if the final model is sure of it
        passed = np.array([flags.get(i, True) for i in range(len(found.masks))], bool)
        keep, dropped = passed & (resolved > 0), ~passed & (resolved > 0)
        carried = scenes.objects_for(entry, features, image)
        if len(carried[0]):
            carried_to[entry["relative_path"]] = len(carried[0])
        masks, classes, scores = combine_with_proposals(
            found.masks[keep], found.scores[keep], head_masks, head_scores, probs, proposal_classes=resolved[keep],
            carried=carried, dropped=(found.masks[dropped], found.scores[dropped], resolved[dropped]), **ranking)
        carried_ids = _carried_ids(masks, carried[0]) if len(masks) else set()
        if recut is not None and len(masks):
            started = time.perf_counter()
            memo_path = project.closer_look_path(entry["image_id"])
            memo_key = _crop_memo_key(entry, recut_settings)
            memo = load_recut_memo(memo_path, memo_key)
            cut_before = len(memo)
            tokens: dict = {}  # window -> the recut's crop's (vectors, grid_hw)
            masks = LabelMasks(recut_objects(recut, image, masks.labels, masks.ids, carried_ids, centre, memo=memo,
                                             tokens=tokens), masks.ids)
            if len(memo) != cut_before:
                save_recut_memo(memo_path, memo_key, memo)
            if tokens:  # the crops' centre cut may read them: kept in the staging folder until it has
                save_crop_tokens(staging / RECUT_TOKENS_DIR / f"{entry['image_id']}.npz", memo_key, tokens)
            recut_seconds += time.perf_counter() - started
        if not ranking and len(masks):  # dense objects rank by their own score, solidity included
            solidity = object_solidities(masks)
            masks, classes, scores = rank_by_compactness(masks, classes, scores, carried_ids, solidity)
            groups.observe(entry, features, masks, solidity, carried_ids)
        # the map says what the instances say (their categories are the label state's, not the head's)
        semantic = masks.painted(classes) if len(masks) else np.zeros_like(semantic)
        save_image_predictions(staging / f"{entry['image_id']}.npz", semantic, masks, classes, scores)
        total += len(masks)
        progress("predict", done + 1, len(entries))
    progress("cut groups", 0, 1)
    crops = None if recut is None else CropSource(
        images.load, recut, lambda entry: (project.crop_tokens_path(entry["image_id"]),
                                           _crop_memo_key(entry, recut_settings)),
        lambda entry: staging / RECUT_TOKENS_DIR / f"{entry['image_id']}.npz")
    group_cut = groups.cut_staged(staging, lambda entry: load_features(cache, entry), crops)
    shutil.rmtree(staging / RECUT_TOKENS_DIR, ignore_errors=True)
    progress("cut groups", 1, 1)
    crops_here = first_run is None and not asked_views(project_config.get("config", {}))
    typical = rank_by_typicality(staging, {image_id: (entry, users) for image_id, (entry, _, users)
                                           in groups.images.items()}, lambda entry: load_features(cache, entry),
                                 (lambda: typical_crop_embedder(project_config, images, device)) if crops_here
                                 else None)
    user_objects = typical.pop("user_objects") if typical else {}
    atomic_write_json(staging / "stamp.json", {"clustering": clusters.get("id"), "images": len(entries),
                                               **({"user_objects": user_objects} if user_objects else {})})
    project.replace_predictions()
    return {"instances_predicted": total + (group_cut["objects_added"] if group_cut else 0), "carried": carried_to,
            "closer_look_seconds": None if recut is None else round(recut_seconds, 2), "group_cut": group_cut,
            "typical": typical}


def _dense_ranking(project_config: dict) -> dict:
    """How the final objects of ``dense`` proposals are ranked: by their own score (foreground probability x
    solidity), every proposal kept at its rank; the head's re-scoring and the filter's demotion lowered the
    generated cells' mask AP50 from 0.638 to 0.610 (docs/decisions.md#d-dropped-kept). {} for the others."""
    if project_config.get("config", {}).get("proposals") != "dense":
        return {}
    return {"model_share": 0.0, "dropped_weight": 1.0, "readmit_foreground": 0.0}


def _recut_embedder(project_config: dict, device: str):
    """The crop embedder of the final objects' closer look; None when the run turned it off, its proposals are
    dense (hundreds of objects, found on finer tiles already), or the weights cannot be loaded now (the objects
    stay as cut)."""
    from engine.method.closer_look import RECUT_INPUT_SHARE, loadable_crop_embedder

    settings = project_config.get("config", {})
    if not settings.get("closer_look", True) or settings.get("proposals") == "dense" \
            or settings.get("object_size") is not None:
        return None
    return loadable_crop_embedder(settings, RECUT_INPUT_SHARE, device)


RECUT_TOKENS_DIR = "recut_tokens"  # in the staging folder: the recut's crops' vectors, until the crops' cut reads them


def _crop_memo_key(entry: dict, recut_settings: str) -> str:
    """What an image's closer-look memos (recut masks, crops' tokens) were made for: its features and the crops'
    settings (another key: made again)."""
    return f"{entry.get('feature_key', '')}|{recut_settings}"


def _recut_settings(project_config: dict, device: str) -> str:
    """What a recut mask depends on besides its box and the image's features (pixels, backbone, weights, input,
    precision: an entry's ``feature_key``): the crop settings, the crops' arithmetic, the block cut from and the
    sharing of crops included."""
    from engine.method.closer_look import (
        CROP_DEPTH,
        CROP_FACTOR,
        RECUT_INPUT_SHARE,
        SHARED_CROP_SIDE,
        crop_precision,
    )

    precision = crop_precision(project_config.get("config", {}).get("precision"), device)
    return (f"{RECUT_INPUT_SHARE}|{CROP_FACTOR}|{project_config.get('features')}|{precision}|depth {CROP_DEPTH}"
            f"|shared {SHARED_CROP_SIDE}")


def _carried_ids(masks: LabelMasks, carried_masks) -> set:
    """Ids of the objects lying mostly under objects carried from a correction (the user's: never recut)."""
    if not len(carried_masks):
        return set()
    under = np.any(np.asarray(carried_masks, bool), axis=0)
    return {int(k) for k in masks.ids if under[masks.labels == k].mean() > 0.5}


def train_project_head(project: Project, entries: list, clusters: dict, device: str = "cpu", seed: int = 0):
    """One head trained on the project's current labels (corrections, else clustered proposals), not saved."""
    state = LabelState.load(project, clusters)
    head_config = HeadConfig(seed=seed)
    labels = _training_label_maps(state, entries)
    tokens, targets, weights = _training_set(project, entries, labels, state.num_classes(), head_config)
    return train_head(tokens, targets, weights, state.num_classes(), head_config, device)


def distill_project(project: Project, entries: list, clusters: dict, config: RunConfig,
                    progress: Progress = no_progress, timer: StageTimer | None = None,
                    first_run: dict | None = None) -> dict:
    """Initial head on all clustered masks -> drop the weakest masks -> final head on the clean set ->
    optional self-training rounds -> predictions for every image (``first_run``: predict_project's). Returns a
    summary for report.json."""
    timer = timer or StageTimer()
    project_config = project.read_config()
    images = ImageSource.of_project(project_config)
    identity = feature_identity(project_config)
    state = LabelState.load(project, clusters)
    num_classes = state.num_classes()
    head_config = HeadConfig(seed=config.seed)
    device = str(resolve_device(config.device))  # chosen per command, never taken from the project
    with timer("train_initial"):
        labels = _training_label_maps(state, entries)
        head = _train(project, entries, labels, num_classes, head_config, device, "initial", identity)
    with timer("filter"):
        keep = score_and_filter(state, entries, head, images, config, progress)
    with timer("train_final"):
        labels = _training_label_maps(state, entries, keep)
        head = _train(project, entries, labels, num_classes, head_config, device, "final", identity)
    cache = FeatureCache(project.features_dir)
    for _ in range(config.self_training_rounds):
        with timer("self_training"):
            labels = _self_training_label_maps(state, entries, head, cache, images)
            head = _train(project, entries, labels, num_classes, head_config, device, "final", identity)
    with timer("predict"):
        predicted = predict_project(project, entries, head, images, clusters, progress, device, first_run)
    kept = int(sum(k.sum() for k in keep.values()))
    return {"masks_kept": kept, "masks_dropped": int(sum(len(k) for k in keep.values())) - kept,
            **predicted}
