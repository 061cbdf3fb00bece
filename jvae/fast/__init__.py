"""jvae's speed tricks, all here, behind one switch.

The model (`jvae.modeling.model`) is written with PyTorch's own layers and the loss with PyTorch's own functions;
what is faster on the machines jvae trains on is swapped in from this package where it pays:

- `convolutions`: the convolution layers' CPU kernels (the decoder's transposed convolutions on oneDNN's
  convolution primitives, the greyscale layers' weight gradients as one matrix product), swapped in for
  nn.Conv2d and nn.ConvTranspose2d by `swap_in` when the builder makes a model;
- `bernoulli`: the Bernoulli reconstruction's fused loss with a vectorised log-sigmoid;
- `stacked_adam`: the stacked optimiser's alignment, which keeps each stacked model's Adam bit for bit its
  single run's;
- `stacked_layers`: the stacked network's hand-written layer walk (grouped convolutions and batched products,
  or each model's own kernels), where `torch.func` computes the same stack in stock PyTorch.

Setting the environment variable JVAE_STOCK=1 trains with none of them: stock layers, PyTorch's loss, one
fused Adam over the stack and a `torch.func` stacked network. The numbers then agree with the default within
float rounding, not bit for bit; checkpoints are interchangeable (the same parameters and state-dict keys).

A new fast kernel is one module here that `swap_in` (a layer) or its caller (a function) reaches only when
`enabled()`; the code that uses it keeps its stock form as the fallback.

Layer 2, with `jvae.modeling` and `jvae.kinds`. May import: `jvae.base`, `jvae.data`, `jvae.modeling`, `jvae.kinds`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from torch import nn

from jvae.fast.convolutions import DownConv, UpConv

STOCK_ENV = "JVAE_STOCK"
_STOCK: ContextVar[bool] = ContextVar("stock", default=False)
AnyModule = TypeVar("AnyModule", bound=nn.Module)
_FAST_LAYERS: dict[type[nn.Module], type[nn.Module]] = {nn.Conv2d: DownConv, nn.ConvTranspose2d: UpConv}


def enabled() -> bool:
    """Whether jvae's own kernels are used: unless $JVAE_STOCK is set (to anything but 0 or empty) or the
    code runs inside `stock()`."""
    return not _STOCK.get() and os.environ.get(STOCK_ENV, "") in ("", "0")


@contextmanager
def stock() -> Iterator[None]:
    """Stock PyTorch within the block, whatever $JVAE_STOCK says: the reference loop of `jvae bench` and the
    eager path of the loss-trajectory benchmark."""
    token = _STOCK.set(True)
    try:
        yield
    finally:
        _STOCK.reset(token)


def swap_in(model: AnyModule) -> AnyModule:
    """`model` with jvae's layers in place of the stock ones they speed up, when `enabled()`.

    Each fast layer is a subclass of the stock layer with no state of its own, so the swap changes the
    module's class in place: parameters, buffers, state-dict keys and initialisation are the stock layer's.
    """
    if enabled():
        for module in model.modules():
            fast = _FAST_LAYERS.get(type(module))
            if fast is not None:
                module.__class__ = fast
    return model


def as_stock(model: AnyModule) -> AnyModule:
    """`model` computing as code written against plain PyTorch modules does (the reference loop of
    `jvae bench`): stock layers, and ReLUs that allocate their output instead of overwriting their input."""
    stock_of = {fast: plain for plain, fast in _FAST_LAYERS.items()}
    for module in model.modules():
        plain = stock_of.get(type(module))
        if plain is not None:
            module.__class__ = plain
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model
