"""Known groups: lone objects pasted side by side in pixels, so the centre model learns the border between two
touching objects (engine.method.known_groups and its use by the crops' centre cut)."""
import numpy as np
from scipy import ndimage

from engine.masks import LabelMasks
from engine.method import known_groups
from engine.method.centres import CentreExamples, fit_centre_model
from engine.method.known_groups import known_group_crops, paste_beside


def square_image(shape=(100, 120), box=(50, 40, 70, 60), colour=200):
    """(pixels, mask): a grey square of ``colour`` at ``box`` (x0, y0, x1, y1) on black."""
    mask = np.zeros(shape, bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    pixels = np.zeros(shape + (3,), np.uint8)
    pixels[mask] = colour
    return pixels, mask


def disc_crop(radius=15, colour=100):
    """(pixels (80, 80, 3), box of the disc (x0, y0, x1, y1), the disc's bool crop)."""
    rows, cols = np.mgrid[:80, :80]
    disc = (rows - 40) ** 2 + (cols - 40) ** 2 < radius ** 2
    pixels = np.zeros((80, 80, 3), np.uint8)
    pixels[disc] = colour
    box = (40 - radius + 1, 40 - radius + 1, 40 + radius, 40 + radius)
    return pixels, box, disc[box[1]:box[3], box[0]:box[2]]


def test_a_pasted_object_touches_the_other_at_its_size_and_keeps_its_pixels(monkeypatch):
    monkeypatch.setattr(known_groups, "OVERLAP", (0.0, 0.0))  # just touching: both wholly visible
    image_a, mask_a = square_image()
    image_b, box_b, crop_b = disc_crop(radius=15)  # 709 pixels, scaled to the square's 400
    for seed in range(6):
        pixels, labels = paste_beside(image_a, mask_a, image_b, box_b, crop_b, np.random.default_rng(seed))
        assert np.array_equal(labels == 1, mask_a)  # the square shows whole, where it was
        pasted = labels == 2
        assert 0.8 * mask_a.sum() <= pasted.sum() <= 1.2 * mask_a.sum()
        assert not (pasted & mask_a).any() and (ndimage.binary_dilation(pasted) & mask_a).any()  # touching
        assert np.median(pixels[pasted]) == 100 and (pixels[pasted] > 50).all()  # its edge blends a little
        assert (pixels[labels == 1] == 200).all()
        assert (pixels[labels == 0] == 0).all()


def test_an_overlapping_paste_hides_part_of_the_one_behind(monkeypatch):
    monkeypatch.setattr(known_groups, "OVERLAP", (0.25, 0.25))
    image_a, mask_a = square_image()
    image_b, box_b, crop_b = disc_crop()
    hidden = []
    for seed in range(8):
        _, labels = paste_beside(image_a, mask_a, image_b, box_b, crop_b, np.random.default_rng(seed))
        shown_a, shown_b = (labels == 1).sum(), (labels == 2).sum()
        hidden.append((mask_a.sum() - shown_a, shown_b))
        assert shown_a >= known_groups.MIN_VISIBLE * mask_a.sum()
    assert any(h > 0 for h, _ in hidden)  # the pasted one in front, at least once of eight draws


def test_no_known_group_where_the_pasted_object_finds_no_room():
    image_a, mask_a = square_image(shape=(40, 40), box=(0, 0, 40, 40))  # the object fills its image
    image_b, box_b, crop_b = disc_crop()
    assert all(paste_beside(image_a, mask_a, image_b, box_b, crop_b, np.random.default_rng(seed)) is None
               for seed in range(4))


def test_known_groups_pair_objects_of_two_images_in_their_crops():
    image_a, mask_a = square_image()
    image_b, _, _ = disc_crop()
    images = {"a": image_a, "a2": image_a, "b": image_b}
    window_a = (40, 30, 80, 70)
    own_a = mask_a[30:70, 40:80]
    disc = np.all(image_b > 0, axis=2)
    lone = [("a", window_a, own_a), ("a2", window_a, own_a), ("b", (0, 0, 80, 80), disc)]
    made = known_group_crops(lone * 4, images.__getitem__, 3, np.random.default_rng(0))
    assert 1 <= len(made) <= 3
    for pixels, labels in made:
        assert pixels.shape[:2] == labels.shape and set(np.unique(labels)) == {0, 1, 2}
        assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
    same_image = [("a", window_a, own_a), ("a", window_a, own_a)]
    assert known_group_crops(same_image, images.__getitem__, 3, np.random.default_rng(0)) == []


def test_a_known_groups_members_are_examples_beside_the_lone_objects():
    labels = np.zeros((28, 28), np.int32)
    labels[6:22, 2:14], labels[6:22, 14:26] = 1, 2  # two touching members
    tokens = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    examples = CentreExamples()
    examples.add_known_group(tokens, (4, 4), LabelMasks(labels))  # 7-pixel patches
    assert len(examples.known) == 2 and len(examples.items) == 0 and len(examples.all()) == 2
    assert all(weight == 1.0 for *_, weight in examples.known)


def test_known_groups_neither_open_the_gate_nor_score_it():
    rng = np.random.default_rng(0)
    labels = np.zeros((28, 28), np.int32)
    labels[6:22, 2:14], labels[6:22, 14:26] = 1, 2
    examples = CentreExamples()
    for _ in range(40):  # 80 members, pasted from too few lone objects (none here) to learn from
        examples.add_known_group(rng.normal(size=(16, 8)).astype(np.float32), (4, 4), LabelMasks(labels))
    fit = fit_centre_model(examples)
    assert fit.model is None and fit.examples == 0 and fit.known == 80
    assert fit.summary()["known_group_members"] == 80
