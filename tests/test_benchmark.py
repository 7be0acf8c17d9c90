"""The benchmark scripts: known-answer scoring of the real-image benchmark, and both scripts end to end on a few
images with a random network (mechanics and documented keys, not quality)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from benchmarks import real_dev
from benchmarks.real_dev import RealImage, StagePrediction, load_ground_truth, recurring_classes, score_stage
from benchmarks.run_benchmark import main
from engine.masks import encode_rle
from engine.output.evaluation import ImagePrediction, ImageTruth, evaluate

H, W = 40, 60


def rect(r0, r1, c0, c1, shape=(H, W)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


def box_of(mask) -> list:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def mask_image(name, source, masks, classes) -> RealImage:
    masks = np.stack(masks)
    return RealImage(name, source, "mask", H, W, np.array([box_of(m) for m in masks]), np.array(classes), masks)


def box_image(name, source, boxes, classes) -> RealImage:
    return RealImage(name, source, "box", H, W, np.array(boxes, float), np.array(classes), None)


# Two "street" images with a car (class 6) and a person (1); a "shelf" image whose two products (8, 9) appear
# once each (they do not recur); an aerial image with two tree boxes (21) and another with one.
CAR1, PERSON1 = rect(5, 20, 5, 30), rect(22, 38, 40, 50)
CAR2, PERSON2 = rect(10, 30, 20, 50), rect(2, 12, 2, 10)
PRODUCT_A, PRODUCT_B = rect(0, 20, 0, 20), rect(25, 40, 30, 60)
TREE_A, TREE_B, TREE_C = rect(2, 12, 2, 12), rect(20, 35, 30, 50), rect(5, 25, 10, 40)
IMAGES = [
    mask_image("street1.jpg", "street", [CAR1, PERSON1], [6, 1]),
    mask_image("street2.jpg", "street", [CAR2, PERSON2], [6, 1]),
    mask_image("shelf.png", "shelf", [PRODUCT_A, PRODUCT_B], [8, 9]),
    box_image("aerial1.png", "aerial", [box_of(TREE_A), box_of(TREE_B)], [21, 21]),
    box_image("aerial2.png", "aerial", [box_of(TREE_C)], [21]),
]
RECURRING = recurring_classes(IMAGES)


def predict(masks_by_image: dict, classes_by_image: dict | None = None, scores_by_image: dict | None = None) -> dict:
    """StagePredictions; with classes, the semantic map is painted from the masks (pseudo-class ids)."""
    predictions = {}
    for name, masks in masks_by_image.items():
        masks = np.stack(masks) if len(masks) else np.zeros((0, H, W), bool)
        scores = np.asarray(scores_by_image[name] if scores_by_image else np.linspace(1.0, 0.5, len(masks)), float)
        semantic = None
        if classes_by_image is not None:
            semantic = np.zeros((H, W), np.int64)
            for mask, cls in zip(masks, classes_by_image[name]):
                semantic[mask] = cls
        predictions[name] = StagePrediction(masks, scores, semantic)
    return predictions


PERFECT_MASKS = {"street1.jpg": [CAR1, PERSON1], "street2.jpg": [CAR2, PERSON2], "shelf.png": [PRODUCT_A, PRODUCT_B],
                 "aerial1.png": [TREE_A, TREE_B], "aerial2.png": [TREE_C]}
# pseudo-classes: car -> 3, person -> 7, the products -> 5 (one cluster for both), trees -> 2
PERFECT_CLASSES = {"street1.jpg": [3, 7], "street2.jpg": [3, 7], "shelf.png": [5, 5], "aerial1.png": [2, 2],
                   "aerial2.png": [2]}


def test_recurring_classes_are_those_annotated_in_two_images():
    assert RECURRING == [1, 6, 21]


def test_perfect_predictions_score_one_everywhere():
    scores = score_stage(IMAGES, predict(PERFECT_MASKS, PERFECT_CLASSES), RECURRING)
    total = scores["total"]
    for key in ("corloc", "box_ap50", "mask_ap50", "box_recall50", "mask_recall50", "miou", "miou_objects"):
        assert total[key] == pytest.approx(1.0), key
    assert total["images"] == 5 and total["objects"] == 9 and total["predicted_masks"] == 9
    assert scores["matching"] == {"0": 0, "3": 6, "7": 1}  # the products' pseudo-class 5 matches nothing
    assert set(scores["per_source"]) == {"street", "shelf", "aerial"}
    aerial = scores["per_source"]["aerial"]
    assert aerial["corloc"] == 1.0 and aerial["box_ap50"] == pytest.approx(1.0)
    assert aerial["mask_ap50"] is None and aerial["mask_recall50"] is None and aerial["miou"] is None
    shelf = scores["per_source"]["shelf"]
    assert shelf["mask_ap50"] == pytest.approx(1.0)
    assert shelf["miou"] is None  # only non-recurring classes: their pixels are ignored, background alone
    assert scores["per_source"]["street"]["miou"] == pytest.approx(1.0)


def test_the_source_mean_weighs_every_source_alike():
    # the aerial source's 3 trees are all found, the street source's 4 objects are not: pooled recall 3 / 9,
    # mean over the sources (aerial 1, shelf 0, street 0) 1 / 3; mask recall: no aerial masks, so 0
    trees_only = {k: v for k, v in PERFECT_MASKS.items() if k.startswith("aerial")}
    scores = score_stage(IMAGES, predict(trees_only), RECURRING)
    assert scores["total"]["box_recall50"] == pytest.approx(3 / 9)
    mean = scores["source_mean"]
    assert mean["corloc"] == pytest.approx(1 / 3) and mean["box_recall50"] == pytest.approx(1 / 3)
    assert mean["mask_ap50"] == 0.0 and mean["mask_recall50"] == 0.0  # over the two sources with masks


def test_no_predictions_score_zero():
    empty = {name: [] for name in PERFECT_MASKS}
    total = score_stage(IMAGES, predict(empty), RECURRING)["total"]
    for key in ("corloc", "box_ap50", "mask_ap50", "box_recall50", "mask_recall50"):
        assert total[key] == 0.0, key
    assert "miou" not in total  # class-agnostic predictions have no semantic map


def test_missing_images_count_as_failures():
    only_street = {k: v for k, v in PERFECT_MASKS.items() if k.startswith("street")}
    total = score_stage(IMAGES, predict(only_street), RECURRING)["total"]
    assert total["corloc"] == pytest.approx(2 / 5)
    assert total["box_recall50"] == pytest.approx(4 / 9)
    assert total["mask_recall50"] == pytest.approx(4 / 6)


def test_corloc_uses_the_top_scoring_mask_and_recall_any_mask():
    # street1: the best-scored mask is a wrong box, the right one comes second
    wrong = rect(0, 4, 0, 4)
    masks = {"street1.jpg": [wrong, CAR1]}
    total = score_stage(IMAGES[:1], predict(masks, scores_by_image={"street1.jpg": [0.9, 0.1]}), RECURRING)["total"]
    assert total["corloc"] == 0.0
    assert total["box_recall50"] == pytest.approx(0.5) and total["mask_recall50"] == pytest.approx(0.5)
    total = score_stage(IMAGES[:1], predict(masks, scores_by_image={"street1.jpg": [0.1, 0.9]}), RECURRING)["total"]
    assert total["corloc"] == 1.0


def test_box_only_images_count_for_box_metrics_only():
    # a mask inside a tree box that covers it with box IoU >= 0.5: a box hit; the aerial images add no mask GT
    inner = rect(2, 11, 2, 12)  # box IoU 0.9 with TREE_A
    total = score_stage(IMAGES[3:4], predict({"aerial1.png": [inner]}), RECURRING)["total"]
    assert total["box_recall50"] == pytest.approx(0.5) and total["corloc"] == 1.0
    assert total["mask_ap50"] is None and total["mask_recall50"] is None
    # one of two boxes found with the only (correct) detection: precision 1 up to recall 0.5 -> AP50 ~ 0.5
    assert total["box_ap50"] == pytest.approx(0.5, abs=0.02)


def test_a_box_hit_is_not_a_mask_hit():
    ring = CAR1 & ~rect(7, 18, 7, 28)  # same tight box as the car, a fraction of its pixels
    total = score_stage(IMAGES[:1], predict({"street1.jpg": [ring]}), RECURRING)["total"]
    assert total["corloc"] == 1.0 and total["box_recall50"] == pytest.approx(0.5)
    assert total["mask_recall50"] == 0.0 and total["mask_ap50"] == 0.0


def test_miou_matches_engine_evaluation_with_the_same_ignored_pixels():
    # swap the person and the car's pseudo-classes in street2 and spill the person's class onto background
    masks = {"street1.jpg": [CAR1, PERSON1], "street2.jpg": [CAR2, PERSON2 | rect(30, 40, 0, 10)],
             "shelf.png": [PRODUCT_A]}
    classes = {"street1.jpg": [3, 7], "street2.jpg": [7, 7], "shelf.png": [3]}
    scores = score_stage(IMAGES, predict(masks, classes), RECURRING)
    truths, predictions = {}, {}
    for image in IMAGES[:3]:
        semantic = real_dev.ground_truth_semantic(image, RECURRING)
        truths[image.file_name] = ImageTruth(image.file_name, semantic, image.masks, image.classes)
        pred = predict(masks, classes)[image.file_name]
        predictions[image.file_name] = ImagePrediction(image.file_name, pred.semantic, pred.masks,
                                                       np.full(len(pred.masks), 1), pred.scores)
    reference = evaluate(predictions, truths)
    assert scores["total"]["miou"] == pytest.approx(reference["miou"])
    assert {k: pytest.approx(v, abs=1e-4) for k, v in reference["per_class_iou"].items()} == \
        scores["total"]["per_class_iou"]
    assert 0.0 < scores["total"]["miou"] < 1.0


def test_load_real_dev_reads_masks_boxes_and_sources(tmp_path):
    folder = write_real_dev(tmp_path / "real-dev")
    images = load_ground_truth(folder)
    assert [i.annotation for i in images] == ["mask", "mask", "box"]
    assert [i.source for i in images] == ["photos", "photos", "aerial"]
    first = images[0]
    assert first.masks.shape == (2, 96, 96) and first.masks[0].sum() == 30 * 40
    assert first.boxes[0].tolist() == [10.0, 20.0, 40.0, 30.0]
    assert images[2].masks is None and images[2].boxes.tolist() == [[5.0, 5.0, 20.0, 20.0], [50.0, 50.0, 30.0, 30.0]]
    assert recurring_classes(images) == [1]


def write_real_dev(folder: Path, dense_tile: bool = False) -> Path:
    """A three-image real-dev folder in the documented format: two mask images, one box-only image; with
    ``dense_tile`` a fourth, box-only image of a dense source (real-dev's figures leave it to the dense section)."""
    (folder / "images").mkdir(parents=True)
    crops = [data.astronaut()[60:156, 150:246], data.chelsea()[40:136, 100:196], data.coffee()[100:196, 200:296]]
    names = ["a.png", "b.png", "c.png"]
    sources, kinds = ["photos", "photos", "aerial"], ["mask", "mask", "box"]
    if dense_tile:
        crops.append(data.rocket()[0:96, 0:96])
        names.append("tile.png")
        sources.append(real_dev.DENSE_SOURCES[0])
        kinds.append("box")
    for name, pixels in zip(names, crops):
        Image.fromarray(pixels).save(folder / "images" / name)
    shape = (96, 96)
    obj, other = rect(20, 50, 10, 50, shape), rect(60, 90, 60, 90, shape)
    annotations = []
    for image_id, (mask, cls) in ((1, (obj, 1)), (1, (other, 2)), (2, (obj, 1))):
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls, "iscrowd": 0,
                            "segmentation": encode_rle(mask), "area": int(mask.sum()), "bbox": box_of(mask)})
    for image_id in range(3, len(names) + 1):
        for box in ([5, 5, 20, 20], [50, 50, 30, 30]):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 3, "iscrowd": 0,
                                "segmentation": None, "area": box[2] * box[3], "bbox": box})
    document = {
        "images": [{"id": i + 1, "file_name": n, "width": 96, "height": 96, "source": s, "annotation": a}
                   for i, (n, s, a) in enumerate(zip(names, sources, kinds))],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "once"}, {"id": 3, "name": "tree"}],
    }
    (folder / "ground_truth.json").write_text(json.dumps(document))
    return folder


def in_range(value) -> bool:
    return value is None or (isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0) or \
        value in (0, 1)


def test_real_dev_script_end_to_end_on_a_tiny_folder(tmp_path, capsys):
    folder = write_real_dev(tmp_path / "real-dev", dense_tile=True)
    out = tmp_path / "out"
    assert real_dev.main(["--out", str(out), "--real-dev", str(folder), "--weights", "random",
                          "--input-size", "56", "--seeds", "2", "--noise-runs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 3 and results["sources"] == {"aerial": 1, "photos": 2}
    # the dense tile is left to the dense section: not run, not scored here
    assert results["moved_to_dense"] == {real_dev.DENSE_SOURCES[0]: 1}
    assert 0 <= results["pool"]["tree_mask_recall50"] <= 1 and results["pool"]["images"] == 2  # the two with masks
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.png", "b.png", "c.png"]
    for stage in ("proposals", "clustered", "final"):
        assert set(results["source_mean"][stage]) == {"corloc", "box_ap50", "mask_ap50"}
        per_source = results[stage]["per_source"]
        assert results["source_mean"][stage]["corloc"] == pytest.approx(
            (per_source["aerial"]["corloc"] + per_source["photos"]["corloc"]) / 2)
        assert results["source_mean"][stage]["mask_ap50"] == per_source["photos"]["mask_ap50"]  # aerial: none
    assert set(results["seed_spread"]["runs"]["k_suggested"]["source_mean"]) == {"corloc", "box_ap50", "mask_ap50"}
    assert results["seed"] == 0 and json.loads((out / "seed-1" / "results.json").read_text())["seed"] == 1
    spread = results["seed_spread"]
    assert spread["seeds"] == [0, 1] and set(spread["runs"]) == {"k_suggested", "k_given"}
    assert spread["runs"]["k_suggested"]["corloc"]["min"] <= results["final"]["corloc"] \
        <= spread["runs"]["k_suggested"]["corloc"]["max"]
    assert list(spread["corrections"]) == ["0", "1", "2", "4"]
    assert results["recurring_classes"] == ["thing"] and results["k_given"] == 1
    assert results["runs"]["k_given"]["k"] == 1 and results["runs"]["k_suggested"]["num_classes"] is None
    for stage, keys in (("final", ("corloc", "box_ap50", "mask_ap50", "miou")),
                        ("proposals", ("corloc", "box_ap50", "mask_ap50")), ("clustered", ("miou",))):
        for key in keys:
            assert key in results[stage] and in_range(results[stage][key]), (stage, key)
        assert set(results[stage]["per_source"]) == {"aerial", "photos"}
        assert results[stage]["per_source"]["aerial"]["mask_ap50"] is None
        for metrics in results[stage]["per_source"].values():
            assert all(in_range(metrics[k]) for k in ("corloc", "box_ap50", "box_recall50")), metrics
    curve = results["corrections"]["curve"]
    assert list(curve) == ["0", "1", "2", "4"]
    assert [len(row["corrected"]) for row in curve.values()] == [0, 1, 2, 2]  # only 2 mask images to correct
    assert all(in_range(row["box_ap50"]) for row in curve.values())
    assert not set(results["corrections"]["held_out"]) & set(curve["4"]["corrected"])
    printed = capsys.readouterr().out
    assert "final photos" in printed and "proposals aerial" in printed and "k_given" in printed
    assert "what a correction buys" in printed and "seed spread" in printed and "final source mean" in printed
    assert f"scored in the dense section instead: {real_dev.DENSE_SOURCES[0]} (1 images)" in printed
    # the noise spread: the unperturbed default run and one run on noised copies, scored under their own names
    noise = results["noise_spread"]
    assert noise["runs"] == 1 and noise["grey_levels"] == 1 and noise["seed"] == 0
    assert noise["images_predicted"] == [3]  # every noised copy's predictions found under its own name
    assert set(noise["source_mean"]) == {"corloc", "box_ap50", "mask_ap50"}
    assert noise["corloc"]["min"] <= results["final"]["corloc"] <= noise["corloc"]["max"]
    assert sorted(p.name for p in (out / "noise-0" / "images").iterdir()) == ["a.png.png", "b.png.png", "c.png.png"]
    assert "noise spread of the default run's final stage" in printed


def test_noised_images_move_each_channel_by_at_most_one_grey_level_losslessly(tmp_path):
    folder = write_real_dev(tmp_path / "real-dev")
    images = [i for i in real_dev.load_ground_truth(folder) if i.annotation == "mask"]
    renamed = real_dev.noised_images(images, folder / "images", tmp_path / "noised", seed=0)
    assert [i.file_name for i in renamed] == [f"{i.file_name}.png" for i in images]
    assert [i.masks is j.masks for i, j in zip(images, renamed)] == [True, True]  # the same ground truth
    changes = []
    for image in images:
        original = np.asarray(Image.open(folder / "images" / image.file_name).convert("RGB"), np.int16)
        noised = np.asarray(Image.open(tmp_path / "noised" / f"{image.file_name}.png"), np.int16)
        changes.append(noised - original)
    change = np.concatenate([c.ravel() for c in changes])
    assert np.abs(change).max() == 1 and {-1, 0, 1} <= set(np.unique(change).tolist())
    again = real_dev.noised_images(images, folder / "images", tmp_path / "again", seed=0)
    other = real_dev.noised_images(images, folder / "images", tmp_path / "other", seed=1)
    first = np.asarray(Image.open(tmp_path / "noised" / again[0].file_name))
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "again" / again[0].file_name)))  # seeded
    assert not np.array_equal(first, np.asarray(Image.open(tmp_path / "other" / other[0].file_name)))


def test_the_simulated_reviewer_takes_sources_in_turn_and_the_category_on_screen():
    def image(name, source, kind="mask"):
        return real_dev.RealImage(name, source, kind, 4, 4, np.zeros((0, 4)), np.zeros(0, int), None)
    images = [image("b2", "b"), image("a1", "a"), image("a2", "a"), image("c", "c", "box"), image("b1", "b")]
    assert [i.file_name for i in real_dev.reviewer_order(images)] == ["a1", "b1", "a2", "b2"]
    truth = np.zeros((2, 4, 4), bool)
    truth[0, :2, :2] = True
    truth[1, 3, 3] = True
    current = np.zeros((2, 4, 4), bool)
    current[0, :2, :3] = True
    current[1, 2:, :2] = True
    assert real_dev._reviewer_categories(current, np.array([5, 7]), truth) == [5, 5]  # no overlap: most common
    assert real_dev._reviewer_categories(current[:0], np.zeros(0, int), truth) == [1, 1]


def test_seed_spread_gives_each_final_metric_and_curve_point_its_range_over_seeds():
    def result(seed, corloc, mask_ap50, miou, curve_mask):
        final = {"total": {"corloc": corloc, "box_ap50": 0.1, "mask_ap50": mask_ap50, "miou": miou}}
        return {"seed": seed, "runs": {"k_suggested": {"final": final}},
                "corrections": {"curve": {"0": {"box_ap50": 0.02, "mask_ap50": curve_mask}}}}
    spread = real_dev.seed_spread([result(0, 0.5, 0.1, 0.2, 0.18), result(1, 0.25, 0.3, None, 0.2),
                                   result(2, 0.75, 0.2, 0.4, 0.16)])
    assert spread["seeds"] == [0, 1, 2]
    row = spread["runs"]["k_suggested"]
    assert row["corloc"] == {"min": 0.25, "max": 0.75, "mean": 0.5}
    assert row["mask_ap50"] == {"min": 0.1, "max": 0.3, "mean": 0.2}
    assert row["miou"] == {"min": 0.2, "max": 0.4, "mean": 0.3}  # a seed without the metric is left out
    assert spread["corrections"]["0"]["mask_ap50"] == {"min": 0.16, "max": 0.2, "mean": 0.18}
    assert "0.250-0.750" in real_dev.table({"runs": {}, "seed_spread": spread})


def test_benchmark_writes_every_documented_key_and_skips_absent_real_dev(tmp_path, capsys):
    missing = tmp_path / "no-real-dev"
    assert main(["--out", str(tmp_path), "--quality-images", "4", "--speed-images", "4", "--seeds", "2",
                 "--weights", "random", "--input-size", "56", "--proposals", "seed", "--real-dev", str(missing),
                 "--domains", str(tmp_path / "no-domains")]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    quality = results["quality"]
    assert [r["seed"] for r in quality["per_seed"]] == [0, 1]
    assert quality["images"] == 4
    for stage, key in (("proposals", "ap50"), ("proposals", "ap"), ("proposals", "corloc"), ("clustering", "miou"),
                       ("clustering", "ap50"), ("final", "miou"), ("final", "ap50"), ("final", "ap"),
                       ("final", "ap50_agnostic"), ("final", "corloc")):
        assert in_range(quality[stage][key]) and quality[stage][key] is not None, (stage, key)
        seeds = [r["clustering" if stage == "clustering" else stage].get(key) for r in quality["per_seed"]]
        assert quality[stage][key] == pytest.approx(sum(seeds) / len(seeds), abs=1e-4)  # the mean of the seeds
    assert quality["real"]["skipped"].startswith("real-dev skipped") and str(missing) in quality["real"]["skipped"]
    assert quality["domains"]["skipped"] == f"domain folders skipped: {tmp_path / 'no-domains'} not found"
    (run,) = results["speed"]["runs"]
    assert run["images"] == 4 and run["retrain_predict_images"] == 4
    assert run["backbone_forward_s"] > 0 and run["retrain_predict_100_s"] > 0
    engine_total = sum(v for k, v in run["stage_s"].items() if k != "setup")
    backbone = run["stage_s"]["backbone"] + run["stage_s"].get("embeddings", 0.0)
    assert engine_total > backbone > 0  # the engine does more than the forward passes
    assert run["engine_over_backbone"] == pytest.approx(engine_total / backbone, rel=0.05)
    assert run["overall_images_per_s"] == pytest.approx(4 / engine_total, rel=0.02)
    assert results["speed"]["engine_over_backbone"] == run["engine_over_backbone"]
    # the whole run (model loading included) over the feature pass alone is larger than either part's ratio
    assert run["engine_over_feature_pass"] == pytest.approx(run["wall_s"] / run["stage_s"]["backbone"], rel=0.05)
    assert run["engine_over_feature_pass"] > run["engine_over_backbone"]
    assert results["speed"]["engine_over_feature_pass"] == run["engine_over_feature_pass"]
    assert results["memory"]["peak_rss_mb_4"] > 100
    assert results["targets"]["engine_over_backbone_max"] == 1.25
    printed = capsys.readouterr().out
    assert "final mIoU" in printed and "real-dev skipped" in printed and "domain folders skipped" in printed


# ------------------------------------------------------------------------------------- dense (benchmarks/dense.py)


def test_generated_cells_have_50_to_200_touching_objects_and_known_masks():
    from benchmarks.dense import make_cells_image

    rng = np.random.default_rng(0)
    for _ in range(2):
        image, labels = make_cells_image(rng, 512)
        assert image.shape == (512, 512, 3) and image.dtype == np.uint8
        n = int(labels.max())
        assert 50 <= n <= 200
        assert set(np.unique(labels)) == set(range(n + 1))  # every id keeps some pixels
        # some objects touch: a pixel of one object has a 4-neighbour of another
        a, b = labels[:, :-1], labels[:, 1:]
        assert ((a > 0) & (b > 0) & (a != b)).sum() > 0
        assert image[labels > 0].mean() > image[labels == 0].mean()


def test_classical_baseline_finds_separated_bright_discs():
    from benchmarks.dense import classical_instances

    yy, xx = np.mgrid[0:128, 0:128]
    truth = []
    grey = np.full((128, 128), 20, np.uint8)
    for cy, cx in ((30, 30), (30, 90), (90, 30), (90, 90)):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 12 ** 2
        grey[disc] = 200
        truth.append(disc)
    masks, scores = classical_instances(np.repeat(grey[:, :, None], 3, axis=2), 24)
    assert len(masks) == 4 and len(scores) == 4
    for disc in truth:
        assert max((m & disc).sum() / (m | disc).sum() for m in masks) > 0.9


def test_classical_crowns_finds_green_crowns_on_sand():
    from benchmarks.dense import classical_crowns

    yy, xx = np.mgrid[0:160, 0:160]
    image = np.empty((160, 160, 3), np.uint8)
    image[:] = (190, 170, 140)  # sand
    truth = []
    for cy, cx in ((35, 35), (35, 120), (120, 35), (120, 120), (78, 78)):
        crown = (yy - cy) ** 2 + (xx - cx) ** 2 <= 14 ** 2
        image[crown] = (60, 140, 50)
        truth.append(crown)
    masks, scores = classical_crowns(image, 28)
    assert len(masks) == len(scores) == 5
    for crown in truth:
        assert max((m & crown).sum() / (m | crown).sum() for m in masks) > 0.6


def test_dense_benchmark_end_to_end_writes_the_documented_keys(tmp_path, capsys):
    from benchmarks import dense

    missing = tmp_path / "no-real-dev"
    assert dense.main(["--out", str(tmp_path / "out"), "--images", "2", "--size", "128", "--weights", "random",
                       "--real-dev", str(missing)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for key in ("cells_mask_ap50", "cells_classical_mask_ap50"):
        assert in_range(results[key]) and results[key] is not None, key
    assert results["trees_box_ap50"] is None and "skipped" in results["trees"]
    assert results["seconds_per_megapixel"] > 0 and results["classical_seconds_per_megapixel"] > 0
    assert results["cells"]["images"] == 2 and results["cells"]["size"] == 128
    assert results["cells"]["objects"] >= 100 and results["distill"] is False
    printed = capsys.readouterr().out
    assert "classical mask AP50" in printed and "engine mask AP50" in printed


# ------------------------------------------------------------------------------- domains (benchmarks/domains.py)


def write_domain(folder: Path) -> Path:
    """A three-image domain folder as the domains README describes it: images/ and a plain COCO ground truth
    (one category, RLE masks, no source or annotation fields)."""
    (folder / "images").mkdir(parents=True)
    crops = [data.chelsea()[40:136, 100:196], data.astronaut()[60:156, 150:246], data.coffee()[100:196, 200:296]]
    shape = (96, 96)
    objects = {"cat_a.png": [rect(20, 50, 10, 50, shape), rect(60, 90, 60, 90, shape)],
               "cat_b.jpg": [rect(10, 80, 20, 70, shape)], "cat_c.png": [rect(5, 30, 5, 30, shape)]}
    document = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    for image_id, ((name, masks), pixels) in enumerate(zip(objects.items(), crops), start=1):
        Image.fromarray(pixels).save(folder / "images" / name)
        document["images"].append({"id": image_id, "file_name": name, "width": 96, "height": 96})
        for mask in masks:
            document["annotations"].append({"id": len(document["annotations"]) + 1, "image_id": image_id,
                                            "category_id": 1, "iscrowd": 0, "segmentation": encode_rle(mask),
                                            "area": int(mask.sum()), "bbox": box_of(mask)})
    (folder / "ground_truth.json").write_text(json.dumps(document))
    return folder


def test_the_domain_scorer_gives_one_for_the_ground_truth_and_zero_for_nothing(tmp_path):
    folder = write_domain(tmp_path / "domains" / "cats")
    images = load_ground_truth(folder, default_source="cats")
    assert [i.source for i in images] == ["cats"] * 3 and [i.annotation for i in images] == ["mask"] * 3
    truth = {i.file_name: StagePrediction(i.masks, np.linspace(1.0, 0.5, len(i.masks)), None) for i in images}
    scores = score_stage(images, truth, recurring=None, per_source=False)
    assert set(scores) == {"total"}  # one folder, class-agnostic: no per-source split, no mIoU
    for key in ("corloc", "box_ap50", "mask_ap50", "box_recall50", "mask_recall50"):
        assert scores["total"][key] == pytest.approx(1.0), key
    assert scores["total"]["objects"] == 4 and "miou" not in scores["total"]
    # one of the two cats of cat_a missed, a wrong mask on top in cat_c
    wrong = rect(60, 96, 60, 96, (96, 96))
    partial = {**truth, "cat_a.png": StagePrediction(images[0].masks[:1], np.ones(1), None),
               "cat_c.png": StagePrediction(np.stack([wrong, images[2].masks[0]]), np.array([0.9, 0.1]), None)}
    total = score_stage(images, partial, recurring=None, per_source=False)["total"]
    assert total["corloc"] == pytest.approx(2 / 3) and total["mask_recall50"] == pytest.approx(3 / 4)
    nothing = score_stage(images, {}, recurring=None, per_source=False)["total"]
    assert all(nothing[key] == 0.0 for key in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"))


def test_domains_script_end_to_end_writes_the_documented_keys(tmp_path, capsys):
    from benchmarks import domains

    write_domain(tmp_path / "domains" / "cats")
    (tmp_path / "domains" / "notes").mkdir()  # a folder without ground truth is not a domain
    out = tmp_path / "out"
    assert domains.main(["--domains", str(tmp_path / "domains"), "--out", str(out), "--seeds", "2", "--limit", "2",
                         "--weights", "random", "--input-size", "56", "--noise-runs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["cats"]
    cats = results["cats"]
    assert cats["images"] == 2 and cats["objects"] == 3 and cats["limit"] == 2
    assert 0 <= cats["pool"]["tree_mask_recall50"] <= 1 and cats["pool"]["objects"] == 3
    assert sorted(p.name for p in (out / "cats" / "images").iterdir()) == ["cat_a.png", "cat_b.jpg"]
    for stage in ("proposals", "clustered", "final"):
        for key in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"):
            assert in_range(cats[stage][key]) and cats[stage][key] is not None, (stage, key)
        row = cats["seed_spread"][stage]["mask_ap50"]
        assert row["min"] <= cats[stage]["mask_ap50"] <= row["max"]
    assert cats["seed_spread"]["seeds"] == [0, 1] and [r["seed"] for r in cats["per_seed"]] == [0, 1]
    # the noise run: seed 0 on noise draw 0, the limited images only, scored under their own names
    noise = cats["noise_spread"]
    assert noise["runs"] == 1 and noise["grey_levels"] == 1
    assert [(r["seed"], r["noise"], r["images_predicted"]) for r in noise["per_run"]] == [(0, 0, 2)]
    assert sorted(p.name for p in (out / "cats" / "noise-0" / "images").iterdir()) == ["cat_a.png.png",
                                                                                        "cat_b.jpg.png"]
    for key in ("corloc", "box_ap50", "mask_ap50", "mask_recall50"):
        assert noise["noisy"][key]["min"] == noise["noisy"][key]["max"] == noise["per_run"][0][key], key
        spread = noise["with_seeds"][key]  # the noisy run and both seeds' unperturbed finals
        assert spread["min"] == min(noise["per_run"][0][key], *(r["final"][key] for r in cats["per_seed"]))
        assert spread["max"] == max(noise["per_run"][0][key], *(r["final"][key] for r in cats["per_seed"]))
    printed = capsys.readouterr().out
    assert "domain cats (2 images, 3 objects)" in printed and "spread" in printed
    assert "grey level of noise" in printed and "  noise 0" in printed
    # one folder alone, and an absent path skipped with a message
    assert domains.main(["--domains", str(tmp_path / "domains" / "cats"), "--out", str(tmp_path / "one"),
                         "--limit", "1", "--weights", "random", "--input-size", "56"]) == 0
    assert list(json.loads((tmp_path / "one" / "results.json").read_text())) == ["cats"]
    assert domains.benchmark(tmp_path / "absent", tmp_path / "none", log=lambda _: None)["skipped"].startswith(
        "domain folders skipped")


# ------------------------------------------------------------------ review clicks (benchmarks/review_clicks.py)


def test_review_clicks_writes_the_documented_keys_and_a_matched_object_costs_nothing(tmp_path, capsys):
    from benchmarks import review_clicks
    from engine import api
    from engine.orchestration.config import RunConfig
    from tests.helpers import MECHANICS

    cats = write_domain(tmp_path / "domains" / "cats")
    out = tmp_path / "out"
    folders = {"cats": (cats, None, False), "real-dev": (tmp_path / "absent", None, True)}
    results = review_clicks.benchmark(folders, out, RunConfig(**MECHANICS), limit=2, log=lambda _: None)
    written = json.loads((out / "results.json").read_text())
    assert written["review"]["clicks"] == json.loads(json.dumps(results["review"]["clicks"]))
    row = written["review"]["clicks"]["cats"]
    assert row["images"] == 2 and row["objects"] == 3 and row["limit"] == 2
    for key in ("noc50", "noc80"):
        assert 0 <= row[key] <= review_clicks.MAX_ACTIONS, key
    assert 0 <= row["reached80"] <= row["reached50"] <= 1
    assert written["review"]["clicks"]["real-dev"]["skipped"].startswith("real-dev skipped")

    # an annotated object some object already matches costs 0 actions, and the project is left as it was
    project = out / "cats" / "project"
    state = api.label_state(project)
    image_id = _first_image_id(project)
    objects = api.image_objects(project, image_id)
    shown = [int(k) for k, c in zip(objects.ids, objects.categories) if state.resolve(int(c)) is not None]
    truth = objects.labels == shown[0]
    reviewer = review_clicks.simulate(project, image_id, truth, lambda c: state.resolve(c) is not None)
    assert reviewer.history == [1.0] and reviewer.counts == {}
    assert review_clicks.clicks_needed(reviewer.history, 0.5) == review_clicks.clicks_needed(reviewer.history, 0.8) == 0
    # a truth no object holds takes actions, all undone afterwards
    before = api.image_objects(project, image_id).labels.copy()
    missed = ~truth
    missed[:, truth.shape[1] // 2:] = False  # half of what the object leaves: no object matches it
    assert missed.any()
    clicked = review_clicks.simulate(project, image_id, missed, lambda c: state.resolve(c) is not None)
    assert clicked.actions >= 1 and review_clicks.clicks_needed(clicked.history, 0.8) <= review_clicks.MAX_ACTIONS
    assert np.array_equal(api.image_objects(project, image_id).labels, before)
    # undoing the last of several actions (their records hold arrays) and then the rest
    ids = [int(k) for k in objects.ids]
    assert len(ids) >= 2
    reviewer = review_clicks.Reviewer(project, image_id, truth, lambda c: state.resolve(c) is not None)
    reviewer.act("reject", api.reject_object, ids[0])
    reviewer.take_back(reviewer.act("reject", api.reject_object, ids[1]))
    assert len(reviewer.undo) == 1 and reviewer.actions == 3
    reviewer.restore_project()
    assert np.array_equal(api.image_objects(project, image_id).labels, before)
    boxed = review_clicks.simulate(project, image_id, missed, lambda c: state.resolve(c) is not None,
                                   first_prompt="box")
    assert boxed.counts.get("box", 0) <= 1 and "box" not in clicked.counts  # a box at most once, when asked
    assert np.array_equal(api.image_objects(project, image_id).labels, before)

    # the command line: a given finished project is copied, never modified
    given = out / "cats" / "base-project"
    files_before = _project_files(given)
    assert review_clicks.main(["--feral", str(cats), "--project", str(given), "--real-dev", str(tmp_path / "absent"),
                               "--out", str(tmp_path / "cli"), "--limit", "1"]) == 0
    assert _project_files(given) == files_before
    clicks = json.loads((tmp_path / "cli" / "results.json").read_text())["review"]["clicks"]
    assert set(clicks["cats"]) >= {"noc50", "noc80", "reached80"} and "skipped" in clicks["absent"]
    printed = capsys.readouterr().out
    assert "NoC@80" in printed and "skipped" in printed


def _first_image_id(project) -> str:
    from engine.state.schema import read_images

    return read_images(project / "images.json")[0]["image_id"]


def _project_files(project) -> dict:
    """{path: (size, mtime)} of a project's files, but its SQLite index (a cache of the other files: the run's
    still open connection writes its log into it when closed, at a time the garbage collector chooses)."""
    return {str(p.relative_to(project)): (p.stat().st_size, p.stat().st_mtime_ns) for p in project.rglob("*")
            if p.is_file() and not p.name.startswith("index.sqlite")}
