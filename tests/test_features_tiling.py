"""Object scale and tiled feature extraction (engine/tiling.py, FeatureExtractor with a scale).

Known answer: with a local feature function (each patch's feature depends only on its own pixels) the map
stitched from overlapping tiles must equal the untiled map exactly, for any tile size and overlap.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.method import tiling
from engine.method.features import FeatureExtractor

PATCH = 8


def local_forward(batch: np.ndarray):
    """A stub backbone whose features are local: per-patch mean colour (keys) and max (tokens)."""
    b, h, w, _ = batch.shape
    patches = batch.reshape(b, h // PATCH, PATCH, w // PATCH, PATCH, 3).astype(np.float32)
    mean = patches.mean(axis=(2, 4)).reshape(b, -1, 3)
    peak = patches.max(axis=(2, 4)).reshape(b, -1, 3)
    attention = np.ones((b, 2, mean.shape[1]), np.float32) / mean.shape[1]
    return mean, peak, attention


def random_pixels(height, width, seed=0):
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ scale


def test_scale_for_object_size():
    assert tiling.scale_for_object_size(16, 16) == pytest.approx(3.0)  # 16 px object -> 48 px = 3 patches
    assert tiling.scale_for_object_size(96, 16) == pytest.approx(0.5)  # big objects: the image shrinks
    assert tiling.scale_for_object_size(96, 16, min_scale=1.0) == 1.0
    assert tiling.scale_for_object_size(2, 16) == tiling.DEFAULT_MAX_SCALE  # clipped
    assert tiling.scale_for_object_size(20, 14, patches_across=4) == pytest.approx(2.8)
    for size in (20, 35, 60):  # the promise: an object spans the asked number of patches (unclipped range)
        scale = tiling.scale_for_object_size(size, 16)
        assert size * scale / 16 == pytest.approx(3.0)
    for bad in (0, -5, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            tiling.scale_for_object_size(bad, 16)


def test_scaled_input_hw():
    assert tiling.scaled_input_hw(1000, 1000, 0.5, 16) == (496, 496)
    assert tiling.scaled_input_hw(100, 60, 2.0, 14) == (196, 126)
    assert tiling.scaled_input_hw(10, 10, 0.1, 16) == (32, 32)  # at least 2 patches


@pytest.mark.parametrize("length, tile, overlap", [(7, 10, 2), (10, 10, 3), (11, 10, 3), (31, 14, 3),
                                                    (100, 7, 0), (100, 7, 6), (25, 4, 1)])
def test_axis_tiles_cover_once_inside_with_context(length, tile, overlap):
    layout = tiling.axis_tiles(length, tile, overlap)
    owner = np.zeros(length, int)
    for start, keep_start, keep_stop in layout:
        size = min(tile, length)
        assert 0 <= start and start + size <= length  # every tile the same shape, inside the grid
        assert start <= keep_start < keep_stop <= start + size  # a patch comes from a tile that holds it
        if keep_start > 0:  # inner borders: at least overlap // 2 patches of context
            assert keep_start - start >= overlap // 2
        if keep_stop < length:
            assert start + size - keep_stop >= overlap // 2
        owner[keep_start:keep_stop] += 1
    assert (owner == 1).all()


def test_axis_tiles_rejects_bad_sizes():
    for tile, overlap in ((0, 0), (4, 4), (4, -1)):
        with pytest.raises(ValueError):
            tiling.axis_tiles(10, tile, overlap)


# --------------------------------------------------------------------------- known-answer stitching


@pytest.mark.parametrize("shape", [(80, 120), (200, 72), (64, 64)])
@pytest.mark.parametrize("tile, overlap", [(4, 1), (5, 2), (3, 0), (6, 5)])
def test_stitched_local_features_equal_untiled(shape, tile, overlap):
    pixels = random_pixels(*shape)
    whole = tiling.extract_tiled(pixels, local_forward, PATCH, tile=10_000, overlap=0)
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return local_forward(batch)

    tiled = tiling.extract_tiled(pixels, counting, PATCH, tile=tile, overlap=overlap, batch_size=3)
    assert max(calls) <= 3 and len(calls) > 1  # several batches, never more than batch_size tiles at once
    np.testing.assert_array_equal(tiled[0], whole[0])
    np.testing.assert_array_equal(tiled[1], whole[1])
    # and both equal the direct per-patch computation
    direct = local_forward(pixels[None])[0][0].astype(np.float16)
    np.testing.assert_array_equal(whole[0], direct)
    assert tiled[2].shape == (2, (shape[0] // PATCH) * (shape[1] // PATCH))
    np.testing.assert_allclose(tiled[2].sum(axis=1), 1.0, rtol=1e-5)


def test_extract_tiled_rejects_unaligned_image():
    with pytest.raises(ValueError, match="multiple of the patch"):
        tiling.extract_tiled(random_pixels(30, 32), local_forward, PATCH, tile=2, overlap=0)


def test_extractor_tiled_equals_untiled_for_a_local_network(monkeypatch):
    """Through FeatureExtractor: same resize, same grid, same stitched values whatever the tiling."""
    image = random_pixels(150, 230, seed=3)

    def make(tile_size, overlap):
        extractor = FeatureExtractor("dino_vits8", weights="random", device="cpu", input_size=32, scale=1.7,
                                     tile_size=tile_size, tile_overlap=overlap, batch_size=2)
        monkeypatch.setattr(extractor, "_forward_pixels",
                            lambda batch: local_forward(batch) + (np.zeros((len(batch), 384), np.float32),))
        return extractor

    untiled = make(10_000, 0).extract([image])[0]
    for tile_size, overlap in ((64, 16), (80, 8), (40, 32)):
        extractor = make(tile_size, overlap)
        assert extractor.cache_key("p") != make(10_000, 0).cache_key("p")
        tiled = extractor.extract_scaled(image)
        assert tiled.grid_hw == untiled.grid_hw == (32, 49) and tiled.input_hw == (256, 392)
        np.testing.assert_array_equal(tiled.keys, untiled.keys)
        np.testing.assert_array_equal(tiled.tokens, untiled.tokens)


def test_cache_key_names_every_setting():
    def key(**kw):
        settings = dict(weights="random", device="cpu", input_size=32)
        settings.update(kw)
        return FeatureExtractor("dino_vits16", **settings).cache_key("pixels")

    keys = {key(), key(scale=2.0), key(scale=2.5), key(scale=2.0, tile_size=224), key(scale=2.0, tile_overlap=0),
            key(input_size=48), key(scale=2.0, input_size=48)}
    assert len(keys) == 7


# ---------------------------------------------------------------------------- a real random network


def test_real_vit_s_tiled_on_a_large_image():
    """ViT-S/16, random weights, 1,000 x 1,000 image at scale 0.5: 496 px in 224-px tiles -> 31 x 31 grid."""
    image = random_pixels(1000, 1000, seed=5)
    extractor = FeatureExtractor("dino_vits16", weights="random", device="cpu", input_size=64, scale=0.5,
                                 tile_size=224, batch_size=4)
    done = []
    features = extractor.extract_scaled(image, progress=lambda d, t: done.append((d, t)))
    assert done[-1] == (9, 9)  # 3 x 3 tiles of 14 patches, overlap 3
    assert features.input_hw == (496, 496) and features.grid_hw == (31, 31)
    assert features.keys.shape == features.tokens.shape == (31 * 31, 384)
    assert features.cls_attention.shape == (6, 31 * 31)
    for array in (features.keys, features.tokens, features.cls_attention):
        assert np.isfinite(np.asarray(array, np.float32)).all()
    np.testing.assert_allclose(features.cls_attention.sum(axis=1), 1.0, rtol=1e-4)
    # the CLS token is the downscaled whole-image pass of the untiled extractor
    plain = FeatureExtractor("dino_vits16", weights="random", device="cpu", input_size=64).extract([image])[0]
    np.testing.assert_allclose(features.cls_token, plain.cls_token, atol=1e-5)


def test_dinov3_tiled_matches_grid():
    image = random_pixels(300, 200, seed=6)
    extractor = FeatureExtractor("dinov3_vits16", weights="random", device="cpu", input_size=64, scale=1.0,
                                 tile_size=96, tile_overlap=32)
    features = extractor.extract([image])[0]
    assert features.grid_hw == (19, 12) and features.keys.shape == (19 * 12, 384)
    assert np.isfinite(features.keys.astype(np.float32)).all()
