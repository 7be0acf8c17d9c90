"""The ``maskdistill`` command line: every engine step for batch runs, with progress bars."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import __version__
from engine.atomic import ProjectFileError, read_json


def _progress_bar():
    """A progress(stage, done, total) callback drawing one tqdm bar per stage on stderr."""
    from tqdm import tqdm

    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:>10}", unit="step" if total <= 1 else "img",
                                     file=sys.stderr, leave=True, dynamic_ncols=True)
        bar.n, bar.total = done, total  # the total shrinks when a file turns out unreadable
        bar.refresh()
        if done >= total:
            bar.close()

    return progress


def _int_list(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected channel numbers like 0 or 1,0, not {text!r}") from None


def _float_pair(text: str) -> tuple:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two percentiles like 1,99.8, not {text!r}") from None
    return low, high


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # argparse would name this function in its message
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# `run` options that are RunConfig settings: (flags, setting, how the command line parses it). Their help,
# choices and defaults come from the setting's metadata (engine.orchestration.config), like the plugin's form.
RUN_SETTINGS: tuple[tuple[tuple[str, ...], str, dict], ...] = (
    (("--backbone",), "backbone", {}),
    (("--weights",), "weights", {"metavar": "FILE"}),
    (("--device",), "device", {}),
    (("--precision",), "precision", {}),
    (("--input-size",), "input_size", {"type": _positive_int, "metavar": "PX"}),
    (("--second-scale",), "second_scale", {"type": _positive_int, "metavar": "PX"}),
    (("--mirror-view",), "mirror_view", {"action": "store_true"}),
    (("--proposals",), "proposals", {}),
    (("--masks-per-image",), "max_masks", {"type": _positive_int, "metavar": "N"}),
    (("--num-classes", "-k"), "num_classes", {"type": _positive_int, "metavar": "K"}),
    (("--embedding",), "embedding", {}),
    (("--recursive", "-r"), "recursive", {"action": "store_true"}),
    (("--object-size",), "object_size", {"type": float, "metavar": "PX"}),
    (("--tile-size",), "tile_size", {"type": _positive_int, "metavar": "PX"}),
    (("--batch-size",), "batch_size", {"type": _positive_int}),
    (("--seed",), "seed", {"type": int}),
    (("--no-distill",), "distill", {"action": "store_false"}),
    (("--no-closer-look",), "closer_look", {"action": "store_false"}),
)
# the filter settings `distill` can change on a finished project; unset, they keep the project's values
FILTER_SETTINGS: tuple[tuple[tuple[str, ...], str, dict], ...] = (
    (("--filter-rule",), "filter_rule", {}),
    (("--filter-percentile",), "filter_percentile", {"type": float, "metavar": "P"}),
    (("--filter-threshold",), "filter_threshold", {"type": float, "metavar": "T"}),
    (("--self-training",), "self_training_rounds", {"type": int, "metavar": "N"}),
)


def setting_help(info: dict, switches_off: bool = False) -> str:
    """A setting's help followed by its default and range, as argparse shows it ('%' escaped);
    ``switches_off``: the help of a --no-... flag."""
    from engine.orchestration.config import allowed_range

    notes = []
    if info["default"] is not None and not isinstance(info["default"], bool):
        notes.append(f"default: {info['default']}")
    limits = allowed_range(info)
    if limits:
        notes.append(limits)
    text = f"Turns off {info['label']}: {info['help']}" if switches_off else info["help"]
    if notes:
        joined = "; ".join(notes)
        text += f" {joined[0].upper()}{joined[1:]}."
    return text.replace("%", "%%")


def _add_settings(parser, options, keep_stored: bool = False) -> None:
    """Add each (flags, setting, parsing) of ``options`` with the setting's help, choices and default;
    ``keep_stored``: unset options are None, so the project's stored values stay."""
    from engine.orchestration.config import setting

    for flags, name, parsing in options:
        info = setting(name)
        choices = {"choices": info["choices"]} if "choices" in info else {}
        parser.add_argument(*flags, dest=name, default=None if keep_stored else info["default"],
                            help=setting_help(info, parsing.get("action") == "store_false"), **choices, **parsing)


def build_parser() -> argparse.ArgumentParser:
    from engine.method.backbones import BACKBONES, DEFAULT_BACKBONE

    parser = argparse.ArgumentParser(
        prog="maskdistill",
        description="Bootstrap segmentation annotations without labels (MaskDistill): object masks from a "
                    "self-supervised ViT, clustered into pseudo-classes, exported as COCO.")
    parser.add_argument("--version", action="version", version=f"maskdistill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="propose object masks in an image folder, cluster them, export COCO",
                              description="Propose object masks for every image of FOLDER, cluster them into "
                                          "pseudo-classes and write DIR/annotations.json (COCO) and "
                                          "DIR/overview.png. Re-running continues where a run stopped.")
    run.add_argument("folder", type=Path, help="folder of images (PNG, JPEG, TIFF, BMP, WebP)")
    run.add_argument("--project", "-p", type=Path, required=True, metavar="DIR",
                     help="project folder for all results and caches (created if missing)")
    _add_settings(run, RUN_SETTINGS)
    run.add_argument("--channels", type=_int_list, default=None, metavar="C[,C[,C]]",
                     help="microscopy: which channels become the network's input, e.g. 0 (grey) or 1,0 (red, green); "
                          "each channel is normalised on its own (default: the image as stored)")
    run.add_argument("--percentiles", type=_float_pair, default=None, metavar="LOW,HIGH",
                     help="intensity range mapped to black-white for 16-bit / float images and chosen channels "
                          "(default 1,99.8)")
    run.add_argument("--planes", action="store_true",
                     help="process every plane of a 3-D stack as its own image (default: stacks are skipped)")
    _add_settings(run, FILTER_SETTINGS, keep_stored=True)
    run.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                     help="run the per-image steps (decode, features, proposals, embeddings) on Ray actors, one "
                          "GPU each when the cluster has GPUs; clustering and training stay here. Without ADDRESS "
                          "(or 'auto'): the cluster of RAY_ADDRESS or `ray start` on this machine, else a new local "
                          "Ray; 'local': always a new local Ray; or ray://HEAD:10001. FOLDER and DIR must be on a "
                          "filesystem every node sees at the same path. Needs the ray extra")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    distill = commands.add_parser("distill", help="train the head, drop weak masks, retrain, predict, export",
                                  description="On a project made by `run`: train a segmentation head on the "
                                              "clustered masks, drop the masks it finds least convincing, retrain "
                                              "on the clean set, predict every image and export COCO.")
    distill.add_argument("--project", "-p", type=Path, required=True, metavar="DIR")
    distill.add_argument("--device", default="auto",
                         help="where to train: auto (CUDA, then MPS, then CPU), cpu, cuda, mps; chosen per command, "
                              "never stored, so a project made on a GPU machine retrains anywhere")
    _add_settings(distill, FILTER_SETTINGS, keep_stored=True)
    distill.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    predict = commands.add_parser("predict", help="predict every project image with the final head, export COCO")
    predict.add_argument("--project", "-p", type=Path, required=True, metavar="DIR")
    predict.add_argument("--device", default="auto",
                         help="where the final objects' closer look runs: auto, cpu, cuda, mps (never stored)")
    predict.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    evaluate = commands.add_parser("evaluate", help="score a project against ground truth",
                                   description="mIoU after Hungarian matching of clusters to classes (background "
                                               "included), per-class IoU, class-aware and class-agnostic mask AP "
                                               "and AP50 (pycocotools), and CorLoc. Written to DIR/evaluation.json.")
    evaluate.add_argument("--project", "-p", type=Path, required=True, metavar="DIR")
    evaluate.add_argument("--gt", type=Path, required=True, metavar="FILE_OR_FOLDER",
                          help="COCO json, or a folder of label images (pixel value = class id, 0 = background)")
    evaluate.add_argument("--source", default="predictions", choices=("predictions", "proposals"),
                          help="the final model's predictions (default) or the clustered proposals")

    export = commands.add_parser("export", help="write COCO (and optionally label images) of the project",
                                 description="Export the current annotations: the user's corrections where an "
                                             "image has them, else the final model's predictions. Validated "
                                             "with pycocotools before the previous file is replaced.")
    export.add_argument("--project", "-p", type=Path, required=True, metavar="DIR")
    export.add_argument("--output", "-o", type=Path, default=None, metavar="FILE",
                        help="COCO file to write (default DIR/annotations.json, unless --labels alone is given)")
    export.add_argument("--polygons", action="store_true",
                        help="polygons instead of compressed RLE (holes are filled: a warning names them)")
    export.add_argument("--labels", type=Path, default=None, metavar="FOLDER",
                        help="write one instance label image per image into FOLDER (only these, unless --output "
                             "is given too)")
    export.add_argument("--label-format", default="png", choices=("png", "tiff"))
    export.add_argument("--source", default="current", choices=("current", "predictions", "proposals"))

    importer = commands.add_parser("import-coco", help="start correcting from an existing COCO file",
                                   description="Masks of an existing COCO file become the project's starting "
                                               "masks to correct (matched by file name), its categories the "
                                               "project's categories.")
    importer.add_argument("coco", type=Path, metavar="FILE")
    importer.add_argument("--project", "-p", type=Path, required=True, metavar="DIR")
    importer.add_argument("--replace", action="store_true",
                          help="replace the project's categories and corrections instead of merging; the previous "
                               "ones are backed up in DIR/backups/")

    cache = commands.add_parser("cache", help="size of a project's feature cache; --prune drops unused features",
                                description="Report the size of DIR/features (files, MB, MB per image); with "
                                            "--prune, delete the cached features no image of the project uses "
                                            "(removed images, runs with other settings) and the files that "
                                            "cannot be read (damaged, or of an older format). Deleted features "
                                            "are recomputed if ever needed again.")
    cache.add_argument("--project", "-p", type=Path, required=True, metavar="DIR")
    cache.add_argument("--prune", action="store_true")

    categories = commands.add_parser(
        "categories", help="list, rename, merge, discard, restore, recolour or split the project's categories",
        description="The Categories tab on the command line. Without an action, list the categories (id, name, "
                    "masks exported under it, what was decided). A category is given by its id or its name. Each "
                    "action is saved in the project at once, as the plugin saves it, and the list is shown after "
                    "it; re-runs keep it (ARCHITECTURE.md).")
    categories.add_argument("--project", "-p", type=Path, required=True, metavar="DIR")
    action = categories.add_mutually_exclusive_group()
    action.add_argument("--rename", nargs=2, metavar=("CATEGORY", "NAME"), help="give a category a new name")
    action.add_argument("--merge", nargs="+", metavar="CATEGORY",
                        help="every mask of these categories becomes --into's (undone by --restore)")
    action.add_argument("--discard", metavar="CATEGORY",
                        help="leave a category out of exports; for training its pixels become --mode")
    action.add_argument("--restore", metavar="CATEGORY", help="undo its discard and its merge")
    action.add_argument("--colour", nargs=2, metavar=("CATEGORY", "R,G,B"), help="its colour in the plugin's layers")
    action.add_argument("--split", nargs=2, metavar=("CATEGORY", "PARTS"),
                        help="re-cluster a category's masks into PARTS categories (loads the engine's torch)")
    categories.add_argument("--into", metavar="CATEGORY", help="the category --merge merges into")
    categories.add_argument("--mode", default="background", choices=("background", "ignore"),
                            help="what a discarded category's pixels become for training (default: background)")

    info = commands.add_parser("info", help="backbones, device and where the weights would come from",
                               description="List the registered backbones, the compute device and, for one "
                                           "backbone, each weight source and whether it is available.")
    info.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES))
    info.add_argument("--device", default="auto")
    info.add_argument("--project", "-p", type=Path, metavar="DIR", help="also report this project's feature cache")
    return parser


def _filter_overrides(args) -> dict:
    return {name: getattr(args, name) for _, name, _ in FILTER_SETTINGS}


RAY_EXTRA_MISSING = "--ray needs the ray extra: pip install 'maskdistill-napari[ray]'"


def cmd_run(args) -> int:
    import importlib.util

    from engine.io.images import DEFAULT_PERCENTILES, ImageOptions
    from engine.orchestration.pipeline import RunConfig, run

    if args.ray is not None and importlib.util.find_spec("ray") is None:
        print(f"maskdistill: error: {RAY_EXTRA_MISSING}", file=sys.stderr)
        return 2

    image_options = ImageOptions(channels=args.channels, percentiles=args.percentiles or DEFAULT_PERCENTILES,
                                 planes=args.planes)
    settings = {name: getattr(args, name) for _, name, _ in RUN_SETTINGS}
    config = RunConfig(**settings, image_options=image_options,
                       **{k: v for k, v in _filter_overrides(args).items() if v is not None})
    result = run(args.folder, args.project, config, progress=None if args.quiet else _progress_bar(),
                 ray_address=args.ray)
    print(f"{result.images} images, {len(result.skipped)} skipped: {result.masks} proposals in {result.clusters} "
          f"clusters ({result.suggestion_words}) -> {result.exported_words} exported")
    if result.proposal_choice:
        print(f"  {result.proposal_choice}")
    for skipped in result.skipped:
        print(f"  skipped {skipped['relative_path']}: {skipped['reason']}")
    if result.rebinding:
        print("your categories on the new clusters:")
        for line in result.rebinding:
            print(f"  {line}")
    _print_folder_passes(read_json(Path(result.project) / "report.json").get("distillation") or {})
    for warning in result.warnings:
        print(f"  warning: {warning}")
    print(f"COCO annotations: {result.annotations}")
    print(f"overview:         {result.overview}")
    return 0


def cmd_distill(args) -> int:
    from engine.orchestration.pipeline import distill

    summary = distill(args.project, None if args.quiet else _progress_bar(), device=args.device,
                      **_filter_overrides(args))
    print(f"kept {summary['masks_kept']} masks, dropped {summary['masks_dropped']}; "
          f"{summary['instances_predicted']} instances predicted")
    _print_folder_passes(summary)
    if summary["carried"]:
        print(f"corrected objects carried to {len(summary['carried'])} image(s) of the same scene "
              f"({sum(summary['carried'].values())} objects)")
    for warning in summary["export"]["warnings"]:
        print(f"  warning: {warning}")
    print(f"COCO annotations: {Path(args.project).resolve() / 'annotations.json'}")
    return 0


def _print_folder_passes(summary: dict) -> None:
    """What the folder-level passes over the final objects did: the group cut, the typicality ranking."""
    from engine.orchestration.outcome import describe_folder_passes

    for line in describe_folder_passes(summary):
        print(line)


def cmd_predict(args) -> int:
    from engine.orchestration.pipeline import predict

    summary = predict(args.project, None if args.quiet else _progress_bar(), device=args.device)
    print(f"{summary['instances_predicted']} instances predicted in {summary['export']['images']} images")
    _print_folder_passes(summary)
    for warning in summary["export"]["warnings"]:
        print(f"  warning: {warning}")
    print(f"COCO annotations: {Path(args.project).resolve() / 'annotations.json'}")
    return 0


def format_scores(scores: dict) -> str:
    """The evaluation as a short table."""
    def number(value):
        return "n/a" if value is None else f"{value:.3f}"

    lines = [f"{'metric':<22} value", f"{'mIoU':<22} {number(scores['miou'])}"]
    for name in ("ap", "ap50", "ap_agnostic", "ap50_agnostic", "corloc"):
        lines.append(f"{name:<22} {number(scores[name])}")
    lines += [f"IoU of class {cls:<9} {number(iou)}" for cls, iou in scores["per_class_iou"].items()]
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from engine.orchestration.pipeline import evaluate_project

    scores = evaluate_project(args.project, args.gt, args.source)
    print(f"{args.source} of {Path(args.project).resolve()} against {args.gt} ({scores['images']} images)")
    print(format_scores(scores))
    return 0


def cmd_export(args) -> int:
    from engine.orchestration.project_commands import export_project  # torch-free: export runs no network

    summary = export_project(args.project, args.output, polygons=args.polygons, labels=args.labels,
                             label_format=args.label_format, source=args.source)
    if "coco" in summary:
        coco = summary["coco"]
        print(f"COCO: {summary['path']} ({coco['images']} images, {coco['annotations']} annotations, "
              f"{coco['categories']} categories; pycocotools validation passed)")
        for warning in coco["warnings"]:
            print(f"  warning: {warning}")
    if "labels" in summary:
        labels = summary["labels"]
        print(f"label images: {labels['folder']} ({labels['images']} images, {labels['sixteen_bit']} with 16-bit "
              "labels)")
        if labels["overlapping_left_out"]:
            print(f"  {labels['overlapping_left_out']} overlapping objects of the second scale are left out: a label "
                  "image holds one object per pixel (the COCO export has them)")
    return 0


def cmd_import(args) -> int:
    from engine.orchestration.project_commands import import_annotations  # torch-free

    summary = import_annotations(args.project, args.coco, replace=args.replace)
    print(f"imported masks for {summary['images']} images and {summary['categories']} categories")
    for name in summary.get("unmatched", []):
        print(f"  not in the project: {name}")
    unannotated = summary.get("unannotated")
    if unannotated:
        print(f"{len(unannotated)} images listed with no annotations were left as they were (--replace empties "
              "them)")
    kept = summary.get("kept")
    if kept:
        if isinstance(kept, (list, tuple)):  # images whose existing corrections the merge did not overwrite
            names = ", ".join(str(item) for item in kept[:10]) + (", ..." if len(kept) > 10 else "")
            print(f"kept the existing corrections of {len(kept)} image(s): {names}")
        elif isinstance(kept, dict):
            print("kept from the project: " + ", ".join(f"{value} {key}" for key, value in kept.items()))
        else:
            print(f"kept from the project: {kept}")
    if summary.get("backup"):
        print(f"previous categories and corrections backed up in {summary['backup']}")
    for warning in summary.get("warnings") or []:
        print(f"  warning: {warning}")
    return 0


def cmd_cache(args) -> int:
    from engine.orchestration.project_commands import feature_cache  # torch-free

    summary = feature_cache(args.project, prune=args.prune)
    pruned = summary["pruned"]
    if pruned is not None:
        unreadable = pruned.get("unreadable") and (f" ({pruned['unreadable']} unreadable, damaged or of an older "
                                                   "format: recomputed when next needed)")
        print(f"pruned {pruned['files']} files{unreadable or ''} ({pruned['bytes'] / 1e6:.1f} MB freed)")
    print(describe_feature_cache(summary))
    return 0


def describe_feature_cache(summary: dict) -> str:
    """One line from engine.orchestration.project_commands.feature_cache's summary."""
    return (f"feature cache: {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB; {summary['images']} images "
            f"use {summary['used_bytes'] / 1e6:.1f} MB ({summary['mb_per_image']:.2f} MB per image)")


def cmd_categories(args) -> int:
    from engine.state import review  # torch-free but for a split, which loads it itself
    from engine.state.label_state import LabelState

    table = LabelState.load(args.project).table

    def category(text: str) -> int:
        """A category id from its id or its name."""
        known = ", ".join(f"{c.id} {c.name!r}" for c in table.categories)
        if text.strip().isdigit():
            if int(text) not in table.by_id():
                raise ValueError(f"{args.project} has no category {int(text)} (known: {known})")
            return int(text)
        named = [c.id for c in table.categories if c.name == text.strip()]
        if len(named) != 1:
            raise ValueError(f"{args.project}: {'no' if not named else 'more than one'} category is named "
                             f"{text!r}; give its id (known: {known})")
        return named[0]

    if args.merge is not None and args.into is None:
        raise ValueError("--merge needs --into: the category the others merge into")
    if args.rename:
        review.rename_category(args.project, category(args.rename[0]), args.rename[1])
    elif args.merge:
        review.merge_categories(args.project, [category(c) for c in args.merge], category(args.into))
    elif args.discard:
        review.discard_category(args.project, category(args.discard), args.mode)
    elif args.restore:
        review.restore_category(args.project, category(args.restore))
    elif args.colour:
        try:
            rgb = [int(v) for v in args.colour[1].split(",")]
        except ValueError:
            raise ValueError(f"a colour is three values 0-255 like 200,40,40, not {args.colour[1]!r}") from None
        review.recolour_category(args.project, category(args.colour[0]), rgb)
    elif args.split:
        if not args.split[1].isdigit() or int(args.split[1]) < 2:
            raise ValueError(f"--split needs a number of parts of 2 or more, not {args.split[1]!r}")
        new_ids = review.split_category(args.project, category(args.split[0]), int(args.split[1]))
        print(f"split into categories {', '.join(str(i) for i in new_ids)}")
    print(describe_categories(LabelState.load(args.project).table, review.category_sizes(args.project),
                              review.category_sizes(args.project, overlapping=True)))
    return 0


def describe_categories(table, sizes: dict, outlined: dict | None = None) -> str:
    """The category table as the plugin's Categories tab shows it: id, name, masks, colour (the user's, else the
    generated one, marked "auto"), status; with a view's overlapping objects (``outlined``: their number per
    category) a column of them."""
    from engine.output.overview import category_colour

    outlined = outlined or {}
    column = f" {'outlined':>8}" if outlined else ""
    lines = [f"{'id':>4}  {'name':<24} {'masks':>6}{column}  {'colour':<16}  status"]
    for c in table.categories:
        colour = ",".join(str(v) for v in category_colour(c)) + ("" if c.colour else " auto")
        count = f" {outlined.get(c.id, 0):>8}" if outlined else ""
        lines.append(f"{c.id:>4}  {c.name:<24} {sizes.get(c.id, 0):>6}{count}  {colour:<16}  {c.status}".rstrip())
    return "\n".join(lines)


def cmd_info(args) -> int:
    import torch

    from engine.device import resolve_device
    from engine.method.backbones import BACKBONES, get_backbone_spec
    from engine.method.weights import cache_dir, describe_sources

    print(f"maskdistill {__version__}, torch {torch.__version__}")
    print(f"device ({args.device}): {resolve_device(args.device)}")
    print(f"weights cache: {cache_dir()}")
    print("backbones:")
    for spec in BACKBONES.values():
        print(f"  {spec.name:<20} {spec.hub_name:<40} patch {spec.patch_size:>2}, dim {spec.embed_dim}, "
              f"input {spec.default_input_size} px")
    spec = get_backbone_spec(args.backbone)
    print(f"weight sources for {spec.name}, tried in this order:")
    for source, available, detail in describe_sources(spec):
        print(f"  [{'x' if available else ' '}] {source:<10} {detail}")
    if args.project is not None:
        from engine.orchestration.project_commands import feature_cache

        print(f"project {args.project}: {describe_feature_cache(feature_cache(args.project))}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "distill": cmd_distill, "predict": cmd_predict, "evaluate": cmd_evaluate,
                "export": cmd_export, "import-coco": cmd_import, "cache": cmd_cache, "categories": cmd_categories,
                "info": cmd_info}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    except (ProjectFileError, ValueError, OSError, RuntimeError, KeyError) as error:
        # ValueError covers ProjectFileError and coco_validation.CocoValidationError (damaged project or input files);
        # OSError: missing files, read-only project, permission denied, disk full
        print(f"maskdistill: error: {_error_message(error)}", file=sys.stderr)
        return 2


def _error_message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        names = [str(n) for n in (error.filename, error.filename2) if n is not None]
        return f"{' -> '.join(names)}: {error.strerror}" if names else error.strerror
    if isinstance(error, KeyError) and error.args:  # a bare key names nothing: say what it is
        return (f"an entry {error.args[0]!r} that a project or input file should have (or refer to) is missing: "
                "the file is damaged or from another program; restore it from a copy or backups/, or re-run "
                "`maskdistill run`")
    return str(error) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
