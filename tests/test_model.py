"""The JointVAE network for every architecture and latent combination."""

from __future__ import annotations

import itertools

import pytest
import torch

from jvae.modeling.model import JointVAE


@pytest.mark.parametrize(
    "size,channels,continuous,discrete",
    [c for c in itertools.product([32, 64], [1, 3], [0, 5], [[], [3], [2, 2, 2]]) if c[2] or c[3]],
)
def test_shapes_for_every_combination(size, channels, continuous, discrete):
    model = JointVAE(size, channels, continuous, discrete)
    x = torch.rand(3, channels, size, size)
    posterior = model.encode(x)
    assert posterior.mean.shape == (3, continuous) and posterior.logvar.shape == (3, continuous)
    assert [p.shape for p in posterior.probs] == [(3, k) for k in discrete]
    latent_dim = continuous + sum(discrete)
    assert posterior.mode().shape == posterior.sample(0.67).shape == (3, latent_dim)
    out = model.decode(posterior.mode())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_paper_architecture_layers():
    model = JointVAE(64, 1, 6, [3])
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 32, (4, 4), (2, 2)),
        (32, 32, (4, 4), (2, 2)),
        (32, 64, (4, 4), (2, 2)),
        (64, 64, (4, 4), (2, 2)),
    ]
    assert (
        len([m for m in JointVAE(32, 1, 10, [10]).encoder.modules() if isinstance(m, torch.nn.Conv2d)]) == 3
    )
    deconvs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(d.in_channels, d.out_channels) for d in deconvs] == [(64, 64), (64, 32), (32, 32), (32, 1)]


def test_mode_is_deterministic_and_sample_follows_the_posterior():
    torch.manual_seed(0)
    model = JointVAE(32, 1, 4, [5]).eval()
    x = torch.rand(2, 1, 32, 32)
    posterior = model.encode(x)
    mode = posterior.mode()
    assert torch.equal(mode[:, :4], posterior.mean)
    assert torch.equal(mode[:, 4:].argmax(-1), posterior.probs[0].argmax(-1))
    assert torch.all(mode[:, 4:].sum(-1) == 1)
    generator = torch.Generator().manual_seed(1)
    samples = torch.stack([posterior.sample(0.67, generator) for _ in range(4000)])
    assert torch.allclose(samples[..., :4].mean(0), posterior.mean, atol=0.1)
    assert torch.allclose(samples[..., :4].var(0), posterior.logvar.exp(), rtol=0.15)
    relaxed = samples[..., 4:]
    assert torch.allclose(relaxed.sum(-1), torch.ones(4000, 2), atol=1e-5)
    cold = torch.stack([posterior.sample(0.01, generator)[..., 4:] for _ in range(4000)])
    frequencies = torch.nn.functional.one_hot(cold.argmax(-1), 5).float().mean(0)
    assert torch.allclose(frequencies, posterior.probs[0], atol=0.03)


def test_training_forward_samples_and_eval_forward_uses_the_mode():
    torch.manual_seed(0)
    model = JointVAE(32, 1, 3, [2])
    x = torch.rand(2, 1, 32, 32)
    model.eval()
    a, _ = model(x)
    b, _ = model(x)
    assert torch.equal(a, b)
    model.train()
    c, _ = model(x)
    assert not torch.allclose(a, c)
