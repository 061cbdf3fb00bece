"""Shared by the Python examples: --quick, the output folder, running the jvae CLI, reading its reports."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def setup(name: str, doc: str) -> tuple[bool, Path]:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="minutes on a CPU, on data available offline")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", f"examples/out/{name}"))
    out.mkdir(parents=True, exist_ok=True)
    return args.quick, out


def jvae(*args: Any) -> None:
    """Run one jvae command; its errors stop the example with jvae's own message."""
    command = [sys.executable, "-m", "jvae", *[str(a) for a in args]]
    print("$ jvae " + " ".join(str(a) for a in args), file=sys.stderr, flush=True)
    done = subprocess.run(command)
    if done.returncode:
        sys.exit(done.returncode)


def evaluate(run: Path, folder: Path, seed: int, *metrics: str, fast: bool = True) -> dict[str, Any]:
    """`jvae evaluate` of a run's checkpoint on the named metrics; returns report.json's metrics."""
    chosen = [item for name in metrics for item in ("--metrics", name)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    jvae("evaluate", run / "ckpt.pt", *chosen, *(["--fast"] if fast else []), "--seed", seed, "--out", folder)
    return report(folder)["metrics"]


def sets(*pairs: str) -> list[str]:
    return [item for pair in pairs for item in ("--set", pair)]


def report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text())


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (numbers to 3 decimals)."""

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def disentanglement_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """The gallery tables' rows of an evaluate report on dSprites."""
    return [
        ["FactorVAE score", metrics["factorvae"]["eval_accuracy"]],
        ["beta-VAE score", metrics["betavae"]["eval_accuracy"]],
        ["MIG", metrics["mig"]],
        ["DCI disentanglement", metrics["dci"]["disentanglement"]],
        ["SAP", metrics["sap"]],
    ]
