"""The feature cache on disk: compact format (tokens int8 per patch), older files refused, prune, size report."""
import io

import numpy as np
import pytest

from engine.cli import main
from engine.method.features import (
    CACHE_FILE_FORMAT,
    FeatureCache,
    ImageFeatures,
    quantise_rows,
)
from engine.orchestration.pipeline import RunConfig, run
from engine.orchestration.project_commands import feature_cache
from helpers import MECHANICS, make_folder


def stored_format(path):
    with np.load(path) as data:
        return int(data["format"])


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
    assert stored_format(cache.path("ab" + "1" * 38)) == CACHE_FILE_FORMAT
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


def test_a_format_1_file_is_not_read_and_named(tmp_path):
    cache = FeatureCache(tmp_path)
    key = "ef" + "2" * 38
    write_format_1(cache.path(key), full_features())
    features, problem = cache.read(key)  # was: read with every field (keys, tokens, CLS attention)
    assert features is None
    assert problem == f"{cache.path(key)}: feature cache file of an older format (1, full precision), no longer read"


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
    assert "feature cache format 3, this version reads only 2" in cache.read(newer)[1]


def test_prune_keeps_exactly_the_images_readable_features_and_deletes_older_files(tmp_path, capsys):
    project = tmp_path / "p"
    run(make_folder(tmp_path / "images"), project, RunConfig(**{**MECHANICS, "distill": False}))
    cache = FeatureCache(project / "features")
    used = {path.stem for path in cache.files()}
    assert len(used) == 4 and {stored_format(path) for path in cache.files()} == {CACHE_FILE_FORMAT}
    older = sorted(used)[0]
    write_format_1(cache.path(older), full_features())  # one image's features from an older version
    cache.put("ab" + "0" * 38, full_features())  # an image no longer in the folder
    write_format_1(cache.path("cd" + "0" * 38), full_features())  # an older file no image uses

    before = feature_cache(project)
    assert (before["files"], before["images"]) == (6, 4)
    after = feature_cache(project, prune=True)
    assert {path.stem for path in cache.files()} == used - {older}  # was: the older file rewritten compactly
    assert (after["pruned"]["files"], after["pruned"]["unreadable"]) == (3, 1)
    assert after["pruned"]["bytes"] == before["bytes"] - after["bytes"] > 0
    assert after["used_bytes"] == after["bytes"] and after["mb_per_image"] == pytest.approx(after["bytes"] / 4e6)

    write_format_1(cache.path(older), full_features())
    assert main(["cache", "--project", str(project), "--prune"]) == 0
    out = capsys.readouterr().out
    assert "pruned 1 files (1 unreadable, damaged or of an older format: recomputed when next needed)" in out
    assert not cache.path(older).exists()


def test_a_run_recomputes_a_format_1_file_and_says_so(tmp_path, capsys):
    folder, project = make_folder(tmp_path / "images"), tmp_path / "p"
    run(folder, project, RunConfig(**{**MECHANICS, "distill": False}))
    older = FeatureCache(project / "features").files()[0]
    write_format_1(older, full_features())
    argv = ["run", folder, "--project", project, "--weights", "random", "--input-size", "56", "-k", "2",
            "--batch-size", "2", "--device", "cpu", "--no-distill", "-q"]
    assert main([str(arg) for arg in argv]) == 0
    captured = capsys.readouterr()
    message = f"{older}: feature cache file of an older format (1, full precision), no longer read"
    assert message in captured.out + captured.err and "recomputed" in captured.out + captured.err
    assert stored_format(older) == CACHE_FILE_FORMAT


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
