"""What limits the learnt centres (engine.method.centres, docs/decisions.md#d-centres-ceiling): the examples or the
inputs? The engine's ridge regression (a patch's centred token beside its 3x3 neighbours' mean -> its depth in
its object) fitted on a finished project's lone final objects (solidity >= 0.8, 48 patches each, as the engine
gathers them) and scored by R^2 on the folder's annotated objects' patches, against the same regression fitted on
the annotated objects themselves (grouped 5-fold, held out); then other inputs fitted on the lone objects: wider
neighbourhoods (3, 7 and 15 patches) and the outputs of the backbone's middle blocks (BLOCKS, e.g. 5,8,10: one
network pass per image, stopped after the last of them); last, the engine's inputs' R^2 by the annotated objects'
size (a third of them each: is the limit the patch grid?). Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_ceiling.py PROJECT GROUND_TRUTH_FOLDER [BLOCKS]"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.model_selection import GroupKFold, cross_val_predict  # noqa: E402

from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.masks import LabelMasks  # noqa: E402
from engine.method.backbones import DEFAULT_BACKBONE, get_backbone_spec  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.closer_look import crop_extractor  # noqa: E402
from engine.method.instances import object_solidities  # noqa: E402

ALPHAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


def wide_inputs(tokens: np.ndarray, grid_hw: tuple) -> np.ndarray:
    """The engine's inputs with the means of 7x7 and 15x15 neighbourhoods beside them."""
    grid = np.asarray(tokens, np.float32).reshape(*grid_hw, -1)
    grid = grid - grid.mean(axis=(0, 1))
    wider = [ndimage.uniform_filter(grid, size=(s, s, 1), mode="nearest").reshape(-1, grid.shape[2]) for s in (7, 15)]
    return np.concatenate([centres.patch_inputs(tokens, grid_hw)] + wider, axis=1)


def depth_rows(mask_stack: np.ndarray, grid_hw: tuple, keep, rng) -> list:
    """[(cells, depths, share of the image), ...] of the masks ``keep`` (a position -> bool) takes, at most 48
    patches each."""
    masks, rows = LabelMasks.from_stack(mask_stack), []
    for position in range(len(masks.ids)):
        box, crop = masks.crop(position)
        if box is None or crop.sum() < centres.MIN_EXAMPLE_PIXELS or not keep(masks, position):
            continue
        cells, depths = centres.depth_targets(crop, box, masks.labels.shape, grid_hw)
        if len(cells) > centres.MAX_CELLS_PER_EXAMPLE:
            chosen = np.sort(rng.choice(len(cells), centres.MAX_CELLS_PER_EXAMPLE, replace=False))
            cells, depths = cells[chosen], depths[chosen]
        if len(cells):
            rows.append((cells, depths, crop.sum() / masks.labels.size))
    return rows


def main(project: Path, folder: Path, blocks: list) -> None:
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    loaded = common.final_objects(project, images)
    features_of = common.project_features(project)
    config = json.loads((project / "project.json").read_text())["config"]
    backbone = config.get("backbone") or DEFAULT_BACKBONE
    input_size = config.get("input_size") or get_backbone_spec(backbone).default_input_size
    extractor = crop_extractor(backbone, config.get("weights"), "cpu", input_size, "float32") if blocks else None
    paths = {path.name: path for path in folder.rglob("*") if path.is_file()}
    rng = np.random.default_rng(0)
    inputs_of = {"final tokens": centres.patch_inputs, "final tokens, 3/7/15 neighbours": wide_inputs}
    lone = {name: [] for name in list(inputs_of) + [f"block {b}" for b in blocks]}
    annotated = {name: [] for name in lone}
    lone_depths, annotated_depths, annotated_groups, annotated_shares = [], [], [], []
    for image in images:
        features = features_of(image.file_name)
        inputs = {name: read(features.tokens, features.grid_hw) for name, read in inputs_of.items()}
        if blocks:
            pixels = np.asarray(Image.open(paths[Path(image.file_name).name]).convert("RGB"))
            for block in blocks:
                outputs, grid = extractor.block_tokens([pixels], block)[0]
                assert tuple(grid) == tuple(features.grid_hw), "the project's features were tiled or resized"
                inputs[f"block {block}"] = centres.patch_inputs(outputs.astype(np.float32), grid)
        masks, _ = loaded[image.file_name]
        solidity = object_solidities(LabelMasks.from_stack(masks))
        is_lone = lambda m, p: solidity.get(int(m.ids[p]), 0.0) >= centres.LONE_SOLIDITY  # noqa: E731
        for target, depths, keep, stack in ((lone, lone_depths, is_lone, masks),
                                            (annotated, annotated_depths, lambda m, p: True,
                                             np.asarray(image.masks, bool))):
            for cells, depth, share in depth_rows(stack, features.grid_hw, keep, rng):
                for name in target:
                    target[name].append(inputs[name][cells].astype(np.float16))
                depths.append(depth)
                if target is annotated:
                    annotated_groups.append(np.full(len(cells), len(annotated_groups)))
                    annotated_shares.append(np.full(len(cells), share))
    y_lone, y_annotated = np.concatenate(lone_depths), np.concatenate(annotated_depths)
    print(f"{len(lone_depths)} lone final objects, {len(annotated_depths)} annotated objects", flush=True)
    x = np.concatenate(annotated["final tokens"]).astype(np.float32)
    groups = np.concatenate(annotated_groups)
    held_out = {alpha: r2_score(y_annotated, cross_val_predict(Ridge(alpha=alpha), x, y_annotated, groups=groups,
                                                               cv=GroupKFold(5))) for alpha in ALPHAS}
    print("fitted on the annotated objects (held out), final tokens: R^2 "
          + ", ".join(f"{r2:.3f} (alpha {a:g})" for a, r2 in held_out.items()), flush=True)
    for name in lone:
        x, x_annotated = (np.concatenate(rows).astype(np.float32) for rows in (lone[name], annotated[name]))
        scored = {alpha: r2_score(y_annotated, Ridge(alpha=alpha).fit(x, y_lone).predict(x_annotated))
                  for alpha in ALPHAS}
        print(f"fitted on the lone final objects, {name}: R^2 on the annotated objects "
              + ", ".join(f"{r2:.3f} (alpha {a:g})" for a, r2 in scored.items()), flush=True)
    x, x_annotated = (np.concatenate(rows).astype(np.float32) for rows in (lone["final tokens"],
                                                                         annotated["final tokens"]))
    predicted = Ridge(alpha=max(centres.ALPHAS)).fit(x, y_lone).predict(x_annotated)
    shares = np.concatenate(annotated_shares)
    edges = np.percentile([share[0] for share in annotated_shares], [0, 100 / 3, 200 / 3, 100])
    for low, high in zip(edges[:-1], edges[1:]):
        rows = (shares >= low) & (shares <= high)
        print(f"annotated objects of {low:.4f}-{high:.4f} of the image: R^2 {r2_score(y_annotated[rows], predicted[rows]):.3f} "
              f"({rows.sum()} patches; engine's inputs, fitted on the lone final objects, alpha {max(centres.ALPHAS):g})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [int(b) for b in sys.argv[3].split(",")] if len(sys.argv) > 3 else [])
