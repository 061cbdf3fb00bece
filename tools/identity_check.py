"""Fingerprint what jvae trains and reports, to show that a refactoring changed no behaviour.

Trains short real runs (every model kind, a stack of three seeds, a run stopped and resumed), evaluates
them, and hashes what a user keeps: each checkpoint tensor, the metrics log without its timings, the unit
KLs, the traversal GIFs and the report's scores. Run it before and after a change, on the same machine
and PyTorch, and compare:

    python tools/identity_check.py --out before.json
    ... change the code ...
    python tools/identity_check.py --out after.json --against before.json

It runs the jvae found on PYTHONPATH (or installed), each command as a child process with one thread, so
two checkouts can be compared from one copy of this script. Exit code 1 lists every fingerprint that differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

SHORT = [
    "train.steps=6",
    "train.log_every=2",
    "train.checkpoint_every=3",
    "data.image_size=32",
    'model.architecture="conv32"',
]
GENERATED = ["data.source=generated"]
KINDS = {
    "jointvae": ("quickstart", GENERATED),
    "vae": ("dsprites-vae", GENERATED),
    "beta-vae": ("dsprites-beta-vae", GENERATED),
    "cc-beta-vae": ("dsprites-cc-beta-vae", GENERATED),
    "beta-tcvae": ("dsprites-beta-tcvae", GENERATED),
    "factor-vae": ("dsprites-factor-vae", GENERATED),
    "dip-vae-i": ("dsprites-dip-vae-i", GENERATED),
    "dip-vae-ii": ("dsprites-dip-vae-ii", GENERATED),
    "grouped-vae": ("dsprites-grouped-vae", GENERATED),
    "class-conditional": ("digits-class-conditional", []),
    "digits-2018-recipe": (
        "digits",
        [
            "loss.objective_scale=pixel",
            "train.adam=pytorch-0.4",
            "model.init=pytorch-0.4",
            "train.last_batch=keep",
        ],
    ),
}
TIMINGS = {"images_per_sec", "images_per_s", "img_s", "seconds", "elapsed", "time", "wall", "wall_s", "speed"}


def jvae(*args: str) -> str:
    env = dict(os.environ, JVAE_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "jvae", *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"jvae {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def tensors(value: Any, prefix: str, out: dict[str, str]) -> None:
    """Every tensor in a checkpoint, by its path; plain values too, so a changed setting shows."""
    if isinstance(value, torch.Tensor):
        out[prefix] = digest(value.detach().cpu().contiguous().numpy().tobytes()) + f"{tuple(value.shape)}"
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            tensors(value[key], f"{prefix}/{key}", out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            tensors(item, f"{prefix}/{index}", out)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out[prefix] = repr(value)


def untimed(line: str) -> str:
    record = json.loads(line)
    return json.dumps({k: v for k, v in record.items() if k not in TIMINGS}, sort_keys=True)


def fingerprint_run(run: Path, evaluate: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    checkpoint = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    tensors(checkpoint, "ckpt", found)
    found["metrics"] = digest(
        "\n".join(untimed(x) for x in (run / "metrics.jsonl").read_text().splitlines()).encode()
    )
    for gif in sorted(run.glob("*.gif")):
        found[gif.name] = digest(gif.read_bytes())
    found["units"] = json.loads(jvae("units", str(run / "ckpt.pt"), "--json"))
    if evaluate:
        report = run / "report"
        jvae("evaluate", str(run / "ckpt.pt"), "--fast", "--seed", "0", "--out", str(report))
        scores = json.loads((report / "report.json").read_text())
        settings = scores.get("settings", {})
        settings.pop("checkpoint", None)  # where this check trained, not what
        settings.pop("checkpoint_sha256", None)  # the file's bytes; its tensors are compared one by one
        found["report"] = {k: v for k, v in scores.items() if k not in TIMINGS and not isinstance(v, str)}
    return found


def fingerprint(root: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for kind, (preset, extra) in KINDS.items():
        run = root / kind
        jvae(
            "train", "--preset", preset, "--out", str(run), *(a for s in SHORT + extra for a in ("--set", s))
        )
        found[kind] = fingerprint_run(run, evaluate=True)
        print(f"  {kind}", file=sys.stderr)
    stack = root / "stack"
    jvae("train", "--preset", "quickstart", "--seeds", "0-2", "--out", str(stack),
         *(a for s in SHORT + GENERATED for a in ("--set", s)))  # fmt: skip
    for member in sorted(p for p in stack.iterdir() if (p / "ckpt.pt").is_file()):
        found[f"stack/{member.name}"] = fingerprint_run(member, evaluate=False)
    print("  stack", file=sys.stderr)
    resumed = root / "resumed"
    jvae(
        "train",
        "--preset",
        "quickstart",
        "--out",
        str(resumed),
        *(a for s in SHORT + GENERATED for a in ("--set", s)),
    )
    jvae("train", "--resume", str(resumed), "--set", "train.steps=10")
    found["resumed"] = fingerprint_run(resumed, evaluate=False)
    print("  resumed", file=sys.stderr)
    return found


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            if key not in after:
                out.append(f"{path}/{key}: missing after")
            elif key not in before:
                out.append(f"{path}/{key}: new after")
            else:
                out += differences(before[key], after[key], f"{path}/{key}")
        return out
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the fingerprints (JSON)")
    parser.add_argument("--against", type=Path, help="earlier fingerprints to compare with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="jvae-identity-") as folder:
        found = fingerprint(Path(folder))
    args.out.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    if args.against is None:
        print(f"wrote {args.out}")
        return
    changed = differences(json.loads(args.against.read_text()), found)
    for line in changed:
        print(line)
    print(f"{len(changed)} fingerprints differ" if changed else "identical")
    raise SystemExit(1 if changed else 0)


if __name__ == "__main__":
    main()
