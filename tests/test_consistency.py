"""The consistency term (IMSAT's self-augmented training): the jitter it draws, what it charges, and a run that
trains with it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from jvae.base.sections import CapacitySchedule, Jitter
from jvae.kinds import model_objective
from jvae.kinds.jointvae import JointVAELoss
from jvae.modeling.augment import jittered
from jvae.modeling.model import Posterior
from jvae.runs import runfolder


def _digit_like(batch: int = 6) -> torch.Tensor:
    """Bars off the centre, so that every move of the image moves ink."""
    x = torch.zeros(batch, 1, 32, 32)
    x[:, :, 6:26, 10:14] = 1.0
    x[:, :, 6:10, 10:24] = 1.0
    return x


def test_no_jitter_returns_each_image_and_a_jitter_moves_ink_without_losing_it():
    x = _digit_like()
    still = jittered(x, Jitter(rotation=0.0, translation=0.0, scale=0.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(still, x, atol=1e-5, rtol=0)
    moved = jittered(x, Jitter(rotation=10.0, translation=0.1, scale=0.1), torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and moved.min() >= 0 and moved.max() <= 1 + 1e-6
    changed = (moved - x).abs().flatten(1).sum(1)
    assert (changed > 5).all()  # every image moved, each by its own draw
    assert len({round(c, 3) for c in changed.tolist()}) == len(x)
    ink = moved.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert ((ink > 0.75) & (ink < 1.3)).all()  # zoomed by at most 10%: the bars stay in the frame


def test_the_processes_of_a_distributed_run_draw_the_jitter_one_process_would():
    x = _digit_like(8)
    jitter = Jitter(rotation=20.0, translation=0.2, scale=0.2)
    whole = jittered(x, jitter, torch.Generator().manual_seed(3))
    halves = [
        jittered(x[r * 4 : (r + 1) * 4], jitter, torch.Generator().manual_seed(3), (r, 2)) for r in (0, 1)
    ]
    torch.testing.assert_close(torch.cat(halves), whole)


def _config(weight: float) -> JointVAELoss:
    return JointVAELoss(
        continuous_capacity=CapacitySchedule(stop=0.0, steps=10, gamma=30.0),
        discrete_capacity=CapacitySchedule(stop=5.0, steps=10, gamma=30.0),
        consistency_weight=weight,
    )


class _Decoder:
    generic = 0

    def decode_logits(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.zeros(latent.shape[0], 1, 8, 8)


def _terms(weight: float, logits: torch.Tensor, moved: torch.Tensor):
    def posterior(codes: torch.Tensor) -> Posterior:
        return Posterior(torch.zeros(len(codes), 2), torch.zeros(len(codes), 2), [codes])

    clean = posterior(logits)
    return model_objective(
        _Decoder(),  # type: ignore[arg-type]
        torch.full((len(logits), 1, 8, 8), 0.5),
        clean,
        clean.mean,
        20,
        _config(weight),
        jittered=posterior(moved),
    )


def test_a_code_that_keeps_its_category_under_the_jitter_pays_nothing_and_one_that_changes_pays_its_kl():
    torch.manual_seed(0)
    logits = torch.randn(8, 4) * 3
    kept = _terms(2.0, logits, logits.clone())
    assert kept.extra["consistency"].item() == pytest.approx(0.0, abs=1e-6)
    assert kept.loss.item() == pytest.approx(_terms(0.0, logits, logits).loss.item(), abs=1e-4)
    moved = logits.roll(1, dims=1).requires_grad_(True)
    clean = logits.clone().requires_grad_(True)
    changed = _terms(2.0, clean, moved)
    p, q = logits.softmax(-1), logits.roll(1, dims=1).softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean().item()
    assert changed.extra["consistency"].item() == pytest.approx(expected, rel=1e-4)
    assert changed.loss.item() - kept.loss.item() == pytest.approx(2.0 * expected, rel=1e-3)
    changed.loss.backward()
    # The image's own code is the target: the term moves the jittered copy's code and adds nothing to the
    # gradient the image's code gets from the capacity term.
    assert moved.grad is not None and moved.grad.abs().sum() > 0
    alone = logits.clone().requires_grad_(True)
    _terms(0.0, alone, logits.roll(1, dims=1)).loss.backward()
    assert clean.grad is not None and alone.grad is not None
    torch.testing.assert_close(clean.grad, alone.grad)


def test_a_run_with_the_consistency_term_logs_it_and_trains_what_a_run_without_it_does_not(tmp_path, cli):
    train = ("train", "--preset", "digits", "--set", "train.steps=40", "--set", "train.log_every=20")
    with_term = cli(*train, "--out", tmp_path / "with", "--set", "loss.consistency_weight=30.0")
    assert with_term.exit_code == 0, with_term.output
    without = cli(*train, "--out", tmp_path / "without")
    assert without.exit_code == 0, without.output
    lines = [json.loads(line) for line in (tmp_path / "with" / runfolder.METRICS).read_text().splitlines()]
    logged = [line["consistency"][0] for line in lines if "consistency" in line]
    assert len(logged) == 2 and all(math.isfinite(value) and value >= 0 for value in logged)
    plain = [json.loads(line) for line in (tmp_path / "without" / runfolder.METRICS).read_text().splitlines()]
    assert all("consistency" not in line for line in plain)
    assert lines[-1]["loss"] != pytest.approx(plain[-1]["loss"], rel=1e-6)


def test_a_bad_jitter_is_refused_in_one_line(tmp_path, cli):
    result = cli(
        "train", "--preset", "digits", "--out", tmp_path / "run", "--set", "loss.consistency_jitter.scale=1.5"
    )
    assert result.exit_code != 0 and "consistency_jitter.scale" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
    without_code = cli(
        "train",
        "--preset",
        "digits",
        "--out",
        tmp_path / "plain",
        *("--set", "model.discrete=[]", "--set", "loss.consistency_weight=3.0"),
    )
    assert without_code.exit_code == 2 and "no discrete variables" in without_code.output
    assert "Traceback" not in without_code.output and not (tmp_path / "plain").exists()
