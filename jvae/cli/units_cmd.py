"""`jvae units`: list a checkpoint's latent units with their information, and name them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict, cast

import typer
from rich.table import Table

from jvae.cli.common import DEVICE_HELP, checkpoint_file, load, unit_assignment
from jvae.cli.console import err, out, user_errors


class _UnitRow(TypedDict):
    """One unit as the table and the JSON show it."""

    unit: str
    kind: str
    name: str | None
    kl: float | None


def _training_log_kl(ckpt: Path) -> tuple[list[float], list[float]] | None:
    from jvae.runs import runfolder

    log = runfolder.metrics(ckpt.parent)
    if not log.is_file():
        return None
    from jvae.base.runfiles import RunFileError, read_metrics

    try:
        train, _ = read_metrics(log)
    except RunFileError:
        return None  # the log is only a fallback source of the KLs; a damaged one is passed over
    return (train[-1].kl_cont, train[-1].kl_disc) if train else None


def units(
    ckpt: Path = typer.Argument(
        ..., help="A checkpoint (ckpt.pt), a run or exported folder, official:NAME or hf:OWNER/NAME."
    ),
    name: list[str] = typer.Option(
        [], "--name", "-n", help="Name a unit: 3=azimuth, d0=digit; 3= removes it."
    ),
    data: str = typer.Option(None, "--data", help="Dataset location, to measure KL on a data sample."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """List a model's latent units, or name them.

    Every unit's address, kind, name and mean KL; --name stores unit names in the checkpoint.
    """
    from jvae.base.errors import DataError, DataNotFoundError
    from jvae.data import open_dataset
    from jvae.modeling.checkpoint import set_unit_names
    from jvae.modeling.latents import all_units, measure_unit_kl, parse_unit, unit_address

    ckpt = checkpoint_file(ckpt)
    with user_errors():
        loaded, torch_device = load(ckpt, device)
        model = loaded.model
        if name:
            updates: dict[str, str | None] = {}
            for text in name:
                address, new = unit_assignment("--name", text, "UNIT=NAME, e.g. 3=azimuth")
                unit = parse_unit(address, model, loaded.unit_names)
                updates[unit_address(unit)] = new.strip() or None
            stored = set_unit_names(ckpt, updates)
            out.print(
                f"names in {ckpt}: " + (", ".join(f"{a}={n}" for a, n in sorted(stored.items())) or "none")
            )
            return
        kl: tuple[list[float], list[float]] | None  # None when neither the checkpoint nor its log has it
        try:
            measured = measure_unit_kl(model, open_dataset(loaded.preset.data, data), torch_device)
            kl, source = (measured.continuous, measured.discrete), "data sample (1024 images)"
        except (DataNotFoundError, DataError) as exc:
            stored_kl = loaded.unit_kl
            # measured_on, where an import wrote it, is the one text entry beside the KL lists
            recorded = (
                cast(str, stored_kl.get("measured_on", "end of training")) if stored_kl else "training log"
            )
            err.print(f"note: {exc}; KL as recorded: {recorded}", markup=False)
            kl = (stored_kl["continuous"], stored_kl["discrete"]) if stored_kl else _training_log_kl(ckpt)
            source = recorded
    names = loaded.unit_names
    rows: list[_UnitRow] = []
    for unit in all_units(model):
        values = (kl[0] if unit.kind == "continuous" else kl[1]) if kl else None
        rows.append(
            {
                "unit": unit_address(unit),
                "kind": "continuous"
                if unit.kind == "continuous"
                else f"discrete ({model.discrete[unit.index]}-way)",
                "name": names.get(unit_address(unit)),
                "kl": None if not kl else cast(list[float], values)[unit.index],  # values is set when kl is
            }
        )
    if as_json:
        print(json.dumps({"kl_source": source if kl else None, "units": rows}, indent=2))
        return
    table = Table(title=f"units of {ckpt} (KL: {source if kl else 'unknown'})")
    for column in ("unit", "kind", "name", "mean KL (nats)"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["unit"], row["kind"], row["name"] or "", "" if row["kl"] is None else f"{row['kl']:.3f}"
        )
    out.print(table)
