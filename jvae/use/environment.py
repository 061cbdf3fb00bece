"""What a bug report needs to know about the machine and the installation, gathered in one place.

`jvae env` prints it; the figures that decide how fast and how exactly jvae trains (the thread count jvae
would choose now, whether the CPU has bf16 arithmetic, the GPU and its CUDA and cuDNN) are read the way the
training itself reads them, so the report says what a run here would do.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from jvae.base.devices import THREADS_ENV, bf16_is_fast, other_jvae_processes
from jvae.base.version import __version__
from jvae.data.cache import cache_root

LIBRARIES = (
    "torchvision",
    "numpy",
    "scipy",
    "scikit-learn",
    "pydantic",
    "typer",
    "rich",
    "pillow",
    "imageio",
    "matplotlib",
    "h5py",
    "safetensors",
    "huggingface-hub",
)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threads() -> dict[str, Any]:
    """The thread count a CPU run started now would take (see `devices.share_cpu_threads`), and why."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    others = other_jvae_processes()
    chosen = os.environ.get(THREADS_ENV)
    if chosen:
        return {"threads": chosen, "because": f"${THREADS_ENV}", "cores": cores, "other_jvae": others}
    if os.environ.get("OMP_NUM_THREADS"):
        omp = os.environ["OMP_NUM_THREADS"]
        return {"threads": omp, "because": "$OMP_NUM_THREADS", "cores": cores, "other_jvae": others}
    share = f"{others} other jvae process" + ("es" if others > 1 else "")
    because = f"{cores} cores shared with {share}" if others else f"{cores} cores"
    return {
        "threads": max(1, cores // (1 + others)),
        "because": because,
        "cores": cores,
        "other_jvae": others,
    }


def _cuda() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "name": properties.name,
                "memory_gib": round(properties.total_memory / 2**30, 1),
                "capability": f"{properties.major}.{properties.minor}",
            }
        )
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "devices": devices,
        "bf16": torch.cuda.is_bf16_supported(),
    }


def describe() -> dict[str, Any]:
    """Everything `jvae env` reports, as plain JSON-ready values."""
    threads = _threads()
    return {
        "jvae": __version__,
        "python": platform.python_version(),
        "python_path": sys.executable,
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "cpu": {
            "model": _cpu_model(),
            "cores": threads["cores"],
            "bf16_arithmetic": bf16_is_fast(torch.device("cpu")),
            "capability": torch.backends.cpu.get_cpu_capability(),
        },
        "threads": {"jvae_would_use": threads["threads"], "because": threads["because"]},
        "other_jvae_processes": threads["other_jvae"],
        "cuda": _cuda(),
        "folders": {"data": os.environ.get("JVAE_DATA"), "cache": str(cache_root())},
    }
