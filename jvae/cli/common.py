"""Pieces the model-using commands share: loading a checkpoint on a device, checking output paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from jvae.base.limits import SEED_MAX
from jvae.cli.console import err, fail, user_errors

if TYPE_CHECKING:
    import torch

    from jvae.modeling.checkpoint import LoadedCheckpoint
    from jvae.modeling.model import JointVAE

DEVICE_HELP = "auto (GPU when present), cpu, cuda or cuda:N."
OUTPUT_SUFFIXES = {".gif", ".png"}


def unit_assignment(option: str, text: str, example: str) -> tuple[str, str]:
    """(unit, value) of a UNIT=VALUE option value, or exit 2 naming the option and an example."""
    address, sep, value = text.partition("=")
    if not sep or not address.strip():
        raise fail(f"{option} {text!r}: expected {example}", 2)
    return address.strip(), value


def checkpoint_file(ckpt: Path | str) -> Path:
    """The file behind a checkpoint argument, resolved as the Python API resolves it (`jvae.load`): a
    pretrained name such as official:celeba (fetched and imported into the cache on first use), a hub
    model hf:OWNER/NAME or a folder `jvae export` wrote (read into the cache on first use), a run folder
    (its ckpt.pt), or a checkpoint file as given."""
    from jvae.api import resolve_checkpoint

    with user_errors():
        return resolve_checkpoint(ckpt)


def load(ckpt: Path, device: str) -> tuple[LoadedCheckpoint, torch.device]:
    from jvae.base.devices import resolve_device
    from jvae.modeling.checkpoint import load_checkpoint

    torch_device = resolve_device(device)
    return load_checkpoint(checkpoint_file(ckpt), torch_device), torch_device


def output_path(path: Path, suffixes: set[str] | None = None) -> Path:
    """An output file whose folder exists (jvae never guesses where a file should go)."""
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise fail(f"{path}: output must end in {' or '.join(sorted(suffixes))}", 2)
    if not path.parent.is_dir():
        raise fail(f"output folder does not exist: {path.parent}", 1)
    if path.is_dir():
        raise fail(f"{path} is a folder; give a file name", 1)
    return path


def find_checkpoint(explicit: Path | None) -> Path:
    """--ckpt, else $JVAE_CKPT, else the most recently written runs/*/ckpt.pt, saying which it used."""
    if explicit is not None:
        return explicit
    env = os.environ.get("JVAE_CKPT")
    if env:
        err.print(f"using checkpoint {env} (from JVAE_CKPT)", markup=False)
        return Path(env)
    candidates = sorted(Path("runs").glob("*/ckpt.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise fail("no checkpoint given: pass --ckpt PATH, set JVAE_CKPT, or train one into runs/", 1)
    err.print(f"using checkpoint {candidates[-1]} (the most recent under runs/)", markup=False)
    return candidates[-1]


def seed_option(help_text: str) -> int:
    return typer.Option(0, "--seed", min=0, max=SEED_MAX, help=help_text)


def scale_option() -> int:
    return typer.Option(
        1, "--scale", min=1, max=16, help="Upsample each image by this factor (nearest neighbour)."
    )


def class_option() -> int | None:
    return typer.Option(
        None, "--class", min=0, help="Class-conditional models: the label to condition on (0..classes-1)."
    )


def set_class(model: JointVAE, label: int | None, needed: bool = True) -> None:
    """Condition a class-conditional model on `label`; refuse a label for any other model."""
    if label is None:
        if model.classes and needed:
            raise fail(
                f"this model is class-conditional: choose a label with --class 0..{model.classes - 1}", 2
            )
        return
    if not model.classes:
        raise fail("--class is for class-conditional models; this checkpoint's model is not one", 2)
    if label >= model.classes:
        raise fail(f"--class {label}: this model knows classes 0..{model.classes - 1}", 2)
    model.default_class = label
