"""Are the final objects' scores comparable across images? Mask AP pools every image's objects by score, CorLoc
reads only each image's top one: a project's final objects re-scored by their rank within their image (score /
(1 + rank)^a, the rank alone, the score over the image's best, and the score times that share^a), CorLoc / box AP50
/ mask AP50 / recall@0.5. Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/rank_within_image.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402


def main(project: Path, folder: Path) -> None:
    images = [image for image in common.scored_images(folder) if image.masks is not None]
    loaded = common.final_objects(project, images)

    def scored(label: str, rescore) -> None:
        stage = {}
        for name, (masks, scores) in loaded.items():
            rank = np.empty(len(scores))
            rank[np.argsort(-scores)] = np.arange(len(scores))
            new = rescore(scores, rank, scores.max() if len(scores) else 1.0)
            order = np.argsort(-new)
            stage[name] = real_dev.StagePrediction(masks[order], new[order], None)
        print(f"{label}: {common.figures(images, stage)}", flush=True)

    scored("as they are", lambda s, r, top: s)
    for power in (0.5, 1.0, 2.0):
        scored(f"score / (1 + rank)^{power}", lambda s, r, top, p=power: s / (1 + r) ** p)
    scored("rank alone", lambda s, r, top: 1.0 / (1 + r) + 1e-6 * s)
    scored("score over the image's best", lambda s, r, top: s / top)
    for power in (0.5, 1.0):
        scored(f"score x (score over the image's best)^{power}", lambda s, r, top, p=power: s * (s / top) ** p)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
