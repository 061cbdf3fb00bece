"""Training on several processes with torch.distributed, as `torchrun` starts them.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; with more than one process each one joins the process group
(NCCL between GPUs, gloo on CPUs), takes its own contiguous share of every global batch, and the model runs
under DistributedDataParallel, which averages gradients. Rank 0 alone writes the checkpoint and the log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from jvae.base.devices import resolve_device
from jvae.base.errors import JvaeError


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise JvaeError(f"{name}={raw!r} is not a number (set by torchrun)") from None


def join(device_spec: str) -> tuple[Cluster, torch.device]:
    """This process's place in the job and its device; a single process when torchrun did not start it."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Cluster(), resolve_device(device_spec)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    wants_gpu = device_spec.startswith("cuda") or (device_spec == "auto" and torch.cuda.is_available())
    if wants_gpu:
        if torch.cuda.device_count() <= local_rank:
            raise JvaeError(
                f"process {local_rank} of this node has no GPU ({torch.cuda.device_count()} visible); "
                "use --device cpu or fewer processes"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Cluster(rank, world, local_rank), device


def leave(cluster: Cluster) -> None:
    if cluster.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(cluster: Cluster) -> None:
    if cluster.active:
        dist.barrier()


def mean_over_ranks(cluster: Cluster, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average each tensor over the processes (used only when a log line is written)."""
    if not cluster.active:
        return values
    averaged = {}
    for key, value in values.items():
        total = value.detach().clone()
        dist.all_reduce(total)
        averaged[key] = total / cluster.world
    return averaged


def any_rank(cluster: Cluster, flag: bool, device: torch.device) -> bool:
    """True on every process when it is true on one (a stop request must end all of them at the same step)."""
    if not cluster.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def global_mean(cluster: Cluster):  # noqa: ANN201 - returns a losses.Reducer
    """A reducer whose value is the mean over processes and whose gradient is this process's own.

    DDP averages gradients, so a term f(mean KL) gets the gradient f'(global mean KL) * d(local KL) on each
    process and, averaged, exactly the single-process gradient of the global batch, also for the nonlinear
    capacity terms |KL - C|.
    """

    def reduce(local: torch.Tensor) -> torch.Tensor:
        if local.numel() == 0:
            return local
        total = local.detach().clone()
        dist.all_reduce(total)
        return local + (total / cluster.world - local.detach())

    return reduce
