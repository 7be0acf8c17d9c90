"""The engine's steps as plain functions over a project folder, and ``run`` chaining them.

Data flows one way: images -> features -> proposals (+ embeddings) -> clusters -> distillation
(engine.orchestration.distillation) -> COCO and overview.
Every step reads and writes the project folder, so any step can be re-run alone and a re-run skips
the work already on disk. Progress reaches callers through ``progress(stage, done, total)``; the CLI
maps it to a terminal bar, the napari plugin to its activity dock. A callback may raise
:class:`~engine.orchestration.outcome.Cancelled` to stop: every finished image is already on disk, so the next
run continues from there.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

import numpy as np

from engine import __version__
from engine.atomic import atomic_write_json
from engine.io.images import ImageSource, decoding_once, discover_images
from engine.masks import mask_identity
from engine.method.clustering import cluster_masks, comparable, fitted_rows, stack_rows
from engine.method.distill import load_head, paint_label_map
from engine.method.features import FeatureCache, FeatureExtractor
from engine.orchestration import overlapping as overlapping_objects
from engine.orchestration.auto_proposals import resolve_proposals
from engine.orchestration.config import RunConfig, stored_run_config
from engine.orchestration.distillation import distill_project, feature_identity, predict_project
from engine.orchestration.executors import LocalExecutor, ray_executor
from engine.orchestration.image_step import (
    ProposalStep,
    batches_of,
    build_extractor,
    gather,
    image_tasks,
    notes_of,
    previous_entries,
    project_outputs,
    repair_feature_cache,
)
from engine.orchestration.outcome import Progress, RunResult, StageTimer, no_progress
from engine.orchestration.ray_executor import import_ray
from engine.orchestration.views import asked_views
from engine.output.evaluation import ImagePrediction, LazyMapping, evaluate, open_ground_truth
from engine.output.export import export_coco, iter_image_proposals, write_overview
from engine.state.image_identity import keep_coco_ids, settle_corrections
from engine.state.label_state import LabelState, adopt_clustering, clustering_id, describe_rebinding
from engine.state.project import Project, load_image_predictions, open_project
from engine.state.project_index import project_index
from engine.state.schema import (
    check_user_files,
    derived_file_notes,
    read_clusters,
    read_derived_or_none,
    read_evaluation,
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
    if config.proposals == "auto":
        raise ValueError("extract_and_propose needs a proposal method: resolve 'auto' first "
                         "(engine.orchestration.auto_proposals.resolve_proposals, as run does)")
    timer = timer or StageTimer()
    executor = executor or LocalExecutor(ProposalStep(project.root, config, extractor, timer))
    tasks = image_tasks(project, discovery)
    finished, unreadable = 0, 0
    progress("images", 0, len(tasks))

    def on_done(outcome) -> None:  # a file that turns out unreadable leaves the total: images done / images usable
        nonlocal finished, unreadable
        if outcome.skipped is None:
            finished += 1
        else:
            unreadable += 1
        progress("images", finished, len(tasks) - unreadable)

    outcomes = executor.map(batches_of(tasks, config.batch_size), on_done)
    if notes is not None:
        notes += notes_of(outcomes)
    return gather(discovery, outcomes)


def cluster_project(project: Project, entries: list, num_classes: int | None, seed: int = 0,
                    fit_on_best: bool = True, embedding: str = "pooled") -> dict:
    """k-means over the mask embeddings of the project, fitted on each image's best proposals
    (``fit_on_best``: engine.method.clustering.fitted_rows; else on every mask, as for dense proposals, all of
    them objects), every mask then in its nearest class; pooled embeddings first lose the folder's dominant
    token directions (engine.method.clustering.comparable); writes clusters.json (re-binding the user's
    categories to the new clusters, engine.state.label_state) and returns it with the re-binding report under
    "rebinding"."""
    owners: list = []

    def embeddings():
        for entry, proposals, block in iter_image_proposals(project, entries):
            owners.extend((entry["image_id"], i, float(proposals.scores[i]), mask_identity(entry["image_id"], mask))
                          for i, mask in enumerate(proposals.masks))
            yield block

    x = stack_rows(embeddings(), sum(int(entry.get("masks", 0)) for entry in entries))  # allocated once
    if not owners:
        raise ValueError("No object masks were proposed in any image, so there is nothing to cluster. "
                         "Check the images in report.json, or try --proposals seed.")
    comparable(x, embedding, FeatureCache(project.features_dir), [e["feature_key"] for e in entries])
    fit_rows = fitted_rows([o[0] for o in owners], [o[2] for o in owners], num_classes) if fit_on_best else None
    result = cluster_masks(x, num_classes, seed=seed, in_place=True, fit_rows=fit_rows)
    del x  # the largest array of a run: gone before the per-mask records are built
    masks = [{"image_id": image_id, "index": index, "key": key, "score": score, "cluster": int(label),
              "confidence": round(float(conf), 4)}
             for (image_id, index, score, key), label, conf in zip(owners, result.labels, result.confidence)]
    clusters = {
        "id": clustering_id(masks, len(result.sizes)),
        "k": len(result.sizes),
        "suggested_k": int(result.suggestion.k),
        "k_stands_out": result.suggestion.stands_out,
        "silhouettes": {str(k): round(v, 4) for k, v in result.suggestion.silhouettes.items()},
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
    with timer("auto proposals"):
        config, choice = resolve_proposals(config, discovery)
    if choice is not None:
        try:  # what auto chose must suit the other settings too (a view does not apply to dense proposals)
            config.check(weights_file=False)
        except ValueError as error:
            raise ValueError(f"proposals auto: {choice.describe()}; {error}") from None
    with Project(project_dir).lock() as project, decoding_once():  # each step reads the images: decode once
        return _run_locked(project, discovery, config, progress, timer, ray_address,
                           choice.describe() if choice else None)


def _run_locked(project: Project, discovery, config: RunConfig, progress: Progress, timer: StageTimer,
                ray_address: str | None = None, proposal_choice: str | None = None,
                first_run: dict | None = None) -> RunResult:
    check_user_files(project.root)  # a wrong value in the user's files stops the run before it changes anything
    recovered = derived_file_notes(project.root)  # damaged images.json / clusters.json: rebuilt, and said so
    with timer("setup"):
        extractor = build_extractor(config)  # on a cluster too: it names the network in project.json
    executor = None if ray_address is None else ray_executor(ray_address, project.root, config, timer)
    notes: list[str] = []  # damaged cache files recomputed, corrections moved with their images
    entries, skipped = extract_and_propose(project, discovery, extractor, config, progress, timer, executor, notes)
    if not entries:  # nothing written but the lock: no half project.json a later command would trust
        reasons = "; ".join(f"{s['relative_path']}: {s['reason']}" for s in skipped[:5])
        raise ValueError(f"None of the images in {discovery.root} could be read. Skipped: {reasons}")
    project.write_config({
        "software": f"maskdistill {__version__}",
        "image_root": str(discovery.root),
        "config": {**asdict(config), "device": "auto"},  # devices are chosen per command, never stored
        **({"proposal_choice": proposal_choice} if proposal_choice else {}),  # what "auto" chose, and why
        "backbone": asdict(extractor.spec),
        "weights": asdict(extractor.weights),
        "features": extractor.settings,  # backbone, input size, scale and tiles: what a head must match
    })
    with project.state_lock():  # before the new ids are written: corrections follow their images' pixels
        previous = previous_entries(project)
        notes += settle_corrections(project.root, previous, entries)
        keep_coco_ids(previous, entries)
    atomic_write_json(project.images_path, entries)
    progress("clustering", 0, 1)
    with timer("clustering"):
        clusters = cluster_project(project, entries, config.num_classes, config.seed,
                                   fit_on_best=config.proposals != "dense", embedding=config.embedding)
    progress("clustering", 1, 1)
    if config.distill:
        distilled = distill_project(project, entries, clusters, config, progress, timer, first_run)
        for view, folder, settings, stages in _views(project, config):  # after the first run's prediction,
            with timer(view):                                          # whose centres gate they follow
                _run_view(folder, discovery, settings, stages, progress, ray_address,
                          overlapping_objects.view_decisions(distilled))
        with timer("overlapping objects"):
            distilled.update(overlapping_objects.add_overlapping_objects(project, entries, config.device))
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
                       export["annotations"], proposal_choice, clusters.get("k_stands_out", True),
                       config.num_classes is not None, export.get("overlapping", 0))
    atomic_write_json(project.report_path, {
        "images": len(entries), "skipped": skipped, "masks": result.masks, "exported": result.exported,
        "clusters": result.clusters, "suggested_k": result.suggested_k,
        "k_stands_out": result.k_stands_out, "proposal_choice": proposal_choice,
        "distillation": distilled, "timings_s": result.timings,
        "rebinding": clusters.get("rebinding", {}), "warnings": export["warnings"],
    })
    return result


def _views(project: Project, config: RunConfig) -> list:
    """(name, project folder, settings, what its stages are called after) of each view the run asks for
    (engine.orchestration.views: the second scale, the mirrored view, with both the mirrored second scale), each the
    whole method in a project of its own (derived files only, reused by the next run), for their final objects to
    be added over the first run's (engine.orchestration.overlapping)."""
    alone = replace(config, second_scale=None, mirror_view=False)  # a view has no views of its own
    return [(view.name, project.view_dir(view.folder),
             replace(alone, input_size=config.second_scale if view.at_second_scale else config.input_size,
                     image_options=replace(config.image_options, mirrored=view.mirrored)),
             view.stages.format(px=config.second_scale))
            for view in asked_views({"second_scale": config.second_scale, "mirror_view": config.mirror_view})]


def _run_view(folder, discovery, settings: RunConfig, stages: str, progress: Progress, ray_address: str | None,
              first_run: dict) -> None:
    """One view (:func:`_views`) run whole in its folder, following the first run's decisions (``first_run``:
    engine.orchestration.overlapping.view_decisions); its stages report as "<stage> <stages>"."""
    def view_progress(stage: str, done: int, total: int) -> None:
        progress(f"{stage} {stages}", done, total)

    with Project(folder).lock() as view:
        _run_locked(view, discovery, settings, view_progress, StageTimer(), ray_address, first_run=first_run)


def _stored_config(project: Project, project_config: dict, **overrides) -> RunConfig:
    """project.json's run settings (a wrong one named with the file), with ``overrides`` from the command."""
    config = replace(stored_run_config(project.config_path, project_config["config"]),
                     **{k: v for k, v in overrides.items() if v is not None})
    config.check(weights_file=False)  # needed only to recompute features (image_step.repair_feature_cache)
    return config


def distill(project_dir, progress: Progress | None = None, device: str = "auto", **overrides) -> dict:
    """Re-run distillation (and the COCO export) on a finished project; ``overrides`` are RunConfig fields.
    ``device``: where to train, chosen now (a project made on a GPU machine retrains on a laptop)."""
    project, project_config, entries, clusters = open_project(project_dir)
    config = _stored_config(project, project_config, device=device, **overrides)
    timer = StageTimer()
    images = ImageSource.of_project(project_config)
    with project.lock(), decoding_once():
        repaired = repair_feature_cache(project, project_config, entries, config)
        summary = distill_project(project, entries, clusters, config, progress or no_progress, timer)
        summary.update(overlapping_objects.add_overlapping_objects(project, entries, config.device))  # views' kept
        summary["export"] = export_coco(project, entries, clusters, images.root)
        summary["export"]["warnings"] = repaired + summary["export"]["warnings"]
        write_overview(project, entries, clusters, images)
        project_index(project)  # the review's counts and queue follow the new predictions
    summary["timings_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
    return summary


def predict(project_dir, progress: Progress | None = None, device: str = "auto") -> dict:
    """Predict every image of the project with its final head, then export COCO and the overview. ``device``:
    where the final objects' closer look runs (RunConfig.closer_look)."""
    project, project_config, entries, clusters = open_project(project_dir)
    path = project.models_dir / "head_final.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; train it with: maskdistill distill --project {project.root}")
    config = _stored_config(project, project_config)  # checked before anything reads it
    head = load_head(path, feature_identity(project_config))
    images = ImageSource.of_project(project_config)
    with project.lock(), decoding_once():
        repaired = repair_feature_cache(project, project_config, entries, config)
        predicted = predict_project(project, entries, head, images, clusters, progress or no_progress, device)
        predicted.update(overlapping_objects.add_overlapping_objects(project, entries, device))  # views' kept
        export = export_coco(project, entries, clusters, images.root)
        export["warnings"] = repaired + export["warnings"]
        write_overview(project, entries, clusters, images)
        project_index(project)  # the review's counts and queue follow the new predictions
    return {**predicted, "export": export}


def project_predictions(project: Project, entries: list, clusters: dict,
                        source: Literal["predictions", "proposals"]) -> LazyMapping:
    """ImagePrediction per image (keyed by relative path) from the proposals or the final model, each read when
    asked for (engine.output.evaluation.LazyMapping): one image's masks in memory at a time."""
    state = LabelState.load(project, clusters)
    by_path = {entry["relative_path"]: entry for entry in entries}

    def load(relative_path: str) -> ImagePrediction:
        entry = by_path[relative_path]
        found = state.instances(entry, source, overlapping=True)
        if source == "predictions":
            semantic = load_image_predictions(project.predictions_path(entry["image_id"]))[0].astype(np.int64)
        else:
            semantic = paint_label_map((entry["height"], entry["width"]), found.masks, found.categories)
        return ImagePrediction(relative_path, semantic, found.masks, np.asarray(found.categories, int),
                               np.asarray(found.scores, float))

    return LazyMapping(by_path, load)


def evaluate_project(project_dir, ground_truth, source: Literal["predictions", "proposals"] = "predictions") -> dict:
    """Scores of ``source`` against ground truth (COCO json or label-image folder); writes evaluation.json."""
    project, _, entries, clusters = open_project(project_dir)
    truths = open_ground_truth(ground_truth)  # both sides read one image at a time
    scores = evaluate(project_predictions(project, entries, clusters, source), truths)
    scores = {"source": source, "ground_truth": str(Path(ground_truth).resolve()), **scores}
    previous = read_evaluation(project.evaluation_path) if project.evaluation_path.exists() else {}
    atomic_write_json(project.evaluation_path, {**previous, source: scores})
    return scores
