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
