"""benchmarks.real_dev.tree_pool_recall: the candidate tree's recall before any ranking, on planted tokens with a
known nesting (the object and each of its parts are nodes; a thin diagonal line is none)."""
from __future__ import annotations

import numpy as np
from PIL import Image
from test_hierarchy import GRID, PART_A, PART_B, nested_tokens
from test_object_edits import CELL, nested_image, pixels

from benchmarks.real_dev import RealImage, tree_pool_recall
from engine import api
from engine.atomic import read_json
from helpers import MECHANICS, make_folder, plant_tokens


def truth(file_name: str, masks: list) -> RealImage:
    height, width = masks[0].shape
    boxes = np.array([[0, 0, 1, 1]] * len(masks), float)
    return RealImage(file_name, "nested", "mask", height, width, boxes, np.ones(len(masks), int), np.stack(masks))


def test_the_tree_pool_holds_the_planted_object_and_its_parts_but_not_a_line(tmp_path):
    folder = make_folder(tmp_path / "images")
    Image.fromarray(nested_image()).save(folder / "nested.png")
    project = tmp_path / "project"
    api.run(folder, project, api.RunConfig(**MECHANICS))
    entry = next(e for e in read_json(project / "images.json") if e["relative_path"] == "nested.png")
    plant_tokens(project, entry, nested_tokens(5), GRID)
    whole = pixels(PART_A) | pixels(PART_B)
    line = np.eye(GRID[0] * CELL, GRID[1] * CELL, dtype=bool)  # one pixel wide: no node comes near it
    found = tree_pool_recall(project, [truth("nested.png", [whole, pixels(PART_A), pixels(PART_B), line])])
    assert found["images"] == 1 and found["objects"] == 4
    assert found["tree_mask_recall50"] == 0.75
    # nodes from 4 patches up to 80 % of the grid: fewer than the tree's 2n - 1, more than the three planted
    assert 3 < found["tree_nodes_per_image"] < 2 * GRID[0] * GRID[1] - 1
    # images without masks, or not in the project, are left out rather than counted as misses
    box_only = RealImage("nested.png", "nested", "box", whole.shape[0], whole.shape[1], np.zeros((1, 4)),
                         np.ones(1, int), None)
    assert tree_pool_recall(project, [box_only, truth("absent.png", [whole])])["tree_mask_recall50"] is None
