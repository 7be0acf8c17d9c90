"""Choosing where the network runs, and CPU thread settings that avoid OpenMP/BLAS oversubscription."""
from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit name is checked to exist."""
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
    if num_threads is None:
        env = os.environ.get("MASKDISTILL_THREADS")
        num_threads = int(env) if env else max(1, (os.cpu_count() or 1))
    torch.set_num_threads(num_threads)
    return num_threads


def autocast_context(device: torch.device):
    """Mixed precision on GPUs (bfloat16 where supported), plain float32 elsewhere."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def single_threaded_lapack():
    """Dense LAPACK/ARPACK calls collapse with multi-threaded OpenBLAS on 2 busy cores (9.5 s vs 0.08 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)
