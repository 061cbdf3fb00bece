"""How good is a first run, seed to seed: the quickstart preset trained over several seeds, every metric.

    python examples/quickstart_seeds.py            # seeds 0-4 of `jvae train --preset quickstart`
    python examples/quickstart_seeds.py --quick    # seeds 0-1
    python examples/quickstart_seeds.py --seeds 3 --set train.lr=1e-3   # try a change over seeds 0-2
    python examples/quickstart_seeds.py --seeds 10 --select udr          # which seed UDR would pick

Each seed is trained with `jvae train` (its wall time measured around the command), scored with
`jvae evaluate --fast --seed 0`, and its unit KLs read from the checkpoint. The table ends with the median
and the spread (min-max) of each column; a seed whose run uses fewer than three units above 1 nat, or
never left the early plateau where the decoder draws the average sprite, is flagged as collapsed. The
`shape_nmi` column says how much shape the discrete variable carries: the normalised mutual information of
its argmax category with the shape factor on 5000 sprites. With `--select udr` each seed's UDR against the
others (unsupervised, `jvae compare --select udr`) joins the table, with its rank correlation to MIG and
the FactorVAE score across seeds and the MIG of the seed it selects against the median and the best.
Compare with the released model: `jvae evaluate official:dsprites --fast`.

Runtime: about 8.5 minutes per seed on a 2-core CPU (7 of training, 1.5 of evaluation), so about
43 minutes in full and 17 with --quick. Outputs: in $OUT (default examples/out/quickstart_seeds/): a run
and a report folder per seed, seeds.md (the table) and seeds.json (the same numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import disentanglement_rows, jvae, report, sets, table

COLLAPSE_NATS = 1.0
MIN_UNITS = 3
PLATEAU_FRACTION = 0.25

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="two seeds instead of five")
parser.add_argument("--seeds", type=int, default=None, help="train seeds 0..N-1 (default 5; 2 with --quick)")
parser.add_argument(
    "--set", dest="overrides", action="append", default=[], help="a preset override, as in jvae train"
)
parser.add_argument("--select", choices=["udr"], help="also score the seeds against each other with UDR")
args = parser.parse_args()
count = args.seeds if args.seeds is not None else (2 if args.quick else 5)
if count < 1:
    parser.error("--seeds must be at least 1")
out = Path(os.environ.get("OUT", "examples/out/quickstart_seeds"))
out.mkdir(parents=True, exist_ok=True)


def train(seed: int) -> tuple[Path, float]:
    """Train one seed (or keep a finished run from an earlier call) and return its folder and wall time."""
    run = out / f"seed{seed}"
    timing = run / "wall_seconds.txt"
    if timing.is_file():
        return run, float(timing.read_text())
    if run.exists():
        print(f"{run} holds an unfinished run; delete it to train seed {seed} again", file=sys.stderr)
        sys.exit(1)
    command = [sys.executable, "-m", "jvae", "train", "--preset", "quickstart", "--out", str(run)]
    command += sets(f"train.seed={seed}", *args.overrides)
    print("$ jvae " + " ".join(command[3:]), file=sys.stderr, flush=True)
    started = time.perf_counter()
    if subprocess.run(command).returncode:
        sys.exit(1)
    seconds = time.perf_counter() - started
    timing.write_text(f"{seconds:.1f}\n")
    return run, seconds


def left_plateau(run: Path) -> bool:
    """Whether the run got past the early plateau where the decoder draws the average sprite: its
    reconstruction fell below a quarter of the first logged one (a stuck run's stays near half)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    first, last = json.loads(lines[0])["recon"], json.loads(lines[-1])["recon"]
    return last < PLATEAU_FRACTION * first


def shape_nmi(run: Path, sprites: int = 5000) -> float:
    """NMI of the first discrete variable's argmax category with the shape factor (0 without one)."""
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    from jvae.data import open_dataset
    from jvae.data.capabilities import ground_truth
    from jvae.modeling.checkpoint import load_checkpoint

    loaded = load_checkpoint(run / "ckpt.pt")
    truth = ground_truth(open_dataset(loaded.preset.data))
    if truth is None or not loaded.model.discrete or "shape" not in truth.factor_names:
        return 0.0
    factors = truth.sample_factors(sprites, np.random.RandomState(0))
    categories = []
    with torch.no_grad():
        for start in range(0, sprites, 500):
            images = truth.observations(factors[start : start + 500], torch.device("cpu"))
            categories.append(loaded.model.encode(images).categories[0].numpy())
    shape = factors[:, truth.factor_names.index("shape")]
    return float(normalized_mutual_info_score(shape, np.concatenate(categories)))


def units_above(run: Path) -> int:
    kl = torch.load(run / "ckpt.pt", weights_only=True, map_location="cpu")["unit_kl"]
    return sum(value > COLLAPSE_NATS for value in kl["continuous"] + kl["discrete"])


rows: list[dict[str, Any]] = []
for seed in range(count):
    run, seconds = train(seed)
    folder = run / "report"
    if not (folder / "report.json").is_file():
        jvae("evaluate", run / "ckpt.pt", "--fast", "--seed", 0, "--out", folder)
    scores = dict((name, value) for name, value in disentanglement_rows(report(folder)["metrics"]))
    rows.append(
        {
            "seed": seed,
            "train_seconds": seconds,
            **scores,
            "shape_nmi": shape_nmi(run),
            "units_above_1_nat": units_above(run),
            "left_plateau": int(left_plateau(run)),
        }
    )

selected_text = ""
if args.select == "udr" and count > 1:
    from scipy.stats import spearmanr

    from jvae.studies.selection import select, write_selections

    runs = [out / f"seed{row['seed']}" for row in rows]
    started = time.perf_counter()
    chosen = select(runs)
    udr_seconds = time.perf_counter() - started
    write_selections(out, [(runs, chosen)])
    for row, value in zip(rows, chosen.udr):
        row["udr"] = value
    picked = rows[chosen.runs.index(chosen.selected)]
    migs = [row["MIG"] for row in rows if "MIG" in row]
    if len(migs) == len(rows):
        selected_text = (
            f"UDR ({udr_seconds:.0f} s for {count} runs) selects {chosen.selected}: MIG {picked['MIG']:.3f} "
            f"against median {statistics.median(migs):.3f} and best {max(migs):.3f}; rank correlation "
            f"of UDR across seeds with MIG {spearmanr(chosen.udr, migs)[0]:.2f}"
        )
        votes = [row.get("FactorVAE score") for row in rows]
        if all(isinstance(v, float) for v in votes):
            selected_text += f", with the FactorVAE score {spearmanr(chosen.udr, votes)[0]:.2f}"
        selected_text += "\n"

columns = [key for key in rows[0] if key != "seed"]
summary = {key: [row[key] for row in rows] for key in columns}
lines = [[row["seed"], *[row[key] for key in columns]] for row in rows]
lines.append(["median", *[statistics.median(summary[key]) for key in columns]])
lines.append(["spread", *[f"{min(summary[key]):.3f}-{max(summary[key]):.3f}" for key in columns]])
collapsed = [row["seed"] for row in rows if row["units_above_1_nat"] < MIN_UNITS or not row["left_plateau"]]
text = table(["seed", *columns], lines) + "\n"
text += (
    f"\ncollapsed seeds (fewer than {MIN_UNITS} units above {COLLAPSE_NATS:g} nat, or left_plateau 0: the "
    f"reconstruction never fell below {PLATEAU_FRACTION:g} of its first logged value): {collapsed or 'none'}\n"
)
text += selected_text
if args.overrides:
    text += f"overrides: {' '.join(args.overrides)}\n"
(out / "seeds.md").write_text(text)
(out / "seeds.json").write_text(json.dumps({"overrides": args.overrides, "seeds": rows}, indent=2) + "\n")
print(text)
