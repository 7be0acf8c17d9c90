"""Tests for engine.io.images: every file is generated in tmp_path from skimage's bundled photos."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import data

from engine.io import images
from engine.io.images import (
    Discovery,
    ImageError,
    ImageRecord,
    discover_images,
    load_image,
    pixel_hash,
)


@pytest.fixture(scope="module")
def chelsea():
    return data.chelsea()  # (300, 451, 3) uint8


@pytest.fixture(scope="module")
def camera():
    return data.camera()  # (512, 512) uint8


def _save(arr, path, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


def _corr(a, b):
    return np.corrcoef(np.asarray(a, float).ravel(), np.asarray(b, float).ravel())[0, 1]


def _skip_reason(disc: Discovery, rel: str) -> str:
    reasons = {s.relative_path: s.reason for s in disc.skipped}
    assert rel in reasons, f"{rel} not skipped; skipped={disc.skipped}, images={[r.relative_path for r in disc.images]}"
    assert rel not in [r.relative_path for r in disc.images]
    return reasons[rel]


# ------------------------------------------------------------------------------------- good images


@pytest.mark.parametrize("name, kw", [
    ("a.png", {}), ("a.bmp", {}), ("a.webp", {"lossless": True}), ("a.tif", {}),
    ("a.tiff", {"compression": "tiff_lzw"}),
])
def test_lossless_rgb_exact(tmp_path, chelsea, name, kw):
    out = load_image(_save(chelsea, tmp_path / name, **kw))
    assert out.dtype == np.uint8 and out.shape == chelsea.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, chelsea)


def test_tifffile_written_rgb_exact(tmp_path, chelsea):
    tifffile.imwrite(tmp_path / "a.tif", chelsea)
    np.testing.assert_array_equal(load_image(tmp_path / "a.tif"), chelsea)


def test_jpeg_close(tmp_path, chelsea):
    out = load_image(_save(chelsea, tmp_path / "a.jpg", quality=95))
    assert out.shape == chelsea.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - chelsea).mean() < 4


def test_exif_orientation_rotates_and_record_matches(tmp_path, chelsea):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _save(chelsea, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape == (451, 300, 3)
    expected = np.rot90(chelsea, k=-1)  # clockwise
    assert np.abs(out.astype(int) - expected).mean() < 4
    assert np.abs(out.astype(int) - np.rot90(chelsea, k=1)).mean() > 20  # wrong direction would fail
    (rec,) = discover_images(tmp_path).images
    assert (rec.width, rec.height) == (300, 451)


def test_grayscale_8bit_exact_not_rescaled(tmp_path, camera):
    low = (camera // 4).astype(np.uint8)  # 0..63: 8-bit data must never be stretched
    out = load_image(_save(low, tmp_path / "g.png"))
    assert out.shape == (512, 512, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], low)


def test_16bit_png_rescaled_to_full_range(tmp_path, camera):
    a16 = (1000 + camera.astype(np.float64) * (2000 / 255)).astype(np.uint16)  # uses 1000..3000 only
    img = Image.fromarray(a16)
    assert img.mode.startswith("I;16")
    img.save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert out.min() <= 2 and out.max() >= 253  # not ~4..12 as plain >>8 would give
    assert np.array_equal(out[..., 0], out[..., 2])
    assert _corr(out[..., 0], camera) > 0.99


def test_16bit_rgb_tiff(tmp_path, chelsea):
    a16 = (500 + chelsea.astype(np.uint16) * 10).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", a16, photometric="rgb")
    out = load_image(tmp_path / "rgb16.tif")
    assert out.shape == chelsea.shape and out.dtype == np.uint8
    assert out.min() <= 2 and out.max() >= 253
    assert _corr(out, chelsea) > 0.99
    # channels keep their relative balance (joint stretch): the red-ish cat stays red-ish
    assert out[..., 0].mean() > out[..., 2].mean()


def test_channel_first_tiff_transposed(tmp_path, chelsea):
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(chelsea, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(load_image(tmp_path / "planar.tif"), chelsea)
    (rec,) = discover_images(tmp_path).images
    assert (rec.width, rec.height) == (451, 300)


def test_float32_tiff(tmp_path, camera):
    tifffile.imwrite(tmp_path / "f.tif", camera.astype(np.float32) / 255 - 0.25)
    out = load_image(tmp_path / "f.tif")
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert _corr(out[..., 1], camera) > 0.99


def test_float_tiff_with_nan_and_constant(tmp_path):
    a = np.full((16, 16), 7.0, np.float32)
    tifffile.imwrite(tmp_path / "const.tif", a)
    np.testing.assert_array_equal(load_image(tmp_path / "const.tif"), 0)
    a[0, 0] = np.nan
    a[1, 1] = 9.0
    tifffile.imwrite(tmp_path / "nan.tif", a)
    out = load_image(tmp_path / "nan.tif")
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 255


def test_rgba_alpha_dropped(tmp_path, chelsea):
    alpha = np.zeros(chelsea.shape[:2], np.uint8)
    alpha[:, 200:] = 128
    rgba = np.dstack([chelsea, alpha])
    out = load_image(_save(rgba, tmp_path / "a.png"))
    np.testing.assert_array_equal(out, chelsea)  # RGB kept, even under fully transparent pixels


def test_la_png(tmp_path, camera):
    out = load_image(_save(np.dstack([camera, np.full_like(camera, 9)]), tmp_path / "la.png"))
    np.testing.assert_array_equal(out[..., 1], camera)


def test_palette_png_with_transparency(tmp_path, chelsea):
    pal = Image.fromarray(chelsea).quantize(32)
    expected = np.asarray(pal.convert("RGB"))
    pal.save(tmp_path / "p.png", transparency=0)
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), expected)


def test_cmyk_jpeg(tmp_path, chelsea):
    Image.fromarray(chelsea).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = load_image(tmp_path / "cmyk.jpg")
    assert out.shape == chelsea.shape
    assert np.abs(out.astype(int) - chelsea).mean() < 6


def test_one_bit(tmp_path, camera):
    mask = camera > 128
    Image.fromarray(mask).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    out = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[..., 0], np.where(mask, 255, 0))


def test_one_by_one(tmp_path):
    _save(np.array([[[10, 20, 30]]], np.uint8), tmp_path / "px.png")
    out = load_image(tmp_path / "px.png")
    assert out.shape == (1, 1, 3) and out.tolist() == [[[10, 20, 30]]]
    tifffile.imwrite(tmp_path / "px16.tif", np.array([[1234]], np.uint16))
    assert load_image(tmp_path / "px16.tif").shape == (1, 1, 3)
    recs = {r.relative_path: r for r in discover_images(tmp_path).images}
    assert (recs["px.png"].width, recs["px16.tif"].height) == (1, 1)


def test_wrong_suffix_sniffed(tmp_path, chelsea):
    _save(chelsea, tmp_path / "really_png.tif", format="PNG")
    np.testing.assert_array_equal(load_image(tmp_path / "really_png.tif"), chelsea)


# --------------------------------------------------------------------------------------- bad files


def _assert_load_error(path, *words):
    with pytest.raises(ImageError) as info:
        load_image(path)
    msg = str(info.value).lower()
    assert str(Path(path).absolute()).lower() in msg
    assert any(w in msg for w in words), msg
    assert info.value.path == Path(path).absolute() and info.value.reason
    return msg


def test_zero_byte(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _skip_reason(discover_images(tmp_path), "empty.png")
    _assert_load_error(tmp_path / "empty.png", "empty")


def test_text_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    assert "not an image" in _skip_reason(discover_images(tmp_path), "notes.png")
    _assert_load_error(tmp_path / "notes.png", "not an image")


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_truncated(tmp_path, chelsea, name):
    full = tmp_path / ("full" + Path(name).suffix)
    _save(chelsea, full)
    raw = full.read_bytes()
    (tmp_path / name).write_bytes(raw[: len(raw) // 2])
    full.unlink()
    msg = _assert_load_error(tmp_path / name, "truncated", "corrupt")
    assert "re-export" in msg
    # the header check may pass (expected): if it does, the record still has the right size
    disc = discover_images(tmp_path)
    assert [r.relative_path for r in disc.images] + [s.relative_path for s in disc.skipped] == [name]


def test_multipage_tiff_pil_and_tifffile(tmp_path, camera):
    pages = [Image.fromarray(camera[:64, :64]), Image.fromarray(camera[64:128, :64])]
    Image.fromarray(camera[128:192, :64]).save(tmp_path / "pil3.tif", save_all=True, append_images=pages)
    tifffile.imwrite(tmp_path / "tf3.tif", np.stack([camera[:32, :32]] * 3), photometric="minisblack")
    for _i in range(3):
        tifffile.imwrite(tmp_path / "appended.tif", camera[:32, :32], append=True)
    disc = discover_images(tmp_path)
    assert disc.images == []
    for name in ("pil3.tif", "tf3.tif", "appended.tif"):
        reason = _skip_reason(disc, name)
        assert "2-D images only" in reason and "3 pages" in reason and name in reason
        _assert_load_error(tmp_path / name, "2-d images only")


def test_3d_stack_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "zstack.tif", np.random.default_rng(0).integers(0, 255, (5, 32, 32), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "ij.tif", np.zeros((4, 32, 32), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    disc = discover_images(tmp_path)
    assert "2-D images only" in _skip_reason(disc, "zstack.tif") and "5 pages" in _skip_reason(disc, "zstack.tif")
    assert "4 pages" in _skip_reason(disc, "ij.tif")
    _assert_load_error(tmp_path / "zstack.tif", "2-d images only")


@pytest.mark.parametrize("shape, kw, n", [
    ((32, 32, 2), {"photometric": "minisblack", "planarconfig": "contig"}, 2),
    ((5, 32, 32), {"photometric": "minisblack", "planarconfig": "separate"}, 5),
])
def test_bad_channel_count(tmp_path, shape, kw, n):
    tifffile.imwrite(tmp_path / "ch.tif", np.zeros(shape, np.uint8), **kw)
    assert f"{n} channels" in _skip_reason(discover_images(tmp_path), "ch.tif")
    _assert_load_error(tmp_path / "ch.tif", f"{n} channels")


def test_too_many_pixels(tmp_path, chelsea, monkeypatch):
    _save(chelsea, tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", chelsea)
    _save(chelsea[:10, :10], tmp_path / "small.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    disc = discover_images(tmp_path)
    assert [r.relative_path for r in disc.images] == ["small.png"]
    for name in ("big.png", "big.tif"):
        reason = _skip_reason(disc, name)
        assert "MAX_IMAGE_PIXELS" in reason and "1,000" in reason and "135,300" in reason
        _assert_load_error(tmp_path / name, "too large")


def test_pil_bomb_check_gives_our_message(tmp_path, chelsea, monkeypatch):
    _save(chelsea, tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow would raise DecompressionBombError itself
    _assert_load_error(tmp_path / "big.png", "too large")


def test_unreadable_file(tmp_path, chelsea):
    p = _save(chelsea, tmp_path / "locked.png")
    p.chmod(0)
    try:
        try:
            p.open("rb").close()
            pytest.skip("running as root (or similar): chmod 000 does not block reads")
        except PermissionError:
            pass
        assert "permission denied" in _skip_reason(discover_images(tmp_path), "locked.png")
        _assert_load_error(p, "permission denied")
    finally:
        p.chmod(0o644)


def test_unreadable_file_simulated(tmp_path, chelsea, monkeypatch):
    """Same path as above, runnable as root: open() itself reports permission denied."""
    p = _save(chelsea, tmp_path / "locked.png")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(images, "open", denied, raising=False)
    assert "permission denied" in _skip_reason(discover_images(tmp_path), "locked.png")
    _assert_load_error(p, "permission denied")


def test_broken_symlink(tmp_path, chelsea):
    _save(chelsea, tmp_path / "ok.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "ok.png", tmp_path / "alias.png")  # a working file link is a normal image
    for recursive in (False, True):
        disc = discover_images(tmp_path, recursive=recursive)
        assert "broken symbolic link" in _skip_reason(disc, "dangling.png")
        assert [r.relative_path for r in disc.images] == ["alias.png", "ok.png"]
    _assert_load_error(tmp_path / "dangling.png", "broken symbolic link")


def test_symlink_loop_recursive(tmp_path, chelsea):
    sub = tmp_path / "sub"
    sub.mkdir()
    _save(chelsea, tmp_path / "top.png")
    _save(chelsea[:50], sub / "inner.png")
    os.symlink(tmp_path, sub / "loop")
    os.symlink(sub, tmp_path / "loop2")
    disc = discover_images(tmp_path, recursive=True)
    rels = [r.relative_path for r in disc.images]
    assert rels == ["sub/inner.png", "top.png"] and disc.skipped == []  # real paths, each file once


def test_symlinked_folder_outside_root_followed_once(tmp_path, chelsea):
    outside = tmp_path / "outside"
    outside.mkdir()
    _save(chelsea, outside / "ext.png")
    os.symlink(outside, outside / "self")  # loop outside the root
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "linked")
    rels = [r.relative_path for r in discover_images(root, recursive=True).images]
    assert rels == ["linked/ext.png"]


def test_folder_of_only_bad_files(tmp_path, chelsea):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.tif").write_text("hello")
    (tmp_path / "junk.webp").write_bytes(os.urandom(300))
    tifffile.imwrite(tmp_path / "stack.tiff", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    os.symlink(tmp_path / "nowhere.bmp", tmp_path / "link.bmp")
    disc = discover_images(tmp_path)
    assert disc.images == []
    assert [s.relative_path for s in disc.skipped] == ["empty.jpg", "junk.webp", "link.bmp", "stack.tiff", "text.tif"]
    assert all(len(s.reason) > 10 for s in disc.skipped)


# --------------------------------------------------------------------------------------- discovery


def test_discovery_sorted_ids_stable(tmp_path, chelsea):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("b.png", "a.jpg", "C.tif", "café ☕ #1 (copy).png", "with space.bmp", "UPPER.JPG", "x.Png"):
        _save(chelsea[:40, :60], folder / name)
    (folder / "readme.txt").write_text("ignored")
    (folder / "table.csv").write_text("1,2")
    _save(chelsea, folder / ".hidden.png")
    (folder / ".hiddendir").mkdir()
    _save(chelsea, folder / ".hiddendir" / "h.png")
    disc = discover_images(folder, recursive=True)
    rels = [r.relative_path for r in disc.images]
    assert rels == sorted(rels)
    assert set(rels) == {"b.png", "a.jpg", "C.tif", "café ☕ #1 (copy).png", "with space.bmp", "UPPER.JPG", "x.Png"}
    assert disc.skipped == [] and disc.root == folder.resolve()
    for rec in disc.images:
        assert isinstance(rec, ImageRecord) and rec.path.is_absolute() and rec.path.exists()
        assert rec.image_id == "img_" + hashlib.sha1(rec.relative_path.encode()).hexdigest()[:12]
        assert (rec.height, rec.width) == load_image(rec.path).shape[:2] == (40, 60)
    assert len({r.image_id for r in disc.images}) == len(rels)
    again = discover_images(folder, recursive=True)
    assert again.images == disc.images
    copy = shutil.copytree(folder, tmp_path / "elsewhere")
    moved = discover_images(copy, recursive=True)
    assert [(r.relative_path, r.image_id) for r in moved.images] == [(r.relative_path, r.image_id) for r in disc.images]


def test_recursive_vs_flat(tmp_path, chelsea):
    _save(chelsea, tmp_path / "top.png")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    _save(chelsea, tmp_path / "sub" / "a.png")
    _save(chelsea, tmp_path / "sub" / "deeper" / "b.jpg")
    (tmp_path / "dir.png").mkdir()  # a folder with an image suffix is not a file
    assert [r.relative_path for r in discover_images(tmp_path).images] == ["top.png"]
    rec = discover_images(tmp_path, recursive=True)
    assert [r.relative_path for r in rec.images] == ["sub/a.png", "sub/deeper/b.jpg", "top.png"]


def test_empty_folder(tmp_path):
    disc = discover_images(tmp_path)
    assert disc.images == [] and disc.skipped == []


def test_missing_folder_and_file(tmp_path, chelsea):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        discover_images(missing)
    f = _save(chelsea, tmp_path / "x.png")
    with pytest.raises(NotADirectoryError, match="x.png"):
        discover_images(f)
    with pytest.raises(ImageError, match="not found"):
        load_image(missing / "y.png")


# ------------------------------------------------------------------------------------------ hashing


def test_pixel_hash(tmp_path, chelsea):
    h_png = pixel_hash(load_image(_save(chelsea, tmp_path / "a.png")))
    tifffile.imwrite(tmp_path / "a.tif", chelsea)
    assert pixel_hash(load_image(tmp_path / "a.tif")) == h_png
    assert len(h_png) == 64
    changed = chelsea.copy()
    changed[10, 10, 1] ^= 1
    assert pixel_hash(changed) != h_png
    assert pixel_hash(chelsea.reshape(451, 300, 3)) != pixel_hash(chelsea)
    assert pixel_hash(chelsea.astype(np.uint16)) != pixel_hash(chelsea)
    assert pixel_hash(np.asfortranarray(chelsea)) == pixel_hash(chelsea)


def test_multipage_files_listed_per_plane_on_request(tmp_path, camera):
    pages = [Image.fromarray(camera[:64, :64]), Image.fromarray(camera[64:128, :64])]
    Image.fromarray(camera[128:192, :64]).save(tmp_path / "pil3.tif", save_all=True, append_images=pages)
    tifffile.imwrite(tmp_path / "tf3.tif", np.stack([camera[:32, :32]] * 3), photometric="minisblack")
    for _i in range(3):
        tifffile.imwrite(tmp_path / "appended.tif", camera[:32, :32], append=True)
    _save(camera, tmp_path / "flat.png")
    disc = discover_images(tmp_path, planes=True)
    assert disc.skipped == []
    assert [(r.relative_path, r.plane) for r in disc.images] == (
        [("appended.tif", k) for k in range(3)] + [("flat.png", None)] + [("pil3.tif", k) for k in range(3)]
        + [("tf3.tif", k) for k in range(3)])
    assert len({r.image_id for r in disc.images}) == 10
    assert [r for r in disc.images if r.plane is None] == discover_images(tmp_path).images
    np.testing.assert_array_equal(load_image(tmp_path / "pil3.tif", plane=1)[..., 0], camera[:64, :64])
    for name in ("pil3.tif", "tf3.tif", "appended.tif"):
        assert images.stack_planes(tmp_path / name) == 3
        assert "--planes" in _skip_reason(discover_images(tmp_path), name)
