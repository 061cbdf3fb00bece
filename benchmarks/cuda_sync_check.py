"""Whether jvae's training step waits on the GPU: steps of a single run and of a stack under PyTorch's
synchronisation debug mode, which raises at the first operation that makes the host wait for the device.

    python benchmarks/cuda_sync_check.py [--preset quickstart] [--steps 20]

Prints one line per setting: "no host sync in N steps" or the operation that synchronised. Needs CUDA.
"""

from __future__ import annotations

import argparse
import traceback

import torch

from jvae.data import open_dataset
from jvae.modeling.presets import load_preset, with_seed
from jvae.training.stacking import stack_steps
from jvae.training.steps import Stepper


def _check(label: str, step: object, steps: int) -> None:
    run = step  # a callable taking the 0-based step index
    for index in range(3):  # the first steps move the data order to the device and warm the allocator
        run(index)  # type: ignore[operator]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for index in range(3, 3 + steps):
            run(index)  # type: ignore[operator]
        print(f"{label}: no host sync in {steps} steps")
    except RuntimeError:
        where = [line for line in traceback.format_exc().splitlines() if "jvae" in line][-2:]
        print(f"{label}: synchronises at {' / '.join(w.strip() for w in where)}")
    finally:
        torch.cuda.set_sync_debug_mode("default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quickstart")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    device = torch.device("cuda")
    name, preset = load_preset(args.preset, [])
    source = open_dataset(preset.data, None)
    stepper = Stepper.create(preset, source, device)
    stepper.model.train()
    _check(f"{name}, one run", stepper, args.steps)
    presets = [with_seed(preset, seed) for seed in range(4)]
    stack = stack_steps(presets, source, device)
    _check(f"{name}, 4 stacked ({stack.engine})", stack.step_members, args.steps)


if __name__ == "__main__":
    main()
