"""K models of one preset stepped together on a multi-core CPU: each model's own step, on its own core.

On the CPU a small model's step does not keep two cores busy: its operations are too small to split well
between threads, and each split costs a synchronisation. Two models each on one core train about 1.3-1.5x
the images per second of one model on two. So on the CPU a stack runs its models' steps side by side, on
worker threads that each compute with one intra-op thread (PyTorch's kernels release the interpreter lock),
every model being exactly the single run it would be with one thread: its own weights, Adam, data order
and noise. The trainer sees the same members as from a grouped stack (`stacking.StackedStepper`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from jvae.data.sources import ImageSource
from jvae.modeling.losses import LossTerms
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import Preset
from jvae.training.steps import Mark, MemberState, Resumed, Stepper

Result = tuple[LossTerms, dict[str, Tensor]]


class ConcurrentSteps:
    """Runs global step k of K runs: each run's own step, the runs spread over the process's threads."""

    def __init__(self, presets: list[Preset], source: ImageSource, device: torch.device) -> None:
        self.presets = presets
        self.count = len(presets)
        self.engine = "concurrent"
        self.steppers = [Stepper.create(preset, source, device) for preset in presets]
        self.steps_per_epoch = self.steppers[0].steps_per_epoch
        self.bf16 = self.steppers[0].bf16
        threads = torch.get_num_threads()
        self.workers = max(1, min(self.count, threads))
        # With more cores than models, each model splits its share.
        self.threads_each = max(1, threads // self.count)
        # Each worker sets its own count once: OpenMP keeps the count per calling thread.
        self._pool = ThreadPoolExecutor(
            self.workers,
            thread_name_prefix="jvae-model",
            initializer=torch.set_num_threads,
            initargs=(self.threads_each,),
        )
        self._groups = [list(range(self.count))[w :: self.workers] for w in range(self.workers)]

    def _run(self, members: list[int], index: int) -> list[Result]:
        return [self.steppers[member](index) for member in members]

    def step_members(self, index: int, mark: Mark | None = None) -> list[Result]:
        """Run global step `index` (0-based) of every member; each member's terms, as a single run's."""
        futures = [self._pool.submit(self._run, members, index) for members in self._groups]
        results: dict[int, Result] = {}
        for members, future in zip(self._groups, futures):
            results.update(zip(members, future.result()))
        if mark is not None:
            mark("models")
        return [results[member] for member in range(self.count)]

    def member_model(self, member: int) -> JointVAE:
        return self.steppers[member].model

    def member_state(self, member: int) -> MemberState:
        return self.steppers[member].member_state(0)

    def restore(self, states: list[Resumed]) -> None:
        """Every member from its checkpoint."""
        for stepper, state in zip(self.steppers, states):
            stepper.restore([state])

    @property
    def noises(self) -> list[torch.Generator]:
        return [stepper.noise for stepper in self.steppers]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
