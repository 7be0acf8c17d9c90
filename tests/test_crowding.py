"""``--proposals auto`` (issue 20 item 5): a crowded image is read as crowded with its object size, a photo-like
one is not, a folder goes dense only when most of its sampled images are crowded, and a run records the choice."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.method.crowding import (
    CrowdReading,
    choose_proposals,
    read_crowding,
    sample_evenly,
)


def crowded_image(size: int = 256, diameter: float = 16.0, seed: int = 0) -> np.ndarray:
    """Bright discs of ``diameter`` px on a jittered grid, apart from each other, on a dark noisy background
    (RGB uint8): (size / (2 x diameter))^2 of them, 64 at the defaults."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    image = rng.normal(30, 6, (size, size))
    step = 2 * diameter
    for cy in np.arange(step / 2, size, step):
        for cx in np.arange(step / 2, size, step):
            y, x = cy + rng.uniform(-0.2, 0.2) * diameter, cx + rng.uniform(-0.2, 0.2) * diameter
            image[(yy - y) ** 2 + (xx - x) ** 2 <= (diameter / 2) ** 2] = rng.uniform(150, 220)
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def photo_like_image(size: int = 256, seed: int = 0) -> np.ndarray:
    """One large ellipse (a subject) on a shaded background with a few small specks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    image = 60 + 80 * xx / size + rng.normal(0, 4, (size, size))
    image[((yy - size * 0.55) / (size * 0.3)) ** 2 + ((xx - size * 0.5) / (size * 0.2)) ** 2 <= 1] = 210
    for _ in range(6):
        y, x = rng.integers(10, size - 10, 2)
        image[y - 2:y + 2, x - 2:x + 2] = 230
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def test_many_small_discs_read_as_crowded_with_their_size():
    reading = read_crowding(crowded_image(diameter=16))
    assert reading.crowded and reading.components >= 50
    assert reading.object_size == pytest.approx(16, rel=0.2)


def test_a_large_image_is_read_at_working_size_and_sized_in_its_own_pixels():
    small = crowded_image(size=256, diameter=12)
    large = np.asarray(Image.fromarray(small).resize((1024, 1024), Image.NEAREST))  # 4x: discs of 48 px
    reading = read_crowding(large)
    assert reading.crowded and reading.object_size == pytest.approx(48, rel=0.2)


def test_a_subject_on_a_background_is_not_crowded_and_a_flat_image_gives_nothing():
    reading = read_crowding(photo_like_image())
    assert not reading.crowded and reading.largest_share > 0.9
    flat = read_crowding(np.full((64, 64, 3), 128, np.uint8))
    assert (flat.components, flat.object_size, flat.crowded) == (0, None, False)


def test_a_folder_goes_dense_only_when_most_sampled_images_are_crowded():
    crowded, plain = CrowdReading(60, 0.2, 20.0), CrowdReading(3, 0.95, 80.0)
    choice = choose_proposals([crowded, CrowdReading(40, 0.3, 30.0), crowded, plain])
    assert (choice.method, choice.object_size, choice.crowded, choice.sampled) == ("dense", 20.0, 3, 4)
    assert "dense, object size 20 px (3 of 4" in choice.describe()
    assert choose_proposals([crowded, plain]).method == "segments"  # half is not most
    assert choose_proposals([]).method == "segments"


def test_samples_spread_over_the_folder():
    assert sample_evenly(list(range(5)), 8) == [0, 1, 2, 3, 4]
    picks = sample_evenly(list(range(100)), 8)
    assert len(picks) == 8 and picks[0] == 0 and picks[-1] == 99 and picks == sorted(set(picks))


@pytest.mark.parametrize("crowded", [True, False])
def test_a_run_with_auto_records_what_it_chose(tmp_path, crowded):
    from engine.orchestration.pipeline import RunConfig, run

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        image = crowded_image(seed=index) if crowded else photo_like_image(seed=index)
        Image.fromarray(image).save(folder / f"image_{index}.png")
    result = run(folder, tmp_path / "project", RunConfig(weights="random", input_size=56, num_classes=1,
                                                         distill=False))
    stored = json.loads((tmp_path / "project" / "project.json").read_text())
    assert stored["proposal_choice"] == result.proposal_choice
    if crowded:
        assert stored["config"]["proposals"] == "dense"
        assert stored["config"]["object_size"] == pytest.approx(16, rel=0.2)
        assert result.proposal_choice.startswith("proposals auto: dense, object size")
    else:
        assert stored["config"]["proposals"] == "segments" and stored["config"]["object_size"] is None
        assert result.proposal_choice == "proposals auto: segments (0 of 3 sampled images crowded with small " \
                                         "objects)"


def test_a_named_method_is_kept_and_an_object_size_with_auto_means_dense(tmp_path):
    from engine.io.images import discover_images
    from engine.orchestration.auto_proposals import resolve_proposals
    from engine.orchestration.config import RunConfig

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photo_like_image()).save(folder / "photo.png")
    discovery = discover_images(folder)
    config, choice = resolve_proposals(RunConfig(proposals="split"), discovery)
    assert (config.proposals, choice) == ("split", None)
    config, choice = resolve_proposals(RunConfig(object_size=25.0), discovery)
    assert (config.proposals, config.object_size, choice.crowded) == ("dense", 25.0, 0)
