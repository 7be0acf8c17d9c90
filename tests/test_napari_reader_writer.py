"""The reader (project folder, image folder) and writer (Labels layer -> COCO) contributions."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from helpers import small_finished_project
from maskdistill_napari._reader import get_reader
from maskdistill_napari._writer import write_labels_coco

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return small_finished_project(tmp_path_factory, "reader")[1]


def test_viewer_opens_a_project_folder_in_the_widget(make_napari_viewer, qtbot, project):
    """File > Open Folder on a project: the MaskDistill widget docks, bound to the project, and shows ONE image
    and ONE Labels layer (loaded in its worker); edits are saved to the project; next / previous browse."""
    viewer = make_napari_viewer()
    assert viewer.open(str(project), plugin="maskdistill-napari") == []  # the widget adds the layers itself
    _, widget = viewer.window.add_plugin_dock_widget("maskdistill-napari", "MaskDistill")  # the docked one
    qtbot.waitUntil(lambda: not widget.busy and "masks" in viewer.layers, timeout=60_000)
    assert [(layer.name, type(layer).__name__) for layer in viewer.layers] == [("image", "Image"),
                                                                               ("masks", "Labels")]
    view = widget.view
    assert view.project_dir == project.resolve() and view.position == 0 and len(view.entries) == 3
    labels = viewer.layers["masks"]
    assert {"index", "category_id", "class_name", "score", "source", "reviewed"} <= set(labels.features.columns)
    assert set(labels.features["index"]) == {int(v) for v in np.unique(labels.data) if v}
    image_id = view.current["image_id"]
    labels.selected_label = int(labels.data.max()) + 1
    labels.brush_size = 10
    labels.paint((20, 20), labels.selected_label)
    view.save()
    qtbot.waitUntil(lambda: not widget.busy and not view.unsaved, timeout=60_000)
    assert (project / "corrections" / f"{image_id}.npz").exists()
    widget.review.next.click()
    qtbot.waitUntil(lambda: not widget.busy and view.position == 1, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["image", "masks"]


def test_reader_without_a_viewer_returns_the_first_image_and_its_masks(project):
    from maskdistill_napari._reader import first_image_layers

    (image, image_meta, image_kind), (labels, labels_meta, labels_kind) = first_image_layers(project)
    assert (image_kind, labels_kind) == ("image", "labels") and image.shape[:2] == labels.shape
    assert set(labels_meta["features"]["index"]) == {int(v) for v in np.unique(labels) if v}


def test_viewer_opens_a_plain_image_folder(make_napari_viewer, tmp_path):
    for name in ("cup_01.jpg", "cat_01.jpg"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path), plugin="maskdistill-napari")
    assert len(viewer.layers) == 2 and all(layer.rgb for layer in viewer.layers)


def test_a_folder_with_an_unreadable_image_opens_the_others_and_names_it(tmp_path):
    from maskdistill_napari._reader import read_image_folder

    shutil.copy(EXAMPLES / "cup_01.jpg", tmp_path / "cup_01.jpg")
    data = (EXAMPLES / "cat_01.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])  # its header reads; its pixels do not
    with pytest.warns(UserWarning, match=r"truncated\.jpg: .*left out|left out: truncated\.jpg"):
        layers = read_image_folder(str(tmp_path))
    assert [meta["name"] for _, meta, _ in layers] == ["cup_01"]
    (tmp_path / "cup_01.jpg").unlink()
    with pytest.raises(ValueError, match="truncated.jpg"):
        read_image_folder(str(tmp_path))


def test_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_writer_writes_valid_coco_with_categories_from_features(tmp_path):
    from pycocotools.coco import COCO

    labels = np.zeros((40, 50), np.uint16)
    labels[2:10, 3:20] = 1
    labels[20:35, 10:40] = 4
    features = pd.DataFrame({"index": [1, 4], "category_id": [2, 3], "class_name": ["cup", "cat"]})
    path = tmp_path / "out.json"
    assert write_labels_coco(str(path), labels, {"name": "masks", "features": features}) == [str(path)]
    coco = COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["category_id"] for a in anns) == [2, 3]
    assert {c["name"] for c in coco.dataset["categories"]} == {"cup", "cat"}
    by_category = {a["category_id"]: coco.annToMask(a).astype(bool) for a in anns}
    assert np.array_equal(by_category[3], labels == 4) and all(a["id"] >= 1 and a["iscrowd"] == 0 for a in anns)


def test_writer_without_features_uses_category_1(tmp_path):
    from pycocotools.coco import COCO

    labels = np.zeros((2, 30, 30), np.uint8)
    labels[0, 5:9, 5:9] = 3
    labels[1, 1:4, 1:4] = 7
    write_labels_coco(str(tmp_path / "stack.json"), labels, {"name": "stack"})
    coco = COCO(str(tmp_path / "stack.json"))
    assert len(coco.getImgIds()) == 2 and {a["category_id"] for a in coco.dataset["annotations"]} == {1}


def test_save_through_napari_uses_the_writer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    labels = np.zeros((20, 20), np.uint8)
    labels[3:8, 3:8] = 1
    viewer.add_labels(labels, name="masks")
    path = tmp_path / "saved.json"
    viewer.layers.save(str(path), selected=False, plugin="maskdistill-napari")
    assert path.exists() and '"iscrowd": 0' in path.read_text()
