"""Last-block ViT features for each image, computed in batches and cached on disk.

What the later stages need from one forward pass: the last block's patch keys (affinities for the
proposals), the final patch tokens and CLS token (embeddings, the segmentation head) and the CLS
attention row (the MaskDistill seed). Only the CLS row of the attention is computed: the full matrix
at 3,600 tokens would be hundreds of MB.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_write_bytes
from .backbones import BackboneSpec, create_model, get_backbone_spec
from .device import autocast_context, configure_cpu_threads, resolve_device
from .weights import WeightsInfo, load_into

FEATURE_FORMAT_VERSION = 1


@dataclass
class ImageFeatures:
    grid_hw: tuple  # patch grid (rows, cols)
    input_hw: tuple  # network input size in pixels
    keys: np.ndarray  # (N, D) float16, last-block keys, heads concatenated
    tokens: np.ndarray  # (N, D) float16, final normalised patch tokens
    cls_token: np.ndarray  # (D,) float32
    cls_attention: np.ndarray  # (heads, N) float32, softmax attention of the CLS query to the patches

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            grid_hw=np.asarray(self.grid_hw),
            input_hw=np.asarray(self.input_hw),
            keys=self.keys,
            tokens=self.tokens,
            cls_token=self.cls_token,
            cls_attention=self.cls_attention,
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "ImageFeatures":
        with np.load(path) as data:
            return cls(
                grid_hw=tuple(int(v) for v in data["grid_hw"]),
                input_hw=tuple(int(v) for v in data["input_hw"]),
                keys=data["keys"],
                tokens=data["tokens"],
                cls_token=data["cls_token"],
                cls_attention=data["cls_attention"],
            )


def network_input_hw(height: int, width: int, input_size: int, patch_size: int) -> tuple:
    """Shorter side to ``input_size``, longer side capped at twice that, both multiples of the patch."""
    scale = input_size / min(height, width)
    scale = min(scale, 2 * input_size / max(height, width))

    def snap(side):
        return max(2 * patch_size, int(round(side * scale / patch_size)) * patch_size)

    return snap(height), snap(width)


def preprocess(image: np.ndarray, spec: BackboneSpec, input_hw: tuple) -> torch.Tensor:
    """uint8 (H, W, 3) -> normalised float tensor (3, h, w) at the network input size."""
    height, width = input_hw
    resized = np.array(Image.fromarray(image).resize((width, height), Image.BICUBIC, reducing_gap=3.0))
    tensor = torch.from_numpy(resized).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (tensor - mean) / std


class FeatureExtractor:
    """A backbone with its weights on a device, turning images into :class:`ImageFeatures`."""

    def __init__(self, backbone: str, weights=None, device: str = "auto", input_size: int | None = None,
                 batch_size: int = 4):
        self.spec = get_backbone_spec(backbone)
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            configure_cpu_threads()
        self.input_size = int(input_size or self.spec.default_input_size)
        self.batch_size = batch_size
        if weights == "random":
            # the cache key names these weights just "random": they must be the same network in every
            # process, or a resumed run would mix features of different networks under one key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = create_model(self.spec)
        else:
            model = create_model(self.spec)
        self.weights: WeightsInfo = load_into(model, self.spec, weights)
        self.model = model.to(self.device).eval()
        self._qkv_output = None
        self.model.blocks[-1].attn.qkv.register_forward_hook(self._keep_qkv)

    def _keep_qkv(self, module, inputs, output):
        self._qkv_output = output

    def cache_key(self, pixel_hash: str) -> str:
        text = f"{pixel_hash}|{self.spec.name}|{self.weights.identity}|{self.input_size}|v{FEATURE_FORMAT_VERSION}"
        return hashlib.sha1(text.encode()).hexdigest()

    def input_hw(self, image: np.ndarray) -> tuple:
        return network_input_hw(image.shape[0], image.shape[1], self.input_size, self.spec.patch_size)

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor):
        """(B, 3, h, w) -> last-block keys, CLS attention row, final tokens."""
        with autocast_context(self.device):
            tokens = self.model.forward_features(batch.to(self.device))
        qkv = self._qkv_output
        self._qkv_output = None
        attn = self.model.blocks[-1].attn
        b, n, _ = qkv.shape
        q, k, _ = qkv.reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        prefix = self.spec.num_prefix_tokens
        cls_row = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)[:, :, 0, prefix:]
        keys = k[:, :, prefix:].permute(0, 2, 1, 3).reshape(b, n - prefix, -1)
        return keys.float().cpu(), cls_row.cpu(), tokens.float().cpu()

    def extract(self, images: list) -> list:
        """Features for each image; same-sized inputs share a forward pass."""
        results = [None] * len(images)
        by_shape: dict = {}
        for index, image in enumerate(images):
            by_shape.setdefault(self.input_hw(image), []).append(index)
        for input_hw, indices in by_shape.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                batch = torch.stack([preprocess(images[i], self.spec, input_hw) for i in chunk])
                keys, cls_row, tokens = self._forward(batch)
                grid = (input_hw[0] // self.spec.patch_size, input_hw[1] // self.spec.patch_size)
                prefix = self.spec.num_prefix_tokens
                for row, index in enumerate(chunk):
                    results[index] = ImageFeatures(
                        grid_hw=grid,
                        input_hw=input_hw,
                        keys=keys[row].numpy().astype(np.float16),
                        tokens=tokens[row, prefix:].numpy().astype(np.float16),
                        cls_token=tokens[row, 0].numpy(),
                        cls_attention=cls_row[row].numpy(),
                    )
        return results

    @torch.inference_mode()
    def cls_embeddings(self, crops: list, size: int = 224) -> np.ndarray:
        """CLS token of each crop resized to ``size`` x ``size`` (the paper's clustering embedding)."""
        side = max(2, round(size / self.spec.patch_size)) * self.spec.patch_size
        out, step = [], self.batch_size * 4
        for start in range(0, len(crops), step):
            batch = torch.stack([preprocess(c, self.spec, (side, side)) for c in crops[start:start + step]])
            with autocast_context(self.device):
                tokens = self.model.forward_features(batch.to(self.device))
            out.append(tokens[:, 0].float().cpu().numpy())
        self._qkv_output = None
        return np.concatenate(out) if out else np.zeros((0, self.spec.embed_dim), np.float32)


class FeatureCache:
    """Features on disk, one file per image, under a key of pixels, backbone, weights and input size."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str):
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return ImageFeatures.load(path)
        except Exception:  # a torn or foreign file is recomputed, never trusted
            return None

    def put(self, key: str, features: ImageFeatures) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        features.save(path)
