"""How far apart must two learnt centres be, and how small may a piece be, for the group cut
(engine.method.centres)? And, at that spacing, how deep must a centre be, and by how much must a compact
object's pieces agree better? The engine's cut and ranking (``cut_groups`` with concave candidates and compact others,
then ``rank_by_depth_agreement``) replayed on a project predicted without the centres, with the centres' minimum
distance at a share of the folder's typical lone radius (the engine: CENTRE_SPACING) and the smallest piece at a
share of its object (the engine: MIN_PIECE_SHARE). Most of feral_cats' missed cats lie under an object holding two
or more cats, many of them smaller than the typical lone cat. Nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_spacing.py PROJECT GROUND_TRUTH_FOLDER \
        [SPACING,PIECE_SHARE[,PEAK_DEPTH[,CUT_AGREEMENT_MARGIN]] ...]
(the engine's value for any left out; default: every pair of spacing 0.25-1.5 and piece share 0.08 / 0.1 / 0.15)"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)
model = fitted.fit.model


def replay(radius_share: float, piece_share: float, peak: float, margin: float) -> dict:
    """{file name: StagePrediction} of the engine's cut and ranking with these settings."""
    model.spacing, centres.MIN_PIECE_SHARE = radius_share, piece_share
    centres.PEAK_DEPTH, centres.CUT_AGREEMENT_MARGIN = peak, margin
    stage = {}
    for name, masks in fitted.label_masks.items():
        scores = loaded[name][1]
        classes = np.ones(len(masks), int)
        candidates = set(centres.group_candidates(masks, fitted.solidity[name]))
        others = set(range(len(masks))) - candidates
        masks, classes, scores, _ = centres.cut_groups(masks, classes, scores, fitted.depth[name],
                                                       model.min_centre_distance(masks.labels.shape), candidates,
                                                       others)
        masks, classes, scores = centres.rank_by_depth_agreement(masks, classes, scores, fitted.depth[name])
        stage[name] = real_dev.StagePrediction(np.asarray(masks), np.asarray(scores, float), None)
    return stage


engine = (model.spacing, centres.MIN_PIECE_SHARE, centres.PEAK_DEPTH, centres.CUT_AGREEMENT_MARGIN)
given = [[float(v) for v in setting.split(",")] for setting in sys.argv[3:]]
settings = [tuple(values) + engine[len(values):] for values in given] or [
    (spacing, share) + engine[2:] for spacing in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5) for share in (0.08, 0.1, 0.15)]
for radius_share, piece_share, peak, margin in settings:
    print(f"centres {radius_share} x the lone radius apart, pieces >= {piece_share} of the object, peaks >= {peak}, "
          f"agreement margin {margin}: {common.figures(images, replay(radius_share, piece_share, peak, margin))}",
          flush=True)
