"""Backbone precision: float32 on CPUs by default (bfloat16 moved real-dev CorLoc), bfloat16 as an opt-in where
the CPU has native units; features agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.device import cpu_supports_bfloat16, resolve_precision
from engine.method.features import FeatureExtractor
from engine.orchestration.pipeline import RunConfig


def test_auto_is_float32_on_a_cpu_and_explicit_choices_are_kept():
    cpu = torch.device("cpu")
    assert resolve_precision(cpu, "auto") == "float32"
    assert resolve_precision(cpu, "float32") == "float32"
    if cpu_supports_bfloat16():
        assert resolve_precision(cpu, "bfloat16") == "bfloat16"
    else:
        with pytest.raises(ValueError, match="native bfloat16"):
            resolve_precision(cpu, "bfloat16")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(cpu, "half")
    with pytest.raises(ValueError, match="precision"):
        RunConfig(precision="fp8").check()


@pytest.mark.skipif(not cpu_supports_bfloat16(), reason="this CPU has no native bfloat16 units")
def test_bfloat16_features_match_float32_and_are_cached_apart():
    image = np.random.default_rng(0).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    full = FeatureExtractor("dinov2_vits14", "random", "cpu", input_size=56, precision="float32")
    half = FeatureExtractor("dinov2_vits14", "random", "cpu", input_size=56, precision="bfloat16")
    assert full.settings != half.settings and full.cache_key("x") != half.cache_key("x")
    a, b = full.extract([image])[0], half.extract([image])[0]
    for name in ("tokens", "keys"):
        x, y = getattr(a, name).astype(np.float32), getattr(b, name).astype(np.float32)
        cosine = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        assert cosine.min() > 0.99, (name, cosine.min())


@pytest.mark.skipif(not cpu_supports_bfloat16(), reason="this CPU has no native bfloat16 units")
def test_bfloat16_runs_the_last_blocks_keys_and_cls_attention_in_float32():
    """The proposals rank by the keys and the CLS attention: under bfloat16 they come from the last block's input in
    float32 (keys rounded to bfloat16 would hold no more than its 8 bits of mantissa)."""
    image = np.random.default_rng(1).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    half = FeatureExtractor("dinov2_vits14", "random", "cpu", input_size=56, precision="bfloat16")
    features = half.extract([image])[0]
    keys = features.keys.astype(np.float32)
    assert (torch.from_numpy(keys).bfloat16().float().numpy() != keys).mean() > 0.5
    assert half._qkv_input is None and half._qkv_output is None  # nothing held between forwards
