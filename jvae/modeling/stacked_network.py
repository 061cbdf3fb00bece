"""K JointVAE networks of one architecture as one module: every weight gains a leading model axis.

`StackedWeights` holds the stack (and cuts one model's weights out of it, as a single run saves them);
`FunctionalStack` computes it in stock PyTorch with `torch.func`: each model's own network on its slice of the
weights (`functional_call`), or, grouped, all models in one vectorised call (`vmap`). jvae trains with the
hand-written layer walk of `jvae.fast.stacked_layers` unless the stock switch is on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from jvae.fast.stacked_adam import stack_like
from jvae.modeling.model import JointVAE, Posterior

Weights = dict[str, Tensor]
Activation = Tensor | list[Tensor]


def _key(name: str) -> str:
    return name.replace(".", "__")  # a ParameterDict key may not contain dots


class StackedWeights(nn.Module):
    """The K models' weights, stacked; `names` keeps the single model's parameter order (a ParameterDict
    sorts its keys), which is the order an optimiser's saved state must follow to be a single run's."""

    def __init__(self, models: list[JointVAE], grouped: bool) -> None:
        super().__init__()
        self.grouped = grouped
        template = models[0]
        self.names = [name for name, _ in template.named_parameters()]
        found = [dict(m.named_parameters()) for m in models]
        self.stack = nn.ParameterDict(
            {_key(name): nn.Parameter(stack_like([f[name].detach() for f in found])) for name in self.names}
        )
        self._template = [template]  # a list keeps it out of this module's parameters

    @property
    def template(self) -> JointVAE:
        return self._template[0]

    def weight(self, name: str) -> Tensor:
        return self.stack[_key(name)]

    def images(self, batches: list[Tensor]) -> Activation:
        """Each model's batch (B, C, H, W) in the layout the first layer reads."""
        if self.grouped:
            return torch.stack(batches, dim=1).flatten(1, 2)  # (B, K*C, H, W)
        return batches

    def encode(self, x: Activation) -> list[Posterior]:
        """Each model's posterior of its own batch (`images`' layout)."""
        raise NotImplementedError

    def decode_logits(self, latent: Tensor, member: int | None = None) -> list[Tensor]:
        """Each model's (B, C, H, W) reconstruction logits of its codes in (K, B, L); with `member`, that
        model's alone for its codes (1, B, L)."""
        raise NotImplementedError

    def member_weights(self, member: int) -> Weights:
        """Model `member`'s state dict, as the single model's `state_dict()` names it (own storage)."""
        return {name: self.weight(name)[member].detach().clone() for name in self.names}

    def load_member(self, member: int, weights: Weights) -> None:
        with torch.no_grad():
            for name in self.names:
                self.weight(name)[member].copy_(weights[name])


class _Encoder(nn.Module):
    """The template's encode as a module call whose output is a tuple of tensors (what `vmap` returns)."""

    def __init__(self, model: JointVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        posterior = self.model.encode(x)
        return (posterior.mean, posterior.logvar, *posterior.logits)


class _Decoder(nn.Module):
    def __init__(self, model: JointVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: Tensor) -> Tensor:
        return self.model.decode_logits(latent)


class FunctionalStack(StackedWeights):
    """The stack computed by `torch.func` on the template network, whatever its layers."""

    def __init__(self, models: list[JointVAE], grouped: bool) -> None:
        super().__init__(models, grouped)
        self._parts = [_Encoder(self.template), _Decoder(self.template)]

    def _params(self, member: int | None) -> dict[str, Any]:
        return {f"model.{name}": self._slice(name, member) for name in self.names}

    def _slice(self, name: str, member: int | None) -> Tensor:
        weight = self.weight(name)
        return weight if member is None else weight[member]

    def _each(self, part: nn.Module, inputs: list[Tensor], members: list[int]) -> list[Any]:
        if self.grouped and len(members) > 1:
            stacked = vmap(lambda params, x: functional_call(part, params, (x,)))(
                self._params(None), torch.stack(inputs)
            )
            if isinstance(stacked, Tensor):
                return list(stacked.unbind(0))
            return [tuple(t[k] for t in stacked) for k in range(len(members))]
        return [functional_call(part, self._params(k), (x,)) for k, x in zip(members, inputs)]

    def encode(self, x: Activation) -> list[Posterior]:
        count = self.weight(self.names[0]).shape[0]
        batches = x if isinstance(x, list) else list(x.unflatten(1, (count, -1)).unbind(1))
        found = self._each(self._parts[0], batches, list(range(count)))
        return [Posterior(mean, logvar, list(logits)) for mean, logvar, *logits in found]

    def decode_logits(self, latent: Tensor, member: int | None = None) -> list[Tensor]:
        members = list(range(latent.shape[0])) if member is None else [member]
        return self._each(self._parts[1], list(latent.unbind(0)), members)
