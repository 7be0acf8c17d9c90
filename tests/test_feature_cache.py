"""The feature cache on disk: compact format (tokens int8 per patch), older files, prune, size report."""
import io

import numpy as np
import pytest

from engine.cli import main
from engine.method.features import (
    CACHE_FILE_FORMAT,
    FeatureCache,
    ImageFeatures,
    file_format,
    quantise_rows,
)
from engine.orchestration.pipeline import RunConfig, run
from engine.orchestration.project_commands import feature_cache
from helpers import MECHANICS, make_folder


def full_features(n=12, dim=16, heads=2, seed=0) -> ImageFeatures:
    """Features as the extractor makes them: every field set."""
    rng = np.random.default_rng(seed)
    tokens = rng.normal(0.5, 2.0, (n, dim))
    tokens[:, 3] *= 8  # an outlier channel, as in DINOv2's tokens
    attention = rng.random((heads, n))
    return ImageFeatures(grid_hw=(3, n // 3), input_hw=(42, n // 3 * 14),
                         keys=rng.normal(size=(n, dim)).astype(np.float16),
                         tokens=tokens.astype(np.float16), cls_token=rng.normal(size=dim).astype(np.float32),
                         cls_attention=(attention / attention.sum(1, keepdims=True)).astype(np.float32))


def write_format_1(path, features: ImageFeatures) -> None:
    """A cache file as written before the format was recorded: keys and tokens in float16, no "format"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, grid_hw=np.asarray(features.grid_hw), input_hw=np.asarray(features.input_hw),
             keys=features.keys, tokens=features.tokens, cls_token=features.cls_token,
             cls_attention=features.cls_attention)
    path.write_bytes(buffer.getvalue())


def test_quantisation_known_answer():
    tokens = np.array([[1.0, -0.5, 0.25, 0.0], [-1.0, 0.5, -0.25, 0.0]], np.float16)  # column means 0
    quantised, scale, mean = quantise_rows(tokens)
    np.testing.assert_array_equal(mean, 0)
    np.testing.assert_array_equal(scale, np.float16(1 / 127))  # largest magnitude -> 127
    np.testing.assert_array_equal(quantised, [[127, -64, 32, 0], [-127, 64, -32, 0]])  # -63.5, 31.75 steps rounded


def test_compact_round_trip_keeps_tokens_within_half_a_step(tmp_path):
    features = full_features()
    cache = FeatureCache(tmp_path)
    cache.put("ab" + "1" * 38, features)
    back = cache.get("ab" + "1" * 38)
    assert file_format(cache.path("ab" + "1" * 38)) == CACHE_FILE_FORMAT
    assert back.grid_hw == features.grid_hw and back.input_hw == features.input_hw
    assert back.keys is None and back.cls_attention is None and not back.has_proposal_inputs
    assert back.tokens.dtype == np.float16 and back.tokens.shape == features.tokens.shape
    original = features.tokens.astype(np.float64)
    half_step = np.abs(original - original.mean(0)).max(axis=1, keepdims=True) / 254
    float16_rounding = np.abs(original) * 2.0 ** -11 + 1e-6
    error = np.abs(back.tokens.astype(np.float64) - original)
    assert (error <= half_step * 1.01 + float16_rounding).all()
    assert error.max() > 0  # lossy: the bound above is what is kept
    np.testing.assert_allclose(back.cls_token, features.cls_token, rtol=2.0 ** -10)


def test_constant_tokens_come_back_exactly(tmp_path):
    features = full_features()
    features.tokens = np.full_like(features.tokens, 0.75)  # every centred row zero: no scale to divide by
    cache = FeatureCache(tmp_path)
    cache.put("cd" + "0" * 38, features)
    np.testing.assert_array_equal(cache.get("cd" + "0" * 38).tokens, features.tokens)


def test_older_full_precision_file_is_read_with_every_field(tmp_path):
    features = full_features()
    cache = FeatureCache(tmp_path)
    key = "ef" + "2" * 38
    write_format_1(cache.path(key), features)
    back = cache.get(key)
    assert back.has_proposal_inputs
    np.testing.assert_array_equal(back.keys, features.keys)
    np.testing.assert_array_equal(back.tokens, features.tokens)  # exact: no quantisation on reading
    np.testing.assert_array_equal(back.cls_attention, features.cls_attention)
    assert cache.older_files() == [cache.path(key)]


def test_newer_or_torn_files_are_recomputed_never_misread(tmp_path):
    cache = FeatureCache(tmp_path)
    newer, torn = "12" + "3" * 38, "34" + "5" * 38
    cache.put(newer, full_features())
    with np.load(cache.path(newer)) as data:
        fields = {name: data[name] for name in data.files}
    buffer = io.BytesIO()
    np.savez(buffer, **{**fields, "format": np.asarray(CACHE_FILE_FORMAT + 1)})
    cache.path(newer).write_bytes(buffer.getvalue())
    cache.put(torn, full_features())
    cache.path(torn).write_bytes(cache.path(torn).read_bytes()[:200])
    assert cache.get(newer) is None and cache.get(torn) is None
    assert cache.older_files() == []  # neither is rewritten by a prune


def test_prune_keeps_exactly_the_images_features_and_compacts_older_files(tmp_path):
    project = tmp_path / "p"
    run(make_folder(tmp_path / "images"), project, RunConfig(**{**MECHANICS, "distill": False}))
    cache = FeatureCache(project / "features")
    used = {path.stem for path in cache.files()}
    assert len(used) == 4 and cache.older_files() == []  # a run writes the compact format
    older = sorted(used)[0]
    write_format_1(cache.path(older), full_features())  # one image's features from an older version
    cache.put("ab" + "0" * 38, full_features())  # an image no longer in the folder
    write_format_1(cache.path("cd" + "0" * 38), full_features())  # an older file no image uses

    before = feature_cache(project)
    assert (before["files"], before["images"], before["older_files"]) == (6, 4, 2)
    after = feature_cache(project, prune=True)
    assert {path.stem for path in cache.files()} == used
    assert after["pruned"]["files"] == 2 and after["pruned"]["compacted"] == 1
    assert file_format(cache.path(older)) == CACHE_FILE_FORMAT and after["older_files"] == 0
    assert after["pruned"]["bytes"] == before["bytes"] - after["bytes"] > 0
    assert after["used_bytes"] == after["bytes"] and after["mb_per_image"] == pytest.approx(after["bytes"] / 4e6)


def test_new_proposals_on_compact_features_run_the_backbone_again(tmp_path):
    folder, project = make_folder(tmp_path / "images"), tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    again = run(folder, project, RunConfig(**{**MECHANICS, "distill": False, "max_masks": 2}))
    assert "backbone" in again.timings  # the cache has no keys for the new proposals: a fresh pass
    same = run(folder, project, RunConfig(**{**MECHANICS, "distill": False, "max_masks": 2}))
    assert "backbone" not in same.timings


def test_cache_and_info_report_megabytes_per_image(tmp_path, capsys):
    project = tmp_path / "p"
    run(make_folder(tmp_path / "images"), project, RunConfig(**{**MECHANICS, "distill": False}))
    summary = feature_cache(project)
    line = f"4 images use {summary['used_bytes'] / 1e6:.1f} MB ({summary['mb_per_image']:.2f} MB per image)"
    assert main(["cache", "--project", str(project)]) == 0
    assert line in capsys.readouterr().out
    assert main(["info", "--project", str(project)]) == 0
    assert line in capsys.readouterr().out
