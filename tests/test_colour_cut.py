"""An object cut in two where its colours part (engine.method.colour_cut), the review's first try at splitting."""
import numpy as np

from engine.method.colour_cut import colour_halves

SHAPE = (80, 120)


def disc(centre, radius):
    rows, cols = np.ogrid[:SHAPE[0], :SHAPE[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


LEFT, RIGHT = disc((40, 38), 24), disc((40, 80), 24)  # two touching cats of one outline: one mask


def painted(colours, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((*SHAPE, 3), 90.0)
    for mask, colour in zip((LEFT, RIGHT), colours):
        image[mask] = colour
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def test_two_touching_objects_of_two_colours_come_apart():
    cost, box, halves = colour_halves(painted([(200, 150, 60), (60, 60, 70)]), LEFT | RIGHT)
    assert halves.shape == (box[0].stop - box[0].start, box[1].stop - box[1].start)
    assert set(np.unique(halves)) == {0, 1, 2} and np.array_equal(halves > 0, (LEFT | RIGHT)[box])
    for side in (1, 2):
        piece = np.zeros(SHAPE, bool)
        piece[box] = halves == side
        best = max((piece & m).sum() / (piece | m).sum() for m in (LEFT, RIGHT))
        assert best > 0.85
    # one object of one colour is a worse cut: its cost is higher
    one_colour, _, _ = colour_halves(painted([(200, 150, 60), (200, 150, 60)]), LEFT | RIGHT)
    assert cost < one_colour


def test_a_mask_too_small_to_cut_gives_none():
    tiny = np.zeros(SHAPE, bool)
    tiny[10:20, 10:20] = True  # 100 pixels: under four superpixels
    assert colour_halves(painted([(200, 150, 60), (60, 60, 70)]), tiny) is None
    assert colour_halves(painted([(200, 150, 60), (60, 60, 70)]), np.zeros(SHAPE, bool)) is None



def test_each_half_is_one_piece():
    """The cut is over the superpixel graph, so a half can come in pieces (two eyes and a strip of cheek); the
    smaller pieces go to the other half, so a split gives the user two objects of one piece each."""
    from scipy import ndimage

    from engine.method.colour_cut import crumbs_to_the_other_half

    halves = np.zeros((20, 30), np.int32)
    halves[2:18, 2:28] = 2  # the face
    halves[4:8, 4:8] = 1  # an eye
    halves[4:9, 20:25] = 1  # the other eye, the larger one
    halves[14:16, 10:12] = 2  # (already the face's)
    out = crumbs_to_the_other_half(halves)
    assert np.array_equal(out > 0, halves > 0)
    assert (out[4:9, 20:25] == 1).all() and (out[4:8, 4:8] == 2).all()
    for side in (1, 2):
        assert ndimage.label(out == side)[1] == 1
    _, box, two_cats = colour_halves(painted([(200, 150, 60), (60, 60, 70)]), LEFT | RIGHT)
    assert all(ndimage.label(two_cats == side)[1] == 1 for side in (1, 2))
