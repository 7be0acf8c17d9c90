"""Microscopy input (issue 10, item 3): channel choice, percentile normalisation, planes of stacks.

Every file is generated with tifffile in tmp_path; every test has a known answer.
"""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from engine.io import images
from engine.io.images import (
    DEFAULT_PERCENTILES,
    ImageError,
    ImageOptions,
    contrast_limits,
    discover_images,
    image_id_for,
    image_info,
    load_image,
    read_header,
    stack_planes,
)


def _disc(shape=(96, 128), centre=(40, 60), radius=12):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _nucleus_image(seed=0, shape=(96, 128), centre=(40, 60), hot=True):
    """16-bit fluorescence-like plane: background ~100, one disc ~400, and one saturated hot pixel."""
    rng = np.random.default_rng(seed)
    img = 100 + rng.normal(0, 3, shape)
    img[_disc(shape, centre)] += 300
    if hot:
        img[5, 5] = 65535
    return np.clip(img, 0, 65535).astype(np.uint16)


def _stretch(plane, percentiles=DEFAULT_PERCENTILES):
    """The documented normalisation, written out: percentiles of the plane -> 0..255."""
    lo, hi = np.percentile(plane.astype(np.float64), percentiles)
    return np.rint(np.clip((plane.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255))


def _grey_of(out):
    assert out.shape[2] == 3 and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    return out[..., 0]


# ------------------------------------------------------------------------------ normalisation


def test_16bit_hot_pixel_does_not_flatten_the_object(tmp_path):
    raw = _nucleus_image()
    tifffile.imwrite(tmp_path / "nuc.tif", raw)
    disc = _disc()
    minmax = (raw.astype(float) - raw.min()) / (raw.max() - raw.min()) * 255
    assert minmax[disc].mean() - minmax[~disc].mean() < 2  # what a min-max would show: nothing
    for kwargs in ({}, {"channels": (0,)}, {"channels": 0}, {"options": ImageOptions(channels=(0,))}):
        grey = _grey_of(load_image(tmp_path / "nuc.tif", **kwargs))
        assert grey[disc].mean() > 200 and grey[~disc].mean() < 40, kwargs
        assert grey[5, 5] == 255  # the hot pixel saturates instead of setting the scale
        np.testing.assert_allclose(grey, _stretch(raw), atol=1)


def test_percentiles_option(tmp_path):
    raw = _nucleus_image()
    tifffile.imwrite(tmp_path / "nuc.tif", raw)
    grey = _grey_of(load_image(tmp_path / "nuc.tif", percentiles=(0, 100)))  # a plain min-max, on request
    np.testing.assert_allclose(grey, _stretch(raw, (0, 100)), atol=1)
    assert grey[_disc()].mean() < 5
    with pytest.raises(ValueError, match="percentiles"):
        load_image(tmp_path / "nuc.tif", percentiles=(99, 1))


def test_8bit_single_channel_stretched_only_when_channels_are_chosen(tmp_path):
    dim = (_nucleus_image(hot=False) // 8).astype(np.uint8)  # 8-bit, values ~12..50
    tifffile.imwrite(tmp_path / "dim8.tif", dim)
    np.testing.assert_array_equal(_grey_of(load_image(tmp_path / "dim8.tif")), dim)  # as stored: untouched
    np.testing.assert_allclose(_grey_of(load_image(tmp_path / "dim8.tif", channels=(0,))), _stretch(dim), atol=1)


def test_defaults_keep_an_ordinary_photo_exact(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    tifffile.imwrite(tmp_path / "photo.tif", rgb)
    for name in ("photo.png", "photo.tif"):
        for kwargs in ({}, {"percentiles": DEFAULT_PERCENTILES}, {"options": ImageOptions()},
                       {"options": ImageOptions().to_dict()}, {"plane": 0}):
            np.testing.assert_array_equal(load_image(tmp_path / name, **kwargs), rgb)


# ----------------------------------------------------------------------------------- channels


def _three_channels(seed=0):
    """(3, Y, X) uint16: nuclei in channel 2 at different places than the objects of channels 0 and 1."""
    return np.stack([_nucleus_image(seed, centre=(20, 30)), _nucleus_image(seed + 1, centre=(70, 100)) * 3,
                     _nucleus_image(seed + 2, centre=(50, 64))])


@pytest.mark.parametrize("kw", [
    {"photometric": "minisblack", "metadata": {"axes": "CYX"}},  # tifffile's C axis (separate pages)
    {"imagej": True, "metadata": {"axes": "CYX"}},  # ImageJ / Fiji composite
    {"photometric": "minisblack", "planarconfig": "separate"},  # TIFF samples, one page
])
def test_three_channel_16bit_channel_2_gives_grey(tmp_path, kw):
    chans = _three_channels()
    tifffile.imwrite(tmp_path / "c3.tif", chans, **kw)
    assert image_info(tmp_path / "c3.tif").channels == 3
    grey = _grey_of(load_image(tmp_path / "c3.tif", channels=(2,)))
    np.testing.assert_allclose(grey, _stretch(chans[2]), atol=1)
    assert grey[_disc(centre=(50, 64))].mean() > 200 and grey[_disc(centre=(20, 30))].mean() < 40


def test_two_channels_fill_red_and_green(tmp_path):
    chans = _three_channels()
    tifffile.imwrite(tmp_path / "c3.tif", chans, photometric="minisblack", metadata={"axes": "CYX"})
    out = load_image(tmp_path / "c3.tif", channels=(1, 0))
    np.testing.assert_allclose(out[..., 0], _stretch(chans[1]), atol=1)  # each channel stretched on its own
    np.testing.assert_allclose(out[..., 1], _stretch(chans[0]), atol=1)
    assert not out[..., 2].any()
    three = load_image(tmp_path / "c3.tif", channels=(2, 1, 0))
    np.testing.assert_allclose(three[..., 0], _stretch(chans[2]), atol=1)


def test_two_channel_file_needs_a_channel_choice(tmp_path):
    tifffile.imwrite(tmp_path / "c2.tif", _three_channels()[:2], photometric="minisblack", metadata={"axes": "CYX"})
    disc = discover_images(tmp_path)
    assert disc.images == [] and "--channels" in disc.skipped[0].reason and "2 channels" in disc.skipped[0].reason
    with pytest.raises(ImageError, match="2 channels"):
        load_image(tmp_path / "c2.tif")
    (rec,) = discover_images(tmp_path, channels=(0, 1)).images
    assert (rec.width, rec.height, rec.plane) == (128, 96, None)
    assert load_image(rec.path, channels=(0, 1)).shape == (96, 128, 3)


def test_bad_channel_index_names_the_file_and_the_channel_count(tmp_path):
    tifffile.imwrite(tmp_path / "c3.tif", _three_channels(), photometric="minisblack", metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "gray.tif", _nucleus_image())
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    for name, n in (("c3.tif", 3), ("gray.tif", 1), ("rgb.png", 3)):
        with pytest.raises(ImageError) as info:
            load_image(tmp_path / name, channels=(0, 3))
        msg = str(info.value)
        assert str((tmp_path / name).absolute()) in msg and f"has {n} channel" in msg and "channel 3" in msg
        with pytest.raises(ImageError, match=f"has {n} channel"):
            read_header(tmp_path / name, channels=(3,))
    reasons = {s.relative_path: s.reason for s in discover_images(tmp_path, channels=(3,)).skipped}
    assert set(reasons) == {"c3.tif", "gray.tif", "rgb.png"} and "has 3 channels (0-2)" in reasons["c3.tif"]


def test_pages_that_may_be_channels_get_a_hint(tmp_path):
    tifffile.imwrite(tmp_path / "q.tif", _three_channels(), photometric="minisblack")  # unnamed axis: planes
    assert image_info(tmp_path / "q.tif").planes == 3
    with pytest.raises(ImageError, match="planes may be channels"):
        load_image(tmp_path / "q.tif", channels=(2,), plane=0)


@pytest.mark.parametrize("channels", [(), (0, 1, 2, 3), (-1,), ("a",), (1.5,), (True,)])
def test_invalid_channel_options(tmp_path, channels):
    tifffile.imwrite(tmp_path / "g.tif", _nucleus_image())
    with pytest.raises(ValueError, match="channels must be"):
        load_image(tmp_path / "g.tif", channels=channels)
    with pytest.raises(ValueError, match="channels must be"):
        ImageOptions(channels=channels)


def test_image_options_round_trip_and_exclusive():
    opts = ImageOptions(channels=[1, 0], percentiles=[2, 99], planes=1)
    assert opts == ImageOptions(channels=(1, 0), percentiles=(2.0, 99.0), planes=True)
    assert ImageOptions.from_dict(opts.to_dict()) == opts and ImageOptions.from_dict({}) == ImageOptions()
    hash(opts)  # frozen and hashable: usable in a config
    with pytest.raises(TypeError):
        load_image("x.tif", channels=(0,), options=opts)


def test_float_multichannel(tmp_path):
    chans = _three_channels().astype(np.float32) / 7.0
    chans[0, 0, 0] = np.nan
    tifffile.imwrite(tmp_path / "f.tif", chans, photometric="minisblack", metadata={"axes": "CYX"})
    grey = _grey_of(load_image(tmp_path / "f.tif", channels=(1,)))
    assert grey[_disc(centre=(70, 100))].mean() > 200 and grey[~_disc(centre=(70, 100))].mean() < 40


# ------------------------------------------------------------------------------------- planes


def _zstack(z=5, dtype=np.uint16):
    return np.stack([_nucleus_image(k, centre=(20 + 10 * k, 30 + 15 * k)) for k in range(z)]).astype(dtype)


def test_zstack_plane_k_equals_plane_k(tmp_path):
    stack8 = np.random.default_rng(0).integers(0, 256, (5, 32, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "z8.tif", stack8, photometric="minisblack")
    stack16 = _zstack()
    tifffile.imwrite(tmp_path / "z16.tif", stack16, imagej=True, metadata={"axes": "ZYX"})
    for k in range(5):
        np.testing.assert_array_equal(_grey_of(load_image(tmp_path / "z8.tif", plane=k)), stack8[k])  # exact
        tifffile.imwrite(tmp_path / "one.tif", stack16[k])
        np.testing.assert_array_equal(load_image(tmp_path / "z16.tif", plane=k), load_image(tmp_path / "one.tif"))
    assert stack_planes(tmp_path / "z8.tif") == 5 and stack_planes(tmp_path / "one.tif") == 1
    with pytest.raises(ImageError, match="plane 5 requested.*5 planes"):
        load_image(tmp_path / "z8.tif", plane=5)
    with pytest.raises(ImageError, match="--planes"):
        load_image(tmp_path / "z8.tif")
    with pytest.raises(ImageError, match="plane 1 requested"):
        load_image(tmp_path / "one.tif", plane=1)


@pytest.mark.parametrize("axes", ["ZCYX", "CZYX", "TZCYX"])
def test_hyperstack_plane_and_channel(tmp_path, axes):
    z, c = 4, 3
    zc = np.stack([_three_channels(seed=10 * k) for k in range(z)])  # (Z, C, Y, X)
    data = {"ZCYX": zc, "CZYX": zc.transpose(1, 0, 2, 3), "TZCYX": np.stack([zc, zc[::-1]])}[axes]
    kw = {"imagej": True} if axes != "CZYX" else {"photometric": "minisblack"}
    tifffile.imwrite(tmp_path / "h.tif", data, metadata={"axes": axes}, **kw)
    info = image_info(tmp_path / "h.tif")
    assert (info.channels, info.planes) == (c, z * (2 if axes == "TZCYX" else 1))
    for k in range(info.planes):
        expected = zc[k] if k < z else zc[::-1][k - z]
        out = load_image(tmp_path / "h.tif", plane=k, channels=(1, 2, 0))
        for rgb, ch in enumerate((1, 2, 0)):
            np.testing.assert_allclose(out[..., rgb], _stretch(expected[ch]), atol=1)


def test_plane_reads_decode_only_that_plane(tmp_path, monkeypatch):
    stack = _zstack()
    tifffile.imwrite(tmp_path / "z.tif", stack, photometric="minisblack")
    expected = load_image(tmp_path / "z.tif", plane=3)

    def whole_series(*args, **kwargs):
        raise AssertionError("decoded the whole stack")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", whole_series)
    np.testing.assert_array_equal(load_image(tmp_path / "z.tif", plane=3), expected)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", whole_series)
    assert stack_planes(tmp_path / "z.tif") == 5  # header only


def test_plane_fallback_when_pages_are_not_addressable(tmp_path, monkeypatch):
    stack = _zstack()
    tifffile.imwrite(tmp_path / "z.tif", stack, photometric="minisblack")
    expected = [load_image(tmp_path / "z.tif", plane=k) for k in range(5)]
    monkeypatch.setattr(images, "_page_index", lambda series: None)
    for k in range(5):
        np.testing.assert_array_equal(load_image(tmp_path / "z.tif", plane=k), expected[k])


def test_rgb_stack_and_appended_and_pillow_pages(tmp_path):
    rgbs = np.random.default_rng(2).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "zrgb.tif", rgbs, photometric="rgb")
    for k in range(3):
        tifffile.imwrite(tmp_path / "appended.tif", rgbs[k, ..., 0], append=True)
    Image.fromarray(rgbs[0, ..., 1]).save(tmp_path / "pil.tif", save_all=True,
                                          append_images=[Image.fromarray(rgbs[k, ..., 1]) for k in (1, 2)])
    gif = [Image.fromarray(rgbs[k]).convert("P", palette=Image.ADAPTIVE) for k in range(3)]
    gif[0].save(tmp_path / "anim.webp", save_all=True, append_images=gif[1:], lossless=True)
    for k in range(3):
        np.testing.assert_array_equal(load_image(tmp_path / "zrgb.tif", plane=k), rgbs[k])
        np.testing.assert_array_equal(_grey_of(load_image(tmp_path / "appended.tif", plane=k)), rgbs[k, ..., 0])
        np.testing.assert_array_equal(_grey_of(load_image(tmp_path / "pil.tif", plane=k)), rgbs[k, ..., 1])
        assert load_image(tmp_path / "anim.webp", plane=k).shape == (20, 24, 3)
    assert [stack_planes(tmp_path / n) for n in ("zrgb.tif", "appended.tif", "pil.tif", "anim.webp")] == [3] * 4


# ----------------------------------------------------------------------------------- discovery


def test_discovery_lists_planes_with_stable_ids(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", _zstack(), imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "flat.tif", _nucleus_image())
    default = discover_images(tmp_path)
    assert [r.relative_path for r in default.images] == ["flat.tif"]
    (skip,) = default.skipped
    assert skip.relative_path == "z.tif" and "--planes" in skip.reason and "5 pages" in skip.reason

    disc = discover_images(tmp_path, planes=True)
    assert disc.skipped == []
    stack = [r for r in disc.images if r.relative_path == "z.tif"]
    assert [r.plane for r in stack] == [0, 1, 2, 3, 4]
    assert all(r.path == tmp_path.resolve() / "z.tif" and (r.width, r.height) == (128, 96) for r in stack)
    ids = [r.image_id for r in stack]
    assert len(set(ids)) == 5 and ids == [image_id_for("z.tif", k) for k in range(5)]
    assert image_id_for("z.tif") not in ids and image_id_for("z.tif", 0) != image_id_for("z.tif", 1)
    (flat,) = [r for r in disc.images if r.relative_path == "flat.tif"]
    assert flat.plane is None and flat == default.images[0]  # 2-D images keep their id with --planes
    assert discover_images(tmp_path, planes=True).images == disc.images
    assert discover_images(tmp_path, options=ImageOptions(planes=True)).images == disc.images
    for rec in stack:
        grey = _grey_of(load_image(rec.path, plane=rec.plane))
        assert grey.shape == (rec.height, rec.width)


# -------------------------------------------------------------------------------- display range


def test_contrast_limits_ignore_the_hot_pixel():
    raw = _nucleus_image()
    lo, hi = contrast_limits(raw)
    assert 90 < lo < 110 and 350 < hi < 450  # not 65535
    lo3, hi3 = contrast_limits(np.stack([raw, raw, raw]))  # a stack of planes
    assert abs(lo3 - lo) < 5 and abs(hi3 - hi) < 5
    assert contrast_limits(np.full((4, 4), 7, np.uint16)) == (7.0, 8.0)


def test_reader_sets_contrast_limits(monkeypatch):
    from engine import api
    from maskdistill_napari import _reader

    monkeypatch.setattr(api, "contrast_limits", contrast_limits, raising=False)  # until the facade lists it
    assert _reader._limits(np.zeros((4, 4, 3), np.uint8), True) == [0, 255]
    lo, hi = _reader._limits(_nucleus_image(), False)
    assert 90 < lo < 110 and 350 < hi < 450


# -- through the whole pipeline (engine.orchestration.pipeline.run): options reach every step -----------------------
def test_run_reads_every_plane_of_a_stack_with_the_chosen_channel(tmp_path):
    import json

    from engine.atomic import read_json
    from engine.orchestration.pipeline import RunConfig, run

    rng = np.random.default_rng(0)
    folder = tmp_path / "stacks"
    folder.mkdir()
    stack = np.zeros((3, 2, 80, 96), np.uint16)  # Z, C, Y, X: nuclei in channel 1, noise in channel 0
    stack[:, 0] = rng.integers(0, 60000, size=(3, 80, 96))
    for z in range(3):
        stack[z, 1, 20 + 5 * z:50 + 5 * z, 30:70] = 40000 + 1000 * z
    tifffile.imwrite(folder / "cells.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    project = tmp_path / "p"
    options = ImageOptions(channels=(1,), planes=True)
    result = run(folder, project, RunConfig(weights="random", input_size=56, num_classes=1, batch_size=2,
                                            proposals="seed", image_options=options, object_size=40))
    entries = read_json(project / "images.json")
    assert result.images == 3 and [e.get("plane") for e in entries] == [0, 1, 2]
    assert len({e["image_id"] for e in entries}) == 3 and len({e["coco_id"] for e in entries}) == 3
    stored = read_json(project / "project.json")
    assert stored["config"]["image_options"]["channels"] == [1] and "scale=" in stored["features"]
    coco = json.loads((project / "annotations.json").read_text())
    assert sorted(im["plane"] for im in coco["images"]) == [0, 1, 2]
