"""The synthetic benchmark generator: determinism, ground-truth validity, on-disk format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import synthetic
from benchmarks.synthetic import CATEGORIES, SyntheticImage, generate, write_dataset

SIZE = 128
N = 12


@pytest.fixture(scope="module")
def samples() -> list[SyntheticImage]:
    return generate(N, seed=0, size=SIZE)


def test_categories():
    assert len(CATEGORIES) >= 4
    assert len(set(CATEGORIES)) == len(CATEGORIES)


def test_same_seed_identical(samples):
    again = generate(N, seed=0, size=SIZE)
    assert [s.name for s in again] == [s.name for s in samples]
    for a, b in zip(samples, again):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.instance_masks, b.instance_masks)
        np.testing.assert_array_equal(a.classes, b.classes)


def test_prefix_stable(samples):
    first = generate(3, seed=0, size=SIZE)
    for a, b in zip(first, samples[:3]):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.instance_masks, b.instance_masks)


def test_different_seed_differs(samples):
    other = generate(N, seed=1, size=SIZE)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(samples, other))
    assert not np.array_equal(samples[0].image, other[0].image)


def test_image_and_mask_format(samples):
    for i, s in enumerate(samples):
        assert s.name == f"synth_{i:04d}.png"
        assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
        n = len(s.classes)
        assert 2 <= n <= 6
        assert (
            s.instance_masks.shape == (n, SIZE, SIZE) and s.instance_masks.dtype == bool
        )
        assert s.classes.shape == (n,)
        assert np.issubdtype(s.classes.dtype, np.integer)
        assert s.classes.min() >= 1 and s.classes.max() <= len(CATEGORIES)
        areas = s.instance_masks.reshape(n, -1).sum(1)
        assert (areas > 0).all()
        assert (areas >= 0.01 * SIZE * SIZE).all()
        # visible parts never overlap
        assert s.instance_masks.sum(0).max() <= 1


def test_every_category_appears(samples):
    seen = set(np.concatenate([s.classes for s in samples]).tolist())
    assert seen == set(range(1, len(CATEGORIES) + 1))


def test_images_are_not_blank(samples):
    for s in samples:
        assert s.image.std() > 5
        # objects differ from the background they were pasted on
        fg = s.instance_masks.any(0)
        assert fg.any() and (~fg).any()


def test_other_sizes():
    (s,) = generate(1, seed=3, size=64)
    assert s.image.shape == (64, 64, 3)
    assert s.instance_masks.shape[1:] == (64, 64)
    assert generate(0) == []


def test_write_dataset(tmp_path, samples):
    from PIL import Image
    from pycocotools.coco import COCO

    n = 5
    summary = write_dataset(tmp_path, n, seed=0, size=SIZE)
    assert summary["images"] == n
    assert summary["instances"] == sum(len(s.classes) for s in samples[:n])
    assert sum(summary["per_category"].values()) == summary["instances"]
    assert set(summary["per_category"]) == set(CATEGORIES)

    raw = json.loads((tmp_path / "ground_truth.json").read_text())
    assert [c["id"] for c in raw["categories"]] == list(range(1, len(CATEGORIES) + 1))
    assert [c["name"] for c in raw["categories"]] == CATEGORIES
    assert all(im["id"] >= 1 for im in raw["images"])
    assert all(a["id"] >= 1 and a["iscrowd"] == 0 for a in raw["annotations"])
    assert all(isinstance(a["segmentation"]["counts"], str) for a in raw["annotations"])

    coco = COCO(str(tmp_path / "ground_truth.json"))
    by_name = {im["file_name"]: im for im in coco.dataset["images"]}
    for s in samples[:n]:
        assert (tmp_path / "images" / s.name).is_file()
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "images" / s.name)), s.image
        )

        info = by_name[s.name]
        assert (info["width"], info["height"]) == (SIZE, SIZE)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]]))
        assert len(anns) == len(s.classes)
        for ann, mask, cls in zip(anns, s.instance_masks, s.classes):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["category_id"] == int(cls)
            assert ann["area"] == pytest.approx(mask.sum())
            rows, cols = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert (x, y) == (cols.min(), rows.min())
            assert (w, h) == (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)

        semantic = np.asarray(Image.open(tmp_path / "labels" / s.name))
        assert semantic.dtype == np.uint8 and semantic.shape == (SIZE, SIZE)
        expected = np.zeros((SIZE, SIZE), np.uint8)
        for mask, cls in zip(s.instance_masks, s.classes):
            expected[mask] = cls
        np.testing.assert_array_equal(semantic, expected)
        assert (semantic == 0).sum() == (~s.instance_masks.any(0)).sum()

        instances = np.asarray(Image.open(tmp_path / "instances" / s.name))
        assert instances.dtype == np.uint16 and instances.shape == (SIZE, SIZE)
        for k, mask in enumerate(s.instance_masks):
            np.testing.assert_array_equal(instances == k + 1, mask)
        assert instances.max() == len(s.classes)


def test_sprites_cover_every_category():
    sprites = synthetic._native_sprites()
    assert len(sprites) == len(CATEGORIES)
    for cid, group in enumerate(sprites, start=1):
        assert group
        for sp in group:
            assert sp.category == cid
            assert sp.rgb.shape[:2] == sp.mask.shape
            assert sp.mask.mean() > 0.3  # a real object shape, not a speck
    assert len(sprites[CATEGORIES.index("coin")]) >= 5  # several distinct real coins
