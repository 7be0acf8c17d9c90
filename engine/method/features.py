"""Last-block ViT features for each image, computed in batches and cached on disk.

What the later stages need from one forward pass: the last block's patch keys (affinities for the
proposals), the final patch tokens and CLS token (embeddings, the segmentation head) and the CLS
attention row (the MaskDistill seed). Only the CLS row of the attention is computed: the full matrix
at 3,600 tokens would be hundreds of MB. The cache on disk keeps only what is read after that pass (the
tokens, int8 per patch: about 0.45 MB per image at the default size instead of 2 MB; see ImageFeatures).

DINOv3 (timm ``Eva``, RoPE): the keys kept are the last block's keys *before* the rotary position
embedding (content keys: their affinities do not depend on where two patches sit, and they are the same
for a patch whether it is seen whole-image or inside a tile, so tiles stitch consistently). The CLS
attention row uses the rotated keys, exactly as the block's attention does (the CLS query is never
rotated). ``rope_keys=True`` keeps the rotated keys instead.

With ``scale`` set (from ``--object-size``, see :mod:`engine.method.tiling`) the image is resized by that factor
instead of to ``input_size`` and, when larger than one tile, run in overlapping tiles and stitched.
"""
from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from engine.atomic import atomic_write_bytes
from engine.method.backbones import BackboneSpec, create_model, get_backbone_spec
from engine.method.tiling import extract_tiled, resize_uint8, scaled_input_hw

# torch (and engine.device / engine.method.weights, which import it) are imported by the extractor's methods:
# the cache half of this module (ImageFeatures, FeatureCache) serves commands that run no network
# (`maskdistill cache`, a click's prompt), and loading torch costs them seconds.
if TYPE_CHECKING:
    import torch

FEATURE_FORMAT_VERSION = 1  # what the features are (part of the cache key: a change recomputes them)
CACHE_FILE_FORMAT = 2  # how a cache file stores them (in the file: a file of another format is recomputed)


class OlderCacheFormat(ValueError):
    """A cache file of format 1 (no "format" field: keys and tokens in float16), written by an earlier version
    and no longer read: it is recomputed like a damaged file, and ``maskdistill cache --prune`` deletes it."""


@dataclass
class ImageFeatures:
    """One image's features. From the extractor every field is set; read back from the cache (format 2) only
    what later steps read is there: ``tokens`` (int8-quantised on disk, see :func:`quantise_rows`),
    ``cls_token`` and the sizes, while ``keys`` and ``cls_attention`` are None. Those two feed the proposals,
    which are computed in the same pass as the features; code that wants them from cached features must fall
    back (e.g. to ``tokens``) or run the extractor again (``has_proposal_inputs`` tells which case it is)."""

    grid_hw: tuple  # patch grid (rows, cols)
    input_hw: tuple  # network input size in pixels
    keys: np.ndarray | None  # (N, Dk) float16, last-block keys, heads concatenated; None when read from the cache
    tokens: np.ndarray  # (N, D) float16, final normalised patch tokens
    cls_token: np.ndarray  # (D,) float32
    cls_attention: np.ndarray | None  # (heads, N) float32, CLS query's softmax attention; None from the cache

    @property
    def has_proposal_inputs(self) -> bool:
        """Keys and CLS attention present: what every proposal method needs besides the tokens."""
        return self.keys is not None and self.cls_attention is not None

    def save(self, path: Path) -> None:
        """Write the compact cache format: tokens quantised per patch, no keys, no CLS attention."""
        quantised, scale, mean = quantise_rows(self.tokens)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            format=np.asarray(CACHE_FILE_FORMAT),
            grid_hw=np.asarray(self.grid_hw),
            input_hw=np.asarray(self.input_hw),
            tokens_q=np.ascontiguousarray(quantised.T),  # channel-major: neighbouring patches alike, ~4 % smaller
            tokens_scale=scale,
            tokens_mean=mean,
            cls_token=np.asarray(self.cls_token, np.float16),
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> ImageFeatures:
        """Read a cache file of :data:`CACHE_FILE_FORMAT`; a format-1 file raises :class:`OlderCacheFormat`,
        a file of any other format ValueError."""
        with np.load(path) as data:
            if "format" not in data.files:
                raise OlderCacheFormat("feature cache file of an older format (1, full precision), no longer read")
            version = int(data["format"])
            if version != CACHE_FILE_FORMAT:
                raise ValueError(f"feature cache format {version}, this version reads only "
                                 f"{CACHE_FILE_FORMAT}")
            tokens = dequantise_rows(data["tokens_q"].T, data["tokens_scale"], data["tokens_mean"])
            return cls(grid_hw=tuple(int(v) for v in data["grid_hw"]),
                       input_hw=tuple(int(v) for v in data["input_hw"]), keys=None, tokens=tokens,
                       cls_token=data["cls_token"].astype(np.float32), cls_attention=None)._checked()

    def _checked(self) -> ImageFeatures:
        """Self, when its arrays agree with its grid and hold numbers; a garbled file that still unzips raises."""
        grid_h, grid_w = self.grid_hw
        if self.tokens.ndim != 2 or len(self.tokens) != grid_h * grid_w or self.cls_token.shape != \
                self.tokens.shape[1:]:
            raise ValueError(f"tokens of shape {self.tokens.shape} for a {grid_h} x {grid_w} grid")
        finite = all(np.isfinite(self.tokens[start:start + ROW_CHUNK]).all()  # a chunk at a time: large grids
                     for start in range(0, len(self.tokens), ROW_CHUNK))
        if not (finite and np.isfinite(self.cls_token).all()):
            raise ValueError("tokens that are not finite numbers")
        return self


ROW_CHUNK = 32768  # rows converted to float32 at a time: a 600 x 600 patch grid is 0.55 GB per float32 copy


def quantise_rows(values: np.ndarray) -> tuple:
    """(N, D) floats -> int8 (N, D), float16 scale (N,), float16 mean (D,); see :func:`dequantise_rows`.

    Each row minus the per-column mean is scaled so its largest magnitude maps to 127: every value comes back
    within half a step (row's largest centred magnitude / 254), plus float16 rounding (the error and size
    measured: docs/decisions.md, "feature cache").
    Worked through ``ROW_CHUNK`` rows at a time, so a large image's tokens are never copied whole as float32.
    """
    n = len(values)
    total = np.zeros(values.shape[1], np.float64)
    for start in range(0, n, ROW_CHUNK):
        total += values[start:start + ROW_CHUNK].astype(np.float64).sum(axis=0)
    mean = (total / max(n, 1)).astype(np.float16)
    quantised = np.empty(values.shape, np.int8)
    scale = np.empty(n, np.float16)
    for start in range(0, n, ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        centred = np.asarray(values[rows], np.float32) - mean.astype(np.float32)
        scale[rows] = (np.abs(centred).max(axis=1) / 127.0).astype(np.float16)
        divisor = np.where(scale[rows] > 0, scale[rows], 1).astype(np.float32)[:, None]  # constant row: zeros
        quantised[rows] = np.clip(np.rint(centred / divisor), -127, 127).astype(np.int8)
    return quantised, scale, mean


def dequantise_rows(quantised: np.ndarray, scale: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantise_rows`, as float16 (N, D), ``ROW_CHUNK`` rows at a time."""
    out = np.empty(quantised.shape, np.float16)
    for start in range(0, len(quantised), ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        values = quantised[rows].astype(np.float32) * scale[rows].astype(np.float32)[:, None] + mean.astype(np.float32)
        out[rows] = values.astype(np.float16)
    return out


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
    resized = np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0))
    return normalise(resized, spec)


def normalise(pixels: np.ndarray, spec: BackboneSpec) -> torch.Tensor:
    """uint8 (..., h, w, 3) at network size -> normalised float tensor (..., 3, h, w)."""
    import torch

    pixels = np.ascontiguousarray(pixels)
    if not pixels.flags.writeable:  # torch cannot wrap a read-only buffer (e.g. a memory-mapped image)
        pixels = pixels.copy()
    tensor = torch.from_numpy(pixels).movedim(-1, -3).float().div_(255.0)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (tensor - mean) / std


def _rotate_patches(x: torch.Tensor, rope, prefix: int, half: bool) -> torch.Tensor:
    """Eva's rotary embedding on the patch tokens of (B, heads, N, d), prefix tokens unrotated."""
    import torch
    from timm.layers import apply_rot_embed_cat

    return torch.cat([x[:, :, :prefix], apply_rot_embed_cat(x[:, :, prefix:], rope, half=half)], dim=2).type_as(x)


def _inference_mode(method):
    """``torch.inference_mode()`` entered on each call: defining the class does not import torch."""
    @functools.wraps(method)
    def call(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return method(*args, **kwargs)

    return call


class FeatureExtractor:
    """A backbone with its weights on a device, turning images into :class:`ImageFeatures`."""

    def __init__(self, backbone: str, weights=None, device: str = "auto", input_size: int | None = None,
                 batch_size: int = 4, scale: float | None = None, tile_size: int | None = None,
                 tile_overlap: int | None = None, rope_keys: bool = False, precision: str = "auto"):
        """``input_size``: shorter side fed to the network (untiled), and the whole-image pass for the CLS
        token of a tiled image. ``scale``: network pixels per image pixel (e.g. from
        :func:`engine.method.tiling.scale_for_object_size`); ``None`` keeps the ``input_size`` resize. With a
        scale, inputs larger than ``tile_size`` pixels (default: the backbone's input size) on a side go in
        tiles overlapping by ``tile_overlap`` pixels (default: a quarter tile), ``batch_size`` tiles at a
        time. Sizes are rounded to multiples of the patch. ``precision``: auto (mixed on GPUs, float32 on CPUs:
        engine.device.resolve_precision), float32 or bfloat16."""
        import torch

        from engine.device import configure_cpu_threads, resolve_device, resolve_precision
        from engine.method.weights import load_into

        self.spec = get_backbone_spec(backbone)
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision)
        if self.device.type == "cpu":
            configure_cpu_threads()
        self.input_size = int(input_size or self.spec.default_input_size)
        self.batch_size = batch_size
        patch = self.spec.patch_size
        self.scale = None if scale is None else float(scale)
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.tile_patches = max(2, round((tile_size or self.spec.default_input_size) / patch))
        overlap = self.tile_patches // 4 if tile_overlap is None else round(tile_overlap / patch)
        self.overlap_patches = min(max(0, overlap), self.tile_patches - 1)
        self.rope_keys = bool(rope_keys)
        if weights == "random":
            # the cache key names these weights just "random": they must be the same network in every
            # process, or a resumed run would mix features of different networks under one key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = create_model(self.spec)
        else:
            model = create_model(self.spec)
        self.weights = load_into(model, self.spec, weights)  # engine.method.weights.WeightsInfo
        self.model = model.to(self.device).eval()
        self._qkv_output: torch.Tensor | None = None  # the last block's qkv output (its forward hook)
        self._qkv_input: torch.Tensor | None = None  # its input, kept where q / k are recomputed in float32
        self._attn_input: tuple | None = None  # (the last block's attention input, rope) (Eva's pre-hook)
        attn = self.model.blocks[-1].attn
        if self.spec.architecture == "eva":
            # Eva computes q/k/v with F.linear when it has q/v biases (the *_qkvb variants), and applies
            # RoPE inside forward: keep the attention's input and rope and recompute q/k in _forward
            attn.register_forward_pre_hook(self._keep_attn_input, with_kwargs=True)
        else:
            attn.qkv.register_forward_hook(self._keep_qkv)

    def _keep_qkv(self, module, inputs, output):
        self._qkv_output = output
        self._qkv_input = inputs[0] if self.precision != "float32" else None

    @property
    def depth(self) -> int:
        return len(self.model.blocks)

    @_inference_mode
    def block_tokens(self, images: list, index: int) -> list:
        """[(patch outputs of block ``index`` (from 0), (N, D) float16, grid_hw), ...] per image: the forward pass
        stops after that block, untiled (what the closer look cuts a crop from: the later blocks cost a third of a
        ViT-S pass and add nothing to it); same-sized inputs share a pass, ``batch_size`` at a time."""
        from engine.device import autocast_context

        results: list = [None] * len(images)
        for input_hw, chunk, batch in self._same_size_batches(images):
            with autocast_context(self.device, self.precision):
                outputs, = self.model.forward_intermediates(batch.to(self.device), indices=[index], stop_early=True,
                                                            intermediates_only=True, output_fmt="NLC")
            outputs = outputs.float().cpu().numpy().astype(np.float16)
            grid = (input_hw[0] // self.spec.patch_size, input_hw[1] // self.spec.patch_size)
            for row, position in enumerate(chunk):
                results[position] = (outputs[row], grid)
        return results

    def _same_size_batches(self, images: list):
        """(input_hw, positions in ``images``, preprocessed (B, 3, h, w) batch) for the images grouped by network
        input size, ``batch_size`` at a time: same-sized inputs share a forward pass."""
        import torch

        by_shape: dict = {}
        for position, image in enumerate(images):
            by_shape.setdefault(self.input_hw(image), []).append(position)
        for input_hw, positions in by_shape.items():
            for start in range(0, len(positions), self.batch_size):
                chunk = positions[start:start + self.batch_size]
                yield input_hw, chunk, torch.stack([preprocess(images[i], self.spec, input_hw) for i in chunk])

    def _keep_attn_input(self, module, args, kwargs):
        self._attn_input = (args[0], kwargs.get("rope"))

    @property
    def settings(self) -> str:
        """Everything besides pixels and weights that changes the features (part of the cache key)."""
        text = f"{self.spec.name}|{self.input_size}"
        if self.precision == "bfloat16":  # reduced precision changes the features a little: its own cache entries
            text += "|bf16"
        if self.scale is not None:
            text += f"|scale={self.scale:.6g}|tile={self.tile_patches}|overlap={self.overlap_patches}"
        if self.rope_keys and self.spec.architecture == "eva":
            text += "|rope_keys"
        return text

    def cache_key(self, pixel_hash: str) -> str:
        text = f"{pixel_hash}|{self.spec.name}|{self.weights.identity}|{self.input_size}|v{FEATURE_FORMAT_VERSION}"
        if self.settings != f"{self.spec.name}|{self.input_size}":  # untiled keys unchanged: old caches stay valid
            text += f"|{self.settings}"
        return hashlib.sha1(text.encode()).hexdigest()

    def input_hw(self, image: np.ndarray) -> tuple:
        if self.scale is not None:
            return scaled_input_hw(image.shape[0], image.shape[1], self.scale, self.spec.patch_size)
        return network_input_hw(image.shape[0], image.shape[1], self.input_size, self.spec.patch_size)

    def _last_block_qk(self, attn):
        """(q rotated, k rotated, k as kept) of the last block, each (B, heads, N, head_dim)."""
        if self.spec.architecture != "eva":
            qkv = self._qkv_output
            assert qkv is not None, "the hook keeps it during every forward"
            if self._qkv_input is not None:  # reduced precision: the keys and the CLS attention in float32
                qkv = attn.qkv(self._qkv_input.float())
            b, n, _ = qkv.shape
            q, k, _ = qkv.reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            q, k = attn.q_norm(q), attn.k_norm(k)
            return q, k, k
        import torch

        assert self._attn_input is not None, "the hook keeps it during every forward"
        x, rope = self._attn_input
        x = x.float()
        b, n, _ = x.shape
        if attn.qkv is not None:
            if attn.q_bias is None:
                qkv = attn.qkv(x)
            else:
                bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
                qkv = torch.nn.functional.linear(x, attn.qkv.weight, bias)
            q, k, _ = qkv.reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = attn.q_proj(x).reshape(b, n, attn.num_heads, -1).transpose(1, 2)
            k = attn.k_proj(x).reshape(b, n, attn.num_heads, -1).transpose(1, 2)
        q, k = attn.q_norm(q), attn.k_norm(k)
        if rope is None:
            return q, k, k
        half = bool(getattr(attn, "rotate_half", False))
        q_rot = _rotate_patches(q, rope, attn.num_prefix_tokens, half)
        k_rot = _rotate_patches(k, rope, attn.num_prefix_tokens, half)
        return q_rot, k_rot, (k_rot if self.rope_keys else k)

    @_inference_mode
    def _forward(self, batch: torch.Tensor):
        """(B, 3, h, w) -> last-block keys, CLS attention row, final tokens."""
        from engine.device import autocast_context

        with autocast_context(self.device, self.precision):
            tokens = self.model.forward_features(batch.to(self.device))
        # Why outside: the proposals rank by the keys and the CLS attention, and bfloat16 rounding of them (not of the
        # tokens) flipped that ranking (docs/decisions.md#d-bf16-keys); one linear layer in float32 costs ~2 %
        attn = self.model.blocks[-1].attn
        q, k, kept = self._last_block_qk(attn)
        self._qkv_output = self._qkv_input = self._attn_input = None
        prefix = self.spec.num_prefix_tokens
        b, _, n, _ = k.shape
        cls_row = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)[:, :, 0, prefix:]
        keys = kept[:, :, prefix:].permute(0, 2, 1, 3).reshape(b, n - prefix, -1)
        return keys.float().cpu(), cls_row.cpu(), tokens.float().cpu()

    def extract(self, images: list) -> list:
        """Features for each image; same-sized inputs share a forward pass (tiles: one image at a time)."""
        if self.scale is not None:
            return [self.extract_scaled(image) for image in images]
        results: list[ImageFeatures | None] = [None] * len(images)
        prefix = self.spec.num_prefix_tokens
        for input_hw, chunk, batch in self._same_size_batches(images):
            keys, cls_row, tokens = self._forward(batch)
            grid = (input_hw[0] // self.spec.patch_size, input_hw[1] // self.spec.patch_size)
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

    def _forward_pixels(self, pixels: np.ndarray) -> tuple:
        """uint8 (B, h, w, 3) at network size -> numpy keys (B, n, Dk), tokens (B, n, D), CLS rows, CLS tokens."""
        keys, cls_row, tokens = self._forward(normalise(pixels, self.spec))
        prefix = self.spec.num_prefix_tokens
        return keys.numpy(), tokens[:, prefix:].numpy(), cls_row.numpy(), tokens[:, 0].numpy()

    def extract_scaled(self, image: np.ndarray, progress=None) -> ImageFeatures:
        """Features of one image resized by ``self.scale``, in overlapping tiles when larger than one tile.

        See :mod:`engine.method.tiling` for the layout, the stitching and what the CLS token and attention are.
        ``progress(done_tiles, total_tiles)`` is called after each tile batch.
        """
        if self.scale is None:
            raise ValueError("extract_scaled needs an extractor built with a scale")
        input_hw = self.input_hw(image)
        patch = self.spec.patch_size
        grid = (input_hw[0] // patch, input_hw[1] // patch)
        pixels = resize_uint8(image, input_hw)
        if max(grid) <= self.tile_patches:  # one tile: a plain pass, its own CLS token
            keys, tokens, cls_row, cls = (a[0] for a in self._forward_pixels(pixels[None]))
        else:
            keys, tokens, cls_row = extract_tiled(
                pixels, lambda batch: self._forward_pixels(batch)[:3], patch, self.tile_patches,
                self.overlap_patches, batch_size=self.batch_size, progress=progress)
            del pixels
            whole_hw = network_input_hw(image.shape[0], image.shape[1], self.input_size, patch)
            _, _, whole_tokens = self._forward(preprocess(image, self.spec, whole_hw)[None])
            cls = whole_tokens[0, 0].numpy()
        return ImageFeatures(
            grid_hw=grid,
            input_hw=input_hw,
            keys=np.asarray(keys).astype(np.float16, copy=False),
            tokens=np.asarray(tokens).astype(np.float16, copy=False),
            cls_token=np.asarray(cls, np.float32),
            cls_attention=np.asarray(cls_row, np.float32),
        )

    @_inference_mode
    def cls_embeddings(self, crops: list, size: int = 224, precision: str | None = None) -> np.ndarray:
        """CLS token of each crop resized to ``size`` x ``size`` (the paper's clustering embedding), in
        ``precision`` (default: the extractor's)."""
        import torch

        from engine.device import autocast_context

        side = max(2, round(size / self.spec.patch_size)) * self.spec.patch_size
        out, step = [], self.batch_size * 4
        for start in range(0, len(crops), step):
            batch = torch.stack([preprocess(c, self.spec, (side, side)) for c in crops[start:start + step]])
            with autocast_context(self.device, precision or self.precision):
                tokens = self.model.forward_features(batch.to(self.device))
            out.append(tokens[:, 0].float().cpu().numpy())
        self._qkv_output = self._attn_input = None
        return np.concatenate(out) if out else np.zeros((0, self.spec.embed_dim), np.float32)


class FeatureCache:
    """Features on disk, one file per image, under a key of pixels, backbone, weights and input size.

    Files are written in the compact format of :meth:`ImageFeatures.save` (what later steps read: tokens,
    int8 per patch); a file of another format is treated as unreadable: recomputed, and deleted by :meth:`prune`.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str):
        """The features of ``key``, or None when its file is missing or cannot be read (to be recomputed)."""
        return self.read(key)[0]

    def read(self, key: str) -> tuple:
        """(features, problem): (ImageFeatures, None); (None, None) when there is no file; (None, "<file>:
        why it cannot be read") for a truncated, emptied, garbled, foreign, older- or newer-format file, which
        is recomputed, never trusted."""
        path = self.path(key)
        if not path.exists():
            return None, None
        try:
            return ImageFeatures.load(path), None
        except OlderCacheFormat as error:
            return None, f"{path}: {error}"
        except Exception as error:  # anything np.load / zipfile / zlib raise on damage
            return None, f"{path}: damaged feature cache file ({type(error).__name__}: {error})"

    def put(self, key: str, features: ImageFeatures) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        features.save(path)

    def files(self) -> list:
        return sorted(self.folder.glob("??/*.npz")) if self.folder.exists() else []

    def size(self, keys: set | None = None) -> dict:
        """{"files": n, "bytes": total} of the cache on disk, or of the files of ``keys`` only."""
        files = [f for f in self.files() if keys is None or f.stem in keys]
        return {"files": len(files), "bytes": int(sum(f.stat().st_size for f in files))}

    def prune(self, keep: set) -> dict:
        """Delete cached features whose key is not in ``keep`` (images removed from the folder, or features of
        other settings) and files that cannot be read, damaged or of another format (the next run recomputes
        them). Returns {"files": removed, "unreadable": those of them removed as unreadable, "bytes": freed}."""
        before = self.size()["bytes"]
        removed = unreadable = 0
        for path in self.files():
            damaged = path.stem in keep and self.read(path.stem)[1] is not None
            if path.stem not in keep or damaged:
                path.unlink()
                removed += 1
                unreadable += damaged
        return {"files": removed, "unreadable": unreadable, "bytes": before - self.size()["bytes"]}
