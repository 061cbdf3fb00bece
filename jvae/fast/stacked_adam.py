"""Adam over K stacked models that updates model k's slice bit for bit as model k's own Adam would.

Adam is elementwise, so one fused Adam over a stacked weight computes every slice with the same formula; but
its kernel runs the vector loop over the stacked tensor and a scalar loop over what is left, and the two
round differently (fused multiply-adds). A slice whose length is a multiple of every vector width therefore
sees exactly the kernel a single run's tensor sees; any other (a 10-unit head's bias) would have some elements
moved between the two loops. Those few small tensors get one Adam per model over views of their slices, so
every weight of a stacked model follows the single run's trajectory exactly, with one Adam state per model
that saves as a single run's does.

With the stock switch on (`jvae.fast`) the alignment is left out: one fused Adam over every stacked weight,
whose narrow slices then differ from their single runs in the last bits.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

VECTOR_ALIGNMENT = 64  # floats: a multiple of every CPU vector width (AVX-512 holds 16)


class StackedAdam:
    """Fused Adam for `stacked` weights (each (K, ...), in the single model's parameter order); `aligned`:
    each model's narrow tensors in an Adam of its own, so every slice follows its single run bit for bit."""

    def __init__(self, stacked: list[Tensor], lr: float, aligned: bool = True) -> None:
        self.stacked = stacked
        self.models = stacked[0].shape[0]
        self.wide = [i for i, p in enumerate(stacked) if not aligned or p[0].numel() % VECTOR_ALIGNMENT == 0]
        self.narrow = [i for i in range(len(stacked)) if i not in self.wide]
        self.shared = (
            torch.optim.Adam([stacked[i] for i in self.wide], lr=lr, fused=True) if self.wide else None
        )
        with torch.no_grad():  # plain views: leaves the optimiser may update in place, into the stack
            self.views = [[stacked[i][k] for i in self.narrow] for k in range(self.models)]
        self.own = [torch.optim.Adam(views, lr=lr, fused=True) for views in self.views] if self.narrow else []

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """Every group, so a learning-rate schedule reaches them all."""
        groups = [] if self.shared is None else list(self.shared.param_groups)
        return groups + [group for optimizer in self.own for group in optimizer.param_groups]

    def zero_grad(self) -> None:
        for weight in self.stacked:
            weight.grad = None

    def step(self) -> None:
        if self.shared is not None:
            self.shared.step()
        for member, optimizer in enumerate(self.own):
            for view, index in zip(self.views[member], self.narrow):
                grad = self.stacked[index].grad
                view.grad = None if grad is None else grad[member]
            optimizer.step()

    # ------------------------------------------------------------------------------- one model's state

    def member_state(self, member: int) -> dict[str, Any]:
        """Model `member`'s Adam state as a single run's `optimizer.state_dict()` holds it (own storage)."""
        state: dict[int, dict[str, Tensor]] = {}
        group: dict[str, Any] = {}
        if self.shared is not None:
            shared = self.shared.state_dict()
            group = shared["param_groups"][0]
            for position, index in enumerate(self.wide):
                if position in shared["state"]:
                    state[index] = _sliced(shared["state"][position], member)
        if self.own:
            own = self.own[member].state_dict()
            group = group or own["param_groups"][0]
            for position, index in enumerate(self.narrow):
                if position in own["state"]:
                    state[index] = {key: value.clone() for key, value in own["state"][position].items()}
        group = {**copy.deepcopy(group), "params": list(range(len(self.stacked)))}
        return {"state": dict(sorted(state.items())), "param_groups": [group]}

    def load_members(self, states: list[dict[str, Any]]) -> None:
        """Every model's Adam state from its single-run `state_dict()`."""
        group = states[0]["param_groups"][0]
        if self.shared is not None:
            shared_state = {
                position: _stacked_entry([s["state"][index] for s in states])
                for position, index in enumerate(self.wide)
                if index in states[0]["state"]
            }
            shared_group = {**group, "params": list(range(len(self.wide)))}
            self.shared.load_state_dict({"state": shared_state, "param_groups": [shared_group]})
        for optimizer, saved in zip(self.own, states):
            own_state = {
                position: saved["state"][index]
                for position, index in enumerate(self.narrow)
                if index in saved["state"]
            }
            own_group = {**group, "params": list(range(len(self.narrow)))}
            optimizer.load_state_dict({"state": own_state, "param_groups": [own_group]})


def _sliced(entry: dict[str, Tensor], member: int) -> dict[str, Tensor]:
    return {key: value.clone() if key == "step" else value[member].clone() for key, value in entry.items()}


def _stacked_entry(entries: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    first = entries[0]
    return {
        key: value if key == "step" else stack_like([entry[key] for entry in entries])
        for key, value in first.items()
    }


def stack_like(tensors: list[Tensor]) -> Tensor:
    """The tensors along a new first axis, each slice keeping its layout: a channels-last convolution
    weight (and its Adam moments) stays channels-last, as in a single run, so kernels never reorder it and
    an optimiser sees the single run's memory order."""
    first = tensors[0]
    if first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last):
        return torch.stack([t.permute(0, 2, 3, 1) for t in tensors]).permute(0, 1, 4, 2, 3)
    return torch.stack(tensors)
