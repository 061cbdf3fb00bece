"""The paper's MNIST result (section 4.3): digit type read off the discrete latent, 88.7% on the test set.

Trains the `mnist` preset (100 epochs on the 60000 training images) once per seed through the CLI, then
scores every run with `jvae evaluate --split test --metrics cluster_accuracy` on the 10000 test images, and,
as the anchor, the authors' released MNIST model imported with `jvae import official`. Runs already
finished are scored again without training; an interrupted one is resumed.

    python benchmarks/mnist_accuracy.py --mnist DIR --official OFFICIAL_DIR/mnist

`--mnist` takes either torchvision's layout (DIR/MNIST/raw/*-ubyte) or a folder of the four .gz files,
which are unpacked into the work folder. This is a benchmark, not a test: it needs the real MNIST files and
about 35 minutes a seed on a 2-core CPU.
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

RAW = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def jvae(*args: object) -> None:
    command = [sys.executable, "-m", "jvae_cli", *map(str, args)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, required=True, help="MNIST files (torchvision layout or .gz)")
    parser.add_argument("--official", type=Path, help="the released trained_models/mnist folder (the anchor)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/mnist_accuracy"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra preset overrides")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    root = mnist_root(args.mnist, args.work)

    results: dict[str, float] = {}
    if args.official is not None:
        anchor = args.work / "official-mnist.pt"
        if not anchor.is_file():
            jvae("import", "official", args.official, "--out", anchor)
        results["released model"] = test_accuracy(anchor, root, args.work / "report-official")

    accuracies = []
    for seed in args.seeds:
        run = args.work / f"seed{seed}"
        started = time.perf_counter()
        if not finished(run):
            if (run / "ckpt.pt").is_file():
                jvae("train", "--resume", run, "--data", root)
            else:
                overrides = [f"train.seed={seed}", *args.overrides]
                jvae(
                    "train",
                    "--preset",
                    "mnist",
                    "--data",
                    root,
                    "--out",
                    run,
                    *[f"--set={o}" for o in overrides],
                )
        print(f"seed {seed}: trained in {time.perf_counter() - started:.0f} s", flush=True)
        accuracy = test_accuracy(run / "ckpt.pt", root, run / "report-test")
        results[f"jvae mnist seed {seed}"] = accuracy
        accuracies.append(accuracy)

    print("\n| model | test digit accuracy (discrete latent, Hungarian) |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.4f} |")
    if accuracies:
        spread = statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"| jvae mean over seeds {args.seeds} | {statistics.mean(accuracies):.4f} (sd {spread:.4f}) |")
    print("| paper (Dupont 2018, section 4.3) | 0.887 |")


if __name__ == "__main__":
    main()
