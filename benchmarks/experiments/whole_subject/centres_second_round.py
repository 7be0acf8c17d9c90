"""A second round of the learnt centres (engine.method.centres): the model refitted on the lone objects of the
first round's output (groups cut: more lone objects, fewer groups among them), then the engine's cut and ranking
applied again to the objects before the first round, with the new model. Self-training, as CutLER's rounds are.
Run on a project predicted without the cut; nothing is written. From the repository root:
    .venv/bin/python benchmarks/experiments/whole_subject/centres_second_round.py PROJECT GROUND_TRUTH_FOLDER"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import numpy as np  # noqa: E402

from benchmarks import real_dev  # noqa: E402
from benchmarks.experiments.whole_subject import common  # noqa: E402
from engine.method import centres  # noqa: E402
from engine.method.instances import object_solidities  # noqa: E402

images, loaded, fitted = common.fitted_from_command_line(sys.argv)


def engine_round(model) -> dict:
    """{name: (LabelMasks, scores)}: the engine's cut (concave, or pieces agreeing better) and ranking."""
    out = {}
    for name, masks in fitted.label_masks.items():
        features = fitted.features[name]
        depth = model.depth_map(features.tokens, features.grid_hw, masks.labels.shape)
        concave = set(centres.group_candidates(masks, fitted.solidity[name]))
        others = set(range(len(masks))) - concave
        cut, classes, scores, _ = centres.cut_groups(masks, np.zeros(len(masks), int), loaded[name][1], depth,
                                                     model.min_centre_distance(masks.labels.shape), concave, others)
        cut, _, scores = centres.rank_by_depth_agreement(cut, classes, scores, depth)
        out[name] = (cut, scores)
    return out


def figures(result: dict) -> str:
    return common.figures(images, {name: real_dev.StagePrediction(np.asarray(masks), np.asarray(scores, float), None)
                                   for name, (masks, scores) in result.items()})


first = engine_round(fitted.fit.model)
print(f"first round: {figures(first)}", flush=True)
examples = centres.CentreExamples()
for name, (masks, _) in first.items():
    examples.add(fitted.features[name].tokens, fitted.features[name].grid_hw, masks, object_solidities(masks))
refit = centres.fit_centre_model(examples)
print(refit.summary(), flush=True)
if refit.model is not None:
    second = engine_round(refit.model)
    print(f"second round (the first round's objects' model, on the objects before it): {figures(second)}")
