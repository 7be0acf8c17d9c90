"""engine.method.clustering.folder_directions: the folder's dominant token directions read from the feature cache."""
from __future__ import annotations

import numpy as np

from engine.method import clustering
from engine.method.clustering import folder_directions
from engine.method.features import FeatureCache, ImageFeatures


def _cache_image(cache: FeatureCache, key: str, tokens: np.ndarray) -> str:
    grid = (len(tokens) // 8, 8)
    cache.put(key, ImageFeatures(grid, (grid[0] * 14, 112), None, tokens.astype(np.float16),
                                 np.zeros(tokens.shape[1], np.float32), None))
    return key


def test_folder_directions_sample_the_cache_and_pass_over_missing_files(tmp_path, monkeypatch):
    """A shared direction every image's tokens vary along is found from a sample of images; an image whose
    cache file is gone is passed over; with none left there are no directions (clustering then uses the
    embeddings as they are)."""
    rng = np.random.default_rng(0)
    shared = np.zeros(120, np.float32)
    shared[7] = 1.0
    cache = FeatureCache(tmp_path / "features")
    keys = [_cache_image(cache, f"image{i}", rng.normal(size=(64, 120)) + 30 * rng.normal(size=(64, 1)) * shared)
            for i in range(5)]
    keys.insert(2, "gone")
    monkeypatch.setattr(clustering, "DIRECTION_SAMPLE_IMAGES", 4)
    read: list = []
    original_get = FeatureCache.get
    monkeypatch.setattr(FeatureCache, "get", lambda self, key: read.append(key) or original_get(self, key))
    directions = folder_directions(cache, keys)
    assert read == ["image0", "gone", "image2", "image4"]  # 4 of 6, evenly spread, first and last included
    assert directions.shape == (1, 120)  # one per 100 dimensions
    assert abs(directions[0, 7]) > 0.99
    assert folder_directions(cache, ["gone"]).shape[0] == 0
    assert folder_directions(cache, []).shape[0] == 0
