"""The engine's steps as plain functions over a project folder, and ``run`` chaining them.

Data flows one way: images -> features -> proposals (+ embeddings) -> clusters -> COCO and overview.
Every step reads and writes the project folder, so any step can be re-run alone and a re-run skips
the work already on disk. Progress reaches callers through ``progress(stage, done, total)``; the CLI
maps it to a terminal bar, the napari plugin to its activity dock. A callback may raise :class:`~engine.orchestration.outcome.Cancelled`
to stop: every finished image is already on disk, so the next run continues from there.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engine import __version__
from engine.atomic import atomic_write_json
from engine.method.clustering import cluster_masks, stack_rows
from engine.method.distill import (
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
from engine.output.evaluation import ImagePrediction, LazyMapping, evaluate, open_ground_truth
from engine.device import resolve_device
from engine.output.export import export_coco, iter_image_proposals, write_overview
from engine.method.features import FeatureCache, FeatureExtractor
from engine.io.images import ImageSource, decoding_once, discover_images
from engine.state.label_state import LabelState, adopt_clustering, clustering_id, describe_rebinding
from engine.masks import mask_identity
from engine.state.project import (
    Project,
    load_image_predictions,
    open_project,
    save_image_predictions,
)
from engine.orchestration.config import RunConfig
from engine.orchestration.outcome import Progress, RunResult, StageTimer, no_progress
from engine.orchestration.carried_corrections import CorrectedScenes
from engine.orchestration.executors import LocalExecutor, ray_executor
from engine.orchestration.image_step import (ProposalStep, batches_of, build_extractor, gather, image_tasks,
                                             notes_of, previous_entries, project_outputs, repair_feature_cache)
from engine.state.image_identity import settle_corrections
from engine.orchestration.ray_executor import import_ray
from engine.state.project_index import project_index
from engine.state.schema import (
    check_user_files,
    derived_file_notes,
    read_clusters,
    read_derived_or_none,
    read_evaluation,
    read_filtering,
)


def extract_and_propose(project: Project, discovery, extractor: FeatureExtractor, config: RunConfig,
                        progress: Progress = no_progress, timer: StageTimer | None = None,
                        executor=None, notes: list | None = None) -> tuple:
    """Features (cached), proposals and embeddings for every image, by ``executor`` (default: a LocalExecutor,
    batches in this process, one batch in memory; engine.orchestration.executors). An image whose file,
    features and proposals are unchanged since the last run is not decoded again.

    Returns (image entries for images.json, skipped files as dicts), both in the folder's order; a message per
    damaged cache file found and recomputed is appended to ``notes``.
    """
    timer = timer or StageTimer()
    executor = executor or LocalExecutor(ProposalStep(project.root, config, extractor, timer))
    tasks = image_tasks(project, discovery)
    finished = 0
    progress("images", 0, len(tasks))

    def on_done(outcome) -> None:
        nonlocal finished
        finished += 1
        progress("images", finished, len(tasks))

    outcomes = executor.map(batches_of(tasks, config.batch_size), on_done)
    if notes is not None:
        notes += notes_of(outcomes)
    return gather(discovery, outcomes)


def cluster_project(project: Project, entries: list, num_classes: int | None, seed: int = 0) -> dict:
    """k-means over every mask embedding of the project; writes clusters.json (re-binding the user's
    categories to the new clusters, engine.state.label_state) and returns it with the re-binding report under
    "rebinding"."""
    owners = []

    def embeddings():
        for entry, proposals, block in iter_image_proposals(project, entries):
            owners.extend((entry["image_id"], i, float(proposals.scores[i]), mask_identity(entry["image_id"], mask))
                          for i, mask in enumerate(proposals.masks))
            yield block

    x = stack_rows(embeddings(), sum(int(entry.get("masks", 0)) for entry in entries))  # allocated once
    if not owners:
        raise ValueError("No object masks were proposed in any image, so there is nothing to cluster. "
                         "Check the images in report.json, or try --proposals seed.")
    result = cluster_masks(x, num_classes, seed=seed, in_place=True)
    del x  # the largest array of a run: gone before the per-mask records are built
    masks = [{"image_id": image_id, "index": index, "key": key, "score": score, "cluster": int(label),
              "confidence": round(float(conf), 4)}
             for (image_id, index, score, key), label, conf in zip(owners, result.labels, result.confidence)]
    clusters = {
        "id": clustering_id(masks, len(result.sizes)),
        "k": len(result.sizes),
        "suggested_k": int(result.suggested_k),
        "silhouettes": {str(k): round(v, 4) for k, v in result.silhouettes.items()},
        "masks": masks,
        "clusters": [
            {"id": j, "name": f"cluster_{j + 1}", "size": size,
             "representatives": [[owners[m][0], owners[m][1]] for m in reps]}
            for j, (size, reps) in enumerate(zip(result.sizes, result.representatives))
        ],
    }
    previous = _read_previous_clusters(project)
    with project.state_lock():
        report = adopt_clustering(project, previous, clusters)
    return {**clusters, "rebinding": report}


def _read_previous_clusters(project: Project) -> dict | None:
    """The clustering a re-run replaces (None on a first run; an unreadable file is reported and replaced, the
    user's categories then stay bound to the clustering they name)."""
    return read_derived_or_none(read_clusters, project.clusters_path)  # damaged: said by derived_file_notes


def feature_identity(project_config: dict) -> dict:
    """What cached features (and so a trained head) depend on, from project.json."""
    spec = project_config["backbone"]
    return {"backbone": spec["name"], "weights": project_config["weights"]["identity"],
            "input_size": project_config["config"]["input_size"] or spec["default_input_size"],
            "settings": project_config.get("features")}


def _load_features(cache: FeatureCache, entry: dict):
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
        features = _load_features(cache, entry)
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
    patch-grid arg-max: final mIoU 0.652 vs 0.627 on the benchmark), or the user's correction."""
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
    features = _load_features(cache, entry)
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
    per_class = {state.category(c).name: {"masks": int((classes == c).sum()), "dropped": int(((classes == c) & ~kept).sum())}
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
                    progress: Progress = no_progress, grouping: str = "proposals") -> dict:
    """Semantic map and scored instances of every image into predictions/. Returns {"instances_predicted": count,
    "carried": {relative path: objects carried there from a corrected image of the same scene}}.

    grouping: "proposals": the proposals the filter kept (filtering.json; all when absent), each classified
    as a whole by the head, plus the head's foreground regions that they miss (engine.method.instances.
    combine_with_proposals); "foreground": connected foreground regions classified as a whole
    (engine.method.instances.foreground_instances); "semantic": one instance per connected region of each class.

    Written into a staging folder that replaces predictions/ only when every image is done, stamped with the
    clustering it was made for: a stopped or cancelled prediction never leaves a mix of old and new files.
    """
    from engine.method.instances import combine_with_proposals, foreground_instances  # (local: imports are the lead's part)

    cache = FeatureCache(project.features_dir)
    state = LabelState.load(project, clusters) if grouping == "proposals" else None
    scenes = CorrectedScenes(state, entries, lambda entry: _load_features(cache, entry)) if state else None
    kept = {}
    if grouping == "proposals" and project.filtering_path.exists():
        for row in read_filtering(project.filtering_path)["masks"]:
            kept.setdefault(row["image_id"], {})[row["index"]] = bool(row["kept"])

    staging = project.predictions_staging_dir
    shutil.rmtree(staging, ignore_errors=True)
    total, carried_to = 0, {}
    for done, entry in enumerate(entries):
        features, image = _load_features(cache, entry), images.load(entry)
        probs = class_probabilities(head, features.tokens, features.grid_hw, image)
        semantic = semantic_map(probs, (entry["height"], entry["width"]))
        group = instances_from_semantic if grouping == "semantic" else foreground_instances
        masks, classes, scores = group(semantic, probs)
        if grouping == "proposals":
            found = state.instances(entry, "proposals")
            resolved = state.resolved(found.categories)
            flags = kept.get(entry["image_id"], {})
            # a proposal of a discarded category stays out: the user said it is not an object
            keep = np.array([flags.get(i, True) for i in range(len(found.masks))], bool) & (resolved > 0)
            carried = scenes.objects_for(entry, features, image)
            if len(carried[0]):
                carried_to[entry["relative_path"]] = len(carried[0])
            masks, classes, scores = combine_with_proposals(found.masks[keep], found.scores[keep], masks, scores,
                                                            probs, proposal_classes=resolved[keep], carried=carried)
            # the map says what the instances say (their categories are the label state's, not the head's)
            semantic = masks.painted(classes) if len(masks) else np.zeros_like(semantic)
        save_image_predictions(staging / f"{entry['image_id']}.npz", semantic, masks, classes, scores)
        total += len(masks)
        progress("predict", done + 1, len(entries))
    atomic_write_json(staging / "stamp.json", {"clustering": clusters.get("id"), "images": len(entries)})
    project.replace_predictions()
    return {"instances_predicted": total, "carried": carried_to}


def train_project_head(project: Project, entries: list, clusters: dict, device: str = "cpu", seed: int = 0):
    """One head trained on the project's current labels (corrections, else clustered proposals), not saved."""
    state = LabelState.load(project, clusters)
    head_config = HeadConfig(seed=seed)
    labels = _training_label_maps(state, entries)
    tokens, targets, weights = _training_set(project, entries, labels, state.num_classes(), head_config)
    return train_head(tokens, targets, weights, state.num_classes(), head_config, device)


def distill_project(project: Project, entries: list, clusters: dict, config: RunConfig,
                    progress: Progress = no_progress, timer: StageTimer | None = None) -> dict:
    """Initial head on all clustered masks -> drop the weakest masks -> final head on the clean set ->
    optional self-training rounds -> predictions for every image. Returns a summary for report.json."""
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
        predicted = predict_project(project, entries, head, images, clusters, progress)
    kept = int(sum(k.sum() for k in keep.values()))
    return {"masks_kept": kept, "masks_dropped": int(sum(len(k) for k in keep.values())) - kept,
            **predicted}


def run(image_folder, project_dir, config: RunConfig | None = None, progress: Progress | None = None,
        ray_address: str | None = None) -> RunResult:
    """Images -> features -> proposals -> clusters -> COCO export and overview, resuming finished work.

    ``ray_address``: run the per-image work on Ray (engine.orchestration.ray_executor: "auto", "local",
    "ray://head:10001", ...; needs the ``ray`` extra and folders every node sees); None: in this process.
    Where the work runs never changes the result, so it is not part of the stored RunConfig.
    """
    config = config or RunConfig()
    config.check()
    if ray_address is not None:
        import_ray()  # before any work: a missing extra is a clear error, not a half-started run
    progress = progress or no_progress
    timer = StageTimer()
    discovery = discover_images(image_folder, recursive=config.recursive, options=config.image_options,
                                exclude=project_outputs(Project(project_dir), image_folder))
    if not discovery.images:
        reasons = "; ".join(f"{s.relative_path}: {s.reason}" for s in discovery.skipped[:5])
        raise ValueError(f"No usable images in {discovery.root}." + (f" Skipped: {reasons}" if reasons else
                         " Supported: PNG, JPEG, TIFF, BMP, WebP."))
    with Project(project_dir).lock() as project, decoding_once():  # each step reads the images: decode once
        return _run_locked(project, discovery, config, progress, timer, ray_address)


def _run_locked(project: Project, discovery, config: RunConfig, progress: Progress, timer: StageTimer,
                ray_address: str | None = None) -> RunResult:
    check_user_files(project.root)  # a wrong value in the user's files stops the run before it changes anything
    recovered = derived_file_notes(project.root)  # damaged images.json / clusters.json: rebuilt, and said so
    with timer("setup"):
        extractor = build_extractor(config)  # on a cluster too: it names the network in project.json
    executor = None if ray_address is None else ray_executor(ray_address, project.root, config, timer)
    notes = []  # damaged cache files recomputed, corrections moved with their images
    entries, skipped = extract_and_propose(project, discovery, extractor, config, progress, timer, executor, notes)
    if not entries:  # nothing written but the lock: no half project.json a later command would trust
        reasons = "; ".join(f"{s['relative_path']}: {s['reason']}" for s in skipped[:5])
        raise ValueError(f"None of the images in {discovery.root} could be read. Skipped: {reasons}")
    project.write_config({
        "software": f"maskdistill {__version__}",
        "image_root": str(discovery.root),
        "config": {**asdict(config), "device": "auto"},  # devices are chosen per command, never stored
        "backbone": asdict(extractor.spec),
        "weights": asdict(extractor.weights),
        "features": extractor.settings,  # backbone, input size, scale and tiles: what a head must match
    })
    with project.state_lock():  # before the new ids are written: corrections follow their images' pixels
        notes += settle_corrections(project.root, previous_entries(project), entries)
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
    progress("export", 0, 1)
    with timer("export"):  # "current": the user's corrections always win, with or without distillation
        export = export_coco(project, entries, clusters, discovery.root)
    with timer("overview"):
        write_overview(project, entries, clusters, ImageSource(discovery.root, config.image_options))
    with timer("index"):  # the review's mask counts and queue, ready when the plugin opens the project
        project_index(project)
    progress("export", 1, 1)
    export["warnings"] = recovered + notes + export["warnings"]
    rebinding = describe_rebinding(clusters.get("rebinding", {}))
    result = RunResult(project.root, len(entries), skipped, len(clusters["masks"]), clusters["k"],
                       clusters["suggested_k"], project.annotations_path, project.overview_path,
                       {k: round(v, 3) for k, v in timer.seconds.items()}, rebinding, export["warnings"],
                       export["annotations"])
    atomic_write_json(project.report_path, {
        "images": len(entries), "skipped": skipped, "masks": result.masks, "exported": result.exported,
        "clusters": result.clusters,
        "suggested_k": result.suggested_k, "distillation": distilled, "timings_s": result.timings,
        "rebinding": clusters.get("rebinding", {}), "warnings": export["warnings"],
    })
    return result


def _stored_config(project_config: dict, **overrides) -> RunConfig:
    config = RunConfig(**{**project_config["config"], **{k: v for k, v in overrides.items() if v is not None}})
    config.check()
    return config


def distill(project_dir, progress: Progress | None = None, device: str = "auto", **overrides) -> dict:
    """Re-run distillation (and the COCO export) on a finished project; ``overrides`` are RunConfig fields.
    ``device``: where to train, chosen now (a project made on a GPU machine retrains on a laptop)."""
    project, project_config, entries, clusters = open_project(project_dir)
    config = _stored_config(project_config, device=device, **overrides)
    timer = StageTimer()
    images = ImageSource.of_project(project_config)
    with project.lock(), decoding_once():
        repaired = repair_feature_cache(project, project_config, entries, config)
        summary = distill_project(project, entries, clusters, config, progress or no_progress, timer)
        summary["export"] = export_coco(project, entries, clusters, images.root)
        summary["export"]["warnings"] = repaired + summary["export"]["warnings"]
        write_overview(project, entries, clusters, images)
        project_index(project)  # the review's counts and queue follow the new predictions
    summary["timings_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
    return summary


def predict(project_dir, progress: Progress | None = None) -> dict:
    """Predict every image of the project with its final head, then export COCO and the overview."""
    project, project_config, entries, clusters = open_project(project_dir)
    path = project.models_dir / "head_final.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; train it with: maskdistill distill --project {project.root}")
    head = load_head(path, feature_identity(project_config))
    images = ImageSource.of_project(project_config)
    with project.lock(), decoding_once():
        repaired = repair_feature_cache(project, project_config, entries, _stored_config(project_config))
        predicted = predict_project(project, entries, head, images, clusters, progress or no_progress)
        export = export_coco(project, entries, clusters, images.root)
        export["warnings"] = repaired + export["warnings"]
        write_overview(project, entries, clusters, images)
        project_index(project)  # the review's counts and queue follow the new predictions
    return {**predicted, "export": export}


def project_predictions(project: Project, entries: list, clusters: dict, source: str) -> LazyMapping:
    """ImagePrediction per image (keyed by relative path) from the proposals or the final model, each read when
    asked for (engine.output.evaluation.LazyMapping): one image's masks in memory at a time."""
    state = LabelState.load(project, clusters)
    by_path = {entry["relative_path"]: entry for entry in entries}

    def load(relative_path: str) -> ImagePrediction:
        entry = by_path[relative_path]
        found = state.instances(entry, source)
        if source == "predictions":
            semantic = load_image_predictions(project.predictions_path(entry["image_id"]))[0].astype(np.int64)
        else:
            semantic = paint_label_map((entry["height"], entry["width"]), found.masks, found.categories)
        return ImagePrediction(relative_path, semantic, found.masks, np.asarray(found.categories, int),
                               np.asarray(found.scores, float))

    return LazyMapping(by_path, load)


def evaluate_project(project_dir, ground_truth, source: str = "predictions") -> dict:
    """Scores of ``source`` against ground truth (COCO json or label-image folder); writes evaluation.json."""
    project, _, entries, clusters = open_project(project_dir)
    truths = open_ground_truth(ground_truth)  # both sides read one image at a time
    scores = evaluate(project_predictions(project, entries, clusters, source), truths)
    scores = {"source": source, "ground_truth": str(Path(ground_truth).resolve()), **scores}
    previous = read_evaluation(project.evaluation_path) if project.evaluation_path.exists() else {}
    atomic_write_json(project.evaluation_path, {**previous, source: scores})
    return scores
