"""Backbone registry (DINOv3 next to DINO / DINOv2) and the last-block features each family yields.

Random weights only: these tests check mechanics (shapes, prefix tokens, that the captured keys and CLS
attention row are the ones the network's attention uses), not feature quality.
"""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from engine.method.backbones import BACKBONES, get_backbone_spec
from engine.method.features import FeatureExtractor

DINOV3 = [spec for spec in BACKBONES.values() if spec.family == "dinov3"]
IMAGE = (np.random.default_rng(0).random((70, 100, 3)) * 255).astype(np.uint8)


def test_dinov3_registry_matches_timm():
    assert {s.name for s in DINOV3} >= {"dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16"}
    pretrained = set(timm.list_pretrained("*dinov3*"))
    for spec in DINOV3:
        assert spec.hub_name in pretrained
        cfg = timm.models.get_pretrained_cfg(spec.hub_name)
        assert cfg.hf_hub_id == f"timm/{spec.hub_name}"
        assert spec.license == cfg.license == "dinov3-license"
        assert (tuple(spec.mean), tuple(spec.std)) == (tuple(cfg.mean), tuple(cfg.std))
        assert spec.patch_size == 16 and spec.num_register_tokens == 4 and spec.architecture == "eva"
        assert spec.default_input_size % spec.patch_size == 0
        assert get_backbone_spec(spec.hub_name) is spec and get_backbone_spec(spec.timm_name) is spec


@pytest.mark.parametrize("spec", DINOV3, ids=lambda s: s.name)
def test_dinov3_architecture_numbers(spec):
    """Dim, heads and prefix tokens from the real timm class, built on the meta device (no memory)."""
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, device="meta")
    assert model.embed_dim == spec.embed_dim
    assert model.blocks[-1].attn.num_heads == spec.num_heads
    assert model.num_prefix_tokens == spec.num_prefix_tokens == 5
    assert model.patch_embed.patch_size == (16, 16)


@pytest.fixture(scope="module")
def dinov3():
    return FeatureExtractor("dinov3_vits16", weights="random", device="cpu", input_size=64)


def test_dinov3_features_shapes(dinov3):
    features = dinov3.extract([IMAGE])[0]
    assert features.input_hw == (64, 96) and features.grid_hw == (4, 6)  # grid = input / 16
    n = 4 * 6  # CLS + 4 registers are not in the patch grid
    assert features.keys.shape == (n, 384) and features.tokens.shape == (n, 384)
    assert features.cls_attention.shape == (6, n) and features.cls_token.shape == (384,)
    for array in (features.keys, features.tokens, features.cls_attention, features.cls_token):
        assert np.isfinite(np.asarray(array, np.float32)).all()
    # the CLS row is a softmax over all tokens: the patches get less than 1 (the rest went to the prefix)
    assert (features.cls_attention.sum(axis=1) < 1).all()
    with torch.no_grad():
        from engine.method.features import preprocess

        tokens = dinov3.model.forward_features(preprocess(IMAGE, dinov3.spec, (64, 96))[None])
    np.testing.assert_allclose(features.tokens.astype(np.float32), tokens[0, 5:].numpy(), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(features.cls_token, tokens[0, 0].numpy(), atol=1e-4)


def _true_attention(extractor):
    """The last block's softmaxed attention matrix, taken from the network's own unfused path."""
    attn = extractor.model.blocks[-1].attn
    seen = []
    attn.fused_attn = False
    handle = attn.attn_drop.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        with torch.no_grad():
            from engine.method.features import preprocess

            extractor.model.forward_features(preprocess(IMAGE, extractor.spec, extractor.input_hw(IMAGE))[None])
    finally:
        handle.remove()
        attn.fused_attn = True
    return seen[-1][0]  # (heads, N, N)


@pytest.mark.parametrize("name", ["dinov3_vits16", "dino_vits16", "dinov2_vits14_reg"])
def test_cls_row_is_the_attention_the_network_uses(name):
    """With RoPE (DINOv3) the CLS row must use the rotated keys; checked against the block's own softmax."""
    extractor = FeatureExtractor(name, weights="random", device="cpu", input_size=64, precision="float32")
    features = extractor.extract([IMAGE])[0]
    expected = _true_attention(extractor)[:, 0, extractor.spec.num_prefix_tokens:].numpy()
    np.testing.assert_allclose(features.cls_attention, expected, atol=1e-5)


def test_dinov3_keys_before_and_after_rope(dinov3):
    """Default keys are the pre-RoPE content keys; rope_keys=True keeps the rotated ones (another cache key)."""
    attn = dinov3.model.blocks[-1].attn
    captured = []
    handle = attn.register_forward_pre_hook(lambda m, args, kwargs: captured.append(args[0]), with_kwargs=True)
    try:
        features = dinov3.extract([IMAGE])[0]
    finally:
        handle.remove()
    with torch.no_grad():
        k = attn.qkv(captured[-1])[0, 5:, 384:768]  # no q/k biases in vit_small_patch16_dinov3
    np.testing.assert_allclose(features.keys.astype(np.float32), k.numpy(), atol=2e-2, rtol=1e-2)
    rotated = FeatureExtractor("dinov3_vits16", weights="random", device="cpu", input_size=64, rope_keys=True)
    rotated_keys = rotated.extract([IMAGE])[0].keys.astype(np.float32)
    assert not np.allclose(rotated_keys, k.numpy(), atol=1e-2)
    np.testing.assert_allclose(np.linalg.norm(rotated_keys, axis=1), np.linalg.norm(k.numpy(), axis=1), rtol=1e-2)
    assert rotated.cache_key("pixels") != dinov3.cache_key("pixels")


def test_dinov3_cls_embeddings(dinov3):
    crops = [IMAGE[:40, :40], IMAGE[10:, 20:]]
    embeddings = dinov3.cls_embeddings(crops, size=64)
    assert embeddings.shape == (2, 384) and np.isfinite(embeddings).all()


def test_untiled_cache_key_unchanged_by_new_options():
    """Existing float32 feature caches stay valid: untiled float32 settings give the same key as before tiling
    existed (bfloat16 features get their own key: tests/test_precision.py)."""
    import hashlib

    extractor = FeatureExtractor("dino_vits16", weights="random", device="cpu", input_size=64, precision="float32")
    old = hashlib.sha1(b"abc|dino_vits16|random|64|v1").hexdigest()
    assert extractor.cache_key("abc") == old


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov3_vits16"])
def test_block_tokens_are_that_blocks_patch_outputs_from_a_pass_stopped_there(name):
    """The closer look's crops are cut from a middle block's outputs: per image of a batch they equal what the
    whole forward pass computes at that block (seen by a hook), and the last block's, normed, are the final
    tokens; no block after the asked one runs."""
    extractor = FeatureExtractor(name, weights="random", device="cpu", input_size=64, precision="float32")
    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)]
    seen = {}
    hooks = [block.register_forward_hook(lambda module, inputs, output, i=i: seen.__setitem__(i, output))
             for i, block in enumerate(extractor.model.blocks)]
    features = extractor.extract(images)
    prefix = extractor.spec.num_prefix_tokens
    middle = seen[2][:, prefix:].float().numpy()
    seen.clear()
    outputs = extractor.block_tokens(images, 2)
    assert sorted(seen) == [0, 1, 2]  # stopped after block 2
    for row, (tokens, grid_hw) in enumerate(outputs):
        assert grid_hw == features[row].grid_hw
        np.testing.assert_allclose(tokens.astype(np.float32), middle[row], atol=2e-2)
    last = extractor.block_tokens(images, extractor.depth - 1)
    for one, (tokens, _) in zip(features, last):
        normed = extractor.model.norm(torch.from_numpy(tokens.astype(np.float32))).detach().numpy()
        np.testing.assert_allclose(normed, one.tokens.astype(np.float32), atol=2e-2)
    assert not np.allclose(outputs[0][0], outputs[1][0])
    for hook in hooks:
        hook.remove()


def test_cls_embeddings_in_a_precision_of_their_own():
    """The masked crops' embeddings can run in bfloat16 under a float32 extractor (engine.orchestration.image_step
    embeds them at the closer look's crop precision): close to the float32 ones, and not the same numbers."""
    extractor = FeatureExtractor("dino_vits16", weights="random", device="cpu", input_size=64, precision="float32")
    crops = [IMAGE[:40, :40], IMAGE[10:, 20:]]
    full = extractor.cls_embeddings(crops, size=64)
    rounded = extractor.cls_embeddings(crops, size=64, precision="bfloat16")
    assert extractor.precision == "float32" and not np.array_equal(full, rounded)
    cosine = (full * rounded).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(rounded, axis=1)
    assert (cosine > 0.99).all()
