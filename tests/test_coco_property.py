"""Property tests: masks and categories survive COCO, RLE, correction files and the category table."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine.io.coco import annotation_record, build_coco, iter_coco_images, write_coco
from engine.io.coco_reader import CocoFile
from engine.masks import decode_rle, encode_rle
from engine.output.export import mask_to_polygons
from engine.state.corrections import (
    Category,
    CategoryTable,
    ImageCorrection,
    load_categories,
    load_correction,
    save_categories,
    save_correction,
)

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def label_maps(draw):
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    n = draw(st.integers(0, 6))
    labels = draw(arrays(np.uint16, (h, w), elements=st.integers(0, n)))
    categories = {k: draw(st.integers(1, 4)) for k in range(1, n + 1)}
    return labels, categories


@SETTINGS
@given(label_maps())
def test_instances_round_trip_through_a_coco_file(tmp_path_factory, case):
    labels, categories = case
    present = [k for k in range(1, len(categories) + 1) if (labels == k).any()]
    masks = np.stack([labels == k for k in present]) if present else np.zeros((0, *labels.shape), bool)
    ids = [categories[k] for k in present]
    correction = ImageCorrection.from_instances(labels.shape, masks, ids)
    got_masks, got_ids = correction.instances()
    assert np.array_equal(got_masks, masks) and got_ids.tolist() == ids
    records = [annotation_record(i + 1, 1, c, m) for i, (m, c) in enumerate(zip(got_masks, got_ids))]
    document = build_coco([{"id": 1, "file_name": "a/ü b.png", "width": labels.shape[1],
                            "height": labels.shape[0]}], records,
                          [{"id": c, "name": f"c{c}", "supercategory": "object"} for c in range(1, 5)], "/x", "t")
    path = tmp_path_factory.mktemp("coco") / "a.json"
    write_coco(document, path)
    ((name, _, read_masks, read_ids),) = list(iter_coco_images(path))
    assert name == "a/ü b.png"
    assert read_masks.shape == masks.shape and np.array_equal(read_masks, masks)
    assert read_ids.tolist() == ids
    with CocoFile(path) as coco:
        assert [c["id"] for c in coco.categories] == [1, 2, 3, 4]


@SETTINGS
@given(arrays(bool, st.tuples(st.integers(1, 50), st.integers(1, 50))) | st.builds(
    lambda h, w, v: np.full((h, w), v), st.integers(1, 30), st.integers(1, 30), st.booleans()))
def test_rle_round_trip(mask):
    rle = encode_rle(mask)
    json.dumps(rle)
    assert np.array_equal(decode_rle(json.loads(json.dumps(rle))), mask)


@SETTINGS
@given(arrays(bool, st.tuples(st.integers(1, 25), st.integers(1, 25))))
def test_every_polygon_has_three_points_and_covers_the_mask(mask):
    from pycocotools import mask as mask_utils
    from scipy import ndimage

    polygons, _ = mask_to_polygons(mask)
    if not mask.any():
        assert polygons == []
        return
    assert polygons and all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
    h, w = mask.shape
    drawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)
    for part in range(1, ndimage.label(mask)[1] + 1):  # no part is lost
        assert (drawn & (ndimage.label(mask)[0] == part)).any()


@SETTINGS
@given(label_maps(), st.booleans())
def test_correction_file_round_trip(tmp_path_factory, case, reviewed):
    labels, categories = case
    root = tmp_path_factory.mktemp("proj")
    save_correction(root, "img_1", ImageCorrection(labels, categories, reviewed))
    back = load_correction(root, "img_1")
    assert np.array_equal(back.labels, labels) and back.labels.dtype == labels.dtype
    assert back.classes == categories and back.reviewed == reviewed


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def tables(draw):
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(1, 50), min_size=n, max_size=n, unique=True))
    cats = [Category(i, draw(names), draw(st.sampled_from([None, "background", "ignore"])),
                     draw(st.none() | st.sampled_from(ids + [99])),
                     draw(st.none() | st.lists(st.integers(0, 255), min_size=3, max_size=3))) for i in ids]
    return CategoryTable(cats)


def _cyclic(table: CategoryTable) -> bool:
    by_id = table.by_id()
    for c in table.categories:
        seen, cur = set(), c.id
        while cur in by_id and by_id[cur].merged_into is not None:
            if cur in seen:
                return True
            seen.add(cur)
            cur = by_id[cur].merged_into
    return False


def _fail(*_):
    raise TimeoutError("resolve() did not return: a merge cycle loops forever")


@pytest.fixture(scope="module")
def alarm():
    old = signal.signal(signal.SIGALRM, _fail)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@SETTINGS
@given(tables())
def test_category_table_round_trip_and_resolve_terminates(tmp_path_factory, alarm, table):
    signal.alarm(5)
    resolved = {c.id: table.resolve(c.id) for c in table.categories}  # must return, cycle or not
    signal.alarm(0)
    exported = {c["id"] for c in table.exported()}
    root = tmp_path_factory.mktemp("cats")
    if any(c.merged_into is not None and c.merged_into not in table.by_id() for c in table.categories):
        with pytest.raises(ValueError, match="does not list"):  # it would not load again
            save_categories(root, table)
        return
    if _cyclic(table):
        with pytest.raises(ValueError, match="cycle"):
            save_categories(root, table)
        return
    assert all(r is None or r in exported for r in resolved.values())  # every mask lands in an exported one
    save_categories(root, table)
    back = load_categories(root)
    assert back == table
    assert {c.id: back.resolve(c.id) for c in back.categories} == resolved


def test_merging_back_and_forth_leaves_no_cycle(tmp_path):
    from engine.state import review
    (tmp_path / "clusters.json").write_text(json.dumps({"id": "c", "k": 2, "masks": [],
                                                        "clusters": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}))
    review.merge_categories(tmp_path, [1], into=2)
    review.merge_categories(tmp_path, [2], into=1)
    table = load_categories(tmp_path)
    assert table.resolve(1) == 1 and table.resolve(2) == 1
    assert [c["id"] for c in table.exported()] == [1]
