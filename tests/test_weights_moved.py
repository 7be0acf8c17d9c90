"""A run's --weights file that has moved since the run (issue 18's leftover): distill and predict read cached
features, so they go on; only a feature they must recompute needs the file, and then the error says which."""
from __future__ import annotations

import shutil

import pytest
import torch

from engine.api import RunConfig, distill, predict, run
from engine.atomic import read_json
from engine.method.features import FeatureCache, FeatureExtractor
from helpers import MECHANICS, make_folder


@pytest.fixture
def project_with_a_moved_weights_file(tmp_path):
    weights = tmp_path / "weights" / "backbone.pth"
    weights.parent.mkdir()
    model = FeatureExtractor("dinov2_vits14", weights="random", device="cpu", input_size=56).model
    torch.save(model.state_dict(), weights)
    project = tmp_path / "project"
    run(make_folder(tmp_path / "images"), project, RunConfig(**{**MECHANICS, "weights": str(weights)}))
    shutil.move(weights, tmp_path / "elsewhere.pth")
    return project, weights


def test_distill_and_predict_go_on_from_cached_features(project_with_a_moved_weights_file):
    project, _ = project_with_a_moved_weights_file
    assert distill(project, device="cpu")["export"]["annotations"] > 0  # was: "weights file ... does not exist"
    assert predict(project)["instances_predicted"] > 0


def test_a_feature_to_recompute_names_the_weights_file_and_the_image(project_with_a_moved_weights_file):
    project, weights = project_with_a_moved_weights_file
    entry = read_json(project / "images.json")[0]
    FeatureCache(project / "features").path(entry["feature_key"]).unlink()
    with pytest.raises(FileNotFoundError) as error:
        distill(project, device="cpu")
    message = str(error.value)
    assert str(weights) in message and entry["relative_path"] in message and "put the file back" in message
