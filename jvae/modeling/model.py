"""JointVAE: Learning Disentangled Joint Continuous and Discrete Representations (Dupont, NeurIPS 2018).

The encoder maps an image to a diagonal Gaussian over continuous units z and one categorical distribution per
discrete variable c_i. Training decodes the reparameterised sample [z, c_1, c_2, ...] where each c_i is a
Gumbel-Softmax relaxation at a fixed temperature; evaluation decodes the deterministic mode [mean, one-hot
argmax]. The network is the one of the paper's appendix B and its official code: four (64x64) or three (32x32)
stride-2 4x4 convolutions, a 256-unit hidden layer, and a decoder of transposed convolutions ending in a
sigmoid. At 64x64 the decoder mirrors the encoder; at 32x32 it does not: the paper drops the decoder's first
layer there, and the official code (whose released MNIST and FashionMNIST weights fit jvae's model) reads
64 -> 32 -> 32 -> C, where the mirror of the encoder would be 64 -> 64 -> 32 -> C.

The same class also builds the fully connected networks the Grouped-VAE paper uses on dSprites (`mlp=True`),
and the class-conditional model of Kondamudi & Balasubramanian (`classes > 0`): the first `generic` continuous
units (z) are read from the image alone, the rest (w) also from the one-hot label, and the decoder reads the
label appended to the latent code. The label travels inside the code, so everything that edits or decodes
codes works unchanged; encoding needs the labels, or the model's `default_class` when there are none.

The posterior owns its KL from the prior, so training, evaluation and unit rankings compute it one way.

This module imports only torch, so that every other part of jvae (and other people's code) can build on it. Its
layers are PyTorch's own; the builder swaps jvae's faster kernels in (`jvae.fast`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------------------------- helpers

# Encoder outputs after the image's C channels, and decoder inputs before them; 128x128 adds one layer each
# side in the same pattern (conv128), so every network ends its encoder at 4x4.
CONV_CHANNELS = {32: [32, 64, 64], 64: [32, 32, 64, 64], 128: [32, 32, 64, 64, 64]}
DECONV_CHANNELS = {32: [64, 32, 32], 64: [64, 64, 32, 32], 128: [64, 64, 64, 32, 32]}
FEATURE_SIDE = 4  # every architecture halves the image down to 4x4 feature maps


def _conv_stack(channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _deconv_stack(channels: list[int]) -> nn.Sequential:
    """The last layer has no activation because the loss works on logits."""
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
        if i < len(channels) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------- posterior


def kl_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per example and unit, (B, D)."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp())


def kl_uniform_categorical(logits: Tensor) -> Tensor:
    """KL(Categorical(softmax(logits)) || Uniform(K)) = log K - H, per example, (B,)."""
    log_probs = F.log_softmax(logits, dim=-1)
    return math.log(logits.shape[-1]) + (log_probs.exp() * log_probs).sum(dim=-1)


@dataclass
class Posterior:
    """q(z, c | x): a diagonal Gaussian over the continuous units and one categorical per discrete variable.

    The latent vector the decoder reads is [z (D), c_1 (K_1), c_2 (K_2), ...].
    """

    mean: Tensor  # (B, D)
    logvar: Tensor  # (B, D)
    logits: list[Tensor]  # each (B, K_i)
    condition: Tensor | None = None  # (B, classes) one-hot label of a class-conditional model

    def _with_condition(self, code: Tensor) -> Tensor:
        return code if self.condition is None else torch.cat([code, self.condition.to(code.dtype)], dim=-1)

    @property
    def probs(self) -> list[Tensor]:
        return [F.softmax(logit, dim=-1) for logit in self.logits]

    @property
    def categories(self) -> list[Tensor]:
        return [logit.argmax(dim=-1) for logit in self.logits]  # each (B,)

    def kl_continuous(self) -> Tensor:
        """KL of each continuous unit from its N(0, 1) prior, per example, (B, D), in float32 whatever the
        autocast precision the posterior came in."""
        return kl_normal(self.mean.float(), self.logvar.float())

    def kl_discrete(self) -> list[Tensor]:
        """KL of each discrete variable from its uniform prior, per example: one (B,) per variable, float32."""
        return [kl_uniform_categorical(logit.float()) for logit in self.logits]

    def mode(self) -> Tensor:
        """Deterministic code: the Gaussian means and the one-hot most likely category of each variable."""
        one_hots = [
            F.one_hot(logit.argmax(dim=-1), logit.shape[-1]).to(self.mean.dtype) for logit in self.logits
        ]
        return self._with_condition(torch.cat([self.mean, *one_hots], dim=-1))

    def sample(
        self,
        temperature: float,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Tensor:
        """Reparameterised sample: z = mean + sigma * eps, c_i = softmax((log alpha_i + Gumbel) / T).

        With `shard = (rank, world)` the batch is one of `world` equal parts of a global batch: the noise of
        the whole global batch is drawn and this part's rows used, so several processes together draw what
        one process would. Noise and sample are float32 whatever the autocast precision, so the random stream
        does not depend on it.
        """
        rank, world = shard or (0, 1)

        def draw(like: Tensor, fn) -> Tensor:  # noqa: ANN001 - torch.randn or torch.rand
            rows = like.shape[0]
            full = fn((rows * world, *like.shape[1:]), generator=generator, device=like.device)
            return full[rank * rows : (rank + 1) * rows]

        eps = draw(self.mean, torch.randn)
        parts = [self.mean.float() + torch.exp(0.5 * self.logvar.float()) * eps]
        for logit in self.logits:
            uniform = draw(logit, torch.rand)
            gumbel = -torch.log((-torch.log(uniform.clamp_min(1e-12))).clamp_min(1e-12))
            parts.append(F.softmax((F.log_softmax(logit.float(), dim=-1) + gumbel) / temperature, dim=-1))
        return self._with_condition(torch.cat(parts, dim=-1))


# ----------------------------------------------------------------------------------------------- model


class JointVAE(nn.Module):
    """The JointVAE network for square 32x32 or 64x64 images with 1 or 3 channels."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        continuous: int,
        discrete: list[int] | tuple[int, ...] = (),
        hidden: int = 256,
        mlp: bool = False,
        classes: int = 0,
        generic: int = 0,
    ) -> None:
        super().__init__()
        if image_size not in CONV_CHANNELS:
            raise ValueError(f"image_size must be one of {sorted(CONV_CHANNELS)}, got {image_size}")
        self.image_size = image_size
        self.channels = channels
        self.continuous = continuous
        self.discrete = list(discrete)
        self.classes = classes
        self.generic = generic
        self.default_class: int | None = None  # the label used when encoding or sampling without labels
        self.latent_dim = continuous + sum(self.discrete) + classes  # the decoder's input width
        self.mlp = mlp
        conv = CONV_CHANNELS[image_size]
        features = conv[-1] * FEATURE_SIDE * FEATURE_SIDE
        pixels = channels * image_size * image_size

        if mlp:  # the fully connected networks of the Grouped-VAE paper's dSprites setting
            self.encoder = nn.Sequential(
                nn.Flatten(),
                nn.Linear(pixels, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, hidden),
                nn.ReLU(inplace=True),
            )
        else:
            self.encoder = nn.Sequential(
                _conv_stack([channels, *conv]),
                nn.Flatten(),
                nn.Linear(features, hidden),
                nn.ReLU(inplace=True),
            )
        # A model without continuous units keeps empty heads out of the state dict.
        self.mean_head = nn.Linear(hidden, continuous) if continuous else None
        self.logvar_head = nn.Linear(hidden, continuous) if continuous else None
        self.discrete_heads = nn.ModuleList(nn.Linear(hidden, k) for k in self.discrete)
        # Adding W y to the w units' outputs is a linear head reading [hidden, one-hot y]; z never sees y.
        self.label_head = nn.Linear(classes, 2 * (continuous - generic), bias=False) if classes else None

        if mlp:
            self.latent_to_features = nn.Sequential(
                nn.Linear(self.latent_dim, hidden),
                nn.Tanh(),
                nn.Linear(hidden, hidden),
                nn.Tanh(),
                nn.Linear(hidden, hidden),
                nn.Tanh(),
                nn.Linear(hidden, pixels),
            )
            self.decoder: nn.Module = nn.Unflatten(1, (channels, image_size, image_size))
        else:
            self.latent_to_features = nn.Sequential(
                nn.Linear(self.latent_dim, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, features),
                nn.ReLU(inplace=True),
            )
            self.decoder = _deconv_stack([*DECONV_CHANNELS[image_size], channels])

    bf16_bodies = False  # train.precision = "mixed" (set by training on bf16 hardware; not saved)

    def body(self, module: nn.Module, x: Tensor) -> Tensor:
        """A convolution body (the encoder's convolutions, the decoder), in bfloat16 under the mixed setting;
        float32 out either way, so the layers, heads and loss after it stay float32."""
        if not self.bf16_bodies:
            return module(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return module(x).float()

    def class_code(self, n: int, device: torch.device | str, labels: Tensor | None = None) -> Tensor | None:
        """One-hot labels (n, classes), from `labels` or else `default_class`; None for an unconditional model."""
        if not self.classes:
            return None
        if labels is None:
            if self.default_class is None:
                raise ValueError("this model is class-conditional: give the labels or set default_class")
            labels = torch.full((n,), self.default_class, dtype=torch.long, device=device)
        return F.one_hot(labels.to(device=device, dtype=torch.long), self.classes).float()

    def encode(self, x: Tensor, labels: Tensor | None = None) -> Posterior:
        if self.bf16_bodies and not self.mlp:
            hidden = self.body(self.encoder[0], x)
            for layer in list(self.encoder)[1:]:
                hidden = layer(hidden)
        else:
            hidden = self.encoder(x)  # (B, hidden)
        if self.mean_head is None or self.logvar_head is None:
            mean = logvar = hidden.new_zeros(hidden.shape[0], 0)
        else:
            mean, logvar = self.mean_head(hidden), self.logvar_head(hidden)
        condition = self.class_code(x.shape[0], x.device, labels)
        if self.label_head is not None and condition is not None:
            shift_mean, shift_logvar = self.label_head(condition.to(mean.dtype)).chunk(2, dim=-1)
            zeros = mean.new_zeros(mean.shape[0], self.generic)
            mean = mean + torch.cat([zeros, shift_mean], dim=-1)
            logvar = logvar + torch.cat([zeros, shift_logvar], dim=-1)
        return Posterior(
            mean=mean,  # (B, D)
            logvar=logvar,  # (B, D)
            logits=[head(hidden) for head in self.discrete_heads],  # each (B, K_i)
            condition=condition,  # (B, classes) or None
        )

    def decode_logits(self, latent: Tensor) -> Tensor:
        features = self.latent_to_features(latent)  # (B, 64 * 4 * 4), or (B, C * H * W) for the MLP
        if not self.mlp:
            features = features.view(-1, features.shape[1] // FEATURE_SIDE**2, FEATURE_SIDE, FEATURE_SIDE)
        if self.bf16_bodies and not self.mlp:
            return self.body(self.decoder, features)
        return self.decoder(features)  # (B, C, H, W)

    def decode(self, latent: Tensor) -> Tensor:
        """Pixel intensities in [0, 1] (the paper's sigmoid output layer)."""
        return torch.sigmoid(self.decode_logits(latent))

    def forward(
        self, x: Tensor, temperature: float = 0.67, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Posterior]:
        """Training pass: reconstruction logits from a reparameterised sample; eval mode decodes the mode."""
        posterior = self.encode(x)
        latent = posterior.sample(temperature, generator) if self.training else posterior.mode()
        return self.decode_logits(latent), posterior
