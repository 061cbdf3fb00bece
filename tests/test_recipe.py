"""The 2018 training recipe as preset fields: PyTorch 0.4.1's Adam and initialisation, the kept last batch and the
per-pixel loss scale, each checked against its formula, resumed exactly, and the whole recipe of the shipped
`mnist` preset against an independent re-implementation of the official JointVAE loss and update."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jvae.data import open_dataset
from jvae.modeling.builder import build_model, build_training
from jvae.modeling.checkpoint import read_checkpoint
from jvae.modeling.presets import load_preset
from jvae.modeling.recipes import RECIPE_2018
from jvae.training import trainer
from jvae.training.distributed import Cluster
from jvae.training.steps import Batches, Objective, apply_learning_rate, epoch_order

RECIPE = list(RECIPE_2018)


def _adam_04_reference(grads: list[torch.Tensor], start: torch.Tensor, lr: float) -> torch.Tensor:
    """Adam as PyTorch 0.4.1 wrote it: eps added to sqrt(v) before the bias correction, which moves into the
    step size."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    p, m, v = start.clone().double(), torch.zeros_like(start).double(), torch.zeros_like(start).double()
    for t, g in enumerate(grads, start=1):
        g = g.double()
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step_size = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        p = p - step_size * m / (v.sqrt() + eps)
    return p


def _run_optimizer(sets: list[str], grads: list[torch.Tensor], start: torch.Tensor) -> torch.Tensor:
    """The optimiser `jvae train` builds for a preset with `sets`, stepped through `grads` as the trainer does."""
    _, preset = load_preset("digits", sets)
    weight = nn.Parameter(start.clone())
    optimizer = torch.optim.Adam([weight], lr=preset.train.lr, fused=True)
    for step, grad in enumerate(grads, start=1):
        apply_learning_rate(optimizer.param_groups, preset, step, 100)
        weight.grad = grad.clone()
        optimizer.step()
    return weight.detach()


def test_pytorch04_adam_takes_the_041_step_and_todays_adam_does_not():
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(40, generator=generator) * 1e-2  # small weights: float32 keeps the updates exact
    # Gradients as small as the per-pixel loss gives: there eps decides the step.
    grads = [torch.randn(40, generator=generator) * 10.0 ** -(3 + k % 5) for k in range(8)]
    expected = _adam_04_reference(grads, start, 5e-4)
    old = _run_optimizer(['train.adam="pytorch-0.4"'], grads, start)
    torch.testing.assert_close(old.double(), expected, rtol=0, atol=1e-8)
    today = _run_optimizer(['train.adam="current"'], grads, start)
    assert (today.double() - expected).abs().max() > 1e-6  # the comparison can fail


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


@pytest.mark.parametrize("preset_name", ["mnist", "dsprites"])
def test_pytorch04_initialisation_draws_within_the_041_bounds(preset_name):
    """0.4.1 drew every layer within 1/sqrt(in_channels * kh * kw) (1/sqrt(in_features) for linear layers);
    today transposed convolutions use out_channels instead."""
    _, old = load_preset(preset_name, ['model.init="pytorch-0.4"'])
    _, today = load_preset(preset_name, ['model.init="current"'])
    torch.manual_seed(0)
    model_old = build_model(old)
    torch.manual_seed(0)
    model_today = build_model(today)
    transposed = 0
    for layer_old, layer_today in zip(_layers(model_old), _layers(model_today)):
        if isinstance(layer_old, nn.Linear):
            bound_old = bound_today = 1 / math.sqrt(layer_old.in_features)
        else:
            taps = layer_old.kernel_size[0] * layer_old.kernel_size[1]
            bound_old = 1 / math.sqrt(layer_old.in_channels * taps)
            is_transposed = isinstance(layer_old, nn.ConvTranspose2d)
            transposed += is_transposed
            bound_today = 1 / math.sqrt(
                (layer_old.out_channels if is_transposed else layer_old.in_channels) * taps
            )
        for tensor, bound in ((layer_old.weight, bound_old), (layer_today.weight, bound_today)):
            assert tensor.abs().max() <= bound
            assert tensor.abs().max() > 0.9 * bound  # the draws fill the interval
        # The same uniform draws, scaled: the seed's stream is unchanged.
        torch.testing.assert_close(layer_old.weight * (bound_today / bound_old), layer_today.weight)
        torch.testing.assert_close(layer_old.bias * (bound_today / bound_old), layer_today.bias)
    assert transposed >= 3
    last = [m for m in model_old.modules() if isinstance(m, nn.ConvTranspose2d)][-1]
    assert (
        last.weight.abs().max()
        < 0.05
        < [m for m in model_today.modules() if isinstance(m, nn.ConvTranspose2d)][-1].weight.abs().max()
    )


def test_pixel_scale_gives_the_image_scale_gradients_divided_by_the_pixels():
    grads = {}
    for scale in ("image", "pixel"):
        _, preset = load_preset("digits", [f'loss.objective_scale="{scale}"', 'train.precision="fp32"'])
        training = build_training(preset, torch.device("cpu"))
        source = open_dataset(preset.data)
        objective = Objective(training.model, preset, len(source))
        x = source.images(torch.arange(64), torch.device("cpu"))
        loss, _, _ = objective(x, None, 1, torch.Generator().manual_seed(5))
        loss.backward()
        grads[scale] = {name: p.grad.clone() for name, p in training.model.named_parameters()}
    pixels = 32 * 32
    for name, grad in grads["image"].items():
        torch.testing.assert_close(grads["pixel"][name] * pixels, grad, rtol=1e-4, atol=1e-6, msg=name)


def test_kept_last_batch_takes_the_remainder_and_counts_in_the_epoch(tmp_path):
    _, keep = load_preset("digits", ['train.last_batch="keep"', "train.epochs=2", "train.steps=58"])
    source = open_dataset(keep.data)
    assert len(source) == 1797  # 28 batches of 64 and 5 images
    batches = Batches(source, torch.device("cpu"), keep, channels_last=False)
    assert batches.steps_per_epoch == 29
    rows, x, _ = batches(28)
    assert x.shape == (5, 1, 32, 32)
    assert set(rows.tolist()) == set(epoch_order(0, 0, 1797)[28 * 64 :].tolist())
    first, _, _ = batches(29)  # the next epoch starts with a whole batch
    assert len(first) == 64
    _, drop = load_preset("digits", ['train.last_batch="drop"'])
    assert Batches(source, torch.device("cpu"), drop, channels_last=False).steps_per_epoch == 28
    # Under DDP each of two processes takes an equal share: the 5 images are cut to 4.
    shares = [Batches(source, torch.device("cpu"), keep, False, Cluster(rank, 2))(28)[0] for rank in (0, 1)]
    assert [len(s) for s in shares] == [2, 2] and not set(shares[0].tolist()) & set(shares[1].tolist())
    # An epoch-long run counts 29 steps an epoch.
    _, run = load_preset("digits", ['train.last_batch="keep"', "train.steps=30", 'train.precision="fp32"'])
    run = run.model_copy(update={"train": run.train.model_copy(update={"steps": None, "epochs": 1})})
    result = trainer.train(run, "digits", tmp_path / "epoch", device="cpu")
    assert result.step == 29 and read_checkpoint(tmp_path / "epoch" / "ckpt.pt").step == 29


def test_stacked_recipe_runs_equal_each_run_alone(tmp_path, monkeypatch):
    """One thread: the stack's shared optimiser step (`StackedAdam`), whose groups all take the 0.4 epsilon."""
    monkeypatch.setenv("JVAE_THREADS", "1")
    sets = [*RECIPE, "train.steps=32", "train.log_every=8", "train.checkpoint_every=1000"]
    presets = [load_preset("digits", [*sets, f"train.seed={seed}"])[1] for seed in (0, 1)]
    trainer.train_stack(
        [(f"seed-{p.train.seed}", p) for p in presets],
        "digits",
        tmp_path / "stack",
        device="cpu",
        engine="kernels",
    )
    for preset in presets:
        alone = tmp_path / f"alone-{preset.train.seed}"
        trainer.train(preset, "digits", alone, device="cpu")
        a = read_checkpoint(tmp_path / "stack" / f"seed-{preset.train.seed}" / "ckpt.pt")
        b = read_checkpoint(alone / "ckpt.pt")
        for key in b.model:
            torch.testing.assert_close(a.model[key], b.model[key], rtol=1e-5, atol=1e-6, msg=key)


# ------------------------------------------------------------------ the official recipe, written out again


def _official_loss(model, x: torch.Tensor, step: int, noise: torch.Generator, preset) -> torch.Tensor:
    """The official JointVAE training loss of one batch, written from the paper and its code's facts: the
    mean pixel BCE times the pixels, the batch-mean KLs, |KL - C| with linear capacities (the discrete one
    clipped at the sum of log K), all divided by H*W before the backward pass when the loss is per pixel.

    log(alpha) is taken as the log-softmax of the logits and the uniform draws are kept away from 0, where
    the official code adds 1e-12 inside its logs. The two differ by rounding only, but a rounding difference
    that meets a ReLU at its kink separates two runs by up to 1e-4 within 20 steps under PyTorch 0.4's Adam,
    as one float of difference in the initial weights does.
    """
    posterior = model.encode(x)
    eps = torch.randn(posterior.mean.shape, generator=noise)
    z = posterior.mean + torch.exp(0.5 * posterior.logvar) * eps
    codes, kl_disc = [z], torch.zeros(())
    for logits in posterior.logits:
        log_alpha = F.log_softmax(logits, dim=-1)
        uniform = torch.rand(log_alpha.shape, generator=noise).clamp_min(1e-12)
        gumbel = -torch.log((-torch.log(uniform)).clamp_min(1e-12))
        codes.append(F.softmax((log_alpha + gumbel) / preset.model.temperature, dim=-1))
        entropy = -(log_alpha.exp() * log_alpha).sum(dim=1)
        kl_disc = kl_disc + math.log(log_alpha.shape[-1]) - entropy.mean()
    reconstruction = torch.sigmoid(model.decode_logits(torch.cat(codes, dim=1)))
    pixels = x[0].numel()
    recon = F.binary_cross_entropy(reconstruction.reshape(-1, pixels), x.reshape(-1, pixels)) * pixels
    kl_cont = (
        (-0.5 * (1 + posterior.logvar - posterior.mean.pow(2) - posterior.logvar.exp())).mean(dim=0).sum()
    )
    cont, disc = preset.loss.continuous_capacity, preset.loss.discrete_capacity
    c_cont = min(cont.start + (cont.stop - cont.start) * step / cont.steps, cont.stop)
    disc_max = min(disc.stop, sum(math.log(k) for k in preset.model.discrete))
    c_disc = min(disc.start + (disc.stop - disc.start) * step / disc.steps, disc_max)
    loss = recon + cont.gamma * (kl_cont - c_cont).abs() + disc.gamma * (kl_disc - c_disc).abs()
    return loss / (x.shape[-1] * x.shape[-2]) if preset.loss.objective_scale == "pixel" else loss


def _adam_update(params, state, step: int, lr: float, variant: str) -> None:
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    with torch.no_grad():
        for p in params:
            m, v = state.setdefault(id(p), (torch.zeros_like(p), torch.zeros_like(p)))
            m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            correction1, correction2 = 1 - beta1**step, 1 - beta2**step
            if variant == "pytorch-0.4":
                p.addcdiv_(m, v.sqrt().add(eps), value=-lr * math.sqrt(correction2) / correction1)
            else:
                p.addcdiv_(m, v.sqrt().div(math.sqrt(correction2)).add(eps), value=-lr / correction1)


def test_shipped_mnist_preset_trains_what_the_official_recipe_trains(tmp_path, monkeypatch):
    """jvae's `mnist` preset as shipped and the official recipe written out above, 20 steps on the digits from
    the same initial weights, batches and noise: the same parameters.

    Both sides run stock PyTorch kernels, as the official code does. jvae's own kernels round differently
    (they are checked against stock ones in test_fast), and PyTorch 0.4's Adam turns a rounding flip of a
    near-zero gradient into a step of about lr: on an AMD EPYC with AVX-512 the two sides agreed to 1.5e-8
    after two steps and parted by 1.2e-4 after twenty, a difference of arithmetic, not of recipe."""
    monkeypatch.setenv("JVAE_STOCK", "1")
    _, preset = load_preset("mnist", ['data.dataset="digits"', "train.steps=20", "train.log_every=10"])
    assert preset.train.precision == "fp32"  # the official code trains in float32
    trainer.train(preset, "mnist", tmp_path / "jvae", device="cpu")
    trained = read_checkpoint(tmp_path / "jvae" / "ckpt.pt").model

    torch.manual_seed(preset.train.seed)
    # The shipped preset's initialisation, laid out channels-last as jvae trains it: the convolutions then run
    # the same kernels, whose rounding would otherwise differ with the layout and the thread count.
    model = copy.deepcopy(build_model(preset)).to(memory_format=torch.channels_last)
    source = open_dataset(preset.data)
    order = epoch_order(preset.train.seed, 0, len(source))
    noise = torch.Generator().manual_seed(preset.train.seed + 1)
    params, state = list(model.parameters()), {}
    for step in range(1, 21):
        rows = order[(step - 1) * 64 : step * 64]
        model.zero_grad(set_to_none=True)
        x = source.images(rows, torch.device("cpu")).contiguous(memory_format=torch.channels_last)
        _official_loss(model, x, step, noise, preset).backward()
        _adam_update(params, state, step, preset.train.lr, preset.train.adam)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=0, atol=1e-6, msg=name)
    untrained = build_model(preset).state_dict()
    assert any((untrained[k] - trained[k]).abs().max() > 1e-4 for k in trained)  # training moved them


def test_presets_show_explains_each_recipe_value(cli):
    result = cli("presets", "show", "mnist", "--explain")
    assert result.exit_code == 0
    lines = {line.split(" = ")[0]: line for line in result.stdout.splitlines()}
    for field, value in [
        ("model.init", "pytorch-0.4"),
        ("train.adam", "pytorch-0.4"),
        ("train.last_batch", "keep"),
        ("loss.objective_scale", "pixel"),
        ("train.precision", "fp32"),
    ]:
        assert f'{field} = "{value}"  # ' in lines[field]
    assert "current:" in lines["train.adam"] and "drop:" in lines["train.last_batch"]
