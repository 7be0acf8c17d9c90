"""Known answers of the ``dense`` proposals (engine/dense.py): planted discs on synthetic features."""
from __future__ import annotations

import numpy as np
import pytest

from engine.masks import LabelMasks, Proposals
from engine.method.dense import (
    dense_label_map,
    estimate_object_size,
    foreground_grid,
    patch_cells_from_labels,
    split_instances,
)
from engine.method.features import ImageFeatures
from engine.method.names import PROPOSAL_METHODS
from engine.method.proposals import propose

PATCH = 4  # image pixels per feature cell in these tests


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def planted(masks_fg: np.ndarray, seed: int = 0, dim: int = 32, noise: float = 0.05):
    """(image uint8 RGB, ImageFeatures) whose keys are one vector on the foreground, another elsewhere."""
    rng = np.random.default_rng(seed)
    h, w = masks_fg.shape
    gh, gw = h // PATCH, w // PATCH
    cover = masks_fg.reshape(gh, PATCH, gw, PATCH).mean(axis=(1, 3)).ravel()
    fg_vec, bg_vec = rng.standard_normal(dim), rng.standard_normal(dim)
    keys = cover[:, None] * fg_vec + (1 - cover[:, None]) * bg_vec + noise * rng.standard_normal((gh * gw, dim))
    tokens = keys.copy()
    features = ImageFeatures(grid_hw=(gh, gw), input_hw=(h, w), keys=keys.astype(np.float16),
                             tokens=tokens.astype(np.float16), cls_token=np.zeros(dim, np.float32),
                             cls_attention=np.full((1, gh * gw), 1.0 / (gh * gw), np.float32))
    grey = np.where(masks_fg, 200, 30).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2), features


def two_touching_discs(shape=(160, 200), r=30):
    a = disc(shape, 80, 70, r)
    b = disc(shape, 80, 70 + 2 * r - 4, r)  # centres 56 px apart: overlapping slightly
    return a, b


def test_two_touching_discs_are_separated():
    a, b = two_touching_discs()
    image, features = planted(a | b)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    assert isinstance(proposals, Proposals)
    assert len(proposals) == 2
    # each instance is mostly one disc
    for truth in (a & ~b, b & ~a):
        best = max((m & truth).sum() / (m | truth).sum() for m in proposals.masks)
        assert best > 0.75
    assert proposals.masks.shape == (2, *image.shape[:2])
    assert proposals.patch_masks.shape == (2, *features.grid_hw)
    assert ((proposals.scores > 0) & (proposals.scores <= 1)).all()
    assert proposals.sources == ["dense:0", "dense:1"]
    assert not (proposals.masks[0] & proposals.masks[1]).any()


def test_two_touching_discs_without_object_size():
    a, b = two_touching_discs()
    image, features = planted(a | b, seed=1)
    assert len(propose(image, features, "dinov2", "dense")) == 2


def test_fifty_separated_small_discs_give_fifty_instances():
    shape = (320, 400)
    fg = np.zeros(shape, bool)
    for i in range(5):
        for j in range(10):
            fg |= disc(shape, 32 + 64 * i, 20 + 40 * j, 7)
    image, features = planted(fg, seed=2)
    for size in (14, None):
        proposals = propose(image, features, "dinov2", "dense", object_size=size)
        assert len(proposals) == 50, size
    assert 10 <= estimate_object_size(fg) <= 18


def test_empty_image_gives_none():
    image, features = planted(np.zeros((96, 96), bool), seed=3)
    proposals = propose(image, features, "dinov2", "dense", object_size=20)
    assert len(proposals) == 0
    assert proposals.masks.shape == (0, 96, 96)
    assert proposals.patch_masks.shape == (0, *features.grid_hw)
    assert split_instances(np.zeros((10, 10), bool)).max() == 0


def test_foreground_is_the_minority_side():
    fg = np.zeros((64, 64), bool)
    fg[8:24, 8:24] = True
    _, features = planted(fg, seed=4)
    grid = foreground_grid(features.keys, features.grid_hw)
    assert grid[3, 3] > 0.8 and grid[12, 12] < 0.2
    _, inverted = planted(~fg, seed=4)  # the same split with the majority "planted": still the small square
    assert foreground_grid(inverted.keys, inverted.grid_hw)[3, 3] > 0.8


def test_dense_is_registered_and_patch_masks_cover_small_objects():
    assert "dense" in PROPOSAL_METHODS
    labels = np.zeros((40, 40), np.int32)
    labels[1:3, 1:3] = 1  # smaller than a cell of 8 px
    labels[10:40, 10:40] = 2
    grid = np.asarray(patch_cells_from_labels(labels, (5, 5)))
    assert grid.shape == (2, 5, 5)
    assert grid[0].sum() == 1 and grid[0, 0, 0]
    assert grid[1, 2:, 2:].all() and not grid[1, :1].any()


def test_hundreds_of_touching_discs_give_hundreds_of_instances():
    rng = np.random.default_rng(5)
    shape = (512, 512)
    fg = np.zeros(shape, bool)
    for cy in range(12, 512, 24):
        for cx in range(12, 512, 24):
            fg |= disc(shape, cy + rng.integers(-2, 3), cx + rng.integers(-2, 3), 8)
    image, features = planted(fg, seed=6)
    labels, scores, _ = dense_label_map(image, features.keys, features.grid_hw, object_size=16)
    assert labels.max() == len(scores) >= 400


@pytest.mark.parametrize("edge_weight", [0.0, 0.5])
def test_split_instances_separates_a_touching_pair(edge_weight):
    a = disc((100, 120), 50, 40, 20)
    b = disc((100, 120), 50, 77, 20)
    grey = np.where(a | b, 1.0, 0.0)
    labels = split_instances(a | b, 40, grey, edge_weight)
    assert labels.max() == 2


def test_label_masks_behave_like_the_stack_they_hold():
    labels = np.zeros((30, 40), np.int32)
    labels[2:8, 3:9] = 1
    labels[10:20, 10:30] = 2
    labels[25:28, 0:40] = 3
    stack = LabelMasks(labels, [3, 1, 2])  # ranked order, as dense_proposals keeps it
    explicit = labels[None] == np.array([3, 1, 2])[:, None, None]
    assert stack.shape == (3, 30, 40) and len(stack) == 3
    assert np.array_equal(np.asarray(stack), explicit)
    assert all(np.array_equal(a, b) for a, b in zip(stack, explicit))
    assert np.array_equal(stack[-1], explicit[2])
    subset = stack[np.array([True, False, True])]
    assert isinstance(subset, LabelMasks) and np.array_equal(np.asarray(subset), explicit[[0, 2]])
    assert np.array_equal(np.asarray(stack[[2, 0]]), explicit[[2, 0]])
    assert np.array_equal(np.asarray(stack[1:]), explicit[1:])


def test_dense_proposals_hold_one_label_map_and_filter_like_arrays():
    a, b = two_touching_discs()
    image, features = planted(a | b, seed=7)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    assert isinstance(proposals.masks, LabelMasks)
    kept = proposals.filter(np.array([False, True]))
    assert len(kept) == 1 and np.array_equal(kept.masks[0], proposals.masks[1])


@pytest.mark.parametrize("lazy", [False, True])
def test_dense_proposals_round_trip_through_the_proposals_file(tmp_path, monkeypatch, lazy):
    from engine.state import project as project_module

    if lazy:  # a small limit makes the reader keep RLEs, as it does for a crowded large image
        monkeypatch.setattr(project_module, "LAZY_MASK_BYTES", 0)
    a, b = two_touching_discs()
    image, features = planted(a | b, seed=8)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    embeddings = np.zeros((len(proposals), 4), np.float32)
    path = tmp_path / "p.npz"
    project_module.save_image_proposals(path, proposals, embeddings, "key")
    loaded, _, key = project_module.load_image_proposals(path, image.shape[:2])
    assert key == "key" and isinstance(loaded.masks, project_module.RleMasks) == lazy
    assert loaded.masks.shape == proposals.masks.shape
    assert np.array_equal(np.asarray(loaded.masks), np.asarray(proposals.masks))
    assert np.array_equal(np.asarray(loaded.filter([1]).masks), np.asarray(proposals.masks)[[1]])


# -- storage of large dense images: cell lists, bounding-box work, one label map ---------------------------


def _old_patch_masks(labels, grid_hw):
    """The dense-array rule as it was before cell lists (reference for the known answers below)."""
    n, (gh, gw) = int(labels.max()), grid_hw
    height, width = labels.shape
    rows = np.minimum((np.arange(height) * gh) // height, gh - 1)
    cols = np.minimum((np.arange(width) * gw) // width, gw - 1)
    cells = rows[:, None] * gw + cols[None, :]
    out = np.zeros((n, gh * gw), bool)
    for k in range(1, n + 1):
        counts = np.bincount(cells[labels == k], minlength=gh * gw)
        out[k - 1, counts >= 0.5 * np.bincount(cells.ravel(), minlength=gh * gw)] = True
        out[k - 1, np.argmax(counts)] = True
    return out.reshape(n, gh, gw)


def _crowded_labels(shape=(203, 157), seed=11):
    """Touching discs of several sizes (some smaller than a cell), an uneven grid split."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for k in range(1, 41):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.uniform(1, 12)
        labels[disc(shape, cy, cx, r)] = k
    present = np.unique(labels[labels > 0])
    lookup = np.zeros(41, np.int32)
    lookup[present] = np.arange(1, present.size + 1)
    return lookup[labels]


def test_patch_cells_equal_the_dense_array_rule():
    from engine.method.dense import patch_cells_from_labels

    labels = _crowded_labels()
    cells = patch_cells_from_labels(labels, (13, 11), band_rows=17)  # bands that cut cells in two
    assert len(cells) == labels.max()
    assert np.array_equal(np.asarray(cells), _old_patch_masks(labels, (13, 11)))


def test_sparse_masks_index_like_the_array_they_hold():
    from engine.masks import SparseMasks

    dense = _old_patch_masks(_crowded_labels(), (13, 11))
    sparse = SparseMasks.from_dense(dense)
    assert sparse.shape == dense.shape and len(sparse) == len(dense)
    assert np.array_equal(sparse[3], dense[3]) and np.array_equal(sparse[-1], dense[-1])
    for index in (np.array([4, 0, 4]), np.arange(len(dense)) % 3 == 0, slice(2, 9, 3)):
        subset = sparse[index]
        assert isinstance(subset, SparseMasks) and np.array_equal(np.asarray(subset), dense[index])
    assert np.asarray(sparse[np.zeros(0, int)]).shape == (0, 13, 11)
    with pytest.raises(ValueError):
        SparseMasks([0, 2], [0, 13 * 11], (13, 11))  # a cell outside the grid


def test_crop_helpers_give_what_the_full_masks_give():
    from engine.masks import (
        coverage_of_crop,
        coverage_on_grid,
        encode_rle,
        mask_crop,
        resize_crop_nearest,
        resize_nearest,
        rle_from_crop,
    )

    labels = _crowded_labels()
    stack = LabelMasks(labels)
    for index in range(len(stack)):
        full = stack[index]
        box, crop = mask_crop(stack, index)
        assert np.array_equal(full[box], crop) and full.sum() == crop.sum()
        assert rle_from_crop(crop, box, labels.shape) == encode_rle(full) == stack.rle(index)
        cells, weights = coverage_of_crop(crop, box, labels.shape, (13, 11))
        expected = coverage_on_grid(full, (13, 11)).ravel()
        assert np.array_equal(np.flatnonzero(expected), np.sort(cells))
        assert np.array_equal(expected[cells], weights)
        small_box, small = resize_crop_nearest(crop, box, labels.shape, (50, 40))
        shrunk = resize_nearest(full, 50, 40)
        placed = np.zeros((50, 40), bool)
        if small_box is not None:
            placed[small_box] = small
        assert np.array_equal(placed, shrunk)


def test_large_mask_rle_is_made_from_its_box_and_equals_pycocotools(monkeypatch):
    from pycocotools import mask as mask_utils

    from engine import masks as masks_module

    monkeypatch.setattr(masks_module, "LARGE_MASK_PIXELS", 0)  # every mask takes the bounding-box path
    shape = (37, 53)
    cases = [np.zeros(shape, bool), np.ones(shape, bool), disc(shape, 0, 0, 9), disc(shape, 36, 52, 9),
             disc(shape, 18, 26, 30), _crowded_labels(shape) % 2 == 1]
    for mask in cases:
        expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        got = masks_module.encode_rle(mask)
        assert got["counts"] == expected["counts"].decode("ascii") and got["size"] == list(shape)
        assert np.array_equal(masks_module.decode_rle(got), mask)


def test_pooled_embeddings_from_boxes_equal_the_full_frame_ones():
    from engine.method.clustering import pooled_embedding, pooled_embeddings

    a, b = two_touching_discs()
    image, features = planted(a | b, seed=9)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    fast = pooled_embeddings(features, proposals.masks)
    slow = np.stack([pooled_embedding(features, m) for m in proposals.masks])
    assert fast.shape == slow.shape and np.allclose(fast, slow, rtol=1e-5, atol=1e-6)
    plain = pooled_embeddings(features, np.asarray(proposals.masks))  # a plain (n, H, W) array too
    assert np.allclose(plain, fast, rtol=1e-6, atol=1e-7)


def test_dense_patch_masks_are_cell_lists_and_survive_the_proposals_file(tmp_path):
    from engine.masks import SparseMasks
    from engine.state import project as project_module

    a, b = two_touching_discs()
    image, features = planted(a | b, seed=10)
    proposals = propose(image, features, "dinov2", "dense", object_size=60)
    assert isinstance(proposals.patch_masks, SparseMasks)
    labels = proposals.masks.labels
    expected = _old_patch_masks(labels, features.grid_hw)[proposals.masks.ids - 1]  # in the ranked order
    assert np.array_equal(np.asarray(proposals.patch_masks), expected)
    path = tmp_path / "p.npz"
    project_module.save_image_proposals(path, proposals, np.zeros((len(proposals), 4), np.float32), "key")
    loaded = project_module.load_image_proposals(path, image.shape[:2])[0]
    assert isinstance(loaded.patch_masks, SparseMasks)
    assert np.array_equal(np.asarray(loaded.patch_masks), expected)
    assert np.array_equal(np.asarray(loaded.filter([1]).patch_masks), expected[[1]])


def test_proposals_files_of_an_earlier_version_are_named_and_recomputed(tmp_path):
    """A file written before cell lists (``patch_masks`` as one (n, gh, gw) array) is not read: the error names
    the file and says to re-run, and the pipeline's check (image_step.proposals_state) marks it for recomputing."""
    import io
    import json

    from engine.atomic import ProjectFileError
    from engine.masks import encode_rle
    from engine.orchestration.image_step import proposals_state
    from engine.state.project import load_image_proposals

    masks = np.stack([disc((40, 50), 10, 10, 6), disc((40, 50), 25, 30, 8)])
    patch = np.zeros((2, 5, 6), bool)
    patch[0, 1, 1] = patch[1, 3, 3] = patch[1, 3, 4] = True
    buffer = io.BytesIO()
    np.savez_compressed(buffer, config_key=np.array("old"), image_hw=np.array((40, 50)),
                        rles=np.array([json.dumps(encode_rle(m)) for m in masks], dtype=str), patch_masks=patch,
                        scores=np.array([0.9, 0.5], np.float32), sources=np.array(["dense:0", "dense:1"]),
                        embeddings=np.ones((2, 3), np.float32))
    path = tmp_path / "old.npz"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ProjectFileError, match="earlier version of maskdistill.*re-run `maskdistill run`") as error:
        load_image_proposals(path, (40, 50))
    assert str(path) in str(error.value)
    count, problem = proposals_state(path, "old", (40, 50))
    assert count is None and "earlier version" in problem


def _old_combine(proposal_masks, proposal_scores, model_masks, model_scores, probs, max_covered=0.5,
                 model_weight=0.5, model_share=0.5):
    """combine_with_proposals as it was with full (n, H, W) stacks (reference for the known answer)."""
    from engine.method.instances import _at

    claimed = np.zeros(proposal_masks.shape[1:], bool)
    masks, classes, scores = [], [], []
    ranked = sorted(zip(proposal_masks, proposal_scores), key=lambda pair: -float(pair[1]))
    candidates = [(m, float(s), 1.0, False) for m, s in ranked]
    candidates += [(m, float(s), model_weight, True) for m, s in zip(model_masks, model_scores)]
    for mask, score, weight, only_if_new in candidates:
        if only_if_new and (mask & claimed).sum() > max_covered * mask.sum():
            continue
        mask = mask & ~claimed
        small = _at(mask, probs.shape[1:])
        if not small.any():
            continue
        claimed |= mask
        masks.append(mask)
        classes.append(int(np.argmax(probs[1:, small].sum(axis=1))) + 1)
        if not only_if_new and model_share:
            score = score ** (1.0 - model_share) * float(1.0 - probs[0][small].mean()) ** model_share
        scores.append(score * weight)
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.stack(masks)[order], np.asarray(classes)[order], np.asarray(scores, np.float32)[order]


def test_combine_with_proposals_on_label_maps_equals_full_stacks():
    """The label-map result is the earlier full-stack result: the same masks, classes and scores, whatever
    kind of stack comes in."""
    from engine.method.instances import combine_with_proposals, foreground_instances

    labels = _crowded_labels((120, 96), seed=12)
    stack = LabelMasks(labels)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(60, 48)).transpose(2, 0, 1).astype(np.float32)  # coarser grid
    semantic = np.zeros(labels.shape, np.uint16)
    semantic[30:90, 20:80] = 1  # a model region partly under the proposals
    semantic[100:118, 5:30] = 2  # and one the proposals missed
    model_masks, model_classes, model_scores = foreground_instances(semantic, probs, min_area_fraction=0.0,
                                                                    max_area_fraction=1.0)
    scores = rng.uniform(0.1, 1.0, len(stack)).astype(np.float32)
    keep = np.arange(len(stack)) % 4 != 1
    results = [combine_with_proposals(masks, scores[keep], model_stack, model_scores, probs)
               for masks in (stack[keep], np.asarray(stack)[keep])
               for model_stack in (model_masks, np.asarray(model_masks))]
    first_masks, first_classes, first_scores = _old_combine(np.asarray(stack)[keep], scores[keep],
                                                            np.asarray(model_masks), model_scores, probs)
    assert len(first_masks) > 10 and isinstance(results[0][0], LabelMasks)
    assert not np.asarray(first_masks).sum(axis=0).max() > 1  # no overlaps
    for masks, classes, found_scores in results:
        assert np.array_equal(np.asarray(masks), np.asarray(first_masks))
        assert np.array_equal(classes, first_classes) and np.array_equal(found_scores, first_scores)


def test_large_image_measurement_reports_the_child_runs_own_peak(tmp_path):
    """benchmarks/dense.py --large-image, shrunk: the run happens in a child process whose VmHWM is reported."""
    import json

    from benchmarks import dense as dense_benchmark

    result = dense_benchmark.large_image(tmp_path, weights="random", distill=False, size=160, cells=30,
                                         log=lambda *_: None)
    clusters = json.loads((tmp_path / "large_project" / "clusters.json").read_text())
    assert result["size"] == 160 and result["masks"] == len(clusters["masks"]) > 0
    assert 50 < result["peak_rss_mb"] < 3072 and result["seconds"] > 0
