"""Crowded photos at a finer patch grid, per image (issue 20: on feral_cats 44 of 195 photos hold six cats or more,
470 of the 785 cats and 214 of the 233 under 1 % of the image; at 448 px such a cat is two to four patches). Two
finished projects of one folder, one at the default input size and one at a larger one (``--input-size 672``):
each image's final objects taken from the finer project where a rule picks the image, else from the default one,
scored together. Rules: every image; the photos with six annotated objects or more (an oracle); and label-free
readings of the default project: its proposals per image, its final objects per image, the median proposal's
share of the image. Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/small_objects/finer_grid_for_crowds.py DEFAULT_PROJECT FINER_PROJECT \
        GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.state.project import Project, load_image_proposals  # noqa: E402
from engine.state.schema import read_images  # noqa: E402


def readings(project: Path) -> dict:
    """{file name: (proposals, median proposal's share of the image)} of a finished project."""
    project = Project(project)
    found = {}
    for entry in read_images(project.images_path):
        proposals, _, _ = load_image_proposals(project.proposals_path(entry["image_id"]),
                                               (entry["height"], entry["width"]))
        shares = [float(mask.mean()) for mask in proposals.masks]
        found[Path(entry["relative_path"]).name] = (len(shares), float(np.median(shares)) if shares else 1.0)
    return found


def main(default: Path, finer: Path, folder: Path) -> None:
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    coarse, fine = common.final_objects(default, images), common.final_objects(finer, images)
    read = readings(default)
    crowd = {image.file_name: len(image.masks) >= 6 for image in images}
    rules = {
        "none (the default project)": lambda name: False,
        "every image (the finer project)": lambda name: True,
        "six annotated objects or more (oracle)": lambda name: crowd[name],
        **{f"{k} proposals or more": (lambda name, k=k: read[Path(name).name][0] >= k) for k in (5, 6, 8)},
        **{f"{k} final objects or more": (lambda name, k=k: len(coarse.get(name, ((), ()))[1]) >= k)
           for k in (10, 12, 16)},
        **{f"median proposal under {s:.0%} of the image": (lambda name, s=s: read[Path(name).name][1] < s)
           for s in (0.03, 0.05)},
    }
    truth = np.array([crowd[image.file_name] for image in images])
    for label, signal in (("proposals", [read[Path(i.file_name).name][0] for i in images]),
                          ("final objects", [len(coarse.get(i.file_name, ((), ()))[1]) for i in images]),
                          ("median proposal's smallness", [-read[Path(i.file_name).name][1] for i in images])):
        print(f"{label} per image tells the crowded photos at ROC AUC {roc_auc_score(truth, signal):.3f}")
    for name, picks in rules.items():
        stage, picked = {}, 0
        for image in images:
            use_fine = picks(image.file_name) and image.file_name in fine
            picked += use_fine
            source = fine if use_fine else coarse
            if image.file_name in source:
                masks, scores = source[image.file_name]
                stage[image.file_name] = real_dev.StagePrediction(masks, scores, None)
        print(f"{name} ({picked} images, {int(sum(crowd[i.file_name] for i in images if picks(i.file_name)))} "
              f"crowded): {common.figures(images, stage)}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
