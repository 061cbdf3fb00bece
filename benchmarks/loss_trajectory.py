"""Does the fast training path learn what plain fp32 eager training learns? Same preset, same seed, same data
order and noise, trained both ways; prints the logged loss of both every --every steps and the gap.

    python benchmarks/loss_trajectory.py --steps 2000           # quickstart, 64x64 generated dSprites
    python benchmarks/loss_trajectory.py --preset digits --steps 2000
    python benchmarks/loss_trajectory.py --noise-seed 1   # adds eager fp32 from another seed, for scale

The fast path is `jvae train`'s (bf16 autocast where the CPU or GPU has fast bfloat16, channels-last,
fused Adam, the transposed convolutions on convolution kernels, in-place ReLUs, jvae's own Bernoulli loss);
the eager path is fp32, contiguous layout, PyTorch's own layers and fused binary cross-entropy, the default
Adam.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from jvae.data import open_dataset
from jvae.fast import as_stock, stock
from jvae.modeling.presets import load_preset
from jvae.training.steps import Stepper


def trajectory(preset, source, fast: bool, steps: int, every: int) -> tuple[list[float], float]:
    stepper = Stepper.create(preset, source, torch.device("cpu"))
    if not fast:
        stepper.bf16 = stepper.objective.bf16 = False
        stepper.channels_last = False
        as_stock(stepper.model).to(memory_format=torch.contiguous_format)
        stepper.optimizer = torch.optim.Adam(stepper.model.parameters(), lr=preset.train.lr)
    losses, window = [], []
    started = time.perf_counter()
    for index in range(steps):
        with nullcontext() if fast else stock():
            terms, _ = stepper(index)
        window.append(terms.loss.detach())
        if (index + 1) % every == 0:
            losses.append(torch.stack(window).mean().item())
            window = []
    return losses, steps * preset.train.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quickstart")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--noise-seed", type=int, help="also train eager fp32 from this seed, for scale")
    parser.add_argument("--skip-fast", action="store_true", help="only the eager path(s)")
    args = parser.parse_args()
    _, preset = load_preset(args.preset, args.overrides)
    source = open_dataset(preset.data)
    eager, eager_rate = trajectory(preset, source, False, args.steps, args.every)
    columns = {"eager fp32": eager}
    if not args.skip_fast:
        columns["fast"], fast_rate = trajectory(preset, source, True, args.steps, args.every)
        print(f"fast path {fast_rate:.0f} img/s, eager {eager_rate:.0f} img/s")
    if args.noise_seed is not None:
        other = preset.model_copy(update={"train": preset.train.model_copy(update={"seed": args.noise_seed})})
        columns[f"eager seed {args.noise_seed}"], _ = trajectory(other, source, False, args.steps, args.every)
    print(
        f"{args.preset}: mean loss per {args.every} steps; gaps in % of eager fp32 seed {preset.train.seed}"
    )
    names = list(columns)
    print(
        f"{'step':>6}" + "".join(f"{n:>16}" for n in names) + "".join(f"{'gap ' + n:>20}" for n in names[1:])
    )
    for i in range(len(eager)):
        values = [columns[n][i] for n in names]
        gaps = [100 * (v - values[0]) / values[0] for v in values[1:]]
        row = "".join(f"{v:>16.2f}" for v in values) + "".join(f"{g:>20.2f}" for g in gaps)
        print(f"{(i + 1) * args.every:>6}{row}")


if __name__ == "__main__":
    main()
