"""Device choice (CUDA, then MPS, then CPU), thread count and mixed precision."""

from __future__ import annotations

import contextlib
import os

from medattn.errors import ConfigError


def select_device(name: str = "auto"):
    """A torch.device; None under an ONNX backend (engine/backend.py), where ONNX Runtime runs on the CPU."""
    from medattn.engine.backend import uses_torch

    if not uses_torch():
        return None
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"--device {name!r}: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine")
    return device


def use_threads(threads: int = 0) -> int:
    """Use every core unless told otherwise (train.threads, or OMP_NUM_THREADS when set).

    Processes started together on one machine (torchrun) share its cores: each takes cores / processes.
    """
    import torch

    from medattn.engine.distributed import local_world_size

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    from_env = os.environ.get("OMP_NUM_THREADS", "")
    count = threads or (int(from_env) if from_env.isdigit() else max(1, cores // local_world_size()))
    torch.set_num_threads(max(1, count))
    return count


def autocast(device, enabled: bool):
    """bf16 autocast on CUDA devices that support it, fp16 otherwise; a no-op on CPU and MPS.

    CPU autocast is left off: without bf16 matrix units it is slower than float32 here.
    """
    import torch

    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def grad_scaler(device, enabled: bool):
    """A loss scaler only for fp16 (bf16 needs none)."""
    import torch

    needed = enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=needed)


def model_inputs(x, device) -> tuple:
    """A training batch's model inputs on `device`, as positional arguments: one tensor (images), or a tuple of
    tensors a task's batches give (images and a clinical vector per image or bag)."""
    parts = x if isinstance(x, tuple | list) else (x,)
    return tuple(part.to(device, non_blocking=True) for part in parts)
