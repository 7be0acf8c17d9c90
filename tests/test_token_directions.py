"""engine.orchestration.token_directions: the folder's dominant token directions read from the feature cache."""
from __future__ import annotations

import numpy as np

from engine.method.features import FeatureCache, ImageFeatures
from engine.orchestration import token_directions
from engine.orchestration.token_directions import folder_directions
from engine.state.project import Project


def _cache_image(cache: FeatureCache, key: str, tokens: np.ndarray) -> dict:
    grid = (len(tokens) // 8, 8)
    cache.put(key, ImageFeatures(grid, (grid[0] * 14, 112), None, tokens.astype(np.float16),
                                 np.zeros(tokens.shape[1], np.float32), None))
    return {"feature_key": key, "relative_path": f"{key}.png"}


def test_folder_directions_sample_the_cache_and_pass_over_missing_files(tmp_path, monkeypatch):
    """A shared direction every image's tokens vary along is found from a sample of images; an image whose
    cache file is gone is passed over; with none left there are no directions (clustering then uses the
    embeddings as they are)."""
    rng = np.random.default_rng(0)
    shared = np.zeros(120, np.float32)
    shared[7] = 1.0
    project = Project(tmp_path / "project")
    cache = FeatureCache(project.features_dir)
    entries = [_cache_image(cache, f"image{i}", rng.normal(size=(64, 120)) + 30 * rng.normal(size=(64, 1)) * shared)
               for i in range(5)]
    entries.insert(2, {"feature_key": "gone", "relative_path": "gone.png"})
    monkeypatch.setattr(token_directions, "DIRECTION_SAMPLE_IMAGES", 4)
    read: list = []
    original_get = FeatureCache.get
    monkeypatch.setattr(FeatureCache, "get", lambda self, key: read.append(key) or original_get(self, key))
    directions = folder_directions(project, entries)
    assert read == ["image0", "gone", "image2", "image4"]  # 4 of 6, evenly spread, first and last included
    assert directions.shape == (1, 120)  # one per 100 dimensions
    assert abs(directions[0, 7]) > 0.99
    assert folder_directions(project, [{"feature_key": "gone", "relative_path": "gone.png"}]).shape[0] == 0
    assert folder_directions(project, []).shape[0] == 0
