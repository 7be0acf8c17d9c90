"""The agreement learnt across the folder (engine.method.learnt_agreement): shape features with known answers, the
model learns from other images what the found objects look like, the gate, and the weights the run writes."""
import json

import numpy as np
import pytest

from engine.method.learnt_agreement import (
    FOUND_SHARE,
    SHAPE_FEATURES,
    learnt_agreement_weights,
    learnt_found,
    shape_features,
)
from engine.method.second_scale import UNCONFIRMED_WEIGHT
from engine.method.typicality import MIN_TYPICAL_IMAGES


def test_shape_features_of_known_masks():
    masks = np.zeros((2, 10, 20), bool)
    masks[0, 2:6, 3:8] = True  # 4 x 5 box, filled, inside
    masks[1, 0:4, 0:4] = True
    masks[1, 0:2, 0:2] = False  # 12 of a 4 x 4 box, on the border
    features = shape_features(masks, np.array([0.2, 0.9]))
    assert features.shape == (2, SHAPE_FEATURES)
    assert features[:, 0] == pytest.approx(np.log(np.array([20, 12]) / 200 + 1e-6), rel=1e-5)
    assert features[:, 1] == pytest.approx([1.0, 0.75])
    assert features[:, 2].tolist() == [0.0, 1.0]
    assert features[:, 4].tolist() == [0.5, 0.0]  # the second is first in the image
    assert features[:, 5] == pytest.approx([np.log(2)] * 2)
    assert shape_features(np.zeros((0, 10, 20), bool), np.zeros(0)).shape == (0, SHAPE_FEATURES)


def _folder(n_images: int, seed: int = 0):
    """Images of 4 objects each: those that look like ``kind`` (embedding near +e0) are found again, those near -e0
    are not, except about one in ten whose vote disagrees with its look."""
    rng = np.random.default_rng(seed)
    shapes, embeddings, found, kinds = [], [], [], []
    for _ in range(n_images):
        kind = np.array([True, True, False, False])
        vectors = rng.normal(0, 0.3, (4, 32))
        vectors[:, 0] += np.where(kind, 1.5, -1.5)
        vote = kind ^ (rng.random(4) < 0.1)
        shapes.append(rng.normal(0, 1, (4, SHAPE_FEATURES)).astype(np.float32))
        embeddings.append(vectors.astype(np.float32))
        found.append(vote)
        kinds.append(kind)
    return shapes, embeddings, found, kinds


def test_the_folder_model_says_what_the_found_objects_look_like_even_where_a_vote_disagrees():
    shapes, embeddings, found, kinds = _folder(MIN_TYPICAL_IMAGES + 10)
    p = learnt_found(shapes, embeddings, found)
    assert p is not None and [len(x) for x in p] == [4] * len(found)
    p, kinds, found = np.concatenate(p), np.concatenate(kinds), np.concatenate(found)
    assert (p[kinds] > 0.5).mean() > 0.9 and (p[~kinds] < 0.5).mean() > 0.9
    disagree = kinds != found  # scored by the other half's model: the look wins over a wrong vote
    assert (p[disagree & kinds] > 0.5).mean() > 0.8 and (p[disagree & ~kinds] < 0.5).mean() > 0.8


def test_too_few_images_or_one_kind_of_vote_leaves_each_image_its_own_vote():
    shapes, embeddings, found, _ = _folder(MIN_TYPICAL_IMAGES - 1)
    assert learnt_found(shapes, embeddings, found) is None
    shapes, embeddings, found, _ = _folder(MIN_TYPICAL_IMAGES + 10)
    assert learnt_found(shapes, embeddings, [np.ones(4, bool) for _ in found]) is None


def test_weights_blend_the_vote_and_the_model():
    weights = learnt_agreement_weights(np.array([True, True, False, False]), np.array([1.0, 0.0, 1.0, 0.0]))
    middle = UNCONFIRMED_WEIGHT + (1 - UNCONFIRMED_WEIGHT) * FOUND_SHARE
    assert weights.tolist() == pytest.approx([1.0, middle, UNCONFIRMED_WEIGHT + (1 - UNCONFIRMED_WEIGHT) *
                                              (1 - FOUND_SHARE), UNCONFIRMED_WEIGHT])


def test_a_run_weighs_its_objects_by_the_folder_model_where_it_is_learnt(tiny_folder, tmp_path, monkeypatch):
    """The folder's model stands in with a known answer (the tiny folder is under the gate): every first-run object
    weighs its vote blended with it, and the report says the model was used."""
    from engine.orchestration import overlapping
    from engine.orchestration.config import RunConfig
    from engine.orchestration.outcome import describe_folder_passes
    from engine.orchestration.pipeline import run
    from engine.state.project import Project

    monkeypatch.setattr(overlapping, "learnt_found", lambda shapes, embeddings, found: [np.full(len(f), 0.25)
                                                                                      for f in found])
    run(tiny_folder, tmp_path, RunConfig(input_size=112, second_scale=168, num_classes=2, batch_size=2))
    project = Project(tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())["distillation"]["overlapping"]
    assert report["learnt_agreement"] is True
    weighed = 0
    for entry in json.loads(project.images_path.read_text()):
        with np.load(project.predictions_path(entry["image_id"])) as data:
            weights = data["scale_weights"]
        found, unconfirmed = learnt_agreement_weights(np.array([True, False]), np.array([0.25, 0.25]))
        assert (np.isclose(weights, found) | np.isclose(weights, unconfirmed)).all()
        weighed += len(weights)
    assert weighed == report["first_objects"] > 0
    said = "\n".join(describe_folder_passes(json.loads((tmp_path / "report.json").read_text())["distillation"]))
    assert "each ranked by that and by how like the folder's masks found again it looks" in said


def test_the_model_reads_the_scores_as_predicted_however_often_they_were_weighed(tmp_path):
    from engine.state.project import (
        load_image_predictions,
        predicted_scores,
        save_image_predictions,
        weigh_image_predictions,
    )

    path = tmp_path / "image.npz"
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4], masks[1, 4:] = True, True
    save_image_predictions(path, np.zeros((8, 8)), masks, [1, 1], np.array([0.8, 0.4], np.float32))
    assert predicted_scores(path).tolist() == pytest.approx([0.8, 0.4])
    for weights in ([1.0, 0.7], [0.85, 0.775]):
        weigh_image_predictions(path, weights)
        assert predicted_scores(path).tolist() == pytest.approx([0.8, 0.4])
    assert load_image_predictions(path)[3].tolist() == pytest.approx([0.8 * 0.85, 0.4 * 0.775])
