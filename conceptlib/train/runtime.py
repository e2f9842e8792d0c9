"""Where and how code runs: the device, native bf16 (what ``train.precision=auto``
means), seeds, and ``torchrun``'s process group."""

from __future__ import annotations

import dataclasses
import os
import random
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from conceptlib.config import ExperimentConfig
from conceptlib.errors import ConceptlibError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu`` or ``cuda`` as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ConceptlibError(f"--device {name!r}: expected auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConceptlibError("--device cuda: no CUDA GPU is available")
    return torch.device(name)


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: on CPU, AVX512-BF16 or AMX (else
    oneDNN emulates bf16, slower than fp32)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(
            torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        )
    except AttributeError:  # private helpers of torch.cpu: absent means unknown
        return False


def resolve_precision(cfg: ExperimentConfig, device: torch.device) -> ExperimentConfig:
    """``train.precision=auto`` made concrete for ``device``: bf16 with channels_last
    (the fastest in ``benchmarks/train_loop.py``) where :func:`bf16_native`, else
    fp32. The run key hashes the result: a bf16 run never loads for an fp32 one."""
    if cfg.train.precision != "auto":
        return cfg
    fast = {"precision": "bf16", "channels_last": True}
    chosen = fast if bf16_native(device) else {"precision": "fp32"}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **chosen))


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; make torch deterministic where possible."""
    random.seed(seed)
    np.random.seed(seed)  # only for third-party code; conceptlib never uses it
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def init_distributed(device: torch.device) -> torch.device:
    """Join ``torchrun``'s process group (``WORLD_SIZE`` > 1; gloo on CPU, nccl with
    one GPU per process) and return this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    # rank 0 evaluates and clusters between trainings while the others wait in
    # the next collective: allow for that (the defaults are 10 or 30 minutes)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=6)
    )
    return device


def is_main() -> bool:
    """True in a single process and on rank 0 of ``torchrun``: the one that writes."""
    return not dist.is_initialized() or dist.get_rank() == 0
