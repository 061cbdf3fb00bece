"""beta-TCVAE, FactorVAE and the class-conditional VAE: their losses against the papers' formulas, the
separation of their two optimisation steps, and checkpoints that resume and work with every command."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jvae.kinds import build_critic, model_objective
from jvae.kinds.beta_tcvae import pair_log_weights, tc_decomposition
from jvae.kinds.class_conditional import LabelClassifier
from jvae.kinds.factor_vae import TCDiscriminator, permute_dims
from jvae.modeling.builder import build_model
from jvae.modeling.losses import reconstruction
from jvae.modeling.model import kl_normal
from jvae.modeling.presets import load_preset
from jvae.training.steps import Objective, critic_step, vae_step

# ----------------------------------------------------------------------------------------------- beta-TCVAE


def _tiny_posteriors(n: int = 5, d: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.5 - 0.5
    z = mean + (0.5 * logvar).exp() * torch.randn(n, d, generator=g, dtype=torch.float64)
    return mean, logvar, z


def _exact_terms(mean, logvar, z):
    """The aggregate posterior of a dataset of n images is the mixture (1/n) sum_j q(z | x_j), computed here
    with torch.distributions, one sample at a time."""
    n, d = mean.shape
    std = (0.5 * logvar).exp()
    mi = tc = dwkl = 0.0
    for i in range(n):
        per_image = [torch.distributions.Normal(mean[j], std[j]) for j in range(n)]
        log_q_given_x = per_image[i].log_prob(z[i]).sum()
        log_q = torch.logsumexp(torch.stack([q.log_prob(z[i]).sum() for q in per_image]), 0) - math.log(n)
        marginals = [
            torch.logsumexp(torch.stack([q.log_prob(z[i])[k] for q in per_image]), 0) - math.log(n)
            for k in range(d)
        ]
        log_prod = torch.stack(marginals).sum()
        log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z[i]).sum()
        mi += (log_q_given_x - log_q) / n
        tc += (log_q - log_prod) / n
        dwkl += (log_prod - log_p) / n
    return mi, tc, dwkl


def test_stratified_estimator_is_exact_when_the_batch_is_the_whole_tiny_dataset():
    mean, logvar, z = _tiny_posteriors()
    got = tc_decomposition(z, mean, logvar, dataset_size=5, estimator="mss")
    for a, b in zip(got, _exact_terms(mean, logvar, z)):
        assert a.item() == pytest.approx(b.item(), rel=1e-9, abs=1e-9)


def test_minibatch_weighted_estimator_is_chens_formula():
    """MWS: log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(N M), and the same per dimension."""
    mean, logvar, z = _tiny_posteriors(n=4, d=2, seed=3)
    n_data, m = 1000, 4
    std = (0.5 * logvar).exp()
    normal = torch.distributions.Normal
    log_qz, log_prod, log_qzx, log_pz = [], [], [], []
    for i in range(m):
        pair = torch.stack([normal(mean[j], std[j]).log_prob(z[i]) for j in range(m)])  # (M, D)
        log_qz.append(torch.logsumexp(pair.sum(1), 0) - math.log(n_data * m))
        log_prod.append((torch.logsumexp(pair, 0) - math.log(n_data * m)).sum())
        log_qzx.append(normal(mean[i], std[i]).log_prob(z[i]).sum())
        log_pz.append(normal(0.0, 1.0).log_prob(z[i]).sum())
    expected = [
        (torch.stack(log_qzx) - torch.stack(log_qz)).mean(),
        (torch.stack(log_qz) - torch.stack(log_prod)).mean(),
        (torch.stack(log_prod) - torch.stack(log_pz)).mean(),
    ]
    got = tc_decomposition(z, mean, logvar, dataset_size=n_data, estimator="mws")
    for a, b in zip(got, expected):
        assert a.item() == pytest.approx(b.item(), rel=1e-9)
    assert sum(got).item() == pytest.approx(sum(expected).item())


def test_stratified_weights_make_an_unbiased_estimate_of_q_z_over_all_batches():
    """Averaged over every batch of M that holds image 0, the estimate of q(z_0) is the exact mixture."""
    mean, logvar, z = _tiny_posteriors(n=6, d=2, seed=1)
    n, m = 6, 3
    std = (0.5 * logvar).exp()
    q = torch.stack(
        [torch.distributions.Normal(mean[j], std[j]).log_prob(z[0]).sum() for j in range(n)]
    ).exp()
    exact = q.mean()
    log_w = pair_log_weights(m, n, "mss", torch.device("cpu"), torch.float64)
    estimates = [
        (log_w[0].exp() * q[list((0, *others))]).sum()
        for others in itertools.combinations(range(1, n), m - 1)
    ]
    assert torch.stack(estimates).mean().item() == pytest.approx(exact.item(), rel=1e-9)
    mws = pair_log_weights(m, n, "mws", torch.device("cpu"), torch.float64)
    assert mws[0].exp().sum().item() == pytest.approx(1 / n)  # MWS weights sum to 1/N, not 1: it is biased


def test_beta_tcvae_loss_weighs_its_three_terms_and_adds_discrete_kl():
    _, preset = load_preset(
        "dsprites-beta-tcvae",
        [
            'data.source="generated"',
            "data.image_size=32",
            'model.architecture="conv32"',
            "model.discrete=[3]",
        ],
    )
    preset.loss.alpha, preset.loss.beta, preset.loss.gamma = 2.0, 7.0, 3.0
    torch.manual_seed(0)
    model = build_model(preset)
    x = torch.rand(6, 1, 32, 32).round()
    posterior = model.encode(x)
    latent = posterior.sample(0.67, torch.Generator().manual_seed(0))
    terms = model_objective(model, x, posterior, latent, 1, preset.loss, dataset_size=737280)
    mi, tc, dwkl = tc_decomposition(latent[:, :10], posterior.mean, posterior.logvar, 737280, "mws")
    recon = reconstruction(model.decode_logits(latent), x)
    expected = recon + 2.0 * mi + 7.0 * tc + 3.0 * dwkl + terms.kl_disc.sum()
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert {"mi", "tc", "dwkl"} <= set(terms.extra)


# ----------------------------------------------------------------------------------------------- FactorVAE


def _snapshot(parameters):
    return [p.detach().clone() for p in parameters]


def _unchanged(before, parameters):
    return all(torch.equal(a, b) for a, b in zip(before, parameters))


def _factor_vae():
    _, preset = load_preset(
        "dsprites-factor-vae",
        ['data.source="generated"', "data.image_size=32", 'model.architecture="conv32"'],
    )
    torch.manual_seed(0)
    model = build_model(preset)
    return (
        preset,
        model,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        build_critic(preset.loss, preset.model, "cpu"),
    )


def test_factor_vae_steps_do_not_leak_into_each_other():
    preset, model, optimizer, critic = _factor_vae()
    assert isinstance(critic, TCDiscriminator)
    noise = torch.Generator().manual_seed(0)
    x, other = torch.rand(8, 1, 32, 32).round(), torch.rand(8, 1, 32, 32).round()

    discriminator = _snapshot(critic.network.parameters())
    terms, latent = vae_step(Objective(model, preset, 1000, critic), optimizer, x, None, 1, noise)
    assert _unchanged(discriminator, critic.network.parameters())
    assert all(p.grad is None for p in critic.network.parameters())
    assert all(p.requires_grad for p in critic.network.parameters())  # unfrozen again for its own step

    encoder = _snapshot(model.parameters())
    for p in model.parameters():
        p.grad = None
    critic_step(model, critic, preset, latent, None, noise, other)
    assert _unchanged(encoder, model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert not _unchanged(discriminator, critic.network.parameters())


def test_factor_vae_loss_is_the_elbo_plus_gamma_times_the_discriminator_logit():
    preset, model, _, critic = _factor_vae()
    x = torch.rand(8, 1, 32, 32).round()
    posterior = model.encode(x)
    latent = posterior.sample(0.67, torch.Generator().manual_seed(0))
    terms = model_objective(model, x, posterior, latent, 1, preset.loss, critic=critic)
    logits = critic.network(latent[:, :10]).squeeze(1)
    kl = kl_normal(posterior.mean, posterior.logvar).sum(1).mean()
    expected = reconstruction(model.decode_logits(latent), x) + kl + 35.0 * logits.mean()
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_permuting_dimensions_keeps_each_marginal_and_breaks_the_rows():
    codes = torch.arange(40.0).view(10, 4)
    shuffled = permute_dims(codes, torch.Generator().manual_seed(0))
    for k in range(4):
        assert sorted(shuffled[:, k].tolist()) == codes[:, k].tolist()
    assert not torch.equal(shuffled, codes)


# ----------------------------------------------------------------------------------------------- class-conditional


def _class_conditional():
    _, preset = load_preset("digits-class-conditional")
    torch.manual_seed(0)
    model = build_model(preset)
    return (
        preset,
        model,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        build_critic(preset.loss, preset.model, "cpu"),
    )


def test_only_w_and_the_decoder_read_the_label():
    _, model, _, _ = _class_conditional()
    x = torch.rand(3, 1, 32, 32)
    a, b = model.encode(x, torch.tensor([1, 1, 1])), model.encode(x, torch.tensor([7, 7, 7]))
    assert torch.equal(a.mean[:, :10], b.mean[:, :10]) and torch.equal(a.logvar[:, :10], b.logvar[:, :10])
    assert not torch.allclose(a.mean[:, 10:], b.mean[:, 10:])
    code_a, code_b = a.mode(), a.mode().clone()
    code_b[:, 20:] = F.one_hot(torch.tensor([7, 7, 7]), 10).float()
    assert code_a.shape == (3, 30) and code_a[:, 20:].argmax(1).tolist() == [1, 1, 1]
    assert not torch.allclose(model.decode(code_a), model.decode(code_b))
    with pytest.raises(ValueError, match="class-conditional"):
        model.encode(x)
    model.default_class = 4
    assert model.encode(x).condition.argmax(1).tolist() == [4, 4, 4]


def test_class_conditional_loss_is_the_papers_objective():
    preset, model, _, critic = _class_conditional()
    x, labels = torch.rand(8, 1, 32, 32).round(), torch.randint(10, (8,))
    posterior = model.encode(x, labels)
    latent = posterior.sample(0.67, torch.Generator().manual_seed(0))
    step = 600  # C_z = 15 * 600/3000 = 3, C_w = 25 * 600/3000 = 5
    terms = model_objective(model, x, posterior, latent, step, preset.loss, critic=critic, labels=labels)
    kl = kl_normal(posterior.mean, posterior.logvar).mean(0)
    target = F.one_hot(labels, 10).float()
    logits = critic.network(latent[:, :10])
    bce = -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).sum(1).mean()
    expected = (
        reconstruction(model.decode_logits(latent), x)
        + 100.0 * (kl[:10].sum() - 3.0).abs()
        + 100.0 * (kl[10:].sum() - 5.0).abs()
        - bce
    )
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_class_conditional_classifier_and_vae_steps_stay_apart():
    preset, model, optimizer, critic = _class_conditional()
    assert isinstance(critic, LabelClassifier)
    noise = torch.Generator().manual_seed(0)
    x, labels = torch.rand(8, 1, 32, 32).round(), torch.randint(10, (8,))
    classifier = _snapshot(critic.network.parameters())
    _, latent = vae_step(Objective(model, preset, 1797, critic), optimizer, x, labels, 1, noise)
    assert _unchanged(classifier, critic.network.parameters())
    vae = _snapshot(model.parameters())
    for p in model.parameters():
        p.grad = None
    critic_step(model, critic, preset, latent, labels, noise)
    assert _unchanged(vae, model.parameters()) and all(p.grad is None for p in model.parameters())
    assert not _unchanged(classifier, critic.network.parameters())


# ----------------------------------------------------------------------------------------------- training


def test_class_conditional_trains_on_digits_and_every_command_takes_a_class(cli, tmp_path):
    run = tmp_path / "run"
    sets = ["train.steps=6", "train.log_every=3", "train.batch_size=32"]
    args = [arg for s in sets for arg in ("--set", s)]
    assert cli("train", "--preset", "digits-class-conditional", *args, "--out", run).exit_code == 0
    ckpt = run / "ckpt.pt"
    assert (run / "traversals.gif").is_file()
    for command in (
        ("traverse", ckpt, "--all", "--out", tmp_path / "t.gif"),
        ("sample", ckpt, "--n", "4", "--out", tmp_path / "s.png"),
    ):
        refused = cli(*command)
        assert refused.exit_code == 2 and "--class 0..9" in refused.output
        assert cli(*command, "--class", "7").exit_code == 0
    assert cli("sample", ckpt, "--class", "10", "--out", tmp_path / "s.png").exit_code == 2

    from PIL import Image

    Image.fromarray((torch.rand(32, 32) * 255).byte().numpy()).save(tmp_path / "digit.png")
    edited = cli("edit", tmp_path / "digit.png", "--ckpt", ckpt, "--unit", "12=+2", "--class", "3")
    assert edited.exit_code == 0 and (tmp_path / "digit.edited.png").is_file()
    assert (
        cli("encode", ckpt, tmp_path / "digit.png", "--class", "3", "--out", tmp_path / "f.csv").exit_code
        == 0
    )
    assert cli("encode", ckpt, "digits", "--limit", "40", "--out", tmp_path / "c.csv").exit_code == 0
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 41

    report = cli("evaluate", ckpt, "--fast", "--metrics", "class_split", "--out", tmp_path / "report")
    assert report.exit_code == 0, report.output
    split = json.loads((tmp_path / "report" / "report.json").read_text())["metrics"]["class_split"]
    assert set(split) == {"z", "w"} and all(0.0 <= v <= 1.0 for v in split.values())


def test_class_option_is_refused_for_unconditional_models(cli, tmp_path, digits_run):
    result = cli("sample", digits_run / "ckpt.pt", "--class", "1", "--out", tmp_path / "s.png")
    assert result.exit_code == 2 and "not one" in result.output


@pytest.mark.parametrize(
    "name",
    ["mnist-beta-vae", "mnist-cc-beta-vae", "mnist-class-conditional", "fashion-mnist-class-conditional"],
)
def test_mnist_presets_train_on_digits_and_work_with_every_command(cli, tmp_path, name):
    """The MNIST-family presets run through the CLI on the offline digits, with their own model and loss."""
    sets = ['data.dataset="digits"', "train.steps=3", "train.log_every=1", "train.batch_size=32"]
    run = tmp_path / "run"
    assert (
        cli("train", "--preset", name, *[a for s in sets for a in ("--set", s)], "--out", run).exit_code == 0
    )
    ckpt = run / "ckpt.pt"
    label = ["--class", "2"] if "class-conditional" in name else []
    assert cli("traverse", ckpt, "--all", *label, "--out", tmp_path / "t.gif").exit_code == 0
    assert cli("sample", ckpt, "--n", "4", *label, "--out", tmp_path / "s.png").exit_code == 0
    assert cli("encode", ckpt, "digits", "--limit", "8", "--out", tmp_path / "c.npz").exit_code == 0
    assert np.load(tmp_path / "c.npz")["mean"].shape[0] == 8
