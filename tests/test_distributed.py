"""Training under torchrun: two CPU processes (gloo) train the same model as one process on the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from jvae.modeling.checkpoint import read_checkpoint
from jvae.modeling.presets import load_preset
from jvae.modeling.recipes import RECIPE_2018
from jvae.training import trainer

SETS = [
    "data.image_size=32",
    'model.architecture="conv32"',
    "train.batch_size=16",
    "train.log_every=2",
    "loss.continuous_capacity.steps=4",  # capacities rise during the run: the |KL - C| terms are exercised
    "loss.discrete_capacity.steps=4",
    # The 2018 recipe, which the paper presets train (the kept last batch's share per process is checked in
    # `test_recipe`).
    *RECIPE_2018,
]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "jvae", "train", "--nproc", "2", "--device", "cpu", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_two_gloo_processes_match_one_process_and_resume(tmp_path):
    _, preset = load_preset("quickstart", [*SETS, "train.steps=6"])
    single = trainer.train(preset, "quickstart", tmp_path / "single", device="cpu")
    assert single.step == 6

    sets = [item for text in [*SETS, "train.steps=3"] for item in ("--set", text)]
    first = _torchrun("--preset", "quickstart", "--out", str(tmp_path / "ddp"), *sets)
    assert first.returncode == 0, first.stderr
    assert "x 2 processes" in first.stderr
    assert read_checkpoint(tmp_path / "ddp" / "ckpt.pt").step == 3
    resumed = _torchrun("--resume", str(tmp_path / "ddp"), "--set", "train.steps=6")
    assert resumed.returncode == 0, resumed.stderr

    a = read_checkpoint(tmp_path / "single" / "ckpt.pt")
    b = read_checkpoint(tmp_path / "ddp" / "ckpt.pt")
    assert b.step == 6
    for key in a.model:
        assert torch.allclose(a.model[key], b.model[key], rtol=1e-4, atol=1e-5), key
    one = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in two] == [2, 3, 4, 6]  # one log, written by rank 0; a line at each run's end
    for step in (2, 6):  # lines averaging the same steps: the loss logged is the global batch's
        a_line, b_line = (next(r for r in log if r["step"] == step) for log in (one, two))
        assert abs(a_line["loss"] - b_line["loss"]) <= 1e-3 * abs(a_line["loss"]), (a_line, b_line)
    assert (tmp_path / "ddp" / "traversals.gif").is_file()


SCRIPT = """
import torch, torch.distributed as dist
from jvae.training.distributed import Cluster, global_mean
dist.init_process_group("gloo")
rank = dist.get_rank()
for name, reduce in (("global", global_mean(Cluster(rank, 2))), ("local", lambda t: t)):
    w = torch.ones(1, requires_grad=True)
    local_kl = w * (3.0 if rank == 0 else 1.0)  # the two halves of the batch sit on either side of C = 1.5
    loss = (reduce(local_kl) - 1.5).abs().sum()
    loss.backward()
    grad = w.grad.clone(); dist.all_reduce(grad); value = loss.detach().clone(); dist.all_reduce(value)
    if rank == 0:
        print(f"{name} grad={grad.item() / 2} loss={value.item() / 2}")

# The aggregate posterior of the discrete code: each process's half of the batch is constant (category 0 on
# one, 1 on the other); the global batch is a balanced code of two categories carrying log 2 nats.
from jvae.kinds import model_objective
from jvae.modeling.model import Posterior
from jvae.modeling.presets import load_preset
_, preset = load_preset("digits", ['loss.discrete_measure="mutual-information"', "loss.marginal_weight=1.0"])
logits = torch.full((4, 10), -30.0)
logits[:, rank] = 30.0
posterior = Posterior(torch.zeros(4, 10), torch.zeros(4, 10), [logits])
class Decoder:
    generic = 0
    def decode_logits(self, latent):
        return torch.zeros(4, 1, 8, 8)
for name, reduce in (("global", global_mean(Cluster(rank, 2))), ("local", None)):
    terms = model_objective(
        Decoder(), torch.full((4, 1, 8, 8), 0.5), posterior, posterior.mean, 10**6, preset.loss, kl_mean=reduce
    )
    if rank == 0:
        print(f"{name} information={terms.extra['mutual_info'].item():.4f} "
              f"marginal={terms.extra['marginal_kl'].item():.4f}")
dist.destroy_process_group()
"""


def test_capacity_terms_see_the_global_batch_across_processes(tmp_path):
    """|KL - C| of the global batch (KL 2, C 1.5) has gradient 2 in w; averaging each process's own
    |KL_local - C| gradient would give (3 - 1) / 2 = 1 (computed beside it, so the check can tell them apart).
    The discrete code's aggregate posterior is the global batch's too."""
    script = tmp_path / "reduce.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-4:-2] == ["global grad=2.0 loss=0.5", "local grad=1.0 loss=1.0"]
    # I(x; c) and KL(q_bar || U) of the global batch (log 2, log 10 - log 2); each half alone reads a constant
    # code (0, log 10), which a per-process estimate would charge.
    assert lines[-2:] == [
        "global information=0.6931 marginal=1.6094",
        "local information=0.0000 marginal=2.3026",
    ]


def test_nproc_refuses_bad_input_in_one_line_before_starting_processes(cli, tmp_path):
    unknown = cli("train", "--preset", "no-such-preset", "--nproc", "2")
    assert unknown.exit_code == 2 and "unknown preset" in unknown.output
    critic = cli("train", "--preset", "dsprites-factor-vae", "--nproc", "2", "--out", tmp_path / "f")
    assert critic.exit_code == 2 and "one process only" in critic.output
    assert not (tmp_path / "f").exists()
