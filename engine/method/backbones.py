"""Registry of named self-supervised ViT backbones (DINO, DINOv2, DINOv3), each with what is needed to use it correctly.

Callers ask for a name (``dinov2_vits14``); nobody re-types patch sizes or mean/std. Building the
network is timm's job; getting weights into it is :mod:`engine.method.weights`' job.
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str  # timm architecture name
    pretrained_tag: str  # timm pretrained tag; ``timm_name.pretrained_tag`` is the hub name
    family: str  # "dino", "dinov2" or "dinov3": the proposal stage needs to know (see engine.method.proposals)
    patch_size: int
    embed_dim: int
    num_heads: int
    default_input_size: int  # shorter image side fed to the network, in pixels
    num_register_tokens: int = 0
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    license: str = "apache-2.0"  # of the pretrained weights, as timm's pretrained config names it

    @property
    def architecture(self) -> str:
        """timm model class family: ``"vit"`` (VisionTransformer) or ``"eva"`` (Eva, RoPE; DINOv3)."""
        return "eva" if self.family == "dinov3" else "vit"

    @property
    def hub_name(self) -> str:
        return f"{self.timm_name}.{self.pretrained_tag}"

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.num_register_tokens


def _dino(name, arch, patch, dim, heads, size):
    return BackboneSpec(name, arch, "dino", "dino", patch, dim, heads, size)


def _dinov2(name, arch, dim, heads, registers=0):
    return BackboneSpec(name, arch, "lvd142m", "dinov2", 14, dim, heads, 448, registers)


def _dinov3(name, arch, dim, heads):
    # DINOv3 (Meta, 2025): patch 16, RoPE instead of absolute position embeddings, CLS + 4 register
    # ("storage") tokens in front of the patches; timm builds it as an Eva model. Weights are under the
    # DINOv3 License (not Apache-2.0): https://ai.meta.com/resources/models-and-libraries/dinov3-license/
    return BackboneSpec(name, arch, "lvd1689m", "dinov3", 16, dim, heads, 448, 4, license="dinov3-license")


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _dino("dino_vits16", "vit_small_patch16_224", 16, 384, 6, 480),
        _dino("dino_vits8", "vit_small_patch8_224", 8, 384, 6, 320),
        _dino("dino_vitb16", "vit_base_patch16_224", 16, 768, 12, 480),
        _dino("dino_vitb8", "vit_base_patch8_224", 8, 768, 12, 320),
        _dinov2("dinov2_vits14", "vit_small_patch14_dinov2", 384, 6),
        _dinov2("dinov2_vitb14", "vit_base_patch14_dinov2", 768, 12),
        _dinov2("dinov2_vits14_reg", "vit_small_patch14_reg4_dinov2", 384, 6, registers=4),
        _dinov2("dinov2_vitb14_reg", "vit_base_patch14_reg4_dinov2", 768, 12, registers=4),
        _dinov3("dinov3_vits16", "vit_small_patch16_dinov3", 384, 6),
        _dinov3("dinov3_vits16plus", "vit_small_plus_patch16_dinov3", 384, 6),
        _dinov3("dinov3_vitb16", "vit_base_patch16_dinov3", 768, 12),
        _dinov3("dinov3_vitl16", "vit_large_patch16_dinov3", 1024, 16),
        _dinov3("dinov3_vith16plus", "vit_huge_plus_patch16_dinov3", 1280, 20),
    )
}
DEFAULT_BACKBONE = "dinov2_vits14"


def centres_keys(family: str | None) -> bool:
    """Whether a backbone family's keys and tokens are centred on the image's mean first: DINOv2 / v3 (both
    register-token DINO models) share a common component that makes every affinity positive."""
    return family in ("dinov2", "dinov3")


def get_backbone_spec(name: str) -> BackboneSpec:
    """Look a backbone up by our short name or by its timm hub name."""
    if name in BACKBONES:
        return BACKBONES[name]
    for spec in BACKBONES.values():
        if name in (spec.hub_name, spec.timm_name):
            return spec
    known = ", ".join(BACKBONES)
    raise KeyError(f"Unknown backbone {name!r}. Known backbones: {known}")


def create_model(spec: BackboneSpec):
    """The bare timm network for ``spec`` with random weights, accepting any input size."""
    import timm

    return timm.create_model(
        spec.timm_name, pretrained=False, num_classes=0, dynamic_img_size=True
    ).eval()
