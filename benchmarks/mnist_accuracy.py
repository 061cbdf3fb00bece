"""The paper's MNIST result (section 4.3): digit type read off the discrete latent, 88.7% on the test set.

Trains the `mnist` preset (100 epochs on the 60000 training images) under each training recipe asked for and
each seed, as one resumable `jvae sweep` per recipe, then scores every run with `jvae evaluate --split test
--metrics cluster_accuracy` on the 10000 test images, and, as the anchor, the authors' released MNIST model
imported with `jvae import official`. The recipes name every field they set, so they do not depend on the
preset's defaults:

    a  today's PyTorch as jvae trained it before: loss per image, bf16 autocast, today's Adam and init
    b  loss per pixel (as the official code), fp32
    c  b with PyTorch 0.4.1's Adam and initialisation and the kept last batch: the 2018 recipe, the preset's
    c-bf16  c under bf16 autocast: what the 2018 recipe loses (or not) in bfloat16
    c-mi, c-marginal, c-consistency  c with the discrete code's options: the capacity on I(x; c), the
            marginal term (weight 30), the capacity on I(x; c) with the consistency term (weight 30)

Each run logs its test accuracy every 5000 steps (metrics.jsonl, `"accuracy"` in the `"eval"` lines), so a
recipe can be judged from its curve; the table prints the last few points. Rerunning skips finished runs and
resumes interrupted ones.

    python benchmarks/mnist_accuracy.py --mnist DIR --official trained_models/mnist --recipes c b --jobs 2

`--mnist` takes either torchvision's layout (DIR/MNIST/raw/*-ubyte) or a folder of the four .gz files,
which are unpacked into the work folder; `--official` the released model's folder (model.pt, specs.json)
from the JointVAE repository. This is a benchmark, not a test: it needs the real MNIST files and about 50
minutes a run on a 2-core CPU (two side by side with --jobs 2 and JVAE_THREADS=1).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jvae.modeling.recipes import RECIPES

RAW = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def jvae(*args: object) -> None:
    command = [sys.executable, "-m", "jvae", *map(str, args)]
    print("$ jvae " + " ".join(map(str, args)), flush=True)
    subprocess.run(command, check=True)


def mnist_root(given: Path, work: Path) -> Path:
    if (given / "MNIST" / "raw").is_dir():
        return given
    raw = work / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW:
        if not (raw / name).is_file():
            with gzip.open(given / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return work / "mnist"


CURVE_POINTS = 4


def finished(run: Path) -> bool:
    """A run whose checkpoint reached its last step."""
    import torch

    if not (run / "ckpt.pt").is_file():
        return False
    payload = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    return int(payload["step"]) >= int(payload["total_steps"])


def test_accuracy(ckpt: Path, root: Path, report: Path) -> float:
    jvae(
        "evaluate", ckpt, "--data", root, "--split", "test", "--metrics", "cluster_accuracy", "--out", report
    )
    return json.loads((report / "report.json").read_text())["metrics"]["cluster_accuracy"]["d0"]


def curve(run: Path) -> str:
    """The last test accuracies logged during training, as step:accuracy."""
    points = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "eval" and record.get("accuracy_on") == "test":
            points.append(f"{record['step'] // 1000}k:{record['accuracy'][0]:.3f}")
    return " ".join(points[-CURVE_POINTS:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, required=True, help="MNIST files (torchvision layout or .gz)")
    parser.add_argument("--official", type=Path, help="the released trained_models/mnist folder (the anchor)")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=["c"])
    parser.add_argument("--seeds", default="0-2", help="as jvae sweep --seeds: 0-2 or 0,3,7")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (jvae sweep --jobs)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/mnist_accuracy"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra preset overrides")
    parser.add_argument("--score-only", action="store_true", help="score the finished runs, train nothing")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    root = mnist_root(args.mnist, args.work).resolve()

    anchor_accuracy = None
    if args.official is not None:
        anchor = args.work / "official-mnist.pt"
        if not anchor.is_file():
            jvae("import", "official", args.official, "--out", anchor)
        anchor_accuracy = test_accuracy(anchor, root, args.work / "report-official")

    print_rows = []
    for recipe in args.recipes:
        study = args.work / f"recipe-{recipe}"
        sets = [*RECIPES[recipe], f'data.path="{root}"', "train.eval_every=5000", *args.overrides]
        if not args.score_only:
            started = time.perf_counter()
            jvae(
                "sweep",
                "--preset",
                "mnist",
                "--seeds",
                args.seeds,
                "--out",
                study,
                "--jobs",
                args.jobs,
                *[item for text in sets for item in ("--set", text)],
            )
            print(f"recipe {recipe}: trained in {time.perf_counter() - started:.0f} s", flush=True)
        accuracies = []
        for run in sorted(study.glob("mnist-seed*")):
            if not finished(run):
                print_rows.append(f"| {recipe} | {run.name} | unfinished | {curve(run)} |")
                continue
            accuracy = test_accuracy(run / "ckpt.pt", root, run / "report-test")
            accuracies.append(accuracy)
            print_rows.append(f"| {recipe} | {run.name} | {accuracy:.4f} | {curve(run)} |")
        if accuracies:
            spread = f"{min(accuracies):.4f}-{max(accuracies):.4f}"
            mean = statistics.mean(accuracies)
            print_rows.append(f"| {recipe} | mean of {len(accuracies)} | {mean:.4f} (range {spread}) | |")

    print("\n| recipe | run | test accuracy | test accuracy during training (step:accuracy) |")
    print("|---|---|---|---|")
    print("\n".join(print_rows))
    if anchor_accuracy is not None:
        print(f"| released model | | {anchor_accuracy:.4f} | |")
    print("| paper (Dupont 2018, section 4.3) | | 0.887 | |")


if __name__ == "__main__":
    main()
