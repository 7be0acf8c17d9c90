"""The registry of method names: which proposal methods, mask embeddings, filter rules and precisions exist.

Each list has this one owner. The modules that implement them (``proposals``, ``clustering``, ``distill``,
``engine.device``) import their list from here, and so does :mod:`engine.orchestration.config`, which
describes and checks a run's settings without importing torch (the CLI's help and the plugin's form are
built from it).
"""
from __future__ import annotations

PROPOSAL_METHODS = ("ncut", "split", "seed", "segments", "dense")  # engine.method.proposals
EMBEDDINGS = ("masked_crop_cls", "crop_cls", "pooled")  # engine.method.clustering
FILTER_RULES = ("class_percentile", "image_threshold")  # engine.method.distill keep_by_class_percentile, ...
PRECISIONS = ("auto", "float32", "bfloat16")  # engine.device: the backbone's arithmetic
