"""Choosing the compute device: `auto` is the GPU when there is one, else the CPU."""

from __future__ import annotations

import torch

from jvae_cli.errors import JvaeError


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise JvaeError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise JvaeError(
                f"device {spec!r} asked for, but this machine has no usable CUDA GPU; use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise JvaeError(
                f"device {spec!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)"
            )
    elif device.type != "cpu":
        raise JvaeError(f"device type {device.type!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """bfloat16 has hardware support here: a GPU that supports it, or a CPU with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(
        getattr(cpu, probe, lambda: False)()
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )


def use_bf16(precision: str, device: torch.device) -> bool:
    """`auto` computes in bfloat16 where the hardware makes it fast; `fp32` and `bf16` choose explicitly."""
    if precision == "auto":
        return bf16_is_fast(device)
    return precision == "bf16"
