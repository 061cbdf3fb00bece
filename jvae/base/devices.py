"""Choosing the compute device: `auto` is the GPU when there is one, else the CPU; and, on the CPU, how many
threads to use, so that several jvae processes on one machine share its cores instead of thrashing."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from jvae.base.errors import UsageError

THREADS_ENV = "JVAE_THREADS"


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): the
    state first, then the parent's pid; None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _ancestors() -> set[int]:
    """This process and the processes that started it (a `jvae train --nproc` parent waits, it computes
    nothing)."""
    found, pid = {os.getpid()}, os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        fields = _stat_fields(pid)
        if fields is None:
            break
        pid = int(fields[1])
    return found


def _is_jvae(argv: list[bytes]) -> bool:
    """`jvae ...` (the console script, run by its interpreter) or `python -m jvae ...`."""
    head = argv[:3]
    return any(arg == b"jvae" or arg.endswith(b"/jvae") for arg in head) or (
        len(argv) > 2 and argv[1] == b"-m" and argv[2] == b"jvae"
    )


def _stopped(pid: str) -> bool:
    """A stopped (Ctrl-Z, SIGSTOP) or finished process holds no core, so it takes no share of them."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("T", "t", "Z", "X")


def other_jvae_processes() -> int:
    """jvae processes running on this machine besides this one and its parents, stopped ones left out (0
    without /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    mine = _ancestors()
    count = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        count += _is_jvae(argv) and not _stopped(entry.name)
    return count


def share_cpu_threads() -> int:
    """Set torch's CPU thread count: $JVAE_THREADS when set, torch's own choice when $OMP_NUM_THREADS is set
    (torchrun sets it for its processes), else the cores divided among the jvae processes now running. Two
    processes that each took every core ran about 3.5x slower here, not 2x."""
    chosen = os.environ.get(THREADS_ENV)
    if chosen is not None:
        if not chosen.isdigit() or int(chosen) < 1:
            raise UsageError(f"{THREADS_ENV}={chosen!r}: give a whole number of threads, 1 or more")
        threads = int(chosen)
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // (1 + other_jvae_processes()))
    torch.set_num_threads(threads)
    return threads


def resolve_device(spec: str = "auto") -> torch.device:
    """The device `spec` names; choosing the CPU also shares its cores (see `share_cpu_threads`)."""
    device = _device(spec)
    if device.type == "cpu":
        share_cpu_threads()
    return device


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"device {spec!r} asked for, but this machine has no usable CUDA GPU; use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"device {spec!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)"
            )
    elif device.type != "cpu":
        raise UsageError(f"device type {device.type!r} is not supported; use auto, cpu, cuda or cuda:N")
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


def use_bf16_bodies(precision: str, device: torch.device) -> bool:
    """`mixed` computes the convolution bodies in bfloat16 only where the hardware makes that fast: emulated
    bf16 would make the setting meant for speed ten times slower, so it falls back to float32 there."""
    return precision == "mixed" and bf16_is_fast(device)


def precision_label(precision: str, device: torch.device) -> str:
    """How a step computes under `train.precision` on `device`, as the first log line and bench say it."""
    if use_bf16(precision, device):
        fast = bf16_is_fast(device)
        return "bf16 autocast" + ("" if fast else " without hardware bf16: about 10 times slower than fp32")
    if use_bf16_bodies(precision, device):
        return "mixed: bf16 convolution bodies, float32 elsewhere"
    if precision == "mixed":
        return "fp32 (mixed falls back to float32: no bf16 arithmetic here)"
    return "fp32"


def use_bf16(precision: str, device: torch.device) -> bool:
    """`auto` computes in bfloat16 where the hardware makes it fast; `fp32` and `bf16` choose explicitly."""
    if precision == "auto":
        return bf16_is_fast(device)
    return precision == "bf16"
