"""The stacked network's hand-written layer walk: each layer of the single network run once for K models.

On a GPU (grouped) a convolution of K models is one grouped convolution (K groups) and a linear layer one
batched matrix product; on the CPU (the kernels engine) each model keeps jvae's own kernels on its slice of the
weights, computing bit for bit what its single run computes. `jvae.modeling.stacked_network.FunctionalStack` does
the same job in stock PyTorch (`torch.func`); this walk is kept because it measured faster where jvae stacks
most, on one CPU thread: about 210 ms against 240 ms for a step's forward and backward of four 32x32 models
(rough timings on a busy machine, alternated in one process); grouped, on the CPU, the two took the same time.
A layer type the walk does not know runs through `functional_call` on each model's slice, so a new layer
costs speed, not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from jvae.fast.convolutions import DownConv, UpConv, down_convolution, up_convolution
from jvae.modeling.model import FEATURE_SIDE, Posterior
from jvae.modeling.stacked_network import Activation, StackedWeights


def _grid_to_rows(h: Tensor, models: int) -> Tensor:
    """(B, K*C, H, W) -> (K, B, C*H*W): each model's feature maps flattened as nn.Flatten does."""
    return h.reshape(h.shape[0], models, -1).transpose(0, 1)


def _rows(h: Activation) -> Tensor:
    """(K, B, F) rows for batched matrix products, from either layout of images."""
    if isinstance(h, list):
        return torch.stack([x.flatten(1) for x in h])
    return h


def _images(h: Tensor, channels: int, side: int, grouped: bool) -> Activation:
    """(K, B, C*side*side) rows as images: one grouped (B, K*C, side, side) tensor, or K (B, C, side, side)."""
    models, batch = h.shape[0], h.shape[1]
    if grouped:
        return h.transpose(0, 1).reshape(batch, models * channels, side, side)
    return [row.view(batch, channels, side, side) for row in h]


def _convolution(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """One model's convolution with its own weight and bias, on jvae's kernels where the layer has them."""
    if isinstance(module, DownConv):
        return down_convolution(module, x, weight, bias)
    if isinstance(module, UpConv):
        return up_convolution(module, x, weight, bias)
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(x, weight, bias)
    conv = cast(nn.ConvTranspose2d, module)
    padding = cast(tuple[int, ...], conv.padding)  # a transposed convolution's is never a string
    return F.conv_transpose2d(
        x, weight, bias, conv.stride, padding, conv.output_padding, conv.groups, conv.dilation
    )


class StackedNetwork(StackedWeights):
    """K JointVAE networks of one architecture, computed together.

    Activations between convolutions are (B, K*C, H, W), model k's channels in the k-th block, which is the
    layout grouped convolutions read, or a list of K (B, C, H, W) images; between linear layers they are
    (K, B, F) for batched matrix products.
    """

    def _run(
        self, module: nn.Module, prefix: str, h: Activation, weights: Callable[[str], Tensor]
    ) -> Activation:
        """`module` of the single network applied to all K models' activations `h`.

        Between convolutions `h` is either one (B, K*C, H, W) tensor for grouped convolutions (on a GPU,
        where one launch for K models is what pays) or a list of K (B, C, H, W) images (on the CPU, where
        grouped convolutions are no faster than K of jvae's own convolution kernels, and those compute
        exactly what a single run computes).
        """
        models = weights(self.names[0]).shape[0]
        if isinstance(module, nn.Sequential):
            for index, child in enumerate(module):
                h = self._run(child, f"{prefix}.{index}", h, weights)
            return h
        if type(module) in (nn.Conv2d, nn.ConvTranspose2d, DownConv, UpConv):
            conv = cast(nn.Conv2d | nn.ConvTranspose2d, module)
            w = weights(f"{prefix}.weight")  # (K, out, in, kh, kw) or (K, in, out, kh, kw)
            b = weights(f"{prefix}.bias") if conv.bias is not None else None
            if isinstance(h, list):
                biases = b.unbind(0) if b is not None else (None,) * models
                return [_convolution(conv, x, wk, bk) for x, wk, bk in zip(h, w.unbind(0), biases)]
            flat, bias = w.reshape(-1, *w.shape[2:]), b.reshape(-1) if b is not None else None
            if isinstance(conv, nn.Conv2d):
                return F.conv2d(h, flat, bias, conv.stride, conv.padding, conv.dilation, models)
            padding = cast(tuple[int, ...], conv.padding)  # a transposed convolution's is never a string
            return F.conv_transpose2d(
                h, flat, bias, conv.stride, padding, conv.output_padding, models, conv.dilation
            )
        if type(module) is nn.Linear:
            return self._linear(prefix, _rows(h), weights, module.bias is not None)
        if type(module) is nn.ReLU:
            if isinstance(h, list):
                return [F.relu(x, inplace=module.inplace) for x in h]
            return F.relu(h, inplace=module.inplace)
        if type(module) is nn.Tanh:
            return torch.tanh(_rows(h))
        if type(module) is nn.Flatten:
            return _grid_to_rows(h, models) if isinstance(h, Tensor) and h.dim() == 4 else _rows(h)
        if type(module) is nn.Unflatten:
            channels, side = int(module.unflattened_size[0]), int(module.unflattened_size[-1])
            return _images(_rows(h), channels, side, grouped=self.grouped)
        return self._each_model(module, prefix, h, weights, models)

    def _each_model(
        self, module: nn.Module, prefix: str, h: Activation, weights: Callable[[str], Tensor], models: int
    ) -> Activation:
        """Any other layer: each model's own call on its slice of the weights, in the layout it came in."""
        names = [name for name, _ in module.named_parameters()]
        if isinstance(h, list):
            inputs = h
        elif h.dim() == 3:  # (K, B, F) rows
            inputs = list(h.unbind(0))
        else:  # grouped images (B, K*C, H, W)
            inputs = list(h.unflatten(1, (models, -1)).unbind(1))
        outputs = [
            functional_call(module, {name: weights(f"{prefix}.{name}")[k] for name in names}, (x,))
            for k, x in enumerate(inputs)
        ]
        if isinstance(h, list) or h.dim() == 3:
            return outputs if isinstance(h, list) else torch.stack(outputs)
        return torch.stack(outputs, dim=1).flatten(1, 2)

    def _linear(self, prefix: str, h: Tensor, weights: Callable[[str], Tensor], bias: bool) -> Tensor:
        """A linear layer of K models on (K, B, F): one batched product on a GPU; on the CPU each model's own
        product, the kernel a single run calls (so a stacked model computes bit for bit what it would alone;
        the batched product rounds differently and is no faster at these sizes here)."""
        w = weights(f"{prefix}.weight")  # (K, out, in)
        b = weights(f"{prefix}.bias") if bias else None
        if not self.grouped:
            biases = b.unbind(0) if b is not None else (None,) * w.shape[0]
            return torch.stack([F.linear(x, wk, bk) for x, wk, bk in zip(h.unbind(0), w.unbind(0), biases)])
        if b is None:
            return torch.bmm(h, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    def _weights(self, member: int | None) -> Callable[[str], Tensor]:
        if member is None:
            return self.weight
        return lambda name: self.weight(name)[member : member + 1]

    def _body(
        self, module: nn.Module, prefix: str, h: Activation, weights: Callable[[str], Tensor]
    ) -> Activation:
        """A convolution body, in bfloat16 under the mixed setting (`JointVAE.body`), float32 out."""
        if not self.template.bf16_bodies:
            return self._run(module, prefix, h, weights)
        device = (h[0] if isinstance(h, list) else h).device.type
        with torch.autocast(device, dtype=torch.bfloat16):
            out = self._run(module, prefix, h, weights)
            return [x.float() for x in out] if isinstance(out, list) else out.float()

    def encode(self, x: Activation) -> list[Posterior]:
        template, weights = self.template, self.weight
        if template.bf16_bodies and not template.mlp:
            h = self._body(template.encoder[0], "encoder.0", x, weights)
            for index in range(1, len(template.encoder)):
                h = self._run(template.encoder[index], f"encoder.{index}", h, weights)
            hidden = _rows(h)
        else:
            hidden = _rows(self._run(template.encoder, "encoder", x, weights))  # (K, B, hidden)
        models, batch = hidden.shape[0], hidden.shape[1]
        if template.continuous:
            mean = self._linear("mean_head", hidden, weights, True)
            logvar = self._linear("logvar_head", hidden, weights, True)
        else:
            mean = logvar = hidden.new_zeros(models, batch, 0)
        logits = [
            self._linear(f"discrete_heads.{i}", hidden, weights, True) for i in range(len(template.discrete))
        ]
        return [Posterior(mean[k], logvar[k], [logit[k] for logit in logits]) for k in range(models)]

    def decode_logits(self, latent: Tensor, member: int | None = None) -> list[Tensor]:
        template, weights = self.template, self._weights(member)
        features = self._run(template.latent_to_features, "latent_to_features", latent, weights)
        if not template.mlp:
            rows = _rows(features)
            features = _images(rows, rows.shape[-1] // FEATURE_SIDE**2, FEATURE_SIDE, self.grouped)
        out = self._body(template.decoder, "decoder", features, weights)
        if isinstance(out, list):
            return out
        batch, side = out.shape[0], out.shape[-1]
        return list(out.view(batch, latent.shape[0], template.channels, side, side).unbind(1))
