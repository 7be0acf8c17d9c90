"""The registry of method names: which proposal methods, mask embeddings and filter rules exist.

Each list has this one owner. :mod:`engine.orchestration.config` describes and checks a run's settings from
them without importing torch (the CLI's help and the plugin's form are built from it), and ``proposals``
names its list in its errors. The precisions live one layer lower, in :mod:`engine.device`, which uses them.
"""
from __future__ import annotations

PROPOSAL_METHODS = ("ncut", "split", "seed", "segments", "dense")  # engine.method.proposals
# a run's choices: "auto" picks dense (with its object size) or segments per folder (engine.method.crowding)
PROPOSAL_CHOICES = ("auto",) + PROPOSAL_METHODS
EMBEDDINGS = ("masked_crop_cls", "crop_cls", "pooled")  # engine.method.clustering
FILTER_RULES = ("class_percentile", "image_threshold")  # engine.method.distill keep_by_class_percentile, ...
