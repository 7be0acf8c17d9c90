"""The correction curve of benchmarks.review_clicks (real_dev.correction_curve on a domain folder): k images
corrected with their ground truth through engine.api, retrained, scored on the same other images for every k,
over retraining seeds. Mechanics on a tiny generated folder with a random network, not quality."""
from __future__ import annotations

import json

from benchmarks import real_dev, review_clicks
from tests.helpers import MECHANICS
from tests.test_benchmark import write_domain

COUNTS = (0, 1, 2)  # three images: up to two corrected, one held out


def test_every_k_is_scored_on_the_same_images_and_never_on_a_corrected_one(tmp_path, monkeypatch, capsys):
    from engine.orchestration.config import RunConfig

    cats = write_domain(tmp_path / "domains" / "cats")
    scored = []
    score_images = real_dev.score_images

    def recording(images, predictions, *args, **kwargs):
        scored.append([image.file_name for image in images])
        return score_images(images, predictions, *args, **kwargs)

    monkeypatch.setattr(real_dev, "score_images", recording)
    out = tmp_path / "out"
    results = review_clicks.benchmark({"cats": (cats, None, False)}, out, RunConfig(**MECHANICS), clicks=False,
                                      corrections=("cats",), seeds=2, counts=COUNTS, log=lambda _: None)
    curve = results["review"]["corrections"]["cats"]
    assert "clicks" not in results["review"]  # the clicks part was not asked for
    assert json.loads((out / "results.json").read_text())["review"]["corrections"]["cats"]["held_out"] == \
        curve["held_out"]

    # one scoring per k and seed, each on the same held-out image, which no k corrects
    assert len(scored) == len(COUNTS) * 2
    assert all(names == curve["held_out"] for names in scored) and curve["held_out"] == ["cat_c.png"]
    assert [curve[str(k)]["corrected"] for k in COUNTS] == [[], ["cat_a.png"], ["cat_a.png", "cat_b.jpg"]]
    for k in COUNTS:
        for metric in real_dev.CURVE_METRICS:
            value, spread = curve[str(k)][metric], curve["seed_spread"][str(k)][metric]
            assert value is None or spread["min"] <= value <= spread["max"], (k, metric)
    assert curve["seed_spread"]["seeds"] == [0, 1] and [row["seed"] for row in curve["per_seed"]] == [0, 1]

    # each seed retrained a copy holding the last k's corrections; the base project has none
    for seed in (0, 1):
        corrected = out / "cats" / f"seed-{seed}" / "corrections-project" / "corrections"
        assert len(list(corrected.glob("*.npz"))) == max(COUNTS)
    assert not (out / "cats" / "base-project" / "corrections").exists()
    printed = review_clicks.table(results)
    assert "correction curve, scored on the 1 images never corrected" in printed and "mask_ap50" in printed


def test_a_folder_too_small_for_the_curve_is_skipped_with_the_reason(tmp_path):
    from engine.orchestration.config import RunConfig

    cats = write_domain(tmp_path / "cats")
    results = review_clicks.benchmark({"cats": (cats, None, False)}, tmp_path / "out", RunConfig(**MECHANICS),
                                      clicks=False, corrections=("cats",), log=lambda _: None)
    skipped = results["review"]["corrections"]["cats"]["skipped"]
    assert "needs more than 20 mask images" in skipped and "3 given" in skipped
    assert not (tmp_path / "out" / "cats" / "base-project").exists()  # nothing run for it


def test_the_curve_spread_is_each_point_and_metric_over_the_seeds():
    curves = [{"0": {"mask_ap50": 0.1, "corloc": 0.5}}, {"0": {"mask_ap50": 0.3, "corloc": None}}]
    spread = real_dev.curve_spread(curves, ("mask_ap50", "corloc"))
    assert spread == {"0": {"mask_ap50": {"min": 0.1, "max": 0.3, "mean": 0.2},
                            "corloc": {"min": 0.5, "max": 0.5, "mean": 0.5}}}
