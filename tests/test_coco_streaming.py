"""COCO input: checked before anything is decoded, clear errors naming the file, masks streamed per image."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from engine.io.coco import iter_coco_images
from engine.io.coco_reader import CocoFile
from engine.io.coco_validation import CocoValidationError
from engine.masks import decode_rle, encode_rle


def _square(hw, top, left, size):
    mask = np.zeros(hw, bool)
    mask[top:top + size, left:left + size] = True
    return mask


def _document():
    a = _square((6, 8), 1, 1, 3)
    b = _square((6, 8), 2, 4, 2)
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 6, "width": 8},
                   {"id": 2, "file_name": "sub/b.png", "height": 5, "width": 4},
                   {"id": 3, "file_name": "empty.png", "height": 3, "width": 3}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "segmentation": encode_rle(a), "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [6, 8], "counts": _uncompressed(b)}},
            {"id": 3, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 4, 0, 4]]},
            {"id": 4, "image_id": 2, "category_id": 2, "segmentation": encode_rle(np.ones((5, 4), bool)),
             "iscrowd": 1},  # crowd regions are skipped
        ],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "person"}],
    }


def _uncompressed(mask):
    flat = mask.ravel(order="F").astype(int)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return counts


def _categories(path) -> list:
    """The categories of a COCO file, after CocoFile has checked the whole of it."""
    with CocoFile(path) as coco:
        return coco.categories


def _write(tmp_path, document, name="coco.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def test_images_are_yielded_one_at_a_time_with_their_masks(tmp_path):
    path = _write(tmp_path, _document())
    assert _categories(path) == [{"id": 1, "name": "cup"}, {"id": 2, "name": "person"}]
    items = list(iter_coco_images(path))
    assert [(name, hw) for name, hw, _, _ in items] == [("a.png", (6, 8)), ("sub/b.png", (5, 4)),
                                                        ("empty.png", (3, 3))]
    _, _, masks, ids = items[0]
    assert masks.dtype == bool and masks.shape == (2, 6, 8) and ids.tolist() == [2, 1]
    assert np.array_equal(masks[0], _square((6, 8), 1, 1, 3))
    assert np.array_equal(masks[1], _square((6, 8), 2, 4, 2))
    _, _, masks, ids = items[1]
    assert masks.shape == (1, 5, 4) and ids.tolist() == [1] and masks[0, 1:4, 1:3].all()
    _, _, masks, ids = items[2]
    assert masks.shape == (0, 3, 3) and ids.shape == (0,)


def test_problems_are_found_before_anything_is_decoded(tmp_path):
    document = _document()
    document["annotations"][2]["category_id"] = 9  # the last image's annotation is bad
    path = _write(tmp_path, document)
    with pytest.raises(CocoValidationError):
        iter_coco_images(path)  # raises on the call, not half-way through the iteration


def _mutated(change):
    document = _document()
    change(document)
    return document


@pytest.mark.parametrize("content, expected", [
    ('{"images": [], "annotations": [', r"not valid JSON \(line 1 column \d+"),
    ("", "not valid JSON .*empty"),
    ("[1, 2]", "found a list"),
    (_mutated(lambda d: d.pop("images")), "no 'images' key"),
    (_mutated(lambda d: d.pop("annotations")), "no 'annotations' key"),
    (_mutated(lambda d: d.update(images={"id": 1})), "'images' must be a list"),
    (_mutated(lambda d: d["annotations"][1].update(category_id=7)),
     "annotation 2 has category 7, which the file's categories do not define"),
    (_mutated(lambda d: d.pop("categories")), "annotation 1 has category 2, which the file's categories"),
    (_mutated(lambda d: d["annotations"][2].update(image_id=42)),
     "annotation 3 belongs to image 42, which the file's images do not list"),
    (_mutated(lambda d: d["annotations"][2].update(segmentation=[[1, 2]])),
     r"annotation 3 \(sub/b.png\) has a polygon of 1 point\(s\); a polygon needs at least 3"),
    (_mutated(lambda d: d["annotations"][2].update(segmentation=[[1, 2, 3, 4]])),
     r"annotation 3 .*polygon of 2 point\(s\)"),
    (_mutated(lambda d: d["annotations"][2].update(segmentation=[[0, 0, 3, 0, 3, 4, 0]])), "odd number of coordinates"),
    (_mutated(lambda d: d["annotations"][2].update(segmentation="0i0")), "annotation 3 .*segmentation of type str"),
    (_mutated(lambda d: d["annotations"][2].update(segmentation=17)), "annotation 3 .*segmentation of type int"),
    (_mutated(lambda d: d["annotations"][2].update(segmentation=[["a", "b", "c", "d", "e", "f"]])),
     "annotation 3 .*neither polygons nor RLE"),
    (_mutated(lambda d: d["annotations"][2].update(segmentation=[])), "annotation 3 .*empty segmentation"),
    (_mutated(lambda d: d["annotations"][2].pop("segmentation")), "annotation 3 has no segmentation"),
    (_mutated(lambda d: d["annotations"][0]["segmentation"].update(counts="zz!!")),
     "annotation 1 .*garbled compressed RLE"),
    (_mutated(lambda d: d["annotations"][0]["segmentation"].update(size=[60, 80])),
     "annotation 1 .*RLE of size 80x60 on an image of 8x6"),
    (_mutated(lambda d: d["annotations"][1]["segmentation"].update(counts=[3, 100])),
     "annotation 2 .*covering 103 pixels instead of 48"),
    (_mutated(lambda d: d["categories"].append({"id": 0, "name": "bg"})), "category ids must be >= 1"),
    (_mutated(lambda d: d["images"][1].update(file_name="a.png")), "a.png is listed twice"),
    (_mutated(lambda d: d["images"][1].pop("height")), "image 2 .*height and width"),
])
def test_bad_files_are_clear_errors_naming_the_file(tmp_path, content, expected):
    path = _write(tmp_path, content, "their annotations.json")
    for reader in (CocoFile, iter_coco_images):
        with pytest.raises(CocoValidationError, match=expected) as error:
            reader(path)
        assert str(path) in str(error.value)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        CocoFile(tmp_path / "nowhere.json")


def test_many_small_annotations_are_decoded_one_image_at_a_time(tmp_path):
    """20,000 tiny annotations over 2,000 images of 128x128: all masks at once would take ~330 MB."""
    hw = (128, 128)
    shapes = [encode_rle(_square(hw, 4 * k, 3 * k, 5)) for k in range(10)]
    n_images, per_image = 2000, 10
    images = [{"id": i + 1, "file_name": f"img_{i:05d}.png", "height": hw[0], "width": hw[1]}
              for i in range(n_images)]
    annotations = [{"id": i * per_image + k + 1, "image_id": i + 1, "category_id": 1 + k % 3,
                    "segmentation": shapes[k], "iscrowd": 0, "area": 25, "bbox": [3 * k, 4 * k, 5, 5]}
                   for i in range(n_images) for k in range(per_image)]
    path = _write(tmp_path, {"images": images, "annotations": annotations,
                             "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]})
    del images, annotations
    all_at_once = n_images * per_image * hw[0] * hw[1]  # bytes of every mask decoded together (bool)

    tracemalloc.start()
    try:
        count, pixels = 0, 0
        for _file_name, size, masks, ids in iter_coco_images(path):
            assert size == hw and masks.shape == (per_image, *hw) and len(ids) == per_image
            count += 1
            pixels += int(masks.sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n_images and pixels == n_images * per_image * 25
    assert peak < all_at_once / 5, f"peak {peak / 1e6:.0f} MB, all masks at once {all_at_once / 1e6:.0f} MB"
    # nor is the file itself ever all in memory as Python objects (engine.io.coco_reader reads it as a stream)
    tracemalloc.start()
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
        _, loaded = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert len(_categories(path)) == 3  # checks every annotation
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < loaded / 4, f"checking took {peak / 1e6:.1f} MB, the file as objects {loaded / 1e6:.1f} MB"
    # what was decoded is right
    first = next(iter_coco_images(path))
    assert np.array_equal(first[2][3], decode_rle(shapes[3]))


def test_the_parts_of_a_file_may_come_in_any_order(tmp_path):
    """Annotations before the images and categories they name (JSON objects have no order): read the same."""
    document = _document()
    reordered = {key: document[key] for key in ("annotations", "categories", "images")}
    first, second = _write(tmp_path, document, "a.json"), _write(tmp_path, reordered, "b.json")
    assert _categories(second) == _categories(first)
    expected, got = list(iter_coco_images(first)), list(iter_coco_images(second))
    assert [(name, hw) for name, hw, _, _ in got] == [(name, hw) for name, hw, _, _ in expected]
    for (_, _, masks, ids), (_, _, expected_masks, expected_ids) in zip(got, expected):
        np.testing.assert_array_equal(masks, expected_masks)
        np.testing.assert_array_equal(ids, expected_ids)
