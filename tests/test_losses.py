"""The JointVAE objective's terms against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from jvae import fast
from jvae.base.errors import PresetError
from jvae.kinds import objective
from jvae.modeling.losses import bernoulli_nll_sum, reconstruction
from jvae.modeling.model import Posterior, kl_normal, kl_uniform_categorical
from jvae.modeling.presets import CapacitySchedule
from jvae.modeling.presets import loss_config as LossConfig


def test_kl_normal_matches_monte_carlo_estimate():
    torch.manual_seed(0)
    mean, logvar = torch.tensor([[0.7, -1.2, 0.0]]), torch.tensor([[-0.5, 0.3, 0.0]])
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    z = q.sample((200_000,))
    estimate = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(kl_normal(mean, logvar), estimate, atol=0.01)
    assert kl_normal(mean, logvar)[0, 2].item() == pytest.approx(0.0, abs=1e-7)


def test_kl_categorical_is_log_k_minus_entropy_and_bounded():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [50.0, -50.0, -50.0]])
    probs = logits.softmax(-1)
    expected = (probs * (probs.clamp_min(1e-30).log() - math.log(1 / 3))).sum(-1)
    got = kl_uniform_categorical(logits)
    assert torch.allclose(got, expected, atol=1e-6)
    assert got[1].item() == pytest.approx(0.0, abs=1e-7)
    assert got[2].item() == pytest.approx(math.log(3), abs=1e-5)


def test_capacity_rises_linearly_holds_and_clips():
    schedule = CapacitySchedule(start=1.0, stop=5.0, steps=100, gamma=30.0)
    assert schedule.capacity(0) == 1.0
    assert schedule.capacity(1) == pytest.approx(1.04)
    assert schedule.capacity(50) == pytest.approx(3.0)
    assert schedule.capacity(100) == 5.0
    assert schedule.capacity(10_000) == 5.0
    assert schedule.capacity(50, ceiling=math.log(2)) == pytest.approx(math.log(2))


def test_reconstruction_is_per_image_sum_and_official_divides_by_channels():
    torch.manual_seed(0)
    logits, target = torch.randn(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    per_image = F.binary_cross_entropy(logits.sigmoid(), target, reduction="none").sum((1, 2, 3))
    assert reconstruction(logits, target, "bce-sum").item() == pytest.approx(
        per_image.mean().item(), rel=1e-5
    )
    official = F.binary_cross_entropy(logits.sigmoid().view(-1, 64), target.view(-1, 64)) * 64
    assert reconstruction(logits, target, "bce-official").item() == pytest.approx(official.item(), rel=1e-5)
    grey = target[:, :1]
    assert reconstruction(logits[:, :1], grey, "bce-official") == pytest.approx(
        reconstruction(logits[:, :1], grey, "bce-sum").item(), rel=1e-6
    )


def test_bernoulli_nll_equals_pytorch_bce_in_value_and_gradient_even_for_extreme_logits():
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(4000) * 6, torch.tensor([-90.0, -30.0, -1e-6, 0.0, 1e-6, 30.0, 90.0])])
    for target in (torch.rand(logits.shape), (torch.rand(logits.shape) > 0.7).float()):
        results = []
        for stock in (True, False):
            leaf = logits.clone().requires_grad_()
            if stock:
                with fast.stock():
                    loss = bernoulli_nll_sum(leaf, target)
            else:
                loss = bernoulli_nll_sum(leaf, target)
            (3.0 * loss).backward()
            results.append((loss.detach(), leaf.grad))
        (expected, expected_grad), (got, got_grad) = results
        assert torch.isfinite(got) and got == pytest.approx(expected.item(), rel=1e-6)
        assert torch.allclose(got_grad, expected_grad, atol=1e-6)
        assert torch.equal(expected, F.binary_cross_entropy_with_logits(logits, target, reduction="sum"))
        half = bernoulli_nll_sum(logits.bfloat16(), target)
        assert half.dtype == torch.float32
        assert half.item() == pytest.approx(expected.item(), rel=1e-2)


def test_loss_combines_terms_with_capacities_and_clips_discrete():
    config = LossConfig(
        continuous_capacity=CapacitySchedule(stop=10.0, steps=10, gamma=30.0),
        discrete_capacity=CapacitySchedule(stop=5.0, steps=10, gamma=100.0),
    )
    torch.manual_seed(0)
    posterior = Posterior(torch.randn(8, 4), torch.randn(8, 4), [torch.randn(8, 2), torch.randn(8, 3)])
    logits, target = torch.randn(8, 1, 32, 32), torch.rand(8, 1, 32, 32)
    terms = objective(logits, target, posterior, 20, config)
    assert terms.kl_cont.shape == (4,) and terms.kl_disc.shape == (2,)
    assert terms.capacity_cont == 10.0
    assert terms.capacity_disc == pytest.approx(math.log(2) + math.log(3))
    expected = (
        terms.recon
        + 30.0 * (terms.kl_cont.sum() - 10.0).abs()
        + 100.0 * (terms.kl_disc.sum() - terms.capacity_disc).abs()
    )
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_without_discrete_or_without_continuous_latents():
    config = LossConfig(
        continuous_capacity=CapacitySchedule(stop=1.0, steps=10, gamma=1.0),
        discrete_capacity=CapacitySchedule(stop=1.0, steps=10, gamma=1.0),
    )
    logits, target = torch.randn(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    only_cont = objective(logits, target, Posterior(torch.zeros(2, 3), torch.zeros(2, 3), []), 5, config)
    assert only_cont.kl_disc.numel() == 0 and only_cont.capacity_disc == 0.0
    only_disc = objective(
        logits, target, Posterior(torch.zeros(2, 0), torch.zeros(2, 0), [torch.zeros(2, 4)]), 5, config
    )
    assert only_disc.kl_cont.numel() == 0
    assert only_disc.loss.item() == pytest.approx(only_disc.recon.item() + 0.5, rel=1e-6)


def _fixed_batch():
    torch.manual_seed(3)
    posterior = Posterior(torch.randn(6, 4), torch.randn(6, 4), [torch.randn(6, 3)])
    return torch.randn(6, 1, 32, 32), torch.rand(6, 1, 32, 32), posterior


def _by_hand(logits, target, posterior):
    """Straight from the formulas, without the library's helpers."""
    p = torch.sigmoid(logits)
    recon = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).sum() / target.shape[0]
    var = posterior.logvar.exp()
    kl_z = (0.5 * (posterior.mean**2 + var - 1 - posterior.logvar)).sum() / target.shape[0]
    q = torch.softmax(posterior.logits[0], dim=-1)
    kl_c = (q * torch.log(q * 3)).sum() / target.shape[0]
    return recon, kl_z + kl_c


@pytest.mark.parametrize(
    "kind,extra,expected",
    [
        ("vae", {}, lambda recon, kl, step: recon + kl),
        ("beta-vae", {"beta": 4.0}, lambda recon, kl, step: recon + 4.0 * kl),
        (
            "cc-beta-vae",
            {"continuous_capacity": CapacitySchedule(stop=25.0, steps=100, gamma=1000.0)},
            lambda recon, kl, step: recon + 1000.0 * (kl - 25.0 * step / 100).abs(),
        ),
    ],
)
def test_baseline_losses_match_their_formulas(kind, extra, expected):
    logits, target, posterior = _fixed_batch()
    recon, kl = _by_hand(logits, target, posterior)
    terms = objective(logits, target, posterior, 40, LossConfig(kind=kind, **extra))
    assert terms.loss.item() == pytest.approx(expected(recon, kl, 40).item(), rel=1e-5)
    assert terms.recon.item() == pytest.approx(recon.item(), rel=1e-5)


def test_each_kind_takes_only_its_own_fields():
    schedule = CapacitySchedule(stop=1.0, steps=10, gamma=1.0)
    with pytest.raises(PresetError, match="needs loss.beta"):
        LossConfig(kind="beta-vae")
    with pytest.raises(PresetError, match="loss.beta is not used by kind 'vae'"):
        LossConfig(kind="vae", beta=2.0)
    with pytest.raises(PresetError, match="needs loss.discrete_capacity"):
        LossConfig(kind="jointvae", continuous_capacity=schedule)
    with pytest.raises(PresetError, match="loss.discrete_capacity is not used by kind 'cc-beta-vae'"):
        LossConfig(kind="cc-beta-vae", continuous_capacity=schedule, discrete_capacity=schedule)


def test_grouped_vae_term_i_reaches_only_group_i_of_the_encoder_outputs():
    from jvae.kinds.grouped_vae import grouped_reconstruction
    from jvae.modeling.model import JointVAE

    torch.manual_seed(0)
    model = JointVAE(32, 1, 6, [], hidden=64, mlp=True)
    target = torch.rand(4, 1, 32, 32)
    latent = torch.randn(4, 6, requires_grad=True)
    first_term = grouped_reconstruction(model.decode_logits, target, latent, [3], "bce-sum")  # groups 1..1
    both_terms = grouped_reconstruction(model.decode_logits, target, latent, [3, 3], "bce-sum")
    (first,) = torch.autograd.grad(first_term, latent, retain_graph=True)
    (second,) = torch.autograd.grad(both_terms - first_term, latent, retain_graph=True)
    assert first[:, :3].abs().sum() > 0 and first[:, 3:].abs().sum() == 0
    assert second[:, 3:].abs().sum() > 0 and second[:, :3].abs().sum() == 0  # group 1 is detached in term 2
    decoder = list(model.latent_to_features.parameters())
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(both_terms, decoder, allow_unused=False))


def test_grouped_vae_loss_is_the_sum_of_prefix_reconstructions_plus_beta_kl():
    from jvae.kinds import model_objective
    from jvae.modeling.losses import reconstruction
    from jvae.modeling.model import JointVAE

    torch.manual_seed(1)
    model = JointVAE(32, 1, 4, [], hidden=32, mlp=True)
    target = torch.rand(3, 1, 32, 32)
    posterior = model.encode(target)
    latent = posterior.sample(0.67, torch.Generator().manual_seed(0))
    config = LossConfig(kind="grouped-vae", beta=2.0, groups=[1, 3])
    first = torch.cat([latent[:, :1], torch.zeros(3, 3)], dim=1)
    by_hand = reconstruction(model.decode_logits(first), target) + reconstruction(
        model.decode_logits(latent), target
    )
    kl = (0.5 * (posterior.mean**2 + posterior.logvar.exp() - 1 - posterior.logvar)).sum() / 3
    terms = model_objective(model, target, posterior, latent, 5, config)
    assert terms.loss.item() == pytest.approx((by_hand + 2.0 * kl).item(), rel=1e-5)


def test_objective_scale_pixel_steps_on_the_loss_divided_by_the_pixel_count():
    from jvae.modeling.builder import build_model
    from jvae.modeling.presets import load_preset
    from jvae.training.steps import Objective

    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    gradients, losses, logged = [], [], []
    for scale in ("image", "pixel"):
        _, preset = load_preset("digits", [f'loss.objective_scale="{scale}"'])
        torch.manual_seed(0)
        model = build_model(preset)
        objective = Objective(model, preset, dataset_size=100)
        loss, terms, _ = objective(x, None, 10, torch.Generator().manual_seed(1))
        loss.backward()
        losses.append(loss.item())
        logged.append(terms.loss.item())
        gradients.append(model.decoder[0].weight.grad.clone())
    assert logged[0] == pytest.approx(
        logged[1], rel=1e-6
    )  # metrics.jsonl shows the per-image loss either way
    assert losses[1] == pytest.approx(losses[0] / 1024, rel=1e-6)
    torch.testing.assert_close(gradients[1] * 1024, gradients[0], rtol=1e-4, atol=1e-6)


def _discrete_config(**options: object) -> object:
    return LossConfig(
        continuous_capacity=CapacitySchedule(stop=0.0, steps=10, gamma=30.0),
        discrete_capacity=CapacitySchedule(stop=5.0, steps=10, gamma=30.0),
        **options,
    )


def _confident_codes(categories: list[int], k: int = 4) -> Posterior:
    logits = torch.full((len(categories), k), -30.0)
    logits[torch.arange(len(categories)), torch.tensor(categories)] = 30.0
    return Posterior(torch.zeros(len(categories), 2), torch.zeros(len(categories), 2), [logits])


def test_the_information_capacity_charges_a_constant_confident_code_and_not_a_balanced_one():
    """The paper's term cannot tell the two codes apart (both sit at KL log K); bounding I(x; c) instead makes
    the constant code pay gamma * log K and leaves the balanced code, which carries log K nats, free."""
    constant, balanced = _confident_codes([2] * 8), _confident_codes([0, 1, 2, 3] * 2)
    logits, target = torch.zeros(8, 1, 8, 8), torch.full((8, 1, 8, 8), 0.5)
    penalty = {}
    for name, options in (("kl", {}), ("mi", {"discrete_measure": "mutual-information"})):
        for code, posterior in (("constant", constant), ("balanced", balanced)):
            terms = objective(logits, target, posterior, 20, _discrete_config(**options))
            penalty[name, code] = terms.loss.item() - terms.recon.item()
            if name == "mi":
                information = terms.extra["mutual_info"].item()
                assert information == pytest.approx(0.0 if code == "constant" else math.log(4), abs=1e-5)
                assert terms.extra["perplexity"].item() == pytest.approx(1.0 if code == "constant" else 4.0)
    assert penalty["kl", "constant"] == pytest.approx(penalty["kl", "balanced"], abs=1e-4)
    assert penalty["kl", "balanced"] == pytest.approx(0.0, abs=1e-3)
    assert penalty["mi", "balanced"] == pytest.approx(0.0, abs=1e-3)
    assert penalty["mi", "constant"] == pytest.approx(30.0 * math.log(4), rel=1e-4)


def test_the_marginal_term_charges_an_unbalanced_code_until_its_last_step():
    constant = _confident_codes([1] * 8)
    logits, target = torch.zeros(8, 1, 8, 8), torch.full((8, 1, 8, 8), 0.5)
    config = _discrete_config(marginal_weight=2.0, marginal_steps=100)
    plain = objective(logits, target, constant, 20, _discrete_config()).loss.item()
    assert objective(logits, target, constant, 100, config).loss.item() == pytest.approx(
        plain + 2.0 * math.log(4), rel=1e-5
    )
    assert objective(logits, target, constant, 101, config).loss.item() == pytest.approx(plain, rel=1e-6)
    assert objective(logits, target, constant, 20, config).extra["marginal_kl"].item() == pytest.approx(
        math.log(4), abs=1e-5
    )


def test_the_aggregate_estimate_is_the_entropy_decomposition_with_gradients():
    """E_x KL(q(c|x) || U) = I(x; c) + KL(q_bar || U) on soft codes, and the information term's gradient
    reaches the encoder's logits."""
    torch.manual_seed(0)
    logits = torch.randn(16, 5, requires_grad=True)
    posterior = Posterior(torch.zeros(16, 2), torch.zeros(16, 2), [logits])
    terms = objective(
        torch.zeros(16, 1, 4, 4),
        torch.rand(16, 1, 4, 4),
        posterior,
        3,
        _discrete_config(discrete_measure="mutual-information"),
    )
    probs = logits.detach().softmax(-1)
    q_bar = probs.mean(0)
    information = (probs * (probs.log() - q_bar.log())).sum(-1).mean()
    assert terms.extra["mutual_info"].item() == pytest.approx(information.item(), rel=1e-4)
    assert terms.kl_disc.item() == pytest.approx(
        (terms.extra["mutual_info"] + terms.extra["marginal_kl"]).item(), rel=1e-5
    )
    terms.loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_the_paper_objective_logs_no_aggregate_terms_by_default():
    terms = objective(
        torch.zeros(8, 1, 8, 8), torch.rand(8, 1, 8, 8), _confident_codes([0] * 8), 20, _discrete_config()
    )
    assert terms.extra == {}
