"""Known-answer tests for engine.masks, engine.io.coco and engine.method.refine."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from engine.io.coco import CocoWriter, annotation_record, build_coco, count_annotations, write_coco
from engine.io.coco_validation import CocoValidationError, validate_coco
from engine.masks import (
    bbox_xywh,
    component_containing,
    coverage_on_grid,
    decode_rle,
    encode_rle,
    iou,
    resize_nearest,
)
from engine.method.refine import guided_filter, refine_masks

# --- RLE -------------------------------------------------------------------------------------------


def _masks_for_rle():
    rng = np.random.default_rng(0)
    yield np.zeros((7, 5), bool)
    yield np.ones((5, 9), bool)
    yield np.zeros((1, 1), bool)
    yield np.ones((1, 1), bool)
    for shape, p in (((13, 31), 0.5), ((40, 17), 0.1), ((64, 64), 0.9), ((3, 200), 0.5)):
        yield rng.random(shape) < p
    stripes = np.zeros((20, 30), bool)
    stripes[:, ::2] = True  # alternating runs in Fortran order
    yield stripes


@pytest.mark.parametrize("mask", list(_masks_for_rle()))
def test_rle_round_trip(mask):
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str)
    assert rle["size"] == [mask.shape[0], mask.shape[1]]
    assert all(type(v) is int for v in rle["size"])
    again = json.loads(json.dumps(rle))  # JSON-serialisable as is
    decoded = decode_rle(again)
    assert decoded.dtype == bool and decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask)
    # bytes counts (pycocotools' own form) decode too
    np.testing.assert_array_equal(decode_rle({"size": rle["size"], "counts": rle["counts"].encode()}), mask)


def test_rle_of_non_contiguous_and_uint8_input():
    rng = np.random.default_rng(1)
    base = rng.random((30, 40)) < 0.3
    view = base[::2, 1::3]  # not contiguous
    np.testing.assert_array_equal(decode_rle(encode_rle(view)), view)
    np.testing.assert_array_equal(decode_rle(encode_rle(base.T)), base.T)
    np.testing.assert_array_equal(decode_rle(encode_rle(base.astype(np.uint8))), base)



def test_one_rle_string_decoder_reads_pycocotools_strings_and_refuses_garbled_ones():
    """engine.masks.rle_counts is the only decoder of compressed RLE strings: decode_rle of a large mask and
    the checks of engine.io.coco_validation both use it."""
    from engine.io.coco_validation import rle_problem
    from engine.masks import LARGE_MASK_PIXELS, rle_counts

    rng = np.random.default_rng(3)
    mask = rng.random((60, 70)) < 0.4
    rle = encode_rle(mask)
    runs = rle_counts(rle["counts"])
    assert runs.tolist() == _runs_of(mask)
    assert rle_counts(rle["counts"].encode()).tolist() == runs.tolist()
    for other in (rng.random((1, 9)) < 0.5, np.ones((3, 4), bool), np.zeros((2, 2), bool), rng.random((40, 1)) < 0.9):
        assert rle_counts(encode_rle(other)["counts"]).tolist() == _runs_of(other)
    # bad character, non-ASCII, unfinished number, a number of 8 characters
    for garbled in (rle["counts"][:-1] + "\x7f", "é", "o" * 8, "o" * 7 + "0"):
        assert rle_counts(garbled) is None
        assert rle_problem({"size": [60, 70], "counts": garbled}) == "has garbled compressed RLE counts"
    assert rle_problem({"size": [60, 70], "counts": rle["counts"]}) is None
    for counts, problem in (([4200], None), ([4199], "has RLE counts covering 4199 pixels instead of 4200"),
                            ([10, -10, 4200], "has negative RLE counts"), ([0, 2**70], "has RLE counts too large"),
                            ([1.5, 4198.5], "has RLE counts that are not integers")):
        found = rle_problem({"size": [60, 70], "counts": counts})
        assert found == problem if problem is None else found.startswith(problem)
    side = int(LARGE_MASK_PIXELS ** 0.5) + 1  # decoded in Python, not by pycocotools
    with pytest.raises(ValueError, match="garbled"):
        decode_rle({"size": [side, side], "counts": "o" * 8})


def _runs_of(mask: np.ndarray) -> list:
    """Run lengths of a mask in column-major order, zeros first (what a COCO RLE holds)."""
    flat = mask.T.ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])) != 0)
    return np.diff(np.concatenate([[0], edges])).tolist()

# --- boxes, coverage, resizing, components ---------------------------------------------------------

def test_bbox_known_values():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 7:12] = True
    assert bbox_xywh(mask) == [7, 2, 5, 3]
    mask[9, 0] = True
    assert bbox_xywh(mask) == [0, 2, 12, 8]
    single = np.zeros((4, 4), bool)
    single[3, 3] = True
    assert bbox_xywh(single) == [3, 3, 1, 1]
    assert bbox_xywh(np.zeros((5, 6), bool)) == [0, 0, 0, 0]
    assert bbox_xywh(np.ones((5, 6), bool)) == [0, 0, 6, 5]
    assert all(type(v) is int for v in bbox_xywh(mask))


def test_coverage_on_grid_known_fractions():
    mask = np.zeros((4, 6), bool)  # 2 x 3 grid of 2 x 2 cells
    mask[0, 0] = True  # cell (0, 0): 1 / 4
    mask[0:2, 2:4] = True  # cell (0, 1) full
    mask[2, 4:6] = True  # cell (1, 2): 2 / 4
    coverage = coverage_on_grid(mask, (2, 3))
    assert coverage.dtype == np.float32 and coverage.shape == (2, 3)
    np.testing.assert_allclose(coverage, [[0.25, 1.0, 0.0], [0.0, 0.0, 0.5]])


def test_coverage_on_grid_uneven_cells():
    mask = np.zeros((5, 3), bool)  # rows -> cells [0, 0, 0, 1, 1] on a 2 x 1 grid
    mask[0, :] = True
    mask[4, 0] = True
    np.testing.assert_allclose(coverage_on_grid(mask, (2, 1)), [[3 / 9], [1 / 6]])


def test_resize_nearest_shape_and_values():
    mask = np.array([[1, 0], [0, 1]], bool)
    up = resize_nearest(mask, 4, 6)
    assert up.shape == (4, 6) and up.dtype == bool
    expected = np.array([[1, 1, 1, 0, 0, 0]] * 2 + [[0, 0, 0, 1, 1, 1]] * 2, bool)
    np.testing.assert_array_equal(up, expected)
    np.testing.assert_array_equal(resize_nearest(up, 2, 2), mask)
    odd = resize_nearest(np.arange(6).reshape(2, 3), 3, 3)
    np.testing.assert_array_equal(odd, [[0, 1, 2], [0, 1, 2], [3, 4, 5]])


def test_component_containing():
    mask = np.zeros((6, 8), bool)
    mask[0:2, 0:2] = True  # 4 px
    mask[3:6, 4:8] = True  # 12 px
    mask[2, 2] = True  # touches the first block only diagonally: its own 4-connected component
    first = component_containing(mask, (1, 1))
    np.testing.assert_array_equal(first, np.pad(np.ones((2, 2), bool), ((0, 4), (0, 6))))
    assert component_containing(mask, (2, 2)).sum() == 1
    assert not component_containing(mask, (0, 7)).any()  # seed outside: empty


def test_iou_known_values():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12)
    assert iou(a, a) == 1.0
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0


# --- COCO ------------------------------------------------------------------------------------------

@pytest.fixture()
def coco_parts():
    rng = np.random.default_rng(0)
    m1 = np.zeros((30, 40), bool)
    m1[5:15, 10:30] = True
    m2 = rng.random((30, 40)) < 0.2
    m3 = np.zeros((30, 40), bool)
    m3[20:, :5] = True
    masks = {1: m1, 2: m2, 3: m3}
    images = [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "sub/b.png", "width": 25, "height": 10},  # no objects
    ]
    annotations = [
        annotation_record(1, 1, 1, m1, score=0.9),
        annotation_record(2, 1, 2, m2),
        annotation_record(3, 1, 2, m3, score=0.1),
    ]
    categories = [{"id": 1, "name": "pseudo_1", "supercategory": "object"},
                  {"id": 2, "name": "pseudo_2", "supercategory": "object"}]
    return images, annotations, categories, masks


def test_annotation_record_fields(coco_parts):
    _, annotations, _, masks = coco_parts
    record = annotations[0]
    assert record["area"] == 200
    assert record["bbox"] == [10, 5, 20, 10]
    assert record["iscrowd"] == 0
    assert record["score"] == pytest.approx(0.9)
    assert "score" not in annotations[1]
    np.testing.assert_array_equal(decode_rle(record["segmentation"]), masks[1])
    json.dumps(annotations)  # all plain JSON types


def test_build_and_validate_coco(coco_parts):
    images, annotations, categories, _ = coco_parts
    document = build_coco(images, annotations, categories, "/data/images", "test export")
    assert document["info"] == {"description": "test export", "image_root": "/data/images"}
    assert len(document["images"]) == 2  # the image without objects is listed too
    assert validate_coco(document) == {"images": 2, "annotations": 3, "categories": 2}


@pytest.mark.parametrize("kind", ["annotations", "images", "categories"])
def test_validate_rejects_id_zero(coco_parts, kind):
    images, annotations, categories, _ = coco_parts
    document = build_coco(images, annotations, categories, "/x", "bad")
    if kind == "annotations":
        document["annotations"][1]["id"] = 0
    elif kind == "images":
        document["images"][1]["id"] = 0  # the image without annotations
    else:
        document["categories"] = [{"id": 0, "name": "zero"}] + document["categories"]
    with pytest.raises(CocoValidationError, match=f"a {kind[:-1]} id is < 1"):
        validate_coco(document, source="export.json")


def test_validate_rejects_unknown_category_and_image(coco_parts):
    images, annotations, categories, _ = coco_parts
    document = build_coco(images, annotations, categories, "/x", "bad")
    document["annotations"][2]["category_id"] = 7
    with pytest.raises(CocoValidationError, match="annotation 3 has unknown category 7"):
        validate_coco(document)
    document = build_coco(images, copy.deepcopy(annotations), categories, "/x", "bad")
    document["annotations"][0]["image_id"] = 9
    with pytest.raises(CocoValidationError, match="annotation 1 has unknown image 9"):
        validate_coco(document)


def test_validate_rejects_rle_whose_area_does_not_match(coco_parts):
    images, annotations, categories, masks = coco_parts
    document = build_coco(images, copy.deepcopy(annotations), categories, "/x", "bad")
    other = masks[1].copy()
    other[0, 0] = True  # one pixel more than the recorded area
    document["annotations"][0]["segmentation"] = encode_rle(other)
    with pytest.raises(CocoValidationError, match="annotation 1 does not round-trip"):
        validate_coco(document)
    document = build_coco(images, copy.deepcopy(annotations), categories, "/x", "bad")
    document["annotations"][1]["area"] += 5
    with pytest.raises(CocoValidationError, match="annotation 2 does not round-trip"):
        validate_coco(document)


def test_validate_rejects_rle_of_the_wrong_size(coco_parts):
    images, annotations, categories, masks = coco_parts
    document = build_coco(images, annotations, categories, "/x", "bad")
    document["annotations"][0]["segmentation"] = encode_rle(masks[1].T)  # same area, transposed frame
    with pytest.raises(CocoValidationError, match="annotation 1 has the wrong size"):
        validate_coco(document)


def test_write_coco_loads_in_pycocotools(coco_parts, tmp_path):
    images, annotations, categories, masks = coco_parts
    document = build_coco(images, annotations, categories, "/x", "ok")
    path = tmp_path / "out" / "annotations.json"
    counts = write_coco(document, path)
    assert counts == {"images": 2, "annotations": 3, "categories": 2}
    assert json.loads(path.read_text()) == document
    assert not [p for p in path.parent.iterdir() if p.name != "annotations.json"]  # no temp files left
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2]
    assert coco.getAnnIds(imgIds=[2]) == []
    assert sorted(coco.getCatIds()) == [1, 2]
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert ann["iscrowd"] == 0
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[ann["id"]])
        assert ann["area"] == int(masks[ann["id"]].sum())
    assert sorted(coco.getAnnIds(catIds=[2])) == [2, 3]


def test_failed_write_keeps_the_previous_file(coco_parts, tmp_path):
    images, annotations, categories, _ = coco_parts
    path = tmp_path / "annotations.json"
    write_coco(build_coco(images, annotations, categories, "/x", "good"), path)
    before = path.read_bytes()
    bad = build_coco(images, copy.deepcopy(annotations), categories, "/x", "bad")
    bad["annotations"][0]["category_id"] = 99
    with pytest.raises(CocoValidationError):
        write_coco(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.json"]
    # and a failed first write leaves nothing behind
    fresh = tmp_path / "new.json"
    with pytest.raises(CocoValidationError):
        write_coco(bad, fresh)
    assert not fresh.exists()


# --- guided-filter refinement ----------------------------------------------------------------------

def test_guided_filter_keeps_a_constant_source_constant():
    rng = np.random.default_rng(0)
    guide = rng.random((40, 50)).astype(np.float32)
    for value in (0.0, 0.3, 1.0):
        out = guided_filter(guide, np.full((40, 50), value, np.float32), radius=3, eps=1e-3)
        np.testing.assert_allclose(out, value, atol=1e-4)


def test_guided_filter_follows_the_guide_edge():
    guide = np.zeros((32, 32), np.float32)
    guide[:, 12:] = 1.0  # the true edge at column 12
    for offset, snapped in ((14, True), (16, False)):
        source = np.zeros((32, 32), np.float32)
        source[:, offset:] = 1.0  # a blocky edge 2 or 4 px off
        out = guided_filter(guide, source, radius=6, eps=1e-4)
        assert np.abs(out[:, :12]).max() < 1e-3  # nothing leaks across the guide edge
        assert (out[:, 12] - out[:, 11]).min() > 0.3  # the output steps where the guide does
        wrong_before = int(((source > 0.5) != (guide > 0.5))[0].sum())
        wrong_after = int(((out > 0.5) != (guide > 0.5))[0].sum())
        assert wrong_after < wrong_before
        assert (wrong_after == 0) == snapped


def test_refine_masks_snaps_a_blocky_square_to_the_true_edge():
    height = width = 96  # 12 x 12 grid of 8-pixel cells
    truth = np.zeros((height, width), bool)
    truth[21:62, 27:70] = True  # edges not on cell borders
    image = np.full((height, width, 3), 60, np.uint8)
    image[truth] = (220, 200, 180)
    patch = coverage_on_grid(truth, (12, 12)) > 0.5
    refined, coarse = refine_masks(image, patch[None])
    assert refined.shape == coarse.shape == (1, height, width)
    assert refined.dtype == coarse.dtype == bool
    np.testing.assert_array_equal(coarse[0], resize_nearest(patch, height, width))
    blocky_iou = iou(coarse[0], truth)
    refined_iou = iou(refined[0], truth)
    assert blocky_iou < 0.9
    assert refined_iou > 0.95
    assert refined_iou > blocky_iou


def test_refine_masks_on_a_large_image_is_refined_at_a_capped_size():
    # 1100 px > REFINE_MAX_SIDE: the work is done smaller and upsampled back to the image size
    height, width = 1100, 550
    truth = np.zeros((height, width), bool)
    truth[230:700, 100:380] = True
    image = np.full((height, width, 3), 30, np.uint8)
    image[truth] = 240
    patch = coverage_on_grid(truth, (22, 11)) > 0.5
    refined, coarse = refine_masks(image, patch[None])
    assert refined.shape == coarse.shape == (1, height, width)
    assert iou(refined[0], truth) > iou(coarse[0], truth)
    assert iou(refined[0], truth) > 0.95


def test_refine_masks_with_no_masks():
    refined, coarse = refine_masks(np.zeros((20, 30, 3), np.uint8), np.zeros((0, 4, 6), bool))
    assert refined.shape == coarse.shape == (0, 20, 30)


def test_coco_writer_streams_one_image_at_a_time(coco_parts, tmp_path):
    """The writer's file equals write_coco's document; an image that fails its check (or any error before the
    end) leaves the previous file as it was; ids must be unique (images) and increasing (annotations)."""
    images, annotations, categories, _ = coco_parts
    path = tmp_path / "annotations.json"
    with CocoWriter(path, categories, "/x", "ok") as writer:
        writer.add_image(images[0], annotations)
        writer.add_image(images[1], [])
    assert writer.counts == {"images": 2, "annotations": 3, "categories": 2}
    assert json.loads(path.read_text()) == build_coco(images, annotations, categories, "/x", "ok")
    assert count_annotations(path) == 3
    before = path.read_bytes()
    with pytest.raises(CocoValidationError, match="image id 1 is listed twice"):
        with CocoWriter(path, categories, "/x", "bad") as writer:
            writer.add_image(images[0], annotations)
            writer.add_image(images[0], [])
    with pytest.raises(CocoValidationError, match="annotation id 2 does not follow 3"):
        with CocoWriter(path, categories, "/x", "bad") as writer:
            writer.add_image(images[0], annotations)
            writer.add_image({**images[1], "id": 5}, [{**annotations[1], "image_id": 5}])
    bad = copy.deepcopy(annotations)
    bad[2]["area"] += 1
    with pytest.raises(CocoValidationError, match="annotation 3 does not round-trip"):
        with CocoWriter(path, categories, "/x", "bad") as writer:
            writer.add_image(images[0], bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.json"]


def test_count_annotations_without_loading(tmp_path):
    path = tmp_path / "pretty.json"
    records = [{"id": i, "iscrowd": 0, "name": 'say "iscrowd": no'} for i in range(1, 15001)]
    path.write_text(json.dumps({"annotations": records}, indent=2))  # > 1 MiB: keys fall across chunks
    assert path.stat().st_size > 1 << 20
    assert count_annotations(path) == 15000
    assert count_annotations(tmp_path / "missing.json") is None
