"""Training speed on the paths users run, in each precision: one run against the reference loop, K stacked models
under each stack engine against K single runs, and one run as two DDP processes (gloo on a CPU) against the
same run in one process.

    python benchmarks/paths_speed.py --preset digits --stack 8 --precisions fp32 mixed

Every figure comes from jvae itself: `jvae bench --json` for the single and stacked paths (each times its
sides in alternation inside one process), and the `images_per_sec` of the last log line of a short `jvae
train` for DDP (the whole job's rate over every process). Run it with nothing else on the machine: any other
load voids the figures. On a CPU without bf16 arithmetic `mixed` trains in float32 (jvae says so), so its
rows repeat fp32's there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ENGINES = ("kernels", "grouped", "concurrent")


def jvae(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jvae", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"jvae {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def bench(preset: str, precision: str, steps: int, repeats: int, *extra: str) -> dict:
    text = jvae(
        "bench", "--preset", preset, "--set", f'train.precision="{precision}"', "--steps", str(steps),
        "--repeats", str(repeats), "--no-metrics", "--json", *extra,
    )  # fmt: skip
    return json.loads(text[text.index("{") :])


def trained_rate(preset: str, precision: str, steps: int, nproc: int, folder: Path) -> float:
    jvae(
        "train", "--preset", preset, "--set", f'train.precision="{precision}"', "--set", f"train.steps={steps}",
        "--set", f"train.log_every={steps // 2}", "--nproc", str(nproc), "--out", str(folder),
    )  # fmt: skip
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return float([r for r in lines if "images_per_sec" in r][-1]["images_per_sec"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--stack", type=int, default=8)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "mixed"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ddp-steps", type=int, default=400)
    args = parser.parse_args()
    rows = []
    for precision in args.precisions:
        single = bench(args.preset, precision, args.steps, args.repeats)
        rows.append(
            (precision, "one run", single["train"]["median"], f"{single['ratio']:.2f}x the reference loop")
        )
        for engine in ENGINES:
            stacked = bench(
                args.preset,
                precision,
                args.steps,
                args.repeats,
                "--stack",
                str(args.stack),
                "--engine",
                engine,
            )
            rows.append(
                (
                    precision,
                    f"{args.stack} stacked ({engine})",
                    stacked["stacked"]["median"],
                    f"{stacked['stacked_over_single']:.2f}x {args.stack} single runs",
                )
            )
        with tempfile.TemporaryDirectory() as work:
            alone = trained_rate(args.preset, precision, args.ddp_steps, 1, Path(work) / "one")
            ddp = trained_rate(args.preset, precision, args.ddp_steps, 2, Path(work) / "two")
        rows.append((precision, "DDP, 2 processes", ddp, f"{ddp / alone:.2f}x one process ({alone:.0f})"))
    print(f"| precision | path ({args.preset}) | images/s | against |")
    print("|---|---|---|---|")
    for precision, path, rate, against in rows:
        print(f"| {precision} | {path} | {rate:.0f} | {against} |")


if __name__ == "__main__":
    main()
