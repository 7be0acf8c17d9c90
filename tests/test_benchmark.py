"""The benchmark script end to end on a few images with a random network (mechanics, not quality)."""
from __future__ import annotations

import json

from benchmarks.run_benchmark import main


def test_benchmark_writes_every_reported_key(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--quality-images", "4", "--speed-images", "4", "--seeds", "2",
                 "--weights", "random", "--input-size", "56"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    quality = results["quality"]
    assert [r["seed"] for r in quality["per_seed"]] == [0, 1]
    for stage, key in (("proposals", "ap50"), ("proposals", "corloc"), ("clustering", "miou"),
                       ("final", "miou"), ("final", "ap50")):
        assert 0.0 <= quality[stage][key] <= 1.0
    (run,) = results["speed"]["runs"]
    assert run["images"] == 4 and run["engine_over_backbone"] >= 1.0 and run["retrain_predict_100_s"] > 0
    assert results["memory"]["peak_rss_mb_4"] > 100
    assert "final mIoU" in capsys.readouterr().out
