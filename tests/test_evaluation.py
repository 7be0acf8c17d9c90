"""Known-answer tests for engine.output.evaluation (Hungarian matching, mIoU, mask AP, CorLoc, ground-truth loading)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from engine.masks import encode_rle
from engine.output.evaluation import (
    GroundTruthError,
    ImagePrediction,
    ImageTruth,
    evaluate,
    hungarian_match,
    load_ground_truth,
)


def rect(shape, r0, r1, c0, c1):
    """Boolean mask with rows r0..r1-1 and columns c0..c1-1 set."""
    mask = np.zeros(shape, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def truth_from(name, shape, instances):
    """ImageTruth from (class id, mask) pairs; later instances painted on top."""
    semantic = np.zeros(shape, dtype=np.int64)
    for class_id, mask in instances:
        semantic[mask] = class_id
    masks = np.stack([m for _, m in instances]) if instances else np.zeros((0, *shape), dtype=bool)
    classes = np.array([c for c, _ in instances], dtype=np.int64)
    return ImageTruth(name, semantic, masks, classes)


def prediction_from(name, semantic, instances):
    """ImagePrediction from a semantic map and (cluster id, mask, score) triples."""
    shape = semantic.shape
    masks = np.stack([m for _, m, _ in instances]) if instances else np.zeros((0, *shape), dtype=bool)
    return ImagePrediction(name, semantic, masks, np.array([c for c, _, _ in instances], dtype=np.int64),
                           np.array([s for _, _, s in instances], dtype=np.float64))


def toy_truths():
    """Three 32x40 images, classes 1..3, non-overlapping instances (one image with two of class 1)."""
    shape = (32, 40)
    return {
        "img_a.jpg": truth_from("img_a.jpg", shape, [(1, rect(shape, 2, 12, 3, 15)), (2, rect(shape, 18, 30, 20, 38))]),
        "img_b.jpg": truth_from("img_b.jpg", shape, [(3, rect(shape, 0, 10, 0, 10)), (1, rect(shape, 15, 25, 5, 30)),
                                                     (1, rect(shape, 26, 31, 33, 39))]),
        "img_c.jpg": truth_from("img_c.jpg", shape, [(2, rect(shape, 5, 25, 5, 25))]),
    }


def permuted_predictions(truths, cluster_of):
    predictions = {}
    for name, truth in truths.items():
        semantic = np.vectorize(cluster_of.get)(truth.semantic)
        instances = [(cluster_of[int(c)], m, 0.9 - 0.1 * i)
                     for i, (m, c) in enumerate(zip(truth.instance_masks, truth.instance_classes))]
        predictions[name] = prediction_from(name, semantic, instances)
    return predictions


# ------------------------------------------------------------------------------------------------ evaluate


def test_perfect_predictions_with_permuted_cluster_ids():
    truths = toy_truths()
    cluster_of = {0: 4, 1: 7, 2: 3, 3: 5}  # background gets a cluster id too
    result = evaluate(permuted_predictions(truths, cluster_of), truths)
    assert result["miou"] == pytest.approx(1.0)
    assert result["per_class_iou"] == {"0": 1.0, "1": 1.0, "2": 1.0, "3": 1.0}
    assert result["matching"] == {str(c): g for g, c in cluster_of.items()}
    assert result["ap"] == pytest.approx(1.0) and result["ap50"] == pytest.approx(1.0)
    assert result["ap_agnostic"] == pytest.approx(1.0) and result["ap50_agnostic"] == pytest.approx(1.0)
    assert result["corloc"] == 1.0 and result["corloc_images"] == 3
    assert result["images"] == 3 and result["missing_predictions"] == 0 and result["unmatched_predictions"] == 0
    assert result["unmatched_clusters"] == [] and result["unmatched_classes"] == []
    json.dumps(result, allow_nan=False)


def test_one_class_fully_wrong_gives_zero_iou_for_it():
    shape = (10, 10)
    cls1, cls2 = rect(shape, 0, 2, 0, 10), rect(shape, 5, 8, 0, 10)  # 20 and 30 pixels; background 50
    truths = {"x.png": truth_from("x.png", shape, [(1, cls1), (2, cls2)])}
    semantic = np.where(cls1, 6, 0)  # class 2 predicted as background
    predictions = {"x.png": prediction_from("x.png", semantic, [(6, cls1, 0.8)])}
    result = evaluate(predictions, truths)
    # confusion: cluster 0 -> {bg 50, class2 30}; cluster 6 -> {class1 20}
    assert result["matching"] == {"0": 0, "6": 1}
    assert result["per_class_iou"]["0"] == pytest.approx(50 / 80)
    assert result["per_class_iou"]["1"] == pytest.approx(1.0)
    assert result["per_class_iou"]["2"] == 0.0
    assert result["miou"] == pytest.approx((50 / 80 + 1.0 + 0.0) / 3)
    assert result["unmatched_classes"] == [2]
    # class-aware AP: class 1 perfect, class 2 never detected -> mean of 1.0 and 0.0
    assert result["ap50"] == pytest.approx(0.5)


def test_more_clusters_than_classes_unmatched_cluster_counts_as_miss():
    shape = (10, 10)
    cls1 = rect(shape, 0, 4, 0, 10)  # 40 pixels
    truths = {"x.png": truth_from("x.png", shape, [(1, cls1)])}
    semantic = np.zeros(shape, dtype=np.int64)
    semantic[0:3] = 2   # 30 pixels of class 1
    semantic[3:4] = 9   # the other 10: a surplus cluster
    left, right = rect(shape, 0, 3, 0, 10), rect(shape, 3, 4, 0, 10)
    # the surplus cluster's instance scores highest: a false positive ranked first if it is kept
    predictions = {"x.png": prediction_from("x.png", semantic, [(2, left, 0.5), (9, right, 0.9)])}
    result = evaluate(predictions, truths)
    assert result["matching"] == {"0": 0, "2": 1}
    assert result["unmatched_clusters"] == [9]
    assert result["per_class_iou"]["1"] == pytest.approx(30 / 40)
    assert result["per_class_iou"]["0"] == pytest.approx(1.0)
    assert result["ap50"] == pytest.approx(1.0)  # IoU 0.75; the unmatched cluster's instance is dropped
    # agnostic keeps it: FP then TP -> precision 0.5 at recall 1 -> AP50 0.5
    assert result["ap50_agnostic"] == pytest.approx(0.5)
    assert result["corloc"] == 0.0  # top-scoring instance (box IoU 0.25) decides, whatever its cluster


@pytest.mark.parametrize("width, expected", [(6, 1.0), (4, 0.0)])  # mask IoU 0.6 resp. 0.4
def test_single_instance_ap50_threshold(width, expected):
    shape = (20, 20)
    gt_mask = rect(shape, 0, 10, 0, 10)
    pred_mask = rect(shape, 0, 10, 0, width)
    truths = {"s.png": truth_from("s.png", shape, [(1, gt_mask)])}
    predictions = {"s.png": prediction_from("s.png", np.where(gt_mask, 1, 0), [(1, pred_mask, 0.99)])}
    result = evaluate(predictions, truths)
    assert result["matching"] == {"0": 0, "1": 1}
    assert result["ap50"] == pytest.approx(expected)
    assert result["ap50_agnostic"] == pytest.approx(expected)
    assert result["corloc"] == expected  # box IoU equals mask IoU for rectangles
    if expected == 0.0:
        assert result["ap"] == 0.0
    else:
        assert 0.0 < result["ap"] < 0.5  # matched at .5 and .55 (maybe .6) out of ten thresholds


def test_empty_predictions_give_zero_not_minus_one():
    truths = toy_truths()
    empty = {name: prediction_from(name, np.zeros_like(t.semantic), []) for name, t in truths.items()}
    result = evaluate(empty, truths)
    for key in ("ap", "ap50", "ap_agnostic", "ap50_agnostic"):
        assert result[key] == 0.0
    assert result["corloc"] == 0.0
    assert result["matching"] == {"0": 0}
    json.dumps(result, allow_nan=False)

    missing = evaluate({}, truths)  # no predictions at all: counted, evaluated as empty
    assert missing["missing_predictions"] == 3 and missing["images"] == 3
    assert missing["ap"] == 0.0 and missing["corloc"] == 0.0
    assert missing["miou"] == pytest.approx(result["miou"])


def test_prediction_names_matched_by_stem_and_unknown_ones_ignored():
    truths = toy_truths()
    renamed = {name.replace(".jpg", ".png"): t for name, t in truths.items()}
    predictions = permuted_predictions(truths, {0: 0, 1: 1, 2: 2, 3: 3})
    predictions["other.jpg"] = prediction_from("other.jpg", np.zeros((5, 5), dtype=np.int64), [])
    result = evaluate(predictions, renamed)
    assert result["unmatched_predictions"] == 1 and result["missing_predictions"] == 0
    assert result["miou"] == pytest.approx(1.0)


def test_shape_mismatch_names_the_image():
    truths = toy_truths()
    bad = {"img_a.jpg": prediction_from("img_a.jpg", np.zeros((8, 8), dtype=np.int64), [])}
    with pytest.raises(ValueError, match="img_a.jpg"):
        evaluate(bad, truths)


# ------------------------------------------------------------------------------------------ hungarian_match


def test_hungarian_match_hand_made_confusion():
    confusion = np.array([
        [50, 0, 10],   # pred 0: mostly background
        [0, 5, 40],    # pred 1: class 2
        [5, 30, 0],    # pred 2: class 1
        [0, 0, 0],     # pred 3: never predicted -> not matched
    ])
    assert hungarian_match(confusion) == {0: 0, 1: 2, 2: 1}


def test_hungarian_match_beats_greedy_and_handles_rectangles():
    # greedy by largest count would give pred 0 -> gt 0 and leave pred 1 with nothing useful
    confusion = np.array([[10, 10], [10, 0]])
    # IoU: p0g0 = 10/30, p0g1 = 10/20, p1g0 = 10/20, p1g1 = 0  -> optimum {0: 1, 1: 0}
    assert hungarian_match(confusion) == {0: 1, 1: 0}
    wide = np.array([[8, 1, 0], [0, 2, 9]])  # more classes than clusters: class 1 left out
    assert hungarian_match(wide) == {0: 0, 1: 2}
    tall = np.array([[8, 0], [1, 0], [0, 9]])  # more clusters than classes: cluster 1 left out
    assert hungarian_match(tall) == {0: 0, 2: 1}
    assert hungarian_match(np.zeros((3, 3))) == {}


# ------------------------------------------------------------------------------------- load_ground_truth


def polygon_of(mask):
    """Polygon (x, y corners on pixel boundaries) of a rectangular mask; pycocotools fills it exactly."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return [[float(c0), float(r0), float(c1), float(r0), float(c1), float(r1), float(c0), float(r1)]]


@pytest.fixture
def same_data_two_formats(tmp_path):
    """The same ground truth as a COCO json (RLE + polygons + a crowd region) and as a folder of label images."""
    shape = (20, 24)
    big = rect(shape, 2, 16, 2, 20)       # class 1, RLE
    small = rect(shape, 5, 9, 5, 10)      # class 2, polygon, inside big: must stay visible
    crowd = rect(shape, 17, 20, 0, 6)     # class 3, crowd: semantic map only
    other1 = rect(shape, 0, 5, 0, 5)      # image b: class 1 (polygon)
    other2 = rect(shape, 10, 20, 10, 24)  # image b: class 2 (RLE)
    expected = {"a": np.zeros(shape, np.int64), "b": np.zeros(shape, np.int64), "c": np.zeros(shape, np.int64)}
    expected["a"][big], expected["a"][small], expected["a"][crowd] = 1, 2, 3
    expected["b"][other1], expected["b"][other2] = 1, 2

    h, w = shape
    anns = [  # small listed before big: painting must go by area, not file order
        {"id": 1, "image_id": 1, "category_id": 2, "segmentation": polygon_of(small), "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": encode_rle(big), "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 3, "segmentation": encode_rle(crowd), "iscrowd": 1},
        {"id": 4, "image_id": 2, "category_id": 1, "segmentation": polygon_of(other1), "iscrowd": 0},
        {"id": 5, "image_id": 2, "category_id": 2, "segmentation": encode_rle(other2), "iscrowd": 0},
    ]
    for ann in anns:
        ann["area"], ann["bbox"] = 0, [0, 0, 0, 0]  # loader must not trust these
    document = {
        "images": [{"id": i, "file_name": f"{n}.jpg", "height": h, "width": w} for i, n in enumerate("abc", 1)],
        "annotations": anns,
        "categories": [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)],
    }
    coco_path = tmp_path / "gt.json"
    coco_path.write_text(json.dumps(document))

    folder = tmp_path / "labels"
    folder.mkdir()
    Image.fromarray(expected["a"].astype(np.uint8), mode="L").save(folder / "a.png")
    Image.fromarray(expected["b"].astype(np.uint8), mode="L").save(folder / "b.png")
    tifffile.imwrite(folder / "c.tif", expected["c"].astype(np.uint16))
    (folder / "notes.txt").write_text("not a label image; ignored")
    return coco_path, folder, expected


def test_coco_and_label_folder_give_same_semantic_maps(same_data_two_formats):
    coco_path, folder, expected = same_data_two_formats
    from_coco = load_ground_truth(coco_path)
    from_folder = load_ground_truth(folder)
    assert sorted(from_coco) == ["a.jpg", "b.jpg", "c.jpg"]
    assert sorted(from_folder) == ["a.png", "b.png", "c.tif"]
    for stem, folder_name in (("a", "a.png"), ("b", "b.png"), ("c", "c.tif")):
        np.testing.assert_array_equal(from_coco[f"{stem}.jpg"].semantic, expected[stem])
        np.testing.assert_array_equal(from_folder[folder_name].semantic, expected[stem])
    a = from_coco["a.jpg"]
    assert sorted(a.instance_classes.tolist()) == [1, 2]  # the crowd region is not an instance
    assert a.instance_masks.shape == (2, 20, 24) and a.instance_masks.dtype == bool
    assert from_coco["c.jpg"].instance_masks.shape == (0, 20, 24)
    # folder instances are connected components per class: big (with a hole), small, the crowd block
    assert sorted(from_folder["a.png"].instance_classes.tolist()) == [1, 2, 3]
    # both ground truths evaluate against the same predictions by stem
    predictions = {f"{s}.jpg": prediction_from(f"{s}.jpg", expected[s], []) for s in "abc"}
    for truths in (from_coco, from_folder):
        result = evaluate(predictions, truths)
        assert result["miou"] == pytest.approx(1.0)
        assert result["missing_predictions"] == 0 and result["unmatched_predictions"] == 0


def test_label_folder_instances_are_8_connected(tmp_path):
    labels = np.zeros((10, 10), dtype=np.uint8)
    labels[1:3, 1:3] = 1
    labels[3:5, 3:5] = 1   # touches the first block at a corner only -> same instance (8-connected)
    labels[7:9, 7:9] = 1   # separate
    labels[0, 9] = 255     # void, ignored
    Image.fromarray(labels, mode="L").save(tmp_path / "x.png")
    truth = load_ground_truth(tmp_path, ignore_value=255)["x.png"]
    assert truth.instance_classes.tolist() == [1, 1]
    assert sorted(m.sum() for m in truth.instance_masks) == [4, 8]
    assert truth.semantic[0, 9] == -1
    prediction = {"x.png": prediction_from("x.png", np.where(labels == 1, 1, 0), [])}
    result = evaluate(prediction, {"x.png": truth})
    assert result["miou"] == pytest.approx(1.0)  # the void pixel (predicted 0) is not counted


def test_unreadable_ground_truth_names_the_file(tmp_path):
    broken_json = tmp_path / "broken_gt.json"
    broken_json.write_text("{ this is not json")
    with pytest.raises(GroundTruthError, match="broken_gt.json"):
        load_ground_truth(broken_json)

    folder = tmp_path / "labels"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(folder / "good.png")
    (folder / "corrupt_label.png").write_bytes(b"not a png at all")
    with pytest.raises(GroundTruthError, match="corrupt_label.png"):
        load_ground_truth(folder)

    rgb_folder = tmp_path / "rgb"
    rgb_folder.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8), mode="RGB").save(rgb_folder / "colour_label.png")
    with pytest.raises(GroundTruthError, match="colour_label.png"):
        load_ground_truth(rgb_folder)

    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_ground_truth(tmp_path / "nowhere.json")
