"""Choosing where the network runs, and CPU thread settings that avoid OpenMP/BLAS oversubscription.

torch is imported inside the functions that use it, so the run settings (engine.orchestration.config) can list
``PRECISIONS`` from here without loading torch.
"""
from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "float32", "bfloat16")  # the backbone's arithmetic (resolve_precision)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit name is checked to exist."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"Device {device!r} was requested but CUDA is not available; use --device cpu or auto.")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"Device {device!r} was requested but MPS is not available; use --device cpu or auto.")
    return resolved


def configure_cpu_threads(num_threads: int | None = None) -> int:
    """Use the physical cores, never more, for torch's intra-op pool.

    With spin-waiting OpenMP threads (the default) a busy second thread slowed a ViT forward 10x;
    engine/__init__ sets OMP_WAIT_POLICY=PASSIVE before torch loads, this caps the pool size.
    """
    import torch

    if num_threads is None:
        env = os.environ.get("MASKDISTILL_THREADS")
        num_threads = int(env) if env else max(1, (os.cpu_count() or 1))
    torch.set_num_threads(num_threads)
    return num_threads


def cpu_supports_bfloat16() -> bool:
    """Native bfloat16 matrix units (AMX / AVX512-BF16): a DINOv2-S/14 forward at 448 px took 148 ms instead
    of 334 ms in float32 on 2 threads here; without them bfloat16 is emulated and slower."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """"bfloat16", "float16" or "float32" for ``device``. auto: mixed precision on GPUs (bfloat16 where
    supported, else float16), float32 on CPUs. bfloat16 on a CPU with native units is an opt-in
    (``--precision bfloat16``): faster, but it moves the ranking of proposals (docs/decisions.md, "float32 on
    CPUs")."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bfloat16" and device.type == "cpu" and not cpu_supports_bfloat16():
        raise ValueError("this CPU has no native bfloat16 (AMX / AVX512-BF16): it would be emulated and slower; "
                         "use --precision float32")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def autocast_context(device: torch.device, precision: str = "float32"):
    """Mixed precision for a resolved ``precision`` (see :func:`resolve_precision`); float32 runs as is."""
    import torch

    if precision == "float32" or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def single_threaded_lapack():
    """Dense LAPACK/ARPACK calls run single-threaded inside this block: multi-threaded OpenBLAS collapses when the
    cores are busy (docs/decisions.md, "dense LAPACK calls single-threaded")."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)
